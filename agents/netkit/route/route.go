// Package route converges the routes and policy-routing rules one agent owns. Every
// route and rule we install carries the owner's Protocol (rtnetlink's "proto" field),
// so Apply can remove the ones no longer wanted without touching routes and rules of
// the CNI, kube-proxy, the administrator or another of our agents, and a restarted
// agent recognises its own state.
//
// The Netlink implementation works on a *netlink.Handle, so one process can drive
// several network namespaces; Fake records what was applied and renders it as the
// same canonical text as State.String.
package route

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Protocol is the rtnetlink protocol number that marks a route or rule as owned by one
// of our agents. Each owner has its own, so their Apply calls never remove each
// other's routes.
type Protocol uint8

// The owners' protocol numbers (unassigned in iproute2's rt_protos). They echo the
// first octets of the overlays' VTEP addresses.
const (
	// ProtocolRouteAgent marks the route agent's routes: remote CIDRs via
	// vx-submariner, host-network routes in TableHostNetwork.
	ProtocolRouteAgent Protocol = 240
	// ProtocolCable marks the cable drivers' routes (the VXLAN cable's TableCable).
	ProtocolCable Protocol = 241
	// ProtocolGlobalnet marks Globalnet's routes.
	ProtocolGlobalnet Protocol = 242
)

// Routing tables and rule priorities (Submariner's numbers).
const (
	// TableMain is the kernel's main table.
	TableMain = 254
	// TableCable holds the VXLAN cable driver's routes to remote clusters; the rule
	// that looks it up has priority TableCable.
	TableCable = 100
	// TableOVN holds OVN-Kubernetes inter-cluster routes.
	TableOVN = 149
	// TableHostNetwork holds, on the active gateway, routes that let host-network
	// traffic reach remote clusters from the CNI interface's address.
	TableHostNetwork = 150
)

// Route is one route. Its identity in the kernel is (Table, Dst, Metric): two routes
// with the same identity cannot coexist, and a wanted route whose other attributes
// differ from the installed one replaces it.
type Route struct {
	Dst netip.Prefix
	// Gw is the next hop; invalid for a directly connected destination.
	Gw netip.Addr
	// Dev is the output device. Required.
	Dev string
	// Table is the routing table; 0 means TableMain.
	Table int
	// Src is the preferred source address; optional.
	Src netip.Addr
	// Metric is the route's priority; 0 is the kernel's default.
	Metric int
}

func (r Route) table() int {
	if r.Table == 0 {
		return TableMain
	}
	return r.Table
}

// String renders the route as `ip route` prints it, with its table always named.
func (r Route) String() string {
	var b strings.Builder
	b.WriteString(r.Dst.String())
	if r.Gw.IsValid() {
		b.WriteString(" via " + r.Gw.String())
	}
	b.WriteString(" dev " + r.Dev)
	b.WriteString(" table " + tableName(r.table()))
	if r.Src.IsValid() {
		b.WriteString(" src " + r.Src.String())
	}
	if r.Metric != 0 {
		b.WriteString(" metric " + strconv.Itoa(r.Metric))
	}
	return b.String()
}

type routeKey struct {
	table  int
	dst    netip.Prefix
	metric int
}

func (r Route) key() routeKey { return routeKey{r.table(), r.Dst.Masked(), r.Metric} }

// Rule is a policy-routing rule: packets matching its selectors look up Table.
type Rule struct {
	// Priority orders rules; it must be set (the kernel would pick one otherwise).
	Priority int
	// Table is looked up by matching packets.
	Table int
	// From and To select by source and destination; invalid means any.
	From, To netip.Prefix
	// Mark and Mask select by firewall mark when Mask is not 0.
	Mark, Mask uint32
	// IPv6 makes a rule without From or To apply to IPv6 instead of IPv4.
	IPv6 bool
}

func (r Rule) ipv6() bool {
	switch {
	case r.From.IsValid():
		return r.From.Addr().Is6()
	case r.To.IsValid():
		return r.To.Addr().Is6()
	}
	return r.IPv6
}

// String renders the rule as `ip rule` prints it.
func (r Rule) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d: from ", r.Priority)
	if r.From.IsValid() {
		b.WriteString(r.From.String())
	} else {
		b.WriteString("all")
	}
	if r.To.IsValid() {
		b.WriteString(" to " + r.To.String())
	}
	if r.Mask != 0 {
		fmt.Fprintf(&b, " fwmark %#x/%#x", r.Mark, r.Mask)
	}
	b.WriteString(" lookup " + tableName(r.Table))
	if r.ipv6() && !r.From.IsValid() && !r.To.IsValid() {
		b.WriteString(" (ipv6)")
	}
	return b.String()
}

