package lighthouse

import (
	"bytes"
	"net"
	"slices"

	"github.com/miekg/dns"
)

// Values of records the specification leaves open.
const (
	// dnsSchemaVersion is the version of the MCS DNS specification implemented.
	dnsSchemaVersion = "1.0.0"
	// dnsVersionTTL is the TTL of the dns-version record, as in the specification's
	// example: the version changes only with the software.
	dnsVersionTTL = 28800
	// SRV priority and weight: every target is equal.
	srvPriority = 0
	srvWeight   = 50
	// SOA timers (seconds), as CoreDNS's kubernetes plugin uses; the minimum is the
	// plugin's TTL, so negative answers are cached as long as positive ones.
	soaRefresh = 7200
	soaRetry   = 1800
	soaExpire  = 86400
)

// lookup finds the records of type qtype for owner (the query name as asked, fully
// qualified; lower is owner in lower case) in zone. exists is false when the name
// does not exist (NXDOMAIN); true with no answer is NODATA.
func (lh *Lighthouse) lookup(server, owner, lower, zone string, qtype uint16) (answer, extra []dns.RR, exists bool) {
	q, ok := parseName(lower, zone)
	if !ok {
		return nil, nil, false
	}
	switch q.kind {
	case kindApex:
		if qtype == dns.TypeSOA {
			rr := lh.soa(zone)
			rr.Header().Name = owner // the apex as asked, like every answer
			return []dns.RR{rr}, nil, true
		}
		return nil, nil, true
	case kindDNSVersion:
		if qtype == dns.TypeTXT {
			return []dns.RR{&dns.TXT{
				Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: dnsVersionTTL},
				Txt: []string{dnsSchemaVersion},
			}}, nil, true
		}
		return nil, nil, true
	case kindSvc:
		return nil, nil, lh.ctrl.HasServices()
	case kindNamespace:
		return nil, nil, lh.ctrl.HasNamespace(q.namespace)
	}
	s := lh.ctrl.Service(q.key)
	if s == nil {
		return nil, nil, false
	}
	rb := records{lh: lh, server: server, owner: owner, qtype: qtype}
	if q.cluster != "" && q.hostname == "" {
		if !lh.clusterSpecific {
			return nil, nil, false // reserved by the specification
		}
		return rb.cluster(s, q)
	}
	if s.headless {
		return rb.headless(s, q)
	}
	return rb.clusterSetIP(s, q)
}

// records makes the records of one response.
type records struct {
	lh     *Lighthouse
	server string
	owner  string
	qtype  uint16
	answer []dns.RR
	extra  []dns.RR
}

func (rb *records) done(exists bool) ([]dns.RR, []dns.RR, bool) { return rb.answer, rb.extra, exists }

// clusterSetIP answers the names of a ClusterSetIP service (forms 1 to 4).
func (rb *records) clusterSetIP(s *service, q name) ([]dns.RR, []dns.RR, bool) {
	target := rb.owner[q.target:]
	hasVIP := len(s.vip4)+len(s.vip6) > 0
	switch {
	case q.hostname != "": // form 4: only headless services have endpoint names
		return rb.done(false)

	case q.port != "": // form 2: _PORT._PROTO.NAME
		if !s.hasPort(q.port, q.proto) {
			return rb.done(false)
		}
		if rb.qtype != dns.TypeSRV {
			return rb.done(true)
		}
		if hasVIP {
			if p := findPort(s.ports, q.port, q.proto); p != nil {
				rb.answer = append(rb.answer, rb.srv(target, p.number))
				rb.extra = rb.addresses(rb.extra, target, s.vip4, s.vip6)
			}
			return rb.done(true)
		}
		if c := rb.lh.pick(s, need{port: q.port, proto: q.proto}); c != nil {
			rb.answer = append(rb.answer, rb.srv(target, findPort(c.ports, q.port, q.proto).number))
			rb.extra = rb.addresses(rb.extra, target, c.v4, c.v6)
			rb.count(c)
		}
		return rb.done(true)

	case q.proto != "": // form 3: _PROTO.NAME, an empty non-terminal
		return rb.done(s.hasProto(q.proto))
	}

	// form 1: NAME
	switch rb.qtype {
	case dns.TypeA:
		if hasVIP { // the clusterset IP is the answer, even when only an IPv6 one exists
			rb.answer = rb.addresses(rb.answer, rb.owner, s.vip4, nil)
		} else if c := rb.lh.pick(s, need{family: 4}); c != nil {
			rb.answer = rb.addresses(rb.answer, rb.owner, c.v4, nil)
			rb.count(c)
		}
	case dns.TypeAAAA:
		if hasVIP {
			rb.answer = rb.addresses(rb.answer, rb.owner, nil, s.vip6)
		} else if c := rb.lh.pick(s, need{family: 6}); c != nil {
			rb.answer = rb.addresses(rb.answer, rb.owner, nil, c.v6)
			rb.count(c)
		}
	case dns.TypeSRV:
		if hasVIP {
			if rb.srvs(target, s.ports) {
				rb.extra = rb.addresses(rb.extra, target, s.vip4, s.vip6)
			}
			return rb.done(true)
		}
		if c := rb.lh.pick(s, need{}); c != nil && rb.srvs(target, c.ports) {
			rb.extra = rb.addresses(rb.extra, target, c.v4, c.v6)
			rb.count(c)
		}
	}
	return rb.done(true)
}

