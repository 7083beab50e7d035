// Package wireguard is the WireGuard cable driver. It keeps one device,
// submariner, listening on the cable port with a key pair generated at start (the
// public key is published in the local Endpoint's backend_config publicKey), and one
// peer per remote cluster: endpoint = the remote gateway's address and udp-port,
// AllowedIPs = the remote cluster's subnets, keepalive every 10 s, and a preshared
// key derived from the clusterset's (SHA-256 of the join Secret's key). Peers that
// no tunnel wants are removed. In table 100 each remote subnet is routed into the
// device from the CNI interface's address.
//
//	pod (cluster1) -> node -> vx-submariner -> active gateway
//	    rule 100: lookup table 100
//	    table 100: 10.2.0.0/16 dev submariner src <cni0 IP>  proto 241
//	    submariner (WireGuard): peer <cluster2 key>, allowed 10.2.0.0/16, 100.2.0.0/16
//	        UDP 4500 -> cluster2's gateway -> its pods
//
// The device is the kernel's where the kernel has WireGuard, configured through
// wgctrl; elsewhere it is wireguard-go embedded in the gateway on a TUN interface of
// the same name, configured in-process with the same wgctrl types and serving its
// UAPI socket so that `wg show submariner` works the same way.
//
// A tunnel is connected once a handshake with its peer happened within the last
// RejectAfter; it is connecting until the first handshake, and in error when none
// came within HandshakeTimeout or the last one is older than RejectAfter.
package wireguard

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/submariner-go/submariner/agents/gateway/cable"
	"github.com/submariner-go/submariner/agents/netkit/route"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

func init() {
	cable.Register(submv1.BackendWireGuard, cable.Factory{New: New, Cleanup: Cleanup})
}

// Names and numbers of the WireGuard driver.
const (
	// DeviceName is the WireGuard device.
	DeviceName = "submariner"
	// DefaultSocketDir is where wg(8) looks for userspace devices' UAPI sockets.
	DefaultSocketDir = "/var/run/wireguard"
	// Keepalive is the peers' persistent keepalive interval.
	Keepalive = 10 * time.Second
	// HandshakeTimeout is how long a new peer may take to complete its first
	// handshake before its tunnel is in error.
	HandshakeTimeout = 2*time.Minute + 10*time.Second
	// RejectAfter is WireGuard's session lifetime: a peer whose last handshake is
	// older has no usable session. Peers exchanging keepalives hand-shake again
	// every two minutes.
	RejectAfter = 3 * time.Minute
	// ResponderDelay is how long the gateway with the greater public key waits
	// before it starts sending keepalives (and so handshakes) to a new peer. The
	// other gateway starts at once. Two gateways that initiate at the same moment
	// void each other's handshakes and both retry only after 5 s; when one waits, the
	// first handshake completes at once (or, if the other side did not know this
	// gateway yet, when the waiting one starts).
	ResponderDelay = time.Second
	// Overhead is what WireGuard adds to a packet (IPv6 outer header, the worst
	// case): the device's MTU is the underlay's minus Overhead.
	Overhead = 80
)

// The device modes.
const (
	ModeAuto      = "auto"
	ModeKernel    = "kernel"
	ModeUserspace = "userspace"
)

// errNoKernelWireGuard: the kernel cannot create WireGuard devices.
var errNoKernelWireGuard = errors.New("the kernel has no WireGuard support")

// Device is the WireGuard device as the driver uses it.
type Device interface {
	// Kind is "kernel" or "userspace".
	Kind() string
	// Configure applies cfg to the device.
	Configure(cfg wgtypes.Config) error
	// Device reads the device's state.
	Device() (*wgtypes.Device, error)
	// Close removes the device.
	Close() error
}

// Driver is the WireGuard cable driver.
type Driver struct {
	cfg       cable.Config
	routes    route.Interface
	newDevice func() (Device, error)
	now       func() time.Time
	// responderDelay is ResponderDelay; tests change it.
	responderDelay time.Duration

	mu      sync.Mutex
	dev     Device
	key     wgtypes.Key
	psk     wgtypes.Key
	tunnels map[string]peer // by remote cable name
	timers  map[string]*time.Timer
	closed  bool
}

// peer is one tunnel with its key and when it was (re)configured.
type peer struct {
	tunnel cable.Tunnel
	key    wgtypes.Key
	since  time.Time
}

var _ cable.Driver = (*Driver)(nil)

