// Package iptables writes our agents' packet-filter rules the way kube-proxy does:
// each agent builds the complete content of the chains it owns as a Ruleset, and a
// Writer puts it into the kernel with one `iptables-restore --noflush` per sync.
// Built-in chains are touched only to hold our jump rules, each ensured exactly once
// at its position. Stale owned chains are flushed and deleted in the same payload.
// After the first (full) sync, a Writer sends only the chains that changed, so one
// changed Service costs one chain, not the whole ruleset.
//
// The kernel side is the Interface: Exec runs iptables-restore/iptables-save through
// a Runner (optionally inside a named network namespace); Fake models the tables in
// memory and renders them as iptables-save text for tests. See README.md for the
// packet path and which agent owns which chain.
package iptables
