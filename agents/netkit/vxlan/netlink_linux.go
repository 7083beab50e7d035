//go:build linux

package vxlan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/go-logr/logr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/submariner-go/submariner/agents/netkit/route"
)

// Netlink converges one owner's overlay in the network namespace of a netlink handle.
type Netlink struct {
	h      *netlink.Handle
	routes *route.Netlink
}

// New returns a converger acting through h (which decides the network namespace);
// routes and rules it installs carry proto.
func New(h *netlink.Handle, proto route.Protocol) *Netlink {
	return &Netlink{h: h, routes: route.New(h, proto)}
}

var zeroMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0}

// Apply implements Interface. An invalid state is refused before anything changes.
func (n *Netlink) Apply(ctx context.Context, s State) error {
	if err := s.Validate(); err != nil {
		return fmt.Errorf("refusing vxlan state: %w", err)
	}
	link, err := n.ensureDevice(ctx, s.Device)
	if err != nil {
		return err
	}
	if err := n.ensureAddress(ctx, link, s.Device); err != nil {
		return err
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := n.h.LinkSetUp(link); err != nil {
			return fmt.Errorf("bringing up vxlan device %s: %w", s.Device.Name, err)
		}
	}
	if err := n.ensureFDB(ctx, link, s); err != nil {
		return err
	}
	if err := n.routes.Apply(ctx, s.routes()); err != nil {
		return fmt.Errorf("applying routes of vxlan device %s: %w", s.Device.Name, err)
	}
	return nil
}

// Delete implements Interface. A device of that name that is not a VXLAN device is
// not ours: Delete refuses to remove it.
func (n *Netlink) Delete(ctx context.Context, name string) error {
	link, err := n.h.LinkByName(name)
	switch {
	case isNotFound(err):
	case err != nil:
		return fmt.Errorf("finding vxlan device %s: %w", name, err)
	case link.Type() != "vxlan":
		return fmt.Errorf("deleting vxlan device %s: it is a %s device, not one of ours: remove it by hand if it should go", name, link.Type())
	default:
		logr.FromContextOrDiscard(ctx).Info("Deleting vxlan device", "device", name)
		if err := n.h.LinkDel(link); err != nil && !isNotFound(err) {
			return fmt.Errorf("deleting vxlan device %s: %w", name, err)
		}
	}
	if err := n.routes.Flush(ctx); err != nil {
		return fmt.Errorf("removing routes of vxlan device %s: %w", name, err)
	}
	return nil
}

// State reads back the overlay: the device called name, its flood entries and the
// owner's routes and rules.
func (n *Netlink) State(ctx context.Context, name string) (State, error) {
	var s State
	link, err := n.h.LinkByName(name)
	if err != nil {
		return s, fmt.Errorf("finding vxlan device %s: %w", name, err)
	}
	vx, ok := link.(*netlink.Vxlan)
	if !ok {
		return s, fmt.Errorf("device %s is a %s device, not vxlan", name, link.Type())
	}
	s.Device = Device{
		Name:   name,
		VNI:    uint32(vx.VxlanId),
		Port:   uint16(vx.Port),
		MTU:    vx.MTU,
		Remote: addr(vx.Group),
		Local:  addr(vx.SrcAddr),
		MAC:    vx.HardwareAddr,
	}
	if vx.VtepDevIndex > 0 {
		parent, err := n.h.LinkByIndex(vx.VtepDevIndex)
		if err != nil {
			return s, fmt.Errorf("finding the underlay device of %s: %w", name, err)
		}
		s.Device.Parent = parent.Attrs().Name
	}
	addrs, err := n.h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return s, fmt.Errorf("listing addresses of %s: %w", name, err)
	}
	if len(addrs) > 0 {
		a := addrs[0].IPNet
		ones, _ := a.Mask.Size()
		s.Device.VTEP = netip.PrefixFrom(addr(a.IP), ones)
	}
	fdb, err := n.floodEntries(link)
	if err != nil {
		return s, err
	}
	for a, kernel := range fdb {
		if !kernel || a != s.Device.Remote {
			s.FDB = append(s.FDB, a)
		}
	}
	s.FDB = State{FDB: s.FDB}.fdb()
	rs, err := n.routes.State(ctx)
	if err != nil {
		return s, err
	}
	s.Routes, s.Rules = rs.Routes, rs.Rules
	return s, nil
}

