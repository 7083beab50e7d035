//go:build linux

package libreswan

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/submariner-go/submariner/agents/gateway/cable"
	"github.com/submariner-go/submariner/agents/netkit/route"
	"github.com/submariner-go/submariner/agents/netkit/whack"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

func init() {
	cable.Register(submv1.BackendLibreswan, cable.Factory{New: New, Cleanup: Cleanup})
}

// shutdownTimeout bounds pluto's shutdown in Close.
const shutdownTimeout = 10 * time.Second

// Driver is the libreswan cable driver.
type Driver struct {
	cfg    cable.Config
	psk    string
	routes route.Interface

	mu      sync.Mutex
	pluto   *whack.Pluto
	stop    context.CancelFunc
	done    chan error
	tunnels map[string]tunnel // by remote cable name
	refused map[string]whack.KernelError
	closed  bool
}

// tunnel is one tunnel as pluto has it.
type tunnel struct {
	cable cable.Tunnel
	whack whack.Tunnel
	names []string
	// hop is the route to the remote gateway: the next hop and device that the
	// remote subnets' routes use.
	hop route.Route
}

var _ cable.Driver = (*Driver)(nil)

// New returns a libreswan driver acting on cfg.Host.
func New(cfg cable.Config) (cable.Driver, error) {
	return newDriver(cfg, route.New(cfg.Host.Netlink, route.ProtocolCable))
}

func newDriver(cfg cable.Config, routes route.Interface) (*Driver, error) {
	if len(cfg.PSK) == 0 {
		return nil, errors.New("no pre-shared key: IPsec authenticates the gateways with the clusterset's pre-shared key; mount the Secret submariner-ipsec-psk (key psk) and point --psk-file (CE_IPSEC_PSK_FILE) at it")
	}
	if !filepath.IsAbs(cfg.StateDir) {
		return nil, fmt.Errorf("pluto's directory %q is not an absolute path (--pluto-dir)", cfg.StateDir)
	}
	if !cfg.LocalIP.Is4() {
		return nil, fmt.Errorf("the gateway's private IP %v is not an IPv4 address", cfg.LocalIP)
	}
	if cfg.Port == 0 {
		return nil, errors.New("no tunnel port: set the udp-port (--nat-t-port)")
	}
	return &Driver{
		cfg: cfg, routes: routes,
		// Submariner hands pluto the key base64-encoded: any bytes become a
		// quotable secret.
		psk:     base64.StdEncoding.EncodeToString(cfg.PSK),
		tunnels: map[string]tunnel{},
		refused: map[string]whack.KernelError{},
	}, nil
}

// Backend implements cable.Driver.
func (d *Driver) Backend() submv1.Backend { return submv1.BackendLibreswan }

