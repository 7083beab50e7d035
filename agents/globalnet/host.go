package globalnet

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
)

// Host tells Globalnet about the node it runs on.
type Host interface {
	// Addrs returns the node's IPv4 addresses.
	Addrs() ([]HostAddr, error)
}

// HostAddr is an address of one of the node's interfaces.
type HostAddr struct {
	Interface string
	Addr      netip.Addr
}

// CNIAddr returns the node's address inside one of the cluster CIDRs: that of the
// first interface by name (cni0 on a flannel-like CNI). It is the address ICMP to
// the gateway's global IP is translated to, and the source the node's own traffic to
// remote clusters has.
func CNIAddr(addrs []HostAddr, clusterCIDRs []netip.Prefix) (netip.Addr, bool) {
	sorted := slices.Clone(addrs)
	slices.SortFunc(sorted, func(a, b HostAddr) int {
		if c := strings.Compare(a.Interface, b.Interface); c != 0 {
			return c
		}
		return a.Addr.Compare(b.Addr)
	})
	for _, a := range sorted {
		for _, c := range clusterCIDRs {
			if c.Contains(a.Addr) {
				return a.Addr, true
			}
		}
	}
	return netip.Addr{}, false
}

// NetlinkHost reads the addresses through a netlink handle (bound to a network
// namespace, or the process's own with netlink.NewHandle()).
type NetlinkHost struct {
	Handle *netlink.Handle
}

var _ Host = NetlinkHost{}

// Addrs implements Host.
func (h NetlinkHost) Addrs() ([]HostAddr, error) {
	links, err := h.Handle.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing interfaces: %w", err)
	}
	var out []HostAddr
	for _, l := range links {
		addrs, err := h.Handle.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return nil, fmt.Errorf("listing the addresses of %s: %w", l.Attrs().Name, err)
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok {
				out = append(out, HostAddr{Interface: l.Attrs().Name, Addr: ip})
			}
		}
	}
	return out, nil
}