// headless answers the names of a headless service (forms 1 to 4).
func (rb *records) headless(s *service, q name) ([]dns.RR, []dns.RR, bool) {
	// "If there are no ready endpoints for the headless Service, the answer should
	// be NXDOMAIN": none of the service's names exists then.
	if !s.hasEndpoints() {
		return rb.done(false)
	}
	target := rb.owner[q.target:]
	switch {
	case q.hostname != "": // form 4: HOSTNAME.CLUSTER.NAME
		c := s.findCluster(q.cluster)
		if c == nil || !c.reachable() {
			return rb.done(false)
		}
		h := c.findHost(q.hostname)
		if h == nil {
			return rb.done(false)
		}
		switch rb.qtype {
		case dns.TypeA:
			rb.answer = rb.addresses(rb.answer, rb.owner, h.v4, nil)
		case dns.TypeAAAA:
			rb.answer = rb.addresses(rb.answer, rb.owner, nil, h.v6)
		}
		if len(rb.answer) > 0 {
			rb.count(c)
		}
		return rb.done(true)

	case q.port != "": // form 2: _PORT._PROTO.NAME
		if !s.hasPort(q.port, q.proto) {
			return rb.done(false)
		}
		if rb.qtype == dns.TypeSRV {
			for _, c := range s.clusters {
				if !c.reachable() {
					continue
				}
				if p := findPort(c.ports, q.port, q.proto); p != nil {
					rb.hostSRVs(c, target, []port{*p})
				}
			}
		}
		return rb.done(true)

	case q.proto != "": // form 3: _PROTO.NAME
		return rb.done(s.hasProto(q.proto))
	}

	// form 1: NAME, the union of the reachable clusters' endpoints
	switch rb.qtype {
	case dns.TypeA, dns.TypeAAAA:
		var ips []net.IP
		for _, c := range s.clusters {
			if !c.reachable() {
				continue
			}
			n := len(ips)
			for i := range c.hosts {
				if rb.qtype == dns.TypeA {
					ips = append(ips, c.hosts[i].v4...)
				} else {
					ips = append(ips, c.hosts[i].v6...)
				}
			}
			if len(ips) > n {
				rb.count(c)
			}
		}
		// Hosts of one cluster may share an address, and so may clusters with
		// overlapping CIDRs; an RRset has no duplicates.
		slices.SortFunc(ips, func(a, b net.IP) int { return bytes.Compare(a, b) })
		ips = slices.CompactFunc(ips, func(a, b net.IP) bool { return a.Equal(b) })
		if rb.qtype == dns.TypeA {
			rb.answer = rb.addresses(rb.answer, rb.owner, ips, nil)
		} else {
			rb.answer = rb.addresses(rb.answer, rb.owner, nil, ips)
		}
	case dns.TypeSRV:
		for _, c := range s.clusters {
			if c.reachable() {
				rb.hostSRVs(c, target, c.ports)
			}
		}
	}
	return rb.done(true)
}

// cluster answers the cluster-specific names CLUSTER.NAME, _PROTO.CLUSTER.NAME and
// _PORT._PROTO.CLUSTER.NAME (forms 5 to 7), enabled by the cluster-specific-names
// option. They answer for the cluster asked for whatever the state of its tunnel:
// the client chose the cluster.
func (rb *records) cluster(s *service, q name) ([]dns.RR, []dns.RR, bool) {
	c := s.findCluster(q.cluster)
	if c == nil || (s.headless && len(c.hosts) == 0) {
		return rb.done(false)
	}
	target := rb.owner[q.target:]
	self := rb.owner[q.clusterAt:]
	ports := c.ports
	switch {
	case q.port != "": // form 6
		p := findPort(c.ports, q.port, q.proto)
		if p == nil {
			return rb.done(false)
		}
		ports = []port{*p}
	case q.proto != "": // form 7
		return rb.done(portsHaveProto(c.ports, q.proto))
	}
	switch {
	case rb.qtype == dns.TypeSRV && s.headless:
		rb.hostSRVs(c, target, ports)
	case rb.qtype == dns.TypeSRV:
		if rb.srvs(self, ports) {
			rb.extra = rb.addresses(rb.extra, self, c.v4, c.v6)
			rb.count(c)
		}
	case q.port != "":
		// an SRV name has no addresses
	case rb.qtype == dns.TypeA || rb.qtype == dns.TypeAAAA:
		v4, v6 := c.v4, c.v6
		if s.headless {
			v4, v6 = nil, nil
			for i := range c.hosts {
				v4 = append(v4, c.hosts[i].v4...)
				v6 = append(v6, c.hosts[i].v6...)
			}
		}
		if rb.qtype == dns.TypeA {
			rb.answer = rb.addresses(rb.answer, rb.owner, v4, nil)
		} else {
			rb.answer = rb.addresses(rb.answer, rb.owner, nil, v6)
		}
		if len(rb.answer) > 0 {
			rb.count(c)
		}
	}
	return rb.done(true)
}

