// Package vxlan is the unencrypted cable driver: one VXLAN device, vxlan-tunnel
// (VNI 1000, the cable port, VTEP 241.x.y.z/8 from the gateway's private IP), with a
// flood entry per remote gateway and, in table 100, a route per remote subnet via
// the remote gateway's VTEP, all converged through agents/netkit/vxlan.
//
//	pod (cluster1) -> node -> vx-submariner -> active gateway 198.51.100.1
//	    rule 100: lookup table 100
//	    table 100: 10.2.0.0/16 via 241.51.100.2 dev vxlan-tunnel src <cni0 IP>  proto 241
//	    vxlan-tunnel: VXLAN VNI 1000, UDP 4500, fdb 00:00:00:00:00:00 dst 198.51.100.2
//	        -> remote gateway 198.51.100.2 -> its cluster's pods
//
// It cannot cross NAT (the remote's VTEP is addressed directly) and both gateways
// must use the same port. It has no handshake: a tunnel is connected as soon as it
// is configured, and the health checker tells whether traffic really flows.
package vxlan

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"

	"github.com/submariner-go/submariner/agents/gateway/cable"
	"github.com/submariner-go/submariner/agents/netkit/route"
	"github.com/submariner-go/submariner/agents/netkit/vxlan"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

func init() {
	cable.Register(submv1.BackendVXLAN, cable.Factory{New: New, Cleanup: Cleanup})
}

// Driver is the VXLAN cable driver.
type Driver struct {
	cfg    cable.Config
	kernel vxlan.Interface

	mu      sync.Mutex
	device  *vxlan.Device // set by Init
	tunnels map[string]cable.Tunnel
	closed  bool
}

var _ cable.Driver = (*Driver)(nil)

// New returns a VXLAN driver acting on cfg.Host.
func New(cfg cable.Config) (cable.Driver, error) {
	return NewWithKernel(cfg, vxlan.New(cfg.Host.Netlink, route.ProtocolCable))
}

// NewWithKernel returns a VXLAN driver converging through kernel (vxlan.NewFake in
// tests).
func NewWithKernel(cfg cable.Config, kernel vxlan.Interface) (*Driver, error) {
	if !cfg.LocalIP.Is4() {
		return nil, fmt.Errorf("the gateway's private IP %v is not an IPv4 address", cfg.LocalIP)
	}
	if cfg.Port == 0 {
		return nil, errors.New("no tunnel port: set the udp-port (--nat-t-port)")
	}
	return &Driver{cfg: cfg, kernel: kernel, tunnels: map[string]cable.Tunnel{}}, nil
}

// Backend implements cable.Driver.
func (d *Driver) Backend() submv1.Backend { return submv1.BackendVXLAN }

// Init implements cable.Driver: it creates vxlan-tunnel without peers.
func (d *Driver) Init(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	name, mtu, err := cable.Underlay(d.cfg.Host.Netlink, d.cfg.LocalIP)
	if err != nil {
		return err
	}
	vtep, err := vxlan.VTEP(d.cfg.LocalIP, vxlan.CableVTEPFirstOctet)
	if err != nil {
		return err
	}
	d.device = &vxlan.Device{
		Name: vxlan.CableDeviceName, VNI: vxlan.CableVNI, Port: d.cfg.Port,
		VTEP: vtep, MTU: vxlan.MTU(mtu), Local: d.cfg.LocalIP, Parent: name,
	}
	return d.apply(ctx, d.tunnels)
}

// BackendConfig implements cable.Driver: VXLAN publishes nothing of its own.
func (d *Driver) BackendConfig() map[string]string { return nil }

// State returns the overlay the driver wants for tunnels: the device, a flood
// entry per remote gateway, the routes of the remote subnets via the remote VTEPs
// and the rule to table 100. It does no I/O.
func State(dev vxlan.Device, routeSrc netip.Addr, tunnels []cable.Tunnel) (vxlan.State, error) {
	st := vxlan.State{Device: dev}
	var errs []error
	rs := cable.TunnelRoutes(tunnels, func(t cable.Tunnel, _ netip.Prefix) route.Route {
		vtep, err := vxlan.VTEP(t.UseIP, vxlan.CableVTEPFirstOctet)
		if err != nil {
			errs = append(errs, err)
		}
		return route.Route{Gw: vtep.Addr(), Dev: dev.Name, Src: routeSrc}
	})
	for _, t := range tunnels {
		st.FDB = append(st.FDB, t.UseIP)
	}
	st.Routes, st.Rules = rs.Routes, rs.Rules
	return st, errors.Join(errs...)
}

