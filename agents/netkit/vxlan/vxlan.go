// Package vxlan converges a VXLAN overlay device with its flood (FDB) entries, routes
// and policy rules: the route agent's vx-submariner between every node and the active
// gateway, and the VXLAN cable driver's vxlan-tunnel between gateways. A State is the
// whole desired overlay of one owner; Apply makes the kernel match it exactly and may
// be called any number of times. See README.md for the packet path.
package vxlan

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/submariner-go/submariner/agents/netkit/route"
)

// The intra-cluster overlay (route agent), Submariner's numbers.
const (
	// DeviceName is the overlay device on every node.
	DeviceName = "vx-submariner"
	// VNI is its VXLAN network identifier.
	VNI = 100
	// Port is its UDP destination port.
	Port = 4800
	// VTEPFirstOctet replaces the first octet of a node's IP to form its VTEP address.
	VTEPFirstOctet = 240
)

// The VXLAN cable driver's overlay between gateways.
const (
	// CableDeviceName is the cable driver's device.
	CableDeviceName = "vxlan-tunnel"
	// CableVNI is its VXLAN network identifier.
	CableVNI = 1000
	// CableVTEPFirstOctet replaces the first octet of a gateway's IP to form its VTEP.
	CableVTEPFirstOctet = 241
)

// Overhead is what VXLAN encapsulation adds to a packet (outer IPv4 20, UDP 8,
// VXLAN 8, inner Ethernet 14): the overlay MTU is the underlay MTU minus Overhead.
const Overhead = 50

// MSS overheads: the TCP MSS to clamp to is the underlay MTU minus one of these
// (Submariner's values: IP and TCP headers plus the tunnel's encapsulation).
const (
	MSSOverheadIPsec = 120
	MSSOverheadVXLAN = 50
)

// MTU returns the overlay MTU for an underlay MTU.
func MTU(underlay int) int { return underlay - Overhead }

// MSS returns the TCP MSS to clamp to for an underlay MTU and a tunnel's MSS overhead.
func MSS(underlayMTU, overhead int) int { return underlayMTU - overhead }

// VTEP returns a node's overlay address: its IPv4 address with the first octet
// replaced by firstOctet, as a /8 (192.168.1.100 -> 240.168.1.100/8).
func VTEP(node netip.Addr, firstOctet byte) (netip.Prefix, error) {
	if !node.Is4() {
		return netip.Prefix{}, fmt.Errorf("node address %s is not IPv4: the VXLAN overlays address nodes by their IPv4 address", node)
	}
	b := node.As4()
	b[0] = firstOctet
	return netip.PrefixFrom(netip.AddrFrom4(b), 8), nil
}

// MAC returns the stable MAC address of the device whose VTEP address is vtep:
// locally administered, 02:53 followed by the address. A device recreated on the same
// node keeps its MAC, so peers' neighbour entries stay valid across failovers.
func MAC(vtep netip.Addr) net.HardwareAddr {
	b := vtep.As4()
	return net.HardwareAddr{0x02, 0x53, b[0], b[1], b[2], b[3]}
}

// Device is a VXLAN device. Learning is always off: peers come from FDB entries (or
// Remote), never from traffic.
type Device struct {
	Name string
	VNI  uint32
	// Port is the UDP destination port.
	Port uint16
	// VTEP is the device's address and prefix (240.x.y.z/8).
	VTEP netip.Prefix
	// MTU is the device's MTU (see MTU).
	MTU int
	// Remote, when valid, is the one peer every packet goes to (non-gateway nodes
	// point at the active gateway). Invalid on the gateway, whose peers are FDB
	// entries.
	Remote netip.Addr
	// Local, when valid, is the underlay source address.
	Local netip.Addr
	// Parent, when set, is the underlay device.
	Parent string
	// MAC is the device's address; nil means MAC(VTEP).
	MAC net.HardwareAddr
}

func (d Device) mac() net.HardwareAddr {
	if d.MAC != nil {
		return d.MAC
	}
	return MAC(d.VTEP.Addr())
}

// String renders the device in the canonical form of State.String.
func (d Device) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: vxlan id %d dstport %d", d.Name, d.VNI, d.Port)
	if d.Remote.IsValid() {
		b.WriteString(" remote " + d.Remote.String())
	}
	if d.Local.IsValid() {
		b.WriteString(" local " + d.Local.String())
	}
	if d.Parent != "" {
		b.WriteString(" dev " + d.Parent)
	}
	fmt.Fprintf(&b, " nolearning mtu %d address %s inet %s", d.MTU, d.mac(), d.VTEP)
	return b.String()
}

// incompatibleWith says why an existing device have cannot be changed into d in place
// (the kernel cannot change a VXLAN device's VNI, port, remote, local address or
// underlay device), or "" when it can.
func (d Device) incompatibleWith(have Device) string {
	var why []string
	if have.VNI != d.VNI {
		why = append(why, fmt.Sprintf("VNI %d, want %d", have.VNI, d.VNI))
	}
	if have.Port != d.Port {
		why = append(why, fmt.Sprintf("port %d, want %d", have.Port, d.Port))
	}
	if have.Remote != d.Remote {
		why = append(why, fmt.Sprintf("remote %v, want %v", have.Remote, d.Remote))
	}
	if have.Local != d.Local {
		why = append(why, fmt.Sprintf("local %v, want %v", have.Local, d.Local))
	}
	if have.Parent != d.Parent {
		why = append(why, fmt.Sprintf("underlay device %q, want %q", have.Parent, d.Parent))
	}
	return strings.Join(why, "; ")
}

