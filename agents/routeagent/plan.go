package routeagent

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/submariner-go/submariner/agents/netkit/iptables"
	"github.com/submariner-go/submariner/agents/netkit/route"
	"github.com/submariner-go/submariner/agents/netkit/vxlan"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Config is the cluster's configuration, as `subctl join` wrote it into the
// submariner-config ConfigMap.
type Config struct {
	// ClusterID is this cluster's ID: Endpoints with this cluster_id are local.
	ClusterID string
	// ClusterCIDRs are the cluster's Pod CIDRs. Required: the CNI interface is the
	// one holding an address inside them, and cross-cluster traffic from them keeps
	// its source address.
	ClusterCIDRs []netip.Prefix
	// ServiceCIDRs are the cluster's Service CIDRs.
	ServiceCIDRs []netip.Prefix
	// GlobalCIDRs are the cluster's Globalnet CIDRs; empty without Globalnet.
	GlobalCIDRs []netip.Prefix
}

// Validate checks the configuration; errors name the flag to fix.
func (c Config) Validate() error {
	var errs []error
	if err := submv1.ValidateClusterID(c.ClusterID); err != nil {
		errs = append(errs, fmt.Errorf("--cluster-id: %w", err))
	}
	return errors.Join(append(errs, c.validateNetworks())...)
}

// validateNetworks checks the CIDRs.
func (c Config) validateNetworks() error {
	var errs []error
	if len(c.ClusterCIDRs) == 0 {
		errs = append(errs, errors.New("--cluster-cidr is empty: give the cluster's Pod CIDRs (SUBMARINER_CLUSTERCIDR in the submariner-config ConfigMap)"))
	}
	for _, set := range []struct {
		flag  string
		cidrs []netip.Prefix
	}{{"--cluster-cidr", c.ClusterCIDRs}, {"--service-cidr", c.ServiceCIDRs}, {"--global-cidr", c.GlobalCIDRs}} {
		for _, p := range set.cidrs {
			if !p.Addr().Is4() {
				errs = append(errs, fmt.Errorf("%s %s is not IPv4: the route agent routes IPv4 only; drop it", set.flag, p))
			}
		}
	}
	return errors.Join(errs...)
}

// Globalnet reports whether the cluster uses Globalnet.
func (c Config) Globalnet() bool { return len(c.GlobalCIDRs) > 0 }

// localCIDRs are every range of the local cluster: a remote subnet overlapping one
// of them cannot be routed.
func (c Config) localCIDRs() []netip.Prefix {
	return slices.Concat(c.ClusterCIDRs, c.ServiceCIDRs, c.GlobalCIDRs)
}

// natSources are the local sources whose cross-cluster traffic must leave with its
// address: the Pod CIDRs, or with Globalnet the global CIDRs (Globalnet's own SNAT to
// global IPs must still apply to Pod traffic, so the route agent's ACCEPT rules do
// not match it).
func (c Config) natSources() []netip.Prefix {
	if c.Globalnet() {
		return c.GlobalCIDRs
	}
	return c.ClusterCIDRs
}

// Node is a node of the cluster, as the plan needs it.
type Node struct {
	Name string
	// IP is the node's IPv4 InternalIP; invalid when it has none.
	IP netip.Addr
	// TCPClampMSS is the value of the TCPClampMSSAnnotation, "" when unset.
	TCPClampMSS string
}

// Link is a network interface of this host.
type Link struct {
	Name string
	MTU  int
	// Addrs are the interface's IPv4 addresses with their prefix lengths.
	Addrs []netip.Prefix
}

// Input is everything the plan depends on: the API objects and this host's
// interfaces.
type Input struct {
	// NodeName is this node's name (NODE_NAME).
	NodeName string
	// Nodes are the cluster's nodes; this node must be among them.
	Nodes []Node
	// Links are this host's interfaces.
	Links []Link
	// Endpoints are the submariner.io/v1 Endpoints of the agent's namespace: the
	// local cluster's (published by the active gateway) and the remote clusters'
	// (copied by the syncer).
	Endpoints []submv1.Endpoint
}

// Sysctl is a kernel parameter and the value it must have.
type Sysctl struct {
	// Path is the parameter under /proc/sys, with slashes (net/ipv4/ip_forward).
	Path  string
	Value string
}

