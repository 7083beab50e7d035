package globalnet

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/submariner-go/submariner/agents/globalnet/ipam"
	"github.com/submariner-go/submariner/agents/netkit/iptables"
)

// Input is everything the NAT rules depend on, as Globalnet's controllers have
// resolved it: allocations are settled, egress precedence is decided.
type Input struct {
	// GlobalCIDR is the local cluster's global CIDR.
	GlobalCIDR netip.Prefix
	// ClusterCIDRs are the local Pod CIDRs: their traffic to remote clusters leaves
	// with the cluster's egress IPs.
	ClusterCIDRs []netip.Prefix
	// RemoteSubnets are the remote clusters' subnets (their global CIDRs), already
	// checked not to overlap the local ones.
	RemoteSubnets []netip.Prefix
	// ClusterEgress are the ClusterGlobalEgressIP's addresses, contiguous; none
	// means that Pods without their own egress IPs cannot reach remote clusters.
	ClusterEgress []netip.Addr
	// HealthCheck, when valid, answers ICMP to the gateway's global IP.
	HealthCheck HealthCheck
	// Ingress maps global IPs of headless Pods and endpoints to their addresses.
	Ingress []Ingress
	// Egress gives sources (Pods, endpoints) their own egress IPs.
	Egress []Egress
}

// HealthCheck maps the gateway's global IP to an address of the gateway node (its
// CNI interface's), so that the remote gateways' health checker reaches it.
type HealthCheck struct {
	GlobalIP, Target netip.Addr
}

// Valid reports whether there is a health check to answer.
func (h HealthCheck) Valid() bool { return h.GlobalIP.IsValid() && h.Target.IsValid() }

// Ingress is one global IP translated to a local address.
type Ingress struct {
	GlobalIP, Target netip.Addr
	// Owner names the object it comes from, for notes.
	Owner string
}

// Egress gives one source address its own global egress IPs (contiguous).
type Egress struct {
	Source    netip.Addr
	GlobalIPs []netip.Addr
	// Owner names the object it comes from, for notes.
	Owner string
}

// Planned is the result of Plan.
type Planned struct {
	// Rules is the complete content of Globalnet's chains.
	Rules *iptables.Ruleset
	// Notes lists inputs that were left out, and why, sorted.
	Notes []string
}

// Plan computes Globalnet's whole nat ruleset from in. It is pure and deterministic:
// the same input, in any order, gives the same ruleset.
//
//	PREROUTING  -> SUBMARINER-GN-INGRESS (first)
//	                 ! -d <global CIDR> -j RETURN
//	                 -d <gateway global IP> -p icmp -j DNAT --to-destination <gateway CNI IP>
//	                 -j SM-GN-IN-nn          (non-empty shards)
//	               SM-GN-IN-nn: -d <global IP>/32 -j DNAT --to-destination <pod IP>
//	POSTROUTING -> SUBMARINER-GN-EGRESS (first)
//	                 -s <remote subnet> -j ACCEPT     (keeps remote clients' global IPs)
//	                 -j SUBMARINER-GN-MARK
//	                 -m mark ! --mark 0xc0000/0xc0000 -j RETURN
//	                 -j SM-GN-EG-nn          (non-empty shards)
//	                 -j SM-GN-EGRESS-CLUSTER
//	               SUBMARINER-GN-MARK: -d <remote subnet> -j MARK --set-xmark 0xc0000/0xc0000
//	               SM-GN-EG-nn: -s <pod IP>/32 -j SNAT --to-source <its global IPs>
//	               SM-GN-EGRESS-CLUSTER: -s <cluster CIDR> -j SNAT --to-source <cluster egress IPs>
//	                                     -m addrtype --src-type LOCAL -j SNAT --to-source <...>
//
// Rules are written the way iptables-save prints them, so that a restarted agent
// finds its chains as wanted and writes nothing. Plan is Rules built from scratch;
// the engine keeps a Rules between syncs instead, so that a change renders only its
// own rule.
func Plan(in Input) Planned {
	r := NewRules()
	var notes []string
	for _, i := range in.Ingress {
		if n := r.SetIngress(in.GlobalCIDR, i); n != "" {
			notes = append(notes, n)
		}
	}
	for _, e := range in.Egress {
		if n := r.SetEgress(in.GlobalCIDR, e); n != "" {
			notes = append(notes, n)
		}
	}
	p := r.Build(in)
	p.Notes = append(p.Notes, notes...)
	slices.Sort(p.Notes)
	return p
}

// Rules holds the per-address rules (a headless global IP's DNAT, a source's SNAT)
// between syncs, each rendered once when it is set, spread over the shard chains.
// Build renders the whole ruleset from them and the input's fixed parts, sorting
// only the shards that changed. It is not safe for concurrent use.
type Rules struct {
	ingress, egress *shardTable
}