// State is everything one owner wants of its overlay: the device, its flood entries,
// and the owner's routes and rules (which may use other devices, such as the
// host-network routes of table 150).
type State struct {
	Device Device
	// FDB lists the underlay addresses of the peers to flood to (entries
	// 00:00:00:00:00:00 dst <addr>). With Device.Remote set, the kernel keeps an
	// entry for it itself.
	FDB    []netip.Addr
	Routes []route.Route
	Rules  []route.Rule
}

// Validate checks the state without looking at the kernel; every error names the
// value and says how to fix it.
func (s State) Validate() error {
	var errs []error
	d := s.Device
	switch {
	case d.Name == "":
		errs = append(errs, fmt.Errorf("vxlan device has no name: set Device.Name (for example %q)", DeviceName))
	case len(d.Name) > 15 || strings.ContainsAny(d.Name, "/ \t\n:"):
		errs = append(errs, fmt.Errorf("vxlan device name %q is not a valid interface name: use at most 15 characters without '/', ':' or spaces", d.Name))
	}
	if d.VNI == 0 || d.VNI > 1<<24-1 {
		errs = append(errs, fmt.Errorf("vxlan device %s: VNI %d is out of range: use 1 to 16777215 (%d for %s)", d.Name, d.VNI, VNI, DeviceName))
	}
	if d.Port == 0 {
		errs = append(errs, fmt.Errorf("vxlan device %s: no UDP port: set Device.Port (%d for %s)", d.Name, Port, DeviceName))
	}
	if !d.VTEP.IsValid() || !d.VTEP.Addr().Is4() {
		errs = append(errs, fmt.Errorf("vxlan device %s: VTEP %v is not an IPv4 prefix: set Device.VTEP (see VTEP)", d.Name, d.VTEP))
	}
	if d.MTU < 68 || d.MTU > 65535 {
		errs = append(errs, fmt.Errorf("vxlan device %s: MTU %d is out of range: use the underlay MTU minus %d (see MTU)", d.Name, d.MTU, Overhead))
	}
	if d.Remote.IsValid() && !d.Remote.Is4() || d.Local.IsValid() && !d.Local.Is4() {
		errs = append(errs, fmt.Errorf("vxlan device %s: remote %v and local %v must be IPv4 addresses", d.Name, d.Remote, d.Local))
	}
	if d.MAC != nil && (len(d.MAC) != 6 || d.MAC[0]&1 == 1) {
		errs = append(errs, fmt.Errorf("vxlan device %s: MAC %s is not a unicast Ethernet address: leave it nil to use MAC(VTEP)", d.Name, d.MAC))
	}
	seen := map[netip.Addr]bool{}
	for _, a := range s.FDB {
		switch {
		case !a.Is4():
			errs = append(errs, fmt.Errorf("vxlan device %s: FDB destination %v is not an IPv4 address", d.Name, a))
		case seen[a]:
			errs = append(errs, fmt.Errorf("vxlan device %s: FDB destination %s is listed twice: list each peer once", d.Name, a))
		}
		seen[a] = true
	}
	if err := s.routes().Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (s State) routes() route.State { return route.State{Routes: s.Routes, Rules: s.Rules} }

// String renders the state canonically: the device line, the FDB entries sorted, then
// the routes and rules as route.State renders them. Fake.String and the privileged
// tests' read-back use the same form.
func (s State) String() string {
	var b strings.Builder
	b.WriteString("link " + s.Device.String() + "\n")
	for _, a := range s.fdb() {
		fmt.Fprintf(&b, "fdb 00:00:00:00:00:00 dev %s dst %s\n", s.Device.Name, a)
	}
	b.WriteString(s.routes().String())
	return b.String()
}

// fdb returns the flood destinations sorted, including Remote's (which the kernel
// adds itself).
func (s State) fdb() []netip.Addr {
	out := slices.Clone(s.FDB)
	if r := s.Device.Remote; r.IsValid() && !slices.Contains(out, r) {
		out = append(out, r)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// Interface is what the route agent and the VXLAN cable driver need from the
// kernel's VXLAN support.
type Interface interface {
	// Apply makes the device, FDB entries, routes and rules match s exactly: it
	// creates what is missing, fixes what differs (an incompatible device is
	// replaced, and the log says why) and removes what is the owner's and no longer
	// wanted. It may be called repeatedly with the same State.
	Apply(ctx context.Context, s State) error
	// Delete removes the device and every route and rule of the owner. Nothing to
	// delete is not an error.
	Delete(ctx context.Context, name string) error
}

var (
	_ Interface = (*Netlink)(nil)
	_ Interface = (*Fake)(nil)
)
