package lighthouse

import "sync/atomic"

// Policy chooses the cluster that answers for a ClusterSetIP service without a
// clusterset IP, among the clusters that qualify (reachable, with a ready backend
// and what the query asks for: an address family, a port).
type Policy interface {
	// Pick returns the index, 0 <= i < n, of the chosen cluster among n > 0
	// candidates. local is the index of the local cluster among them, or -1. next is
	// the service's round-robin position, shared by all queries for the service.
	Pick(n, local int, next *atomic.Uint32) int
	// String names the policy.
	String() string
}

// localFirst answers with the local cluster when it qualifies and leaves the choice
// among remote clusters to its fallback: traffic stays in the cluster when it can.
type localFirst struct{ fallback Policy }

// Pick implements Policy.
func (p localFirst) Pick(n, local int, next *atomic.Uint32) int {
	if local >= 0 {
		return local
	}
	return p.fallback.Pick(n, local, next)
}

// String implements Policy.
func (p localFirst) String() string { return "local-first then " + p.fallback.String() }

// roundRobin takes the candidates in turn.
type roundRobin struct{}

// Pick implements Policy.
func (roundRobin) Pick(n, _ int, next *atomic.Uint32) int {
	return int((next.Add(1) - 1) % uint32(n))
}

// String implements Policy.
func (roundRobin) String() string { return "round-robin" }

// defaultPolicy is the MCS behaviour Submariner users expect: the local cluster
// when it exports the service with a ready backend, otherwise round-robin over the
// connected clusters.
var defaultPolicy Policy = localFirst{fallback: roundRobin{}}