// NewRules returns Rules without per-address rules.
func NewRules() *Rules {
	return &Rules{ingress: newShardTable(IngressShardPrefix), egress: newShardTable(EgressShardPrefix)}
}

// SetIngress records r (replacing what r.Owner had for r.GlobalIP) and returns "",
// or a note saying why r cannot be used.
func (rl *Rules) SetIngress(global netip.Prefix, r Ingress) string {
	switch {
	case !global.Contains(r.GlobalIP):
		return fmt.Sprintf("ingress %s of %s: not in the global CIDR %s", r.GlobalIP, r.Owner, global)
	case !r.Target.Is4():
		return fmt.Sprintf("ingress %s of %s: target %s is not an IPv4 address", r.GlobalIP, r.Owner, r.Target)
	}
	rl.ingress.set(r.GlobalIP, r.Owner, []string{"-d", hostCIDR(r.GlobalIP), "-j", "DNAT", "--to-destination", r.Target.String()})
	return ""
}

// DeleteIngress forgets owner's rule for the global IP ip.
func (rl *Rules) DeleteIngress(ip netip.Addr, owner string) { rl.ingress.remove(ip, owner) }

// SetEgress records e (replacing what e.Owner had for e.Source) and returns "", or
// a note saying why e cannot be used.
func (rl *Rules) SetEgress(global netip.Prefix, e Egress) string {
	switch {
	case !e.Source.Is4():
		return fmt.Sprintf("egress of %s for %s: the source is not an IPv4 address", e.Owner, e.Source)
	case len(e.GlobalIPs) == 0:
		return fmt.Sprintf("egress of %s for %s: no global IPs", e.Owner, e.Source)
	case !allIn(global, e.GlobalIPs):
		return fmt.Sprintf("egress of %s for %s: %s is not in the global CIDR %s", e.Owner, e.Source, ipam.Range(e.GlobalIPs), global)
	}
	rl.egress.set(e.Source, e.Owner, []string{"-s", hostCIDR(e.Source), "-j", "SNAT", "--to-source", ipam.Range(e.GlobalIPs)})
	return ""
}

// DeleteEgress forgets owner's rule for the source ip.
func (rl *Rules) DeleteEgress(ip netip.Addr, owner string) { rl.egress.remove(ip, owner) }

// Build renders the ruleset: the per-address rules held, and the rest from in
// (its Ingress and Egress are not used).
func (rl *Rules) Build(in Input) Planned {
	var notes []string
	rs := iptables.NewRuleset()
	nat := iptables.TableNAT
	rs.Jump(iptables.Jump{Table: nat, From: iptables.ChainPrerouting, To: iptables.GlobalnetIngress, Position: iptables.First})
	rs.Jump(iptables.Jump{Table: nat, From: iptables.ChainPostrouting, To: iptables.GlobalnetEgress, Position: iptables.First})
	rs.Chain(nat, iptables.GlobalnetMark)

	// Ingress.
	var skip netip.Addr
	if in.HealthCheck.Valid() {
		skip = in.HealthCheck.GlobalIP
	}
	inUsed := rl.ingress.render(rs, skip, func(a netip.Addr, owner, prev string) string {
		if prev == "" {
			return fmt.Sprintf("ingress %s of %s: the address is the gateway's health check IP", a, owner)
		}
		return fmt.Sprintf("ingress %s of %s: the address is already translated for %s", a, owner, prev)
	}, &notes)
	if in.HealthCheck.Valid() || len(inUsed) > 0 {
		rs.Rule(nat, iptables.GlobalnetIngress, "!", "-d", in.GlobalCIDR.String(), "-j", "RETURN")
	}
	if in.HealthCheck.Valid() {
		rs.Rule(nat, iptables.GlobalnetIngress, "-d", hostCIDR(in.HealthCheck.GlobalIP), "-p", "icmp",
			"-j", "DNAT", "--to-destination", in.HealthCheck.Target.String())
	}
	for _, c := range inUsed {
		rs.Rule(nat, iptables.GlobalnetIngress, "-j", string(c))
	}

	// Egress.
	remotes := slices.Clone(in.RemoteSubnets)
	slices.SortFunc(remotes, comparePrefix)
	for _, r := range slices.Compact(remotes) {
		rs.Rule(nat, iptables.GlobalnetEgress, "-s", r.String(), "-j", "ACCEPT")
		rs.Rule(nat, iptables.GlobalnetMark, "-d", r.String(), "-j", "MARK", "--set-xmark", iptables.GlobalnetMarkValue)
	}
	rs.Rule(nat, iptables.GlobalnetEgress, "-j", string(iptables.GlobalnetMark))
	rs.Rule(nat, iptables.GlobalnetEgress, "-m", "mark", "!", "--mark", iptables.GlobalnetMarkValue, "-j", "RETURN")
	egUsed := rl.egress.render(rs, netip.Addr{}, func(a netip.Addr, owner, prev string) string {
		return fmt.Sprintf("egress of %s for %s: the source already leaves as %s", owner, a, prev)
	}, &notes)
	for _, c := range egUsed {
		rs.Rule(nat, iptables.GlobalnetEgress, "-j", string(c))
	}

	switch {
	case len(in.ClusterEgress) == 0:
	case !allIn(in.GlobalCIDR, in.ClusterEgress):
		notes = append(notes, fmt.Sprintf("cluster egress %s: not in the global CIDR %s", ipam.Range(in.ClusterEgress), in.GlobalCIDR))
	default:
		to := ipam.Range(in.ClusterEgress)
		clusters := slices.Clone(in.ClusterCIDRs)
		slices.SortFunc(clusters, comparePrefix)
		for _, c := range slices.Compact(clusters) {
			rs.Rule(nat, ChainClusterEgress, "-s", c.String(), "-j", "SNAT", "--to-source", to)
		}
		rs.Rule(nat, ChainClusterEgress, "-m", "addrtype", "--src-type", "LOCAL", "-j", "SNAT", "--to-source", to)
		rs.Rule(nat, iptables.GlobalnetEgress, "-j", string(ChainClusterEgress))
	}

	slices.Sort(notes)
	return Planned{Rules: rs, Notes: notes}
}