// hostSRVs adds, for every host of headless cluster c and every named port in
// ports, an SRV record whose target is HOSTNAME.CLUSTER.<target>, and the hosts'
// addresses to the additional section.
func (rb *records) hostSRVs(c *clusterRecords, target string, ports []port) {
	added := false
	for i := range c.hosts {
		h := &c.hosts[i]
		hostTarget := ""
		for _, p := range ports {
			if p.name == "" {
				continue // "Unnamed ports do not have an SRV record."
			}
			if hostTarget == "" {
				hostTarget = h.name + "." + c.id + "." + target
			}
			rb.answer = append(rb.answer, rb.srv(hostTarget, p.number))
		}
		if hostTarget != "" {
			rb.extra = rb.addresses(rb.extra, hostTarget, h.v4, h.v6)
			added = true
		}
	}
	if added {
		rb.count(c)
	}
}

// srvs adds an SRV record with target for every named port and reports whether
// there was one.
func (rb *records) srvs(target string, ports []port) bool {
	n := len(rb.answer)
	for _, p := range ports {
		if p.name != "" {
			rb.answer = append(rb.answer, rb.srv(target, p.number))
		}
	}
	return len(rb.answer) > n
}

func (rb *records) srv(target string, number uint16) dns.RR {
	return &dns.SRV{
		Hdr:      dns.RR_Header{Name: rb.owner, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: rb.lh.ttl},
		Priority: srvPriority, Weight: srvWeight, Port: number, Target: target,
	}
}

// addresses appends A records for v4 and AAAA records for v6, owned by owner.
func (rb *records) addresses(rrs []dns.RR, owner string, v4, v6 []net.IP) []dns.RR {
	for _, ip := range v4 {
		rrs = append(rrs, &dns.A{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: rb.lh.ttl}, A: ip})
	}
	for _, ip := range v6 {
		rrs = append(rrs, &dns.AAAA{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: rb.lh.ttl}, AAAA: ip})
	}
	return rrs
}

// count records that the response carries records of cluster c.
func (rb *records) count(c *clusterRecords) {
	answerCount.WithLabelValues(rb.server, c.id).Inc()
}

// need is what a cluster must offer to answer a ClusterSetIP query: an address of
// a family (4, 6; 0 for either) and, when port is set, that named port.
type need struct {
	family      uint8
	port, proto string
}

func (c *clusterRecords) offers(n need) bool {
	if !c.reachable() {
		return false
	}
	switch n.family {
	case 4:
		if len(c.v4) == 0 {
			return false
		}
	case 6:
		if len(c.v6) == 0 {
			return false
		}
	default:
		if len(c.v4)+len(c.v6) == 0 {
			return false
		}
	}
	return n.port == "" || findPort(c.ports, n.port, n.proto) != nil
}

// pick returns the cluster that answers for ClusterSetIP service s, chosen by the
// policy among the clusters that offer n, or nil when none does.
func (lh *Lighthouse) pick(s *service, n need) *clusterRecords {
	var buf [16]int
	candidates := buf[:0]
	local := -1
	for i, c := range s.clusters {
		if c.offers(n) {
			if c.local {
				local = len(candidates)
			}
			candidates = append(candidates, i)
		}
	}
	if len(candidates) == 0 {
		return nil
	}
	k := lh.policy.Pick(len(candidates), local, s.next)
	if k < 0 || k >= len(candidates) {
		k = 0
	}
	return s.clusters[candidates[k]]
}

// soa is the zone's SOA record: the answer at the apex, and the authority section
// of negative answers. The names are "ns.dns.ZONE" and "hostmaster.ZONE".
func (lh *Lighthouse) soa(zone string) dns.RR {
	names, ok := lh.soaNames[zone]
	if !ok {
		names = soaNamesOf(zone)
	}
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: lh.ttl},
		Ns:      names[0],
		Mbox:    names[1],
		Serial:  lh.ctrl.Serial(),
		Refresh: soaRefresh,
		Retry:   soaRetry,
		Expire:  soaExpire,
		Minttl:  lh.ttl,
	}
}

// soaNamesOf returns the SOA's name server and mailbox names of a fully qualified zone.
func soaNamesOf(zone string) [2]string {
	if zone == "." {
		return [2]string{"ns.dns.", "hostmaster."}
	}
	return [2]string{"ns.dns." + zone, "hostmaster." + zone}
}