// State is the whole desired state of this node: what Agent.Sync converges to.
type State struct {
	// ActiveGateway is the active gateway's node name, "" when no local Endpoint
	// names one.
	ActiveGateway string
	// Gateway reports whether this node is the active gateway.
	Gateway bool
	// Overlay is vx-submariner with its FDB entries and routes; nil when no gateway
	// is known, which removes the device and the agent's routes.
	Overlay *vxlan.State
	// Rules is the content of the agent's iptables chains and their jumps.
	Rules *iptables.Ruleset
	// Sysctls must hold exactly these values.
	Sysctls []Sysctl
	// LooseRPFilter lists the interfaces whose reverse-path filtering must not be
	// strict (cross-cluster traffic enters by them asymmetrically): where it is
	// strict, their rp_filter becomes loose (2); where it is off, it stays off.
	LooseRPFilter []string
	// RemoteSubnets are the remote clusters' subnets the node routes, sorted.
	RemoteSubnets []netip.Prefix
	// Notes say which inputs were ignored and why, sorted.
	Notes []string
}

// String renders the state canonically, for golden tests and logs.
func (s State) String() string {
	var b strings.Builder
	switch {
	case s.ActiveGateway == "":
		b.WriteString("active gateway: none\n")
	case s.Gateway:
		fmt.Fprintf(&b, "active gateway: %s (this node)\n", s.ActiveGateway)
	default:
		fmt.Fprintf(&b, "active gateway: %s\n", s.ActiveGateway)
	}
	b.WriteString("remote subnets:")
	for _, p := range s.RemoteSubnets {
		b.WriteString(" " + p.String())
	}
	b.WriteString("\n")
	for _, n := range s.Notes {
		b.WriteString("note: " + n + "\n")
	}
	for _, sc := range s.Sysctls {
		fmt.Fprintf(&b, "sysctl %s = %s\n", sc.Path, sc.Value)
	}
	fmt.Fprintf(&b, "rp_filter not strict: %s\n", strings.Join(s.LooseRPFilter, " "))
	b.WriteString("--- overlay\n")
	if s.Overlay == nil {
		b.WriteString("none\n")
	} else {
		b.WriteString(s.Overlay.String())
	}
	b.WriteString("--- iptables\n")
	if s.Rules != nil {
		b.WriteString(s.Rules.String())
	}
	return b.String()
}

// Plan computes the desired state of node in.NodeName from in and cfg. It does no
// I/O. An error means the node cannot be planned at all (bad configuration, the
// node unknown or without an address on this host); inputs that are merely unusable
// (a remote Endpoint whose subnets overlap the local cluster's, a bad annotation)
// are left out and named in State.Notes.
func Plan(in Input, cfg Config) (State, error) {
	if err := cfg.Validate(); err != nil {
		return State{}, err
	}
	p := planner{in: in, cfg: cfg}
	return p.plan()
}

type planner struct {
	in    Input
	cfg   Config
	notes []string
}

func (p *planner) notef(format string, args ...any) {
	p.notes = append(p.notes, fmt.Sprintf(format, args...))
}

func (p *planner) plan() (State, error) {
	self, err := p.self()
	if err != nil {
		return State{}, err
	}
	underlay, ok := linkWith(p.in.Links, func(a netip.Prefix) bool { return a.Addr() == self.IP })
	if !ok {
		return State{}, fmt.Errorf("node %s's InternalIP %s is on none of this host's interfaces: check that NODE_NAME is this node's name and that the agent runs in the host's network namespace (hostNetwork: true)", self.Name, self.IP)
	}
	cni, cniIP := p.cniInterface()

	var st State
	local := p.localEndpoint(self)
	st.RemoteSubnets = p.remoteSubnets()
	if local != nil {
		st.ActiveGateway = local.Spec.Hostname
		st.Gateway = local.Spec.Hostname == self.Name
		ov, err := p.overlay(self, underlay, local, st.Gateway, cniIP, st.RemoteSubnets)
		if err != nil {
			return State{}, err
		}
		st.Overlay = ov
	}
	st.Rules = p.rules(self, st.RemoteSubnets)
	st.Sysctls = []Sysctl{{Path: sysctlForwarding, Value: "1"}}
	loose := []string{underlay.Name}
	if cni != "" {
		loose = append(loose, cni)
	}
	if st.Overlay != nil {
		loose = append(loose, vxlan.DeviceName)
	}
	slices.Sort(loose)
	st.LooseRPFilter = slices.Compact(loose)
	slices.Sort(p.notes)
	st.Notes = slices.Compact(p.notes)
	return st, nil
}