// New returns a WireGuard driver acting on cfg.Host.
func New(cfg cable.Config) (cable.Driver, error) {
	mode := cfg.WireGuardMode
	if mode == "" {
		mode = ModeAuto
	}
	switch mode {
	case ModeAuto, ModeKernel, ModeUserspace:
	default:
		return nil, fmt.Errorf("wireguard mode %q: use kernel, userspace or auto", mode)
	}
	h := cfg.Host
	newDevice := func() (Device, error) {
		_, underlayMTU, err := cable.Underlay(h.Netlink, cfg.LocalIP)
		if err != nil {
			return nil, err
		}
		mtu := underlayMTU - Overhead
		var dev Device
		if mode != ModeUserspace {
			k, err := newKernelDevice(h, DeviceName, mtu)
			switch {
			case err == nil:
				dev = k
			case mode == ModeKernel || !errors.Is(err, errNoKernelWireGuard):
				return nil, err
			default:
				cfg.Log.Info("The kernel has no WireGuard; using the embedded userspace device", "reason", err.Error())
			}
		}
		if dev == nil {
			u, err := newUserspaceDevice(h, DeviceName, mtu, cfg.WireGuardSocketDir, cfg.Log)
			if err != nil {
				return nil, err
			}
			dev = u
		}
		if err := linkUp(h); err != nil {
			_ = dev.Close()
			return nil, err
		}
		return dev, nil
	}
	return NewWithDevice(cfg, route.New(h.Netlink, route.ProtocolCable), newDevice)
}

// linkUp brings the device up.
func linkUp(h *cable.Host) error {
	l, err := h.Netlink.LinkByName(DeviceName)
	if err != nil {
		return fmt.Errorf("looking up %s: %w", DeviceName, err)
	}
	if err := h.Netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("bringing %s up: %w", DeviceName, err)
	}
	return nil
}

// NewWithDevice returns a driver that creates its device, up, with newDevice and
// converges its routes through routes (tests use wireguard-go on channels and a
// route.Fake).
func NewWithDevice(cfg cable.Config, routes route.Interface, newDevice func() (Device, error)) (*Driver, error) {
	if len(cfg.PSK) == 0 {
		return nil, errors.New("no pre-shared key: the wireguard cable driver derives its peers' preshared key from the clusterset's; mount the Secret submariner-ipsec-psk (key psk) and point --psk-file (CE_IPSEC_PSK_FILE) at it")
	}
	if !cfg.LocalIP.Is4() {
		return nil, fmt.Errorf("the gateway's private IP %v is not an IPv4 address", cfg.LocalIP)
	}
	if cfg.Port == 0 {
		return nil, errors.New("no tunnel port: set the udp-port (--nat-t-port)")
	}
	if cfg.Log.GetSink() == nil {
		cfg.Log = logr.Discard()
	}
	return &Driver{
		cfg: cfg, routes: routes, newDevice: newDevice, now: time.Now, responderDelay: ResponderDelay,
		psk:     sha256.Sum256(cfg.PSK),
		tunnels: map[string]peer{},
		timers:  map[string]*time.Timer{},
	}, nil
}

// Backend implements cable.Driver.
func (d *Driver) Backend() submv1.Backend { return submv1.BackendWireGuard }

// Init implements cable.Driver: it generates the key pair and creates the device,
// up, listening on the cable port, without peers.
func (d *Driver) Init(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dev != nil {
		return nil
	}
	key, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return fmt.Errorf("generating the WireGuard key: %w", err)
	}
	dev, err := d.newDevice()
	if err != nil {
		return err
	}
	port := int(d.cfg.Port)
	if err := dev.Configure(wgtypes.Config{PrivateKey: &key, ListenPort: &port, ReplacePeers: true}); err != nil {
		_ = dev.Close()
		return fmt.Errorf("configuring %s: %w", DeviceName, err)
	}
	if err := d.routes.Apply(ctx, route.State{}); err != nil {
		_ = dev.Close()
		return fmt.Errorf("removing stale cable routes: %w", err)
	}
	d.dev, d.key = dev, key
	d.cfg.Log.Info("WireGuard device ready", "device", DeviceName, "kind", dev.Kind(), "port", port, "publicKey", key.PublicKey().String())
	return nil
}

// BackendConfig implements cable.Driver: the public key and the device's name.
func (d *Driver) BackendConfig() map[string]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dev == nil {
		return nil
	}
	return map[string]string{cable.ConfigPublicKey: d.key.PublicKey().String(), cable.ConfigInterfaceName: DeviceName}
}

