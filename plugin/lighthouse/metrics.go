package lighthouse

import (
	"github.com/coredns/coredns/plugin"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	// requestCount counts the queries the plugin answered (not those it passed on
	// to the next plugin), by query type and response code.
	requestCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "requests_total",
		Help:      "Counter of queries answered by the lighthouse plugin, by query type and response code.",
	}, []string{"server", "type", "rcode"})

	// answerCount counts the responses that carry records of a source cluster, once
	// per cluster and response. Answers with a clusterset IP belong to no cluster
	// and are not counted here.
	answerCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "answers_total",
		Help:      "Counter of responses carrying records of a source cluster, by cluster.",
	}, []string{"server", "source_cluster"})
)

// typeLabel is the type label of a query type. The set is closed, so that odd
// queries cannot grow the metric's cardinality.
func typeLabel(qtype uint16) string {
	switch qtype {
	case dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeTXT, dns.TypeSOA, dns.TypeNS,
		dns.TypePTR, dns.TypeCNAME, dns.TypeANY, dns.TypeAXFR, dns.TypeIXFR, dns.TypeHTTPS, dns.TypeSVCB:
		return dns.TypeToString[qtype]
	}
	return "other"
}

// rcodeLabel is the rcode label of a response code.
func rcodeLabel(rcode int) string {
	if s, ok := dns.RcodeToString[rcode]; ok {
		return s
	}
	return "other"
}