// ensureDevice returns the device, creating it, or replacing it when an attribute
// that cannot change in place differs, and fixing its MTU and MAC in place.
func (n *Netlink) ensureDevice(ctx context.Context, d Device) (netlink.Link, error) {
	log := logr.FromContextOrDiscard(ctx).WithValues("device", d.Name)
	parentIndex := 0
	if d.Parent != "" {
		p, err := n.h.LinkByName(d.Parent)
		if err != nil {
			return nil, fmt.Errorf("finding underlay device %s of vxlan device %s: %w", d.Parent, d.Name, err)
		}
		parentIndex = p.Attrs().Index
	}

	link, err := n.h.LinkByName(d.Name)
	switch {
	case isNotFound(err):
		return n.createDevice(ctx, d, parentIndex)
	case err != nil:
		return nil, fmt.Errorf("finding vxlan device %s: %w", d.Name, err)
	}
	if reason := n.incompatible(link, d); reason != "" {
		log.Info("Replacing incompatible device", "reason", reason)
		if err := n.h.LinkDel(link); err != nil && !isNotFound(err) {
			return nil, fmt.Errorf("deleting incompatible device %s (%s): %w", d.Name, reason, err)
		}
		return n.createDevice(ctx, d, parentIndex)
	}
	if link.Attrs().MTU != d.MTU {
		log.Info("Setting MTU", "mtu", d.MTU, "was", link.Attrs().MTU)
		if err := n.h.LinkSetMTU(link, d.MTU); err != nil {
			return nil, fmt.Errorf("setting MTU %d on vxlan device %s: %w", d.MTU, d.Name, err)
		}
	}
	if !bytes.Equal(link.Attrs().HardwareAddr, d.mac()) {
		log.Info("Setting MAC address", "mac", d.mac().String(), "was", link.Attrs().HardwareAddr.String())
		if err := n.h.LinkSetHardwareAddr(link, d.mac()); err != nil {
			return nil, fmt.Errorf("setting MAC address %s on vxlan device %s: %w", d.mac(), d.Name, err)
		}
	}
	return n.h.LinkByName(d.Name)
}

func (n *Netlink) createDevice(ctx context.Context, d Device, parentIndex int) (netlink.Link, error) {
	logr.FromContextOrDiscard(ctx).Info("Creating vxlan device", "device", d.Name, "vni", d.VNI, "port", d.Port)
	vx := &netlink.Vxlan{
		LinkAttrs:    netlink.LinkAttrs{Name: d.Name, MTU: d.MTU, HardwareAddr: d.mac()},
		VxlanId:      int(d.VNI),
		Port:         int(d.Port),
		VtepDevIndex: parentIndex,
		Learning:     false,
	}
	if d.Remote.IsValid() {
		vx.Group = d.Remote.AsSlice()
	}
	if d.Local.IsValid() {
		vx.SrcAddr = d.Local.AsSlice()
	}
	if err := n.h.LinkAdd(vx); err != nil {
		return nil, fmt.Errorf("creating vxlan device %s: %w", d.Name, err)
	}
	link, err := n.h.LinkByName(d.Name)
	if err != nil {
		return nil, fmt.Errorf("finding the vxlan device %s just created: %w", d.Name, err)
	}
	return link, nil
}

// incompatible says why link cannot become d in place, or "".
func (n *Netlink) incompatible(link netlink.Link, d Device) string {
	vx, ok := link.(*netlink.Vxlan)
	if !ok {
		return fmt.Sprintf("it is a %s device, not vxlan", link.Type())
	}
	have := Device{Name: d.Name, VNI: uint32(vx.VxlanId), Port: uint16(vx.Port), Remote: addr(vx.Group), Local: addr(vx.SrcAddr)}
	if vx.VtepDevIndex > 0 {
		have.Parent = fmt.Sprintf("index %d", vx.VtepDevIndex)
		if p, err := n.h.LinkByIndex(vx.VtepDevIndex); err == nil {
			have.Parent = p.Attrs().Name
		}
	}
	why := d.incompatibleWith(have)
	if vx.Learning {
		why = strings.TrimPrefix(why+"; learning on, want off", "; ")
	}
	return why
}