// self finds this node among the cluster's.
func (p *planner) self() (Node, error) {
	if p.in.NodeName == "" {
		return Node{}, errors.New("no node name: pass NODE_NAME from the downward API (spec.nodeName)")
	}
	for _, n := range p.in.Nodes {
		if n.Name != p.in.NodeName {
			continue
		}
		if !n.IP.Is4() {
			return Node{}, fmt.Errorf("node %s has no IPv4 InternalIP in its status: the overlay addresses nodes by it; wait for the kubelet to report it", n.Name)
		}
		return n, nil
	}
	return Node{}, fmt.Errorf("node %s is not among the cluster's Nodes: check that NODE_NAME (--node-name) is this node's name", p.in.NodeName)
}

// linkWith returns the first link, by name, holding an address that matches.
func linkWith(links []Link, match func(netip.Prefix) bool) (Link, bool) {
	sorted := slices.SortedFunc(slices.Values(links), func(a, b Link) int { return cmp.Compare(a.Name, b.Name) })
	for _, l := range sorted {
		for _, a := range l.Addrs {
			if match(a) {
				return l, true
			}
		}
	}
	return Link{}, false
}

// cniInterface returns the interface holding an address inside the cluster CIDRs,
// and that address: the source of this host's traffic to remote clusters.
func (p *planner) cniInterface() (string, netip.Addr) {
	inCluster := func(a netip.Prefix) bool {
		return slices.ContainsFunc(p.cfg.ClusterCIDRs, func(c netip.Prefix) bool { return c.Contains(a.Addr()) })
	}
	links := slices.DeleteFunc(slices.Clone(p.in.Links), func(l Link) bool { return l.Name == vxlan.DeviceName })
	l, ok := linkWith(links, inCluster)
	if !ok {
		p.notef("no interface holds an address in the cluster CIDRs %s: host-network traffic to remote clusters leaves without a routable source (pods are not affected)", prefixes(p.cfg.ClusterCIDRs))
		return "", netip.Addr{}
	}
	i := slices.IndexFunc(l.Addrs, inCluster)
	return l.Name, l.Addrs[i].Addr()
}

// endpointOrder sorts Endpoints oldest first: by creation time, then name.
func endpointOrder(a, b submv1.Endpoint) int {
	if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
		return c
	}
	return cmp.Compare(a.Name, b.Name)
}

// localEndpoint returns the active gateway's Endpoint: among the local cluster's
// usable Endpoints, the newest. Several exist briefly during a failover.
func (p *planner) localEndpoint(self Node) *submv1.Endpoint {
	var usable []submv1.Endpoint
	for _, ep := range p.in.Endpoints {
		if ep.Spec.ClusterID != p.cfg.ClusterID {
			continue
		}
		ip, err := netip.ParseAddr(ep.Spec.PrivateIP)
		switch {
		case ep.Spec.Hostname == "":
			p.notef("local Endpoint %s names no gateway node (empty hostname): ignored", ep.Name)
		case err != nil || !ip.Is4():
			p.notef("local Endpoint %s has private_ip %q, not an IPv4 address: ignored", ep.Name, ep.Spec.PrivateIP)
		case ip == self.IP && ep.Spec.Hostname != self.Name:
			p.notef("local Endpoint %s names node %s but has this node's address %s as private_ip: ignored", ep.Name, ep.Spec.Hostname, ip)
		default:
			usable = append(usable, ep)
		}
	}
	if len(usable) == 0 {
		return nil
	}
	slices.SortFunc(usable, endpointOrder)
	newest := usable[len(usable)-1]
	for _, ep := range usable[:len(usable)-1] {
		p.notef("local Endpoint %s is older than %s, which names the active gateway: ignored", ep.Name, newest.Name)
	}
	return &newest
}

