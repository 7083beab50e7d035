package lighthouse

import (
	"context"
	"testing"

	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestMetrics checks that the counters move with the answers: the rcode and type
// of each query, and the clusters whose records an answer carries.
func TestMetrics(t *testing.T) {
	lh := newTestLighthouse(newFakeController(t, localCluster, testObjects()...))
	count := func() map[string]float64 {
		return map[string]float64{
			"A NOERROR":   value(t, requestCount.WithLabelValues("", "A", "NOERROR")),
			"A NXDOMAIN":  value(t, requestCount.WithLabelValues("", "A", "NXDOMAIN")),
			"SRV NOERROR": value(t, requestCount.WithLabelValues("", "SRV", "NOERROR")),
			"other":       value(t, requestCount.WithLabelValues("", "other", "NOERROR")),
			"A SERVFAIL":  value(t, requestCount.WithLabelValues("", "A", "SERVFAIL")),
			"cluster1":    value(t, answerCount.WithLabelValues("", "cluster1")),
			"cluster2":    value(t, answerCount.WithLabelValues("", "cluster2")),
			"cluster3":    value(t, answerCount.WithLabelValues("", "cluster3")),
		}
	}
	before := count()
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"nginx.demo.svc.clusterset.local.", dns.TypeA},            // cluster1
		{"db.demo.svc.clusterset.local.", dns.TypeA},               // cluster1 and cluster2
		{"_mysql._tcp.db.demo.svc.clusterset.local.", dns.TypeSRV}, // cluster1 and cluster2
		{"vip.demo.svc.clusterset.local.", dns.TypeA},              // the clusterset IP: no cluster
		{"nope.demo.svc.clusterset.local.", dns.TypeA},
		{"nginx.demo.svc.clusterset.local.", dns.TypeCAA},
	} {
		serve(t, lh, (&test.Case{Qname: q.name, Qtype: q.qtype}).Msg())
	}
	ctrl := newFakeController(t, localCluster)
	ctrl.notSynced = true
	_, _ = newTestLighthouse(ctrl).ServeDNS(context.Background(), &test.ResponseWriter{}, (&test.Case{Qname: "x.clusterset.local.", Qtype: dns.TypeA}).Msg())

	after := count()
	want := map[string]float64{"A NOERROR": 3, "A NXDOMAIN": 1, "SRV NOERROR": 1, "other": 1, "A SERVFAIL": 1, "cluster1": 3, "cluster2": 2, "cluster3": 0}
	for k, w := range want {
		if got := after[k] - before[k]; got != w {
			t.Errorf("%s: counted %v, want %v", k, got, w)
		}
	}
}

// value reads a counter.
func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
