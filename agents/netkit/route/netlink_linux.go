//go:build linux

package route

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/go-logr/logr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Netlink converges one owner's routes and rules in the network namespace of a
// netlink handle.
type Netlink struct {
	h     *netlink.Handle
	proto Protocol
}

// New returns a converger for the routes and rules marked with proto, acting through h
// (which decides the network namespace).
func New(h *netlink.Handle, proto Protocol) *Netlink {
	return &Netlink{h: h, proto: proto}
}

// Apply implements Interface. An invalid state is refused before anything changes.
// Otherwise every route and rule is attempted; the errors of those that failed are
// returned together.
func (n *Netlink) Apply(ctx context.Context, s State) error {
	if err := s.Validate(); err != nil {
		return fmt.Errorf("refusing route state: %w", err)
	}
	return errors.Join(n.applyRoutes(ctx, s.Routes), n.applyRules(ctx, s.Rules))
}

// Flush implements Interface.
func (n *Netlink) Flush(ctx context.Context) error {
	return n.Apply(ctx, State{})
}

// State reads back the owner's routes and rules.
func (n *Netlink) State(ctx context.Context) (State, error) {
	var s State
	routes, err := n.listRoutes()
	if err != nil {
		return s, err
	}
	for _, nr := range routes {
		r, err := n.fromNetlinkRoute(nr)
		if err != nil {
			return s, err
		}
		s.Routes = append(s.Routes, r)
	}
	rules, err := n.listRules()
	if err != nil {
		return s, err
	}
	for _, nr := range rules {
		s.Rules = append(s.Rules, fromNetlinkRule(nr))
	}
	s.Routes, s.Rules = s.sortedRoutes(), s.sortedRules()
	return s, nil
}

func (n *Netlink) applyRoutes(ctx context.Context, want []Route) error {
	log := logr.FromContextOrDiscard(ctx)
	have, err := n.listRoutes()
	if err != nil {
		return err
	}
	current := map[routeKey]netlink.Route{}
	for _, nr := range have {
		r, err := n.fromNetlinkRoute(nr)
		if err != nil {
			return err
		}
		current[r.key()] = nr
	}
	var errs []error
	wanted := map[routeKey]bool{}
	for _, r := range want {
		if err := ctx.Err(); err != nil {
			return err
		}
		wanted[r.key()] = true
		nr, err := n.toNetlinkRoute(r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if cur, ok := current[r.key()]; ok {
			if sameRoute(cur, *nr) {
				continue
			}
			old, _ := n.fromNetlinkRoute(cur)
			log.Info("Replacing route", "route", r.String(), "was", old.String())
			if err := n.h.RouteReplace(nr); err != nil {
				errs = append(errs, fmt.Errorf("replacing route %s: %w", r, err))
			}
			continue
		}
		log.V(1).Info("Adding route", "route", r.String())
		if err := n.h.RouteAdd(nr); err != nil {
			if errors.Is(err, unix.EEXIST) {
				err = fmt.Errorf("a route with this destination, table and metric exists and is not ours (protocol %d): remove it or give ours another metric: %w", n.proto, err)
			}
			errs = append(errs, fmt.Errorf("adding route %s: %w", r, err))
		}
	}
	for k, nr := range current {
		if wanted[k] {
			continue
		}
		old, _ := n.fromNetlinkRoute(nr)
		log.V(1).Info("Deleting route", "route", old.String())
		if err := n.h.RouteDel(&nr); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("deleting route %s: %w", old, err))
		}
	}
	return errors.Join(errs...)
}

func (n *Netlink) applyRules(ctx context.Context, want []Rule) error {
	log := logr.FromContextOrDiscard(ctx)
	have, err := n.listRules()
	if err != nil {
		return err
	}
	current := map[string]netlink.Rule{}
	for _, nr := range have {
		current[fromNetlinkRule(nr).String()] = nr
	}
	var errs []error
	wanted := map[string]bool{}
	for _, r := range want {
		if err := ctx.Err(); err != nil {
			return err
		}
		k := r.String()
		wanted[k] = true
		if _, ok := current[k]; ok {
			continue
		}
		log.V(1).Info("Adding rule", "rule", k)
		if err := n.h.RuleAdd(n.toNetlinkRule(r)); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("adding rule %s: %w", k, err))
		}
	}
	for k, nr := range current {
		if wanted[k] {
			continue
		}
		log.V(1).Info("Deleting rule", "rule", k)
		if err := n.h.RuleDel(&nr); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("deleting rule %s: %w", k, err))
		}
	}
	return errors.Join(errs...)
}