// shardTable spreads per-address rules over Shards chains named prefix00 to
// prefix63. Each address may have several candidates (owners); the first by owner
// is used and the others are noted.
type shardTable struct {
	names  [Shards]iptables.Chain
	shards [Shards]map[netip.Addr][]candidate
	sorted [Shards][]netip.Addr // each shard's addresses in order; nil when it changed
}

type candidate struct {
	owner string
	args  []string
}

func newShardTable(prefix string) *shardTable {
	t := &shardTable{}
	for i := range t.names {
		t.names[i] = iptables.Chain(fmt.Sprintf("%s%02d", prefix, i))
		t.shards[i] = map[netip.Addr][]candidate{}
	}
	return t
}

// Shard returns the shard of a: a cheap, stable hash (FNV-1a over its four bytes).
// A rule's shard depends on nothing but its address, so adding or removing one
// address rewrites one chain.
func Shard(a netip.Addr) int {
	h := uint32(2166136261)
	for _, b := range a.As4() {
		h ^= uint32(b)
		h *= 16777619
	}
	return int(h % Shards)
}

func (t *shardTable) set(a netip.Addr, owner string, args []string) {
	i := Shard(a)
	cands := t.shards[i][a]
	j, found := slices.BinarySearchFunc(cands, owner, func(c candidate, o string) int { return strings.Compare(c.owner, o) })
	if found {
		if slices.Equal(cands[j].args, args) {
			return
		}
		cands[j].args = args
	} else {
		cands = slices.Insert(cands, j, candidate{owner: owner, args: args})
		if len(cands) == 1 {
			t.sorted[i] = nil
		}
	}
	t.shards[i][a] = cands
}

func (t *shardTable) remove(a netip.Addr, owner string) {
	i := Shard(a)
	cands := t.shards[i][a]
	j, found := slices.BinarySearchFunc(cands, owner, func(c candidate, o string) int { return strings.Compare(c.owner, o) })
	if !found {
		return
	}
	cands = slices.Delete(cands, j, j+1)
	if len(cands) == 0 {
		delete(t.shards[i], a)
		t.sorted[i] = nil
		return
	}
	t.shards[i][a] = cands
}

// render adds every shard's rules to rs, in address order, except for the address
// skip, and returns the chains that got rules. note describes an address's
// candidate that is left out (prev is the candidate used; "" for skip).
func (t *shardTable) render(rs *iptables.Ruleset, skip netip.Addr, note func(a netip.Addr, owner, prev string) string, notes *[]string) []iptables.Chain {
	var used []iptables.Chain
	for i := range t.shards {
		if t.sorted[i] == nil && len(t.shards[i]) > 0 {
			keys := make([]netip.Addr, 0, len(t.shards[i]))
			for a := range t.shards[i] {
				keys = append(keys, a)
			}
			slices.SortFunc(keys, netip.Addr.Compare)
			t.sorted[i] = keys
		}
		n := 0
		for _, a := range t.sorted[i] {
			cands := t.shards[i][a]
			if a == skip {
				for _, c := range cands {
					*notes = append(*notes, note(a, c.owner, ""))
				}
				continue
			}
			for _, c := range cands[1:] {
				*notes = append(*notes, note(a, c.owner, cands[0].owner))
			}
			rs.Rule(iptables.TableNAT, t.names[i], cands[0].args...)
			n++
		}
		if n > 0 {
			used = append(used, t.names[i])
		}
	}
	return used
}

func hostCIDR(a netip.Addr) string { return netip.PrefixFrom(a, a.BitLen()).String() }

func allIn(p netip.Prefix, ips []netip.Addr) bool {
	for _, a := range ips {
		if !p.Contains(a) {
			return false
		}
	}
	return true
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