// ensureAddress makes the VTEP the device's only IPv4 address.
func (n *Netlink) ensureAddress(ctx context.Context, link netlink.Link, d Device) error {
	addrs, err := n.h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("listing addresses of vxlan device %s: %w", d.Name, err)
	}
	found := false
	for _, a := range addrs {
		ones, _ := a.Mask.Size()
		if netip.PrefixFrom(addr(a.IP), ones) == d.VTEP {
			found = true
			continue
		}
		logr.FromContextOrDiscard(ctx).Info("Removing stale address", "device", d.Name, "address", a.IPNet.String())
		if err := n.h.AddrDel(link, &a); err != nil && !isNotFound(err) {
			return fmt.Errorf("removing address %s from vxlan device %s: %w", a.IPNet, d.Name, err)
		}
	}
	if found {
		return nil
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: d.VTEP.Addr().AsSlice(), Mask: net.CIDRMask(d.VTEP.Bits(), 32)}}
	if err := n.h.AddrAdd(link, a); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("adding address %s to vxlan device %s: %w", d.VTEP, d.Name, err)
	}
	return nil
}

// floodEntries returns the device's all-zero-MAC FDB destinations, each marked with
// whether the kernel made it for the device's remote.
func (n *Netlink) floodEntries(link netlink.Link) (map[netip.Addr]bool, error) {
	neighs, err := n.h.NeighList(link.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return nil, fmt.Errorf("listing FDB entries of %s: %w", link.Attrs().Name, err)
	}
	vx, _ := link.(*netlink.Vxlan)
	out := map[netip.Addr]bool{}
	for _, ne := range neighs {
		if !bytes.Equal(ne.HardwareAddr, zeroMAC) || ne.IP == nil {
			continue
		}
		a := addr(ne.IP)
		out[a] = vx != nil && a == addr(vx.Group)
	}
	return out, nil
}

// ensureFDB makes the flood entries exactly s.FDB (plus the kernel's entry for Remote).
func (n *Netlink) ensureFDB(ctx context.Context, link netlink.Link, s State) error {
	log := logr.FromContextOrDiscard(ctx).WithValues("device", s.Device.Name)
	have, err := n.floodEntries(link)
	if err != nil {
		return err
	}
	want := map[netip.Addr]bool{}
	for _, a := range s.fdb() {
		want[a] = true
		if _, ok := have[a]; ok {
			continue
		}
		log.V(1).Info("Adding FDB entry", "dst", a.String())
		if err := n.h.NeighAppend(fdbEntry(link, a)); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("adding fdb entry %s for %s on %s: %w", zeroMAC, a, s.Device.Name, err)
		}
	}
	for a := range have {
		if want[a] {
			continue
		}
		log.V(1).Info("Deleting FDB entry", "dst", a.String())
		if err := n.h.NeighDel(fdbEntry(link, a)); err != nil && !isNotFound(err) {
			return fmt.Errorf("deleting fdb entry %s for %s on %s: %w", zeroMAC, a, s.Device.Name, err)
		}
	}
	return nil
}

func fdbEntry(link netlink.Link, a netip.Addr) *netlink.Neigh {
	return &netlink.Neigh{
		LinkIndex:    link.Attrs().Index,
		Family:       unix.AF_BRIDGE,
		State:        netlink.NUD_PERMANENT | netlink.NUD_NOARP,
		Flags:        netlink.NTF_SELF,
		IP:           a.AsSlice(),
		HardwareAddr: zeroMAC,
	}
}

func isNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.EADDRNOTAVAIL)
}

func addr(ip net.IP) netip.Addr {
	if ip == nil || ip.IsUnspecified() {
		return netip.Addr{}
	}
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}