// PeerConfig returns the peer of t: its key, the remote gateway's address and
// port, the remote subnets, the preshared key and, when keepalive is set, the
// persistent keepalive.
func PeerConfig(t cable.Tunnel, psk wgtypes.Key, keepalive bool) (wgtypes.PeerConfig, error) {
	s, ok := t.Remote.BackendConfig[cable.ConfigPublicKey]
	if !ok {
		return wgtypes.PeerConfig{}, fmt.Errorf("cluster %s's Endpoint publishes no WireGuard %s in its backend_config: is its gateway using the wireguard cable driver?", t.Remote.ClusterID, cable.ConfigPublicKey)
	}
	key, err := wgtypes.ParseKey(s)
	if err != nil {
		return wgtypes.PeerConfig{}, fmt.Errorf("cluster %s's WireGuard %s %q is not a base64 key of 32 bytes", t.Remote.ClusterID, cable.ConfigPublicKey, s)
	}
	pc := wgtypes.PeerConfig{
		PublicKey:         key,
		PresharedKey:      &psk,
		Endpoint:          net.UDPAddrFromAddrPort(netip.AddrPortFrom(t.UseIP, t.Remote.Port)),
		ReplaceAllowedIPs: true,
	}
	if keepalive {
		ka := Keepalive
		pc.PersistentKeepaliveInterval = &ka
	}
	for _, p := range t.Remote.Subnets {
		pc.AllowedIPs = append(pc.AllowedIPs, net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())})
	}
	return pc, nil
}

// Routes returns the routes of the driver's tunnels: each remote subnet into the
// device, in table 100, from src.
func Routes(tunnels []cable.Tunnel, src netip.Addr) route.State {
	return cable.TunnelRoutes(tunnels, func(cable.Tunnel, netip.Prefix) route.Route {
		return route.Route{Dev: DeviceName, Src: src}
	})
}

func (d *Driver) sortedTunnels(m map[string]peer) []cable.Tunnel {
	return cable.SortedTunnels(m, func(p peer) cable.Tunnel { return p.tunnel })
}

// Connect implements cable.Driver.
func (d *Driver) Connect(ctx context.Context, t cable.Tunnel) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.usable(); err != nil {
		return err
	}
	pc, err := PeerConfig(t, d.psk, true)
	if err != nil {
		return err
	}
	if pc.PublicKey == d.key.PublicKey() {
		return fmt.Errorf("cluster %s's WireGuard public key is this gateway's own", t.Remote.ClusterID)
	}
	var peers []wgtypes.PeerConfig
	old, had := d.tunnels[t.Remote.CableName]
	for name, p := range d.tunnels {
		if name != t.Remote.CableName && p.key == pc.PublicKey {
			return fmt.Errorf("cluster %s publishes the same WireGuard public key as cluster %s", t.Remote.ClusterID, p.tunnel.Remote.ClusterID)
		}
	}
	if had && old.key != pc.PublicKey {
		peers = append(peers, wgtypes.PeerConfig{PublicKey: old.key, Remove: true})
	}
	// A new peer: the gateway with the greater key waits before it initiates.
	own := d.key.PublicKey()
	delayed := (!had || old.key != pc.PublicKey) && bytes.Compare(own[:], pc.PublicKey[:]) > 0
	if delayed {
		pc.PersistentKeepaliveInterval = nil
	}
	peers = append(peers, pc)
	if err := d.dev.Configure(wgtypes.Config{Peers: peers}); err != nil {
		return fmt.Errorf("configuring the peer of %s: %w", t.Remote.CableName, err)
	}
	want := maps.Clone(d.tunnels)
	since := d.now()
	if had && old.key == pc.PublicKey && old.tunnel.UseIP == t.UseIP && old.tunnel.Remote.Port == t.Remote.Port {
		since = old.since
	}
	want[t.Remote.CableName] = peer{tunnel: t, key: pc.PublicKey, since: since}
	if err := d.routes.Apply(ctx, Routes(d.sortedTunnels(want), d.cfg.RouteSrc)); err != nil {
		// Without its routes the peer is useless; take it out again.
		if !had {
			_ = d.dev.Configure(wgtypes.Config{Peers: []wgtypes.PeerConfig{{PublicKey: pc.PublicKey, Remove: true}}})
		}
		return fmt.Errorf("routing the subnets of %s: %w", t.Remote.CableName, err)
	}
	d.tunnels = want
	if delayed {
		d.startKeepalive(t.Remote.CableName, pc.PublicKey)
	}
	return nil
}

// startKeepalive turns the keepalive of the peer on after ResponderDelay, unless
// the tunnel is gone or has another peer by then. The driver's lock is held.
func (d *Driver) startKeepalive(cableName string, key wgtypes.Key) {
	if old, ok := d.timers[cableName]; ok {
		old.Stop()
	}
	d.timers[cableName] = time.AfterFunc(d.responderDelay, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if p, ok := d.tunnels[cableName]; !ok || p.key != key || d.closed || d.dev == nil {
			return
		}
		ka := Keepalive
		err := d.dev.Configure(wgtypes.Config{Peers: []wgtypes.PeerConfig{{PublicKey: key, UpdateOnly: true, PersistentKeepaliveInterval: &ka}}})
		if err != nil {
			d.cfg.Log.Error(err, "Turning on the keepalive of a WireGuard peer", "cable", cableName)
		}
	})
}

