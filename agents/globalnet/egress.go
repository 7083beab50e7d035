package globalnet

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
)

// NamespaceEgress is what decides the egress IPs of one namespace's Pods.
type NamespaceEgress struct {
	Namespace string
	// Pods are the namespace's Pods with an IPv4 address (not host-network, not
	// finished).
	Pods []PodAddr
	// Selectors are the namespace's GlobalEgressIPs that hold addresses.
	Selectors []EgressSelector
	// Headless are the global ingress IPs of the namespace's headless Pods and
	// endpoints: their traffic leaves with the same address it is reached by.
	Headless []HeadlessAddr
}

// PodAddr is a Pod's address and labels.
type PodAddr struct {
	Name   string
	IP     netip.Addr
	Labels labels.Set
}

// EgressSelector is a GlobalEgressIP that holds addresses.
type EgressSelector struct {
	Name    string
	Created time.Time
	// Selector chooses Pods; nil means the whole namespace.
	Selector  labels.Selector
	GlobalIPs []netip.Addr
}

// HeadlessAddr is a headless Pod's or endpoint's address and its global IP.
type HeadlessAddr struct {
	// Name is the GlobalIngressIP's.
	Name     string
	IP       netip.Addr
	GlobalIP netip.Addr
	// Pod is true for a HeadlessServicePod, false for a HeadlessServiceEndpoints.
	Pod bool
}

// ResolveEgress decides, for every Pod and headless endpoint of a namespace, which
// global IPs its traffic to remote clusters leaves with, with Submariner's
// precedence: a GlobalEgressIP selecting the Pod, then the Pod's own global ingress
// IP as a headless Pod, then a headless endpoint's, then a namespace-wide
// GlobalEgressIP; sources with none of these are left to the cluster's egress IPs
// and not listed. Among GlobalEgressIPs of the same kind the oldest wins (then the
// name). The result is sorted by source; it is pure and deterministic.
func ResolveEgress(ns NamespaceEgress) []Egress {
	sels := slices.Clone(ns.Selectors)
	slices.SortFunc(sels, func(a, b EgressSelector) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	var wide *EgressSelector
	for i := range sels {
		if sels[i].Selector == nil && len(sels[i].GlobalIPs) > 0 {
			wide = &sels[i]
			break
		}
	}
	headless := map[netip.Addr]HeadlessAddr{}
	for _, h := range ns.Headless {
		if prev, ok := headless[h.IP]; ok && (prev.Pod && !h.Pod || prev.Pod == h.Pod && prev.Name < h.Name) {
			continue // a Pod's own address wins over an endpoint's; then the first name
		}
		headless[h.IP] = h
	}

	decided := map[netip.Addr]Egress{}
	pods := slices.Clone(ns.Pods)
	slices.SortFunc(pods, func(a, b PodAddr) int { return strings.Compare(a.Name, b.Name) })
	for _, p := range pods {
		if !p.IP.IsValid() {
			continue
		}
		if _, ok := decided[p.IP]; ok {
			continue // two Pods with one address: the first by name
		}
		if e, ok := choose(ns.Namespace, p, sels, headless[p.IP], wide); ok {
			decided[p.IP] = e
		}
	}
	// Headless endpoints that are not Pods of this namespace (selector-less Services).
	for ip, h := range headless {
		if _, ok := decided[ip]; !ok {
			decided[ip] = Egress{Source: ip, GlobalIPs: []netip.Addr{h.GlobalIP}, Owner: owner(kindIngress, ns.Namespace, h.Name)}
		}
	}
	out := make([]Egress, 0, len(decided))
	for _, e := range decided {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Egress) int { return a.Source.Compare(b.Source) })
	return out
}

func choose(namespace string, p PodAddr, sels []EgressSelector, h HeadlessAddr, wide *EgressSelector) (Egress, bool) {
	for _, s := range sels {
		if s.Selector != nil && len(s.GlobalIPs) > 0 && s.Selector.Matches(p.Labels) {
			return Egress{Source: p.IP, GlobalIPs: s.GlobalIPs, Owner: owner(kindEgress, namespace, s.Name)}, true
		}
	}
	if h.GlobalIP.IsValid() {
		return Egress{Source: p.IP, GlobalIPs: []netip.Addr{h.GlobalIP}, Owner: owner(kindIngress, namespace, h.Name)}, true
	}
	if wide != nil {
		return Egress{Source: p.IP, GlobalIPs: wide.GlobalIPs, Owner: owner(kindEgress, namespace, wide.Name)}, true
	}
	return Egress{}, false
}