// listRoutes returns the owner's routes in every table, both families.
func (n *Netlink) listRoutes() ([]netlink.Route, error) {
	filter := &netlink.Route{Table: unix.RT_TABLE_UNSPEC, Protocol: netlink.RouteProtocol(n.proto)}
	rs, err := n.h.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return nil, fmt.Errorf("listing routes of protocol %d: %w", n.proto, err)
	}
	return rs, nil
}

// listRules returns the owner's rules, both families.
func (n *Netlink) listRules() ([]netlink.Rule, error) {
	var out []netlink.Rule
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := n.h.RuleList(fam)
		if err != nil {
			return nil, fmt.Errorf("listing rules: %w", err)
		}
		for _, r := range rs {
			if r.Protocol == uint8(n.proto) {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

func (n *Netlink) toNetlinkRoute(r Route) (*netlink.Route, error) {
	link, err := n.h.LinkByName(r.Dev)
	if err != nil {
		return nil, fmt.Errorf("adding route %s: finding device %s: %w", r, r.Dev, err)
	}
	nr := &netlink.Route{
		LinkIndex: link.Attrs().Index,
		Dst:       ipNet(r.Dst),
		Table:     r.table(),
		Priority:  r.Metric,
		Protocol:  netlink.RouteProtocol(n.proto),
		Scope:     netlink.SCOPE_UNIVERSE,
	}
	if r.Gw.IsValid() {
		nr.Gw = r.Gw.AsSlice()
	} else {
		nr.Scope = netlink.SCOPE_LINK
	}
	if r.Src.IsValid() {
		nr.Src = r.Src.AsSlice()
	}
	return nr, nil
}

func (n *Netlink) fromNetlinkRoute(nr netlink.Route) (Route, error) {
	r := Route{Table: nr.Table, Metric: nr.Priority}
	if nr.Dst != nil {
		r.Dst = prefix(nr.Dst)
	} else if nr.Family == netlink.FAMILY_V6 {
		r.Dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	} else {
		r.Dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	r.Gw = addr(nr.Gw)
	r.Src = addr(nr.Src)
	if nr.LinkIndex > 0 {
		link, err := n.h.LinkByIndex(nr.LinkIndex)
		if err != nil {
			return r, fmt.Errorf("finding the device of route to %s: %w", r.Dst, err)
		}
		r.Dev = link.Attrs().Name
	}
	return r, nil
}

func sameRoute(a, b netlink.Route) bool {
	return a.LinkIndex == b.LinkIndex && a.Gw.Equal(b.Gw) && addr(a.Src) == addr(b.Src)
}

func (n *Netlink) toNetlinkRule(r Rule) *netlink.Rule {
	nr := netlink.NewRule()
	nr.Priority = r.Priority
	nr.Table = r.Table
	nr.Family = netlink.FAMILY_V4
	if r.ipv6() {
		nr.Family = netlink.FAMILY_V6
	}
	if r.From.IsValid() {
		nr.Src = ipNet(r.From)
	}
	if r.To.IsValid() {
		nr.Dst = ipNet(r.To)
	}
	if r.Mask != 0 {
		mask := r.Mask
		nr.Mark, nr.Mask = r.Mark, &mask
	}
	nr.Protocol = uint8(n.proto)
	return nr
}

func fromNetlinkRule(nr netlink.Rule) Rule {
	r := Rule{Priority: nr.Priority, Table: nr.Table, IPv6: nr.Family == netlink.FAMILY_V6}
	if nr.Src != nil {
		r.From = prefix(nr.Src)
	}
	if nr.Dst != nil {
		r.To = prefix(nr.Dst)
	}
	if nr.Mask != nil {
		r.Mark, r.Mask = nr.Mark, *nr.Mask
	} else if nr.Mark != 0 {
		r.Mark, r.Mask = nr.Mark, 0xffffffff
	}
	if r.From.IsValid() || r.To.IsValid() {
		r.IPv6 = false // the prefixes say the family
	}
	return r
}

// gone reports whether a delete failed because the object is already gone.
func gone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH)
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func prefix(n *net.IPNet) netip.Prefix {
	a, _ := netip.AddrFromSlice(n.IP)
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}

func addr(ip net.IP) netip.Addr {
	if ip == nil {
		return netip.Addr{}
	}
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}