// Disconnect implements cable.Driver.
func (d *Driver) Disconnect(ctx context.Context, remote cable.Endpoint) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, ok := d.tunnels[remote.CableName]
	if !ok || d.closed || d.dev == nil {
		return nil
	}
	want := maps.Clone(d.tunnels)
	delete(want, remote.CableName)
	if err := d.routes.Apply(ctx, Routes(d.sortedTunnels(want), d.cfg.RouteSrc)); err != nil {
		return fmt.Errorf("removing the routes of %s: %w", remote.CableName, err)
	}
	if err := d.dev.Configure(wgtypes.Config{Peers: []wgtypes.PeerConfig{{PublicKey: p.key, Remove: true}}}); err != nil {
		return fmt.Errorf("removing the peer of %s: %w", remote.CableName, err)
	}
	d.tunnels = want
	return nil
}

// PeerStatus returns a tunnel's state from its peer on the device (nil when the
// device has none), at now, for a peer configured since.
func PeerStatus(now, since time.Time, p *wgtypes.Peer) (submv1.ConnectionStatus, string) {
	switch {
	case p == nil:
		return submv1.ConnError, "the WireGuard device has no peer for this tunnel"
	case p.LastHandshakeTime.IsZero() && now.Sub(since) < HandshakeTimeout:
		return submv1.Connecting, "waiting for the first handshake"
	case p.LastHandshakeTime.IsZero():
		return submv1.ConnError, fmt.Sprintf("no handshake with %v within %s: check that the remote gateway's UDP port is reachable and that both sides use the clusterset's pre-shared key", p.Endpoint, HandshakeTimeout)
	case now.Sub(p.LastHandshakeTime) > RejectAfter:
		return submv1.ConnError, fmt.Sprintf("the last handshake was %s ago: the remote gateway stopped answering", now.Sub(p.LastHandshakeTime).Round(time.Second))
	}
	return submv1.Connected, ""
}

// Connections implements cable.Driver. Peers on the device that no tunnel wants
// (left behind, or added by someone else) are removed.
func (d *Driver) Connections(context.Context) ([]cable.Status, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.usable(); err != nil {
		return nil, err
	}
	dev, err := d.dev.Device()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", DeviceName, err)
	}
	byKey := map[wgtypes.Key]*wgtypes.Peer{}
	for i := range dev.Peers {
		byKey[dev.Peers[i].PublicKey] = &dev.Peers[i]
	}
	now := d.now()
	var out []cable.Status
	wanted := map[wgtypes.Key]bool{}
	for _, name := range slices.Sorted(maps.Keys(d.tunnels)) {
		p := d.tunnels[name]
		wanted[p.key] = true
		wp := byKey[p.key]
		st, msg := PeerStatus(now, p.since, wp)
		s := cable.Status{Remote: p.tunnel.Remote, Status: st, Message: msg, UsingIP: p.tunnel.UseIP, UsingNAT: p.tunnel.UseNAT}
		if wp != nil {
			s.RxBytes, s.TxBytes = uint64(max(wp.ReceiveBytes, 0)), uint64(max(wp.TransmitBytes, 0))
		}
		out = append(out, s)
	}
	var stale []wgtypes.PeerConfig
	for _, p := range dev.Peers {
		if !wanted[p.PublicKey] {
			stale = append(stale, wgtypes.PeerConfig{PublicKey: p.PublicKey, Remove: true})
		}
	}
	if len(stale) > 0 {
		d.cfg.Log.Info("Removing WireGuard peers no tunnel wants", "count", len(stale))
		if err := d.dev.Configure(wgtypes.Config{Peers: stale}); err != nil {
			return out, fmt.Errorf("removing stale peers: %w", err)
		}
	}
	return out, nil
}

func (d *Driver) usable() error {
	switch {
	case d.closed:
		return errors.New("the wireguard driver is closed")
	case d.dev == nil:
		return errors.New("the wireguard driver is not initialised")
	}
	return nil
}

// Close implements cable.Driver: it removes the routes and the device.
func (d *Driver) Close(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	d.tunnels = map[string]peer{}
	for _, tm := range d.timers {
		tm.Stop()
	}
	var errs []error
	if err := d.routes.Flush(ctx); err != nil {
		errs = append(errs, fmt.Errorf("removing the cable routes: %w", err))
	}
	if d.dev != nil {
		if err := d.dev.Close(); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", DeviceName, err))
		}
		d.dev = nil
	}
	return errors.Join(errs...)
}

// Cleanup removes the device and the cable drivers' routes and rules from h's
// namespace.
func Cleanup(ctx context.Context, h *cable.Host) error {
	var errs []error
	if err := route.New(h.Netlink, route.ProtocolCable).Flush(ctx); err != nil {
		errs = append(errs, fmt.Errorf("removing the cable routes: %w", err))
	}
	if err := deleteLink(h, DeviceName); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