// Init implements cable.Driver: it starts pluto and waits until it listens.
func (d *Driver) Init(ctx context.Context) error {
	d.mu.Lock()
	if d.pluto != nil {
		d.mu.Unlock()
		return nil
	}
	var extra []string
	if d.cfg.Debug {
		extra = []string{"--debug", "base"}
	}
	p, err := whack.NewPluto(whack.PlutoConfig{
		Dir: d.cfg.StateDir, Netns: d.cfg.Host.Netns, PSK: d.psk, ExtraArgs: extra,
		OnStart: d.onStart,
		OnExit: func(e whack.Exit) {
			d.cfg.Log.Info("pluto exited; restarting it", "exit", e.String())
		},
		OnLog: d.onLog,
	})
	if err != nil {
		d.mu.Unlock()
		return fmt.Errorf("setting up pluto: %w", err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	d.pluto, d.stop, d.done = p, stop, done
	d.mu.Unlock()

	if err := p.WaitReady(ctx); err != nil {
		stop()
		<-done
		d.mu.Lock()
		d.pluto, d.stop, d.done = nil, nil, nil
		d.mu.Unlock()
		return fmt.Errorf("starting pluto: %w", err)
	}
	if err := d.routes.Apply(ctx, route.State{}); err != nil {
		return fmt.Errorf("removing stale cable routes: %w", err)
	}
	d.cfg.Log.Info("pluto is ready", "dir", d.cfg.StateDir, "pid", p.PID())
	return nil
}

// onStart adds every tunnel to a (re)started pluto.
func (d *Driver) onStart(ctx context.Context, c *whack.Client) error {
	d.mu.Lock()
	ts := slices.Collect(maps.Values(d.tunnels))
	d.mu.Unlock()
	var errs []error
	for _, t := range ts {
		if err := c.Connect(ctx, t.whack); err != nil {
			errs = append(errs, fmt.Errorf("connecting %s: %w", t.cable.Remote.CableName, err))
		}
	}
	return errors.Join(errs...)
}

// onLog records the kernel's refusals, per connection.
func (d *Driver) onLog(line string) {
	d.cfg.Log.V(4).Info(line, "source", "pluto")
	if e, ok := whack.ParseKernelError(line); ok {
		d.mu.Lock()
		d.refused[e.Connection] = e
		d.mu.Unlock()
	}
}

// BackendConfig implements cable.Driver: libreswan publishes nothing of its own.
func (d *Driver) BackendConfig() map[string]string { return nil }

// WhackTunnel returns the IPsec tunnel for t: identities and IKE addresses from
// the private IPs (the remote's IKE address is the one the engine chose), the
// subnets, the ports, the mode from both sides' preferred-server settings, and
// forced UDP encapsulation under NAT.
func WhackTunnel(t cable.Tunnel, localPort uint16) whack.Tunnel {
	lp, lk := t.Local.PreferredServer()
	rp, rk := t.Remote.PreferredServer()
	return whack.Tunnel{
		Local: whack.Endpoint{
			CableName: t.Local.CableName, PrivateIP: t.Local.PrivateIP, IP: t.Local.PrivateIP,
			Subnets: t.Local.Subnets, Port: localPort,
		},
		Remote: whack.Endpoint{
			CableName: t.Remote.CableName, PrivateIP: t.Remote.PrivateIP, IP: t.UseIP,
			Subnets: t.Remote.Subnets, Port: t.Remote.Port,
		},
		Mode: whack.ChooseMode(
			whack.Peer{CableName: t.Local.CableName, PreferredServer: lp, PreferenceKnown: lk},
			whack.Peer{CableName: t.Remote.CableName, PreferredServer: rp, PreferenceKnown: rk},
		),
		ForceEncaps: t.UseNAT,
	}
}

// Routes returns the routes of tunnels: each remote subnet through the tunnel's
// next hop, in table 100, from src.
func Routes(tunnels []tunnel, src netip.Addr) route.State {
	hops := map[string]route.Route{}
	var ts []cable.Tunnel
	for _, t := range tunnels {
		hops[t.cable.Remote.CableName] = t.hop
		ts = append(ts, t.cable)
	}
	return cable.TunnelRoutes(ts, func(t cable.Tunnel, _ netip.Prefix) route.Route {
		r := hops[t.Remote.CableName]
		return route.Route{Gw: r.Gw, Dev: r.Dev, Src: src}
	})
}

// nextHop returns how the namespace reaches ip: the gateway (if any) and device.
func (d *Driver) nextHop(ip netip.Addr) (route.Route, error) {
	rs, err := d.cfg.Host.Netlink.RouteGet(net.IP(ip.AsSlice()))
	if err != nil || len(rs) == 0 {
		return route.Route{}, fmt.Errorf("no route to the remote gateway %s: %v", ip, err)
	}
	l, err := d.cfg.Host.Netlink.LinkByIndex(rs[0].LinkIndex)
	if err != nil {
		return route.Route{}, fmt.Errorf("reading the interface towards %s: %w", ip, err)
	}
	r := route.Route{Dev: l.Attrs().Name}
	if gw, ok := netip.AddrFromSlice(rs[0].Gw.To4()); ok && rs[0].Gw != nil {
		r.Gw = gw
	}
	return r, nil
}

func (d *Driver) sorted(m map[string]tunnel) []tunnel {
	out := make([]tunnel, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[k])
	}
	return out
}

// Connect implements cable.Driver: the tunnel's connections are (re)added, routed
// and initiated unless this side is the server; connections of an earlier version
// of the tunnel that are not needed any more are deleted.
func (d *Driver) Connect(ctx context.Context, t cable.Tunnel) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.usable(); err != nil {
		return err
	}
	wt := WhackTunnel(t, d.cfg.Port)
	conns, err := wt.Connections()
	if err != nil {
		return fmt.Errorf("the IPsec connections to %s: %w", t.Remote.CableName, err)
	}
	var names []string
	for _, c := range conns {
		names = append(names, c.Name)
	}
	hop, err := d.nextHop(t.UseIP)
	if err != nil {
		return err
	}
	c := d.pluto.Client()
	if old, ok := d.tunnels[t.Remote.CableName]; ok {
		for _, n := range old.names {
			if !slices.Contains(names, n) {
				if err := c.Delete(ctx, n); err != nil {
					return fmt.Errorf("deleting the old connection %s: %w", n, err)
				}
			}
		}
	}
	if err := c.Connect(ctx, wt); err != nil {
		return fmt.Errorf("connecting to %s: %w", t.Remote.CableName, err)
	}
	for _, n := range names {
		delete(d.refused, n)
	}
	want := maps.Clone(d.tunnels)
	want[t.Remote.CableName] = tunnel{cable: t, whack: wt, names: names, hop: hop}
	if err := d.routes.Apply(ctx, Routes(d.sorted(want), d.cfg.RouteSrc)); err != nil {
		return fmt.Errorf("routing the subnets of %s: %w", t.Remote.CableName, err)
	}
	d.tunnels = want
	return nil
}

