package cable

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/submariner-go/submariner/agents/netkit/netns"
)

// Host is the network namespace a driver acts in. The gateway runs with
// hostNetwork, so in production it is the process's own namespace (CurrentHost);
// tests run several gateways in one process, each on the namespace of a node
// (NamespaceHost).
type Host struct {
	// Netns names the namespace for programs the driver starts (pluto), as
	// iproute2 names it; "" is the process's own namespace.
	Netns string
	// Netlink acts inside the namespace.
	Netlink *netlink.Handle

	do func(fn func() error) error
}

// CurrentHost returns the process's own network namespace.
func CurrentHost() (*Host, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("opening a netlink handle: %w", err)
	}
	return &Host{Netlink: h, do: func(fn func() error) error { return fn() }}, nil
}

// NamespaceHost returns the named namespace ns. It stays usable while ns is open.
func NamespaceHost(ns *netns.NS) *Host {
	return &Host{Netns: ns.Name, Netlink: ns.Netlink, do: ns.Do}
}

// Do runs fn on a thread inside the namespace, for code that opens sockets or
// devices (sockets and devices stay in the namespace they were made in, whichever
// thread uses them later).
func (h *Host) Do(fn func() error) error { return h.do(fn) }

// Underlay returns the name and MTU of the interface holding ip in h's namespace:
// the device the tunnels to other gateways leave by.
func Underlay(h *netlink.Handle, ip netip.Addr) (string, int, error) {
	addrs, err := h.AddrList(nil, unix.AF_INET)
	if err != nil {
		return "", 0, fmt.Errorf("listing addresses: %w", err)
	}
	for _, a := range addrs {
		if got, ok := netip.AddrFromSlice(a.IP.To4()); ok && got == ip {
			l, err := h.LinkByIndex(a.LinkIndex)
			if err != nil {
				return "", 0, fmt.Errorf("reading the interface holding %s: %w", ip, err)
			}
			return l.Attrs().Name, l.Attrs().MTU, nil
		}
	}
	return "", 0, fmt.Errorf("no interface holds the gateway's address %s: the gateway must run in its node's network namespace (hostNetwork)", ip)
}
