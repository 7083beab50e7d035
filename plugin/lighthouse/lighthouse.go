// Package lighthouse implements a CoreDNS plugin that answers the DNS names of the
// Multi-Cluster Services API (KEP-1645, zone clusterset.local) from the
// ServiceImports and EndpointSlices that the lighthouse agent maintains, preferring
// the local cluster and leaving out clusters whose Submariner tunnel is down.
//
// The data path of a query is one map lookup and no locks held while records are
// made: the controller (client-go informers) keeps a read-only view per service
// that it replaces whenever the service's objects change; the handler parses the
// query name along the specification's grammar (name.go), finds the view by the
// "NAME.NS" part of the name, and makes the records (records.go).
package lighthouse

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metrics"
	"github.com/coredns/coredns/plugin/pkg/fall"
	clog "github.com/coredns/coredns/plugin/pkg/log"
	"github.com/miekg/dns"
)

const pluginName = "lighthouse"

var log = clog.NewWithPlugin(pluginName)

// errNotSynced is returned, with SERVFAIL, for queries that arrive before the
// informers have synced: an answer then could be a wrong NXDOMAIN.
var errNotSynced = errors.New("lighthouse: not synced with the Kubernetes API yet")

// dnsController is what the handler needs from the data: the services by key, the
// namespaces, whether the initial sync is done, and the SOA serial.
type dnsController interface {
	// Service returns the service whose key is "NAME.NAMESPACE", or nil.
	Service(key string) *service
	// HasNamespace reports whether a service is imported in the namespace.
	HasNamespace(ns string) bool
	// HasServices reports whether any service is imported.
	HasServices() bool
	// HasSynced reports whether the initial lists have been processed.
	HasSynced() bool
	// Serial is the SOA serial, which changes when the data changes.
	Serial() uint32
}

// Lighthouse is the plugin.
type Lighthouse struct {
	Next plugin.Handler
	// Zones are the zones the plugin is authoritative for, lower case and fully
	// qualified.
	Zones []string
	// Fall lists the zones whose NXDOMAIN answers go to the next plugin instead.
	Fall fall.F

	ttl uint32
	// clusterSpecific enables the CLUSTER.NAME.NS.svc.ZONE names that the
	// specification reserves.
	clusterSpecific bool
	policy          Policy
	ctrl            dnsController
	// soaNames holds the SOA names of every zone, made once.
	soaNames map[string][2]string
}

// newLighthouse returns the plugin for the parsed configuration and the data.
func newLighthouse(cfg *config, ctrl dnsController) *Lighthouse {
	lh := &Lighthouse{
		Zones:           cfg.zones,
		Fall:            cfg.fall,
		ttl:             cfg.ttl,
		clusterSpecific: cfg.clusterSpecificNames,
		policy:          defaultPolicy,
		ctrl:            ctrl,
		soaNames:        make(map[string][2]string, len(cfg.zones)),
	}
	for _, z := range cfg.zones {
		lh.soaNames[z] = soaNamesOf(z)
	}
	return lh
}

// ServeDNS implements the plugin.Handler interface.
func (lh *Lighthouse) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	if len(r.Question) != 1 {
		return plugin.NextOrFailure(lh.Name(), lh.Next, ctx, w, r)
	}
	q := r.Question[0]
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		return plugin.NextOrFailure(lh.Name(), lh.Next, ctx, w, r)
	}
	owner := dns.Fqdn(q.Name)
	lower := lowerASCII(owner)
	zone := lh.zone(lower)
	if zone == "" {
		return plugin.NextOrFailure(lh.Name(), lh.Next, ctx, w, r)
	}
	server := metrics.WithServer(ctx)

	if !lh.ctrl.HasSynced() {
		requestCount.WithLabelValues(server, typeLabel(q.Qtype), rcodeLabel(dns.RcodeServerFailure)).Inc()
		return dns.RcodeServerFailure, errNotSynced
	}
	if q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR {
		requestCount.WithLabelValues(server, typeLabel(q.Qtype), rcodeLabel(dns.RcodeRefused)).Inc()
		return dns.RcodeRefused, nil
	}

	answer, extra, exists := lh.lookup(server, owner, lower, zone, q.Qtype)
	if !exists && lh.Fall.Through(lower) {
		return plugin.NextOrFailure(lh.Name(), lh.Next, ctx, w, r)
	}

	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	m.Answer, m.Extra = answer, extra
	if !exists {
		m.Rcode = dns.RcodeNameError
	}
	if len(answer) == 0 {
		m.Ns = []dns.RR{lh.soa(zone)}
	}
	requestCount.WithLabelValues(server, typeLabel(q.Qtype), rcodeLabel(m.Rcode)).Inc()
	if err := w.WriteMsg(m); err != nil {
		return dns.RcodeSuccess, fmt.Errorf("lighthouse: writing the response to %s: %w", owner, err)
	}
	return dns.RcodeSuccess, nil
}

// Name implements the Handler interface.
func (lh *Lighthouse) Name() string { return pluginName }

// zone returns the longest of the plugin's zones that contains name (lower case,
// fully qualified), or "".
func (lh *Lighthouse) zone(name string) string {
	best := ""
	for _, z := range lh.Zones {
		if len(z) <= len(best) || !inZone(name, z) {
			continue
		}
		best = z
	}
	return best
}

// inZone reports whether name is zone or below it; both are lower case and fully
// qualified.
func inZone(name, zone string) bool {
	if zone == "." {
		return true
	}
	if strings.IndexByte(name, '\\') >= 0 {
		return dns.IsSubDomain(zone, name) // an escaped dot does not end a label
	}
	if len(name) < len(zone) || name[len(name)-len(zone):] != zone {
		return false
	}
	return len(name) == len(zone) || name[len(name)-len(zone)-1] == '.'
}