// Disconnect implements cable.Driver.
func (d *Driver) Disconnect(ctx context.Context, remote cable.Endpoint) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.tunnels[remote.CableName]
	if !ok || d.closed || d.pluto == nil {
		return nil
	}
	want := maps.Clone(d.tunnels)
	delete(want, remote.CableName)
	if err := d.routes.Apply(ctx, Routes(d.sorted(want), d.cfg.RouteSrc)); err != nil {
		return fmt.Errorf("removing the routes of %s: %w", remote.CableName, err)
	}
	if err := d.pluto.Client().Disconnect(ctx, t.whack); err != nil {
		return fmt.Errorf("disconnecting from %s: %w", remote.CableName, err)
	}
	for _, n := range t.names {
		delete(d.refused, n)
	}
	d.tunnels = want
	return nil
}

// TunnelStatus returns a tunnel's state from pluto's traffic status (its
// connections with a Child SA), its status (IKE SAs) and the kernel's refusals
// logged for its connections. It does no I/O.
func TunnelStatus(names []string, traffic []whack.Traffic, st *whack.Status, refused map[string]whack.KernelError) (submv1.ConnectionStatus, string, whack.Summary) {
	sum := whack.Summarize(traffic, names...)
	if sum.Connected {
		return submv1.Connected, "", sum
	}
	ike := st != nil && slices.ContainsFunc(names, st.IKEEstablished)
	var why []string
	for _, n := range names {
		if e, ok := refused[n]; ok {
			why = append(why, e.String())
		}
	}
	switch {
	case len(why) > 0 && ike:
		return submv1.Connecting, "IKE SA established; the kernel refused the Child SA: " + strings.Join(why, "; "), sum
	case len(why) > 0:
		return submv1.Connecting, "the kernel refused the Child SA: " + strings.Join(why, "; "), sum
	case ike:
		return submv1.Connecting, "IKE SA established; waiting for the Child SA", sum
	}
	return submv1.Connecting, "negotiating the IKE SA", sum
}

// Connections implements cable.Driver.
func (d *Driver) Connections(ctx context.Context) ([]cable.Status, error) {
	d.mu.Lock()
	if err := d.usable(); err != nil {
		d.mu.Unlock()
		return nil, err
	}
	c := d.pluto.Client()
	ts := d.sorted(d.tunnels)
	refused := maps.Clone(d.refused)
	d.mu.Unlock()
	if len(ts) == 0 {
		return nil, nil
	}
	traffic, err := c.TrafficStatus(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading pluto's traffic status: %w", err)
	}
	st, err := c.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading pluto's status: %w", err)
	}
	var out []cable.Status
	for _, t := range ts {
		status, msg, sum := TunnelStatus(t.names, traffic, st, refused)
		out = append(out, cable.Status{
			Remote: t.cable.Remote, Status: status, Message: msg,
			UsingIP: t.cable.UseIP, UsingNAT: t.cable.UseNAT,
			RxBytes: sum.InBytes, TxBytes: sum.OutBytes,
		})
	}
	return out, nil
}

func (d *Driver) usable() error {
	switch {
	case d.closed:
		return errors.New("the libreswan driver is closed")
	case d.pluto == nil:
		return errors.New("the libreswan driver is not initialised")
	}
	return nil
}

// Close implements cable.Driver: it removes the routes and shuts pluto down, which
// deletes its SAs and policies. Closing again does nothing more.
func (d *Driver) Close(ctx context.Context) error {
	d.mu.Lock()
	d.closed = true
	d.tunnels = map[string]tunnel{}
	stop, done := d.stop, d.done
	d.stop, d.done = nil, nil
	d.mu.Unlock()
	var errs []error
	if err := d.routes.Flush(ctx); err != nil {
		errs = append(errs, fmt.Errorf("removing the cable routes: %w", err))
	}
	if stop != nil {
		stop()
		select {
		case err := <-done:
			if err != nil {
				errs = append(errs, fmt.Errorf("shutting pluto down: %w", err))
			}
		case <-time.After(shutdownTimeout):
			errs = append(errs, errors.New("pluto did not shut down in time"))
		}
	}
	return errors.Join(errs...)
}

// Cleanup removes the cable drivers' routes and rules and every IPsec SA and
// policy from h's namespace.
func Cleanup(ctx context.Context, h *cable.Host) error {
	var errs []error
	if err := route.New(h.Netlink, route.ProtocolCable).Flush(ctx); err != nil {
		errs = append(errs, fmt.Errorf("removing the cable routes: %w", err))
	}
	if err := h.Netlink.XfrmPolicyFlush(); err != nil {
		errs = append(errs, fmt.Errorf("flushing the IPsec policies: %w", err))
	}
	if err := h.Netlink.XfrmStateFlush(netlink.Proto(0)); err != nil {
		errs = append(errs, fmt.Errorf("flushing the IPsec SAs: %w", err))
	}
	return errors.Join(errs...)
}