// tableRank sorts the main table first, then the others by number.
func tableRank(t int) int {
	if t == TableMain {
		return -1
	}
	return t
}

func tableName(t int) string {
	if t == TableMain {
		return "main"
	}
	return strconv.Itoa(t)
}

// State is every route and rule one owner wants. Apply makes the kernel hold exactly
// these (among the routes and rules carrying the owner's Protocol).
type State struct {
	Routes []Route
	Rules  []Rule
}

// Validate checks the state without looking at the kernel: every error names the
// route or rule and says how to fix it.
func (s State) Validate() error {
	var errs []error
	seen := map[routeKey]Route{}
	for _, r := range s.Routes {
		switch {
		case !r.Dst.IsValid():
			errs = append(errs, fmt.Errorf("route %v: no destination: set Dst to a prefix such as 10.2.0.0/16", r))
		case r.Dst != r.Dst.Masked():
			errs = append(errs, fmt.Errorf("route %v: destination %s has host bits set: use %s", r, r.Dst, r.Dst.Masked()))
		case r.Dev == "":
			errs = append(errs, fmt.Errorf("route %v: no device: set Dev to the output interface", r))
		case r.Gw.IsValid() && r.Gw.Is4() != r.Dst.Addr().Is4():
			errs = append(errs, fmt.Errorf("route %v: gateway %s and destination %s are of different IP families", r, r.Gw, r.Dst))
		case r.Src.IsValid() && r.Src.Is4() != r.Dst.Addr().Is4():
			errs = append(errs, fmt.Errorf("route %v: source %s and destination %s are of different IP families", r, r.Src, r.Dst))
		case r.Table < 0 || r.Table > 0xfffffffe:
			errs = append(errs, fmt.Errorf("route %v: table %d is out of range", r, r.Table))
		case r.Metric < 0:
			errs = append(errs, fmt.Errorf("route %v: negative metric %d", r, r.Metric))
		}
		if o, dup := seen[r.key()]; dup && o != r {
			errs = append(errs, fmt.Errorf("routes %v and %v have the same destination, table and metric: the kernel holds only one; keep one", o, r))
		}
		seen[r.key()] = r
	}
	for _, r := range s.Rules {
		switch {
		case r.Priority <= 0:
			errs = append(errs, fmt.Errorf("rule %v: no priority: set Priority (for example %d for table %d)", r, r.Table, r.Table))
		case r.Table <= 0:
			errs = append(errs, fmt.Errorf("rule %v: no table: set Table to the table to look up", r))
		case r.From.IsValid() && r.To.IsValid() && r.From.Addr().Is4() != r.To.Addr().Is4():
			errs = append(errs, fmt.Errorf("rule %v: from %s and to %s are of different IP families", r, r.From, r.To))
		case r.Mask == 0 && r.Mark != 0:
			errs = append(errs, fmt.Errorf("rule %v: mark %#x without a mask: set Mask (0xffffffff for an exact match)", r, r.Mark))
		}
	}
	return errors.Join(errs...)
}

// String renders the state canonically: routes sorted by table (main first),
// destination and metric, then rules sorted by priority, one per line.
func (s State) String() string {
	var b strings.Builder
	for _, r := range s.sortedRoutes() {
		b.WriteString("route " + r.String() + "\n")
	}
	for _, r := range s.sortedRules() {
		b.WriteString("rule " + r.String() + "\n")
	}
	return b.String()
}

func (s State) sortedRoutes() []Route {
	rs := slices.Clone(s.Routes)
	for i := range rs {
		rs[i].Table = rs[i].table()
	}
	slices.SortFunc(rs, func(a, b Route) int {
		if c := tableRank(a.Table) - tableRank(b.Table); c != 0 {
			return c
		}
		if c := a.Dst.Addr().Compare(b.Dst.Addr()); c != 0 {
			return c
		}
		if c := a.Dst.Bits() - b.Dst.Bits(); c != 0 {
			return c
		}
		return a.Metric - b.Metric
	})
	return rs
}

func (s State) sortedRules() []Rule {
	rs := slices.Clone(s.Rules)
	slices.SortFunc(rs, func(a, b Rule) int {
		if c := a.Priority - b.Priority; c != 0 {
			return c
		}
		return strings.Compare(a.String(), b.String())
	})
	return rs
}

// Interface converges one owner's routes and rules.
type Interface interface {
	// Apply makes the owner's routes and rules match s exactly: it adds what is
	// missing, replaces what differs and removes what is no longer wanted. It may
	// be called repeatedly with the same State.
	Apply(ctx context.Context, s State) error
	// Flush removes every route and rule of the owner. Nothing to remove is not an
	// error.
	Flush(ctx context.Context) error
}

var (
	_ Interface = (*Netlink)(nil)
	_ Interface = (*Fake)(nil)
)