// remoteSubnets returns the subnets of the remote clusters' newest Endpoints,
// leaving out (with a note) those that cannot be routed: not IPv4 CIDRs, or
// overlapping the local cluster's ranges or another remote cluster's.
func (p *planner) remoteSubnets() []netip.Prefix {
	newest := map[string]submv1.Endpoint{}
	var older []submv1.Endpoint
	for _, ep := range p.in.Endpoints {
		id := ep.Spec.ClusterID
		if id == p.cfg.ClusterID {
			continue
		}
		if have, ok := newest[id]; ok {
			if endpointOrder(have, ep) > 0 {
				older = append(older, ep)
				continue
			}
			older = append(older, have)
		}
		newest[id] = ep
	}
	for _, ep := range older {
		p.notef("remote Endpoint %s of cluster %s is older than %s: ignored", ep.Name, ep.Spec.ClusterID, newest[ep.Spec.ClusterID].Name)
	}
	ids := make([]string, 0, len(newest))
	for id := range newest {
		ids = append(ids, id)
	}
	slices.Sort(ids)

	local := p.cfg.localCIDRs()
	var routed []netip.Prefix
	clusterOf := map[netip.Prefix]string{}
	for _, id := range ids {
		ep := newest[id]
		var subnets []netip.Prefix
		for _, s := range ep.Spec.Subnets {
			sub, err := submv1.ParseCIDR("subnet", s)
			switch {
			case err != nil:
				p.notef("remote Endpoint %s of cluster %s: %v: subnet ignored", ep.Name, id, err)
			case !sub.Addr().Is4():
				p.notef("remote Endpoint %s of cluster %s: subnet %s is not IPv4: ignored", ep.Name, id, sub)
			default:
				subnets = append(subnets, sub)
			}
		}
		if why := overlap(subnets, local); why != "" {
			hint := "give the clusters distinct CIDRs, or join them with Globalnet"
			if p.cfg.Globalnet() {
				hint = "give the clusters distinct global CIDRs"
			}
			p.notef("remote Endpoint %s of cluster %s is ignored: its subnet %s: %s", ep.Name, id, why, hint)
			continue
		}
		clash := ""
		for _, s := range subnets {
			if i := slices.IndexFunc(routed, s.Overlaps); i >= 0 && clash == "" {
				clash = fmt.Sprintf("%s overlaps %s of cluster %s", s, routed[i], clusterOf[routed[i]])
			}
		}
		if clash != "" {
			p.notef("remote Endpoint %s of cluster %s is ignored: its subnet %s", ep.Name, id, clash)
			continue
		}
		for _, s := range subnets {
			if _, dup := clusterOf[s]; !dup {
				clusterOf[s] = id
				routed = append(routed, s)
			}
		}
	}
	slices.SortFunc(routed, comparePrefix)
	return routed
}