// apply converges the kernel to tunnels; the driver's lock is held.
func (d *Driver) apply(ctx context.Context, tunnels map[string]cable.Tunnel) error {
	if d.device == nil {
		return errors.New("the vxlan driver is not initialised")
	}
	st, err := State(*d.device, d.cfg.RouteSrc, cable.SortedTunnels(tunnels, func(t cable.Tunnel) cable.Tunnel { return t }))
	if err != nil {
		return err
	}
	return d.kernel.Apply(ctx, st)
}

// check says why the driver cannot make t.
func (d *Driver) check(t cable.Tunnel) error {
	switch {
	case t.UseNAT:
		return fmt.Errorf("the vxlan cable driver cannot cross NAT (cluster %s or this one has nat_enabled): use libreswan or wireguard, or join without NAT", t.Remote.ClusterID)
	case t.Remote.Port != d.cfg.Port:
		return fmt.Errorf("cluster %s's gateway uses udp-port %d and this one %d: the vxlan cable driver needs the same port on both sides", t.Remote.ClusterID, t.Remote.Port, d.cfg.Port)
	case !t.UseIP.Is4():
		return fmt.Errorf("cluster %s's gateway address %v is not IPv4", t.Remote.ClusterID, t.UseIP)
	case t.UseIP == d.cfg.LocalIP:
		return fmt.Errorf("cluster %s's gateway has this gateway's own address %s", t.Remote.ClusterID, t.UseIP)
	}
	vtep := func(a netip.Addr) netip.Addr { v, _ := vxlan.VTEP(a, vxlan.CableVTEPFirstOctet); return v.Addr() }
	if vtep(t.UseIP) == vtep(d.cfg.LocalIP) {
		return fmt.Errorf("cluster %s's gateway %s and this one %s have the same VTEP %s (only the first octets differ): the vxlan cable driver cannot tell them apart", t.Remote.ClusterID, t.UseIP, d.cfg.LocalIP, vtep(t.UseIP))
	}
	for name, o := range d.tunnels {
		if name != t.Remote.CableName && vtep(o.UseIP) == vtep(t.UseIP) {
			return fmt.Errorf("cluster %s's gateway %s has the same VTEP %s as cluster %s's %s", t.Remote.ClusterID, t.UseIP, vtep(t.UseIP), o.Remote.ClusterID, o.UseIP)
		}
	}
	return nil
}

// Connect implements cable.Driver.
func (d *Driver) Connect(ctx context.Context, t cable.Tunnel) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("the vxlan driver is closed")
	}
	if err := d.check(t); err != nil {
		return err
	}
	want := maps.Clone(d.tunnels)
	want[t.Remote.CableName] = t
	if err := d.apply(ctx, want); err != nil {
		// Put the kernel back as it was for the other tunnels.
		if rerr := d.apply(ctx, d.tunnels); rerr != nil {
			err = errors.Join(err, fmt.Errorf("restoring the other tunnels: %w", rerr))
		}
		return fmt.Errorf("adding the tunnel to %s: %w", t.Remote.CableName, err)
	}
	d.tunnels = want
	return nil
}

// Disconnect implements cable.Driver.
func (d *Driver) Disconnect(ctx context.Context, remote cable.Endpoint) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.tunnels[remote.CableName]; !ok || d.closed {
		return nil
	}
	want := maps.Clone(d.tunnels)
	delete(want, remote.CableName)
	if err := d.apply(ctx, want); err != nil {
		return fmt.Errorf("removing the tunnel to %s: %w", remote.CableName, err)
	}
	d.tunnels = want
	return nil
}

// Connections implements cable.Driver: a configured VXLAN tunnel is connected.
func (d *Driver) Connections(context.Context) ([]cable.Status, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []cable.Status
	for _, name := range slices.Sorted(maps.Keys(d.tunnels)) {
		t := d.tunnels[name]
		out = append(out, cable.Status{Remote: t.Remote, Status: submv1.Connected, UsingIP: t.UseIP, UsingNAT: t.UseNAT})
	}
	return out, nil
}

// Close implements cable.Driver: it deletes vxlan-tunnel and the driver's routes
// and rules.
func (d *Driver) Close(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	d.tunnels = map[string]cable.Tunnel{}
	if err := d.kernel.Delete(ctx, vxlan.CableDeviceName); err != nil {
		return fmt.Errorf("deleting %s: %w", vxlan.CableDeviceName, err)
	}
	return nil
}

// Cleanup removes vxlan-tunnel and every route and rule of the cable drivers from
// h's namespace.
func Cleanup(ctx context.Context, h *cable.Host) error {
	if err := vxlan.New(h.Netlink, route.ProtocolCable).Delete(ctx, vxlan.CableDeviceName); err != nil {
		return fmt.Errorf("deleting %s: %w", vxlan.CableDeviceName, err)
	}
	return nil
}
