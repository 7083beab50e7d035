package iptables

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strconv"
	"strings"
)

// Table is an iptables table.
type Table string

// The tables we write into.
const (
	TableFilter Table = "filter"
	TableNAT    Table = "nat"
	TableMangle Table = "mangle"
	TableRaw    Table = "raw"
)

// tableOrder is the order tables appear in payloads and canonical text.
var tableOrder = []Table{TableRaw, TableMangle, TableNAT, TableFilter}

// builtins lists each table's built-in chains in the order iptables-save prints them.
var builtins = map[Table][]Chain{
	TableFilter: {ChainInput, ChainForward, ChainOutput},
	TableNAT:    {ChainPrerouting, ChainInput, ChainOutput, ChainPostrouting},
	TableMangle: {ChainPrerouting, ChainInput, ChainForward, ChainOutput, ChainPostrouting},
	TableRaw:    {ChainPrerouting, ChainOutput},
}

// ParseTable returns the table named s, or an error naming the tables we support.
func ParseTable(s string) (Table, error) {
	if _, ok := builtins[Table(s)]; ok {
		return Table(s), nil
	}
	return "", fmt.Errorf("unknown iptables table %q: use one of filter, nat, mangle, raw", s)
}

// Chain is the name of an iptables chain.
type Chain string

// Built-in chains.
const (
	ChainPrerouting  Chain = "PREROUTING"
	ChainInput       Chain = "INPUT"
	ChainForward     Chain = "FORWARD"
	ChainOutput      Chain = "OUTPUT"
	ChainPostrouting Chain = "POSTROUTING"
)

// The chains our agents own (Submariner's names, so operators' habits carry over).
const (
	// SubmarinerPostrouting (nat) keeps cross-cluster traffic away from the CNI's
	// masquerading and SNATs host-network traffic; (mangle) clamps TCP MSS.
	SubmarinerPostrouting Chain = "SUBMARINER-POSTROUTING"
	// SubmarinerInput (filter) accepts the VXLAN overlay's UDP port.
	SubmarinerInput Chain = "SUBMARINER-INPUT"
	// SubmarinerForward (filter) accepts forwarding into the overlay.
	SubmarinerForward Chain = "SUBMARINER-FORWARD"
	// GlobalnetIngress (nat) DNATs global ingress IPs to Services and Pods.
	GlobalnetIngress Chain = "SUBMARINER-GN-INGRESS"
	// GlobalnetEgress (nat) SNATs egress traffic to global egress IPs.
	GlobalnetEgress Chain = "SUBMARINER-GN-EGRESS"
	// GlobalnetMark (nat) marks traffic headed for remote clusters with GlobalnetMarkValue.
	GlobalnetMark Chain = "SUBMARINER-GN-MARK"
)

// Prefixes of the chain names our agents create.
const (
	// SubmarinerPrefix starts the fixed chain names above.
	SubmarinerPrefix = "SUBMARINER-"
	// GlobalnetPrefix starts Globalnet's generated sub-chains (see HashedChain).
	GlobalnetPrefix = "SM-GN-"
)

// GlobalnetMarkValue is the mark/mask Globalnet sets on traffic to remote clusters.
const GlobalnetMarkValue = "0xc0000/0xc0000"

// MaxChainLen is the longest chain name iptables accepts.
const MaxChainLen = 28

// ours reports whether c is named like a chain one of our agents creates. Jump rules of
// ours may sit above each other at the top of a built-in chain without fighting.
func ours(c Chain) bool {
	return strings.HasPrefix(string(c), SubmarinerPrefix) || strings.HasPrefix(string(c), GlobalnetPrefix)
}

// HashedChain returns a chain name made of prefix and a hash of key, at most
// MaxChainLen long, stable across restarts: the way to name one chain per object
// (Service, Pod, namespace) without exceeding iptables' limit. A prefix longer than
// MaxChainLen-8 is shortened so that at least 8 characters of hash remain.
func HashedChain(prefix, key string) Chain {
	sum := sha256.Sum256([]byte(key))
	enc := base32.StdEncoding.EncodeToString(sum[:])
	if len(prefix) > MaxChainLen-8 {
		prefix = prefix[:MaxChainLen-8] // keep at least 8 characters of hash
	}
	n := min(MaxChainLen-len(prefix), 16)
	return Chain(prefix + enc[:n])
}

// ShardedChain returns one of shards chain names, prefix followed by a zero-padded
// number, chosen by a hash of key: the way to spread many objects over a fixed set of
// chains so that adding or removing one rewrites one shard. (With iptables-nft, a
// restore's cost grows with the number of jumps into user chains, so 10,000
// per-object chains each reached by its own jump make every full sync slow; see
// README.md.)
func ShardedChain(prefix, key string, shards int) Chain {
	sum := sha256.Sum256([]byte(key))
	n := (uint64(sum[0])<<24 | uint64(sum[1])<<16 | uint64(sum[2])<<8 | uint64(sum[3])) % uint64(max(shards, 1))
	width := len(strconv.Itoa(max(shards-1, 0)))
	return Chain(fmt.Sprintf("%s%0*d", prefix, width, n))
}

// validateChain checks a chain name we are asked to own.
func validateChain(c Chain) error {
	switch {
	case c == "":
		return fmt.Errorf("empty chain name: give every chain a name")
	case len(c) > MaxChainLen:
		return fmt.Errorf("chain name %q is %d characters long: iptables allows at most %d (use HashedChain for generated names)", c, len(c), MaxChainLen)
	case strings.ContainsAny(string(c), " \t\n\"'"):
		return fmt.Errorf("chain name %q contains white space or quotes: use letters, digits and dashes", c)
	case strings.HasPrefix(string(c), "-") || strings.HasPrefix(string(c), "!"):
		return fmt.Errorf("chain name %q starts with %q: iptables would read it as an option", c, string(c)[:1])
	}
	return nil
}

// isBuiltin reports whether c is a built-in chain of table t.
func isBuiltin(t Table, c Chain) bool {
	for _, b := range builtins[t] {
		if b == c {
			return true
		}
	}
	return false
}

// isBuiltinName reports whether c is the name of a built-in chain of any table.
func isBuiltinName(c Chain) bool {
	switch c {
	case ChainPrerouting, ChainInput, ChainForward, ChainOutput, ChainPostrouting:
		return true
	}
	return false
}