// overlap describes the first subnet of subnets that overlaps one of local, or "".
func overlap(subnets, local []netip.Prefix) string {
	for _, s := range subnets {
		for _, l := range local {
			if s.Overlaps(l) {
				return fmt.Sprintf("%s overlaps the local cluster's %s", s, l)
			}
		}
	}
	return ""
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// overlay plans vx-submariner: on the gateway without remote and flooding to every
// other node; elsewhere pointing at the gateway, with a route for each remote
// subnet through the gateway's VTEP, from the CNI interface's address.
func (p *planner) overlay(self Node, underlay Link, local *submv1.Endpoint, gateway bool, cniIP netip.Addr, remote []netip.Prefix) (*vxlan.State, error) {
	vtep, err := vxlan.VTEP(self.IP, vxlan.VTEPFirstOctet)
	if err != nil {
		return nil, err
	}
	st := &vxlan.State{Device: vxlan.Device{
		Name:   vxlan.DeviceName,
		VNI:    vxlan.VNI,
		Port:   vxlan.Port,
		VTEP:   vtep,
		MTU:    vxlan.MTU(underlay.MTU),
		Local:  self.IP,
		Parent: underlay.Name,
	}}
	if gateway {
		seen := map[netip.Addr]bool{self.IP: true}
		for _, n := range p.in.Nodes {
			switch {
			case n.Name == self.Name:
			case !n.IP.Is4():
				p.notef("node %s has no IPv4 InternalIP: the gateway cannot reach it over %s", n.Name, vxlan.DeviceName)
			case !seen[n.IP]:
				seen[n.IP] = true
				st.FDB = append(st.FDB, n.IP)
			}
		}
		slices.SortFunc(st.FDB, netip.Addr.Compare)
	} else {
		gwIP := netip.MustParseAddr(local.Spec.PrivateIP) // checked by localEndpoint
		gwVTEP, err := vxlan.VTEP(gwIP, vxlan.VTEPFirstOctet)
		if err != nil {
			return nil, err
		}
		st.Device.Remote = gwIP
		for _, sub := range remote {
			st.Routes = append(st.Routes, route.Route{Dst: sub, Gw: gwVTEP.Addr(), Dev: vxlan.DeviceName, Src: cniIP})
		}
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("planning %s on underlay %s (MTU %d): %w", vxlan.DeviceName, underlay.Name, underlay.MTU, err)
	}
	return st, nil
}

// rules builds the agent's chains:
//
//	nat    SUBMARINER-POSTROUTING  (POSTROUTING, first)  ACCEPT local <-> remote: no SNAT
//	mangle SUBMARINER-POSTROUTING  (POSTROUTING, first)  TCPMSS on SYNs to and from remote
//	filter SUBMARINER-FORWARD      (FORWARD, first)      ACCEPT to and from remote
//	filter SUBMARINER-INPUT        (INPUT -p udp, first) ACCEPT the overlay's UDP port
//
// Every chain and jump exists even without remote subnets, so that the set of jumps
// stays the same and syncs stay incremental.
func (p *planner) rules(self Node, remote []netip.Prefix) *iptables.Ruleset {
	rs := iptables.NewRuleset()
	for _, j := range []iptables.Jump{
		{Table: iptables.TableNAT, From: iptables.ChainPostrouting, To: iptables.SubmarinerPostrouting, Position: iptables.First},
		{Table: iptables.TableMangle, From: iptables.ChainPostrouting, To: iptables.SubmarinerPostrouting, Position: iptables.First},
		{Table: iptables.TableFilter, From: iptables.ChainForward, To: iptables.SubmarinerForward, Position: iptables.First},
		{Table: iptables.TableFilter, From: iptables.ChainInput, To: iptables.SubmarinerInput, Match: []string{"-p", "udp"}, Position: iptables.First},
	} {
		rs.Chain(j.Table, j.To).Jump(j)
	}

	sources := slices.SortedFunc(slices.Values(p.cfg.natSources()), comparePrefix)
	for _, r := range remote {
		for _, l := range sources {
			rs.Rule(iptables.TableNAT, iptables.SubmarinerPostrouting, "-s", l.String(), "-d", r.String(), "-j", "ACCEPT")
			rs.Rule(iptables.TableNAT, iptables.SubmarinerPostrouting, "-s", r.String(), "-d", l.String(), "-j", "ACCEPT")
		}
		if p.cfg.Globalnet() {
			// Pod traffic on its way to the active gateway keeps its Pod address
			// (the CNI would masquerade it): Globalnet SNATs it to a global IP
			// there, on its way into the tunnel, which this rule does not match.
			for _, l := range slices.SortedFunc(slices.Values(p.cfg.ClusterCIDRs), comparePrefix) {
				rs.Rule(iptables.TableNAT, iptables.SubmarinerPostrouting, "-s", l.String(), "-d", r.String(), "-o", vxlan.DeviceName, "-j", "ACCEPT")
			}
		}
	}

	for _, r := range remote {
		rs.Rule(iptables.TableFilter, iptables.SubmarinerForward, "-d", r.String(), "-j", "ACCEPT")
		rs.Rule(iptables.TableFilter, iptables.SubmarinerForward, "-s", r.String(), "-j", "ACCEPT")
	}
	rs.Rule(iptables.TableFilter, iptables.SubmarinerInput, "-p", "udp", "-m", "udp", "--dport", strconv.Itoa(vxlan.Port), "-j", "ACCEPT")

	clamp := []string{"--clamp-mss-to-pmtu"}
	if mss, ok := p.clampMSS(self); ok {
		clamp = []string{"--set-mss", strconv.Itoa(mss)}
	}
	for _, r := range remote {
		for _, dir := range []string{"-d", "-s"} {
			args := append([]string{dir, r.String(), "-p", "tcp", "-m", "tcp", "--tcp-flags", "SYN,RST", "SYN", "-j", "TCPMSS"}, clamp...)
			rs.Rule(iptables.TableMangle, iptables.SubmarinerPostrouting, args...)
		}
	}
	return rs
}

// clampMSS returns the MSS the node's annotation forces, if it has a valid one.
func (p *planner) clampMSS(self Node) (int, bool) {
	v := strings.TrimSpace(self.TCPClampMSS)
	if v == "" {
		return 0, false
	}
	mss, err := strconv.Atoi(v)
	if err != nil || mss < minMSS || mss > maxMSS {
		p.notef("node %s: annotation %s=%q is not a whole number from %d to %d: clamping to the path MTU instead; fix or remove the annotation", self.Name, TCPClampMSSAnnotation, self.TCPClampMSS, minMSS, maxMSS)
		return 0, false
	}
	return mss, true
}

// prefixes renders a list of prefixes separated by commas.
func prefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}
