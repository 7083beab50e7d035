// Package cable is the seam between the gateway engine and the cable drivers that
// carry traffic between the active gateways of the clusters: libreswan (IPsec
// driven through whack), wireguard (a kernel or embedded userspace WireGuard
// device) and vxlan (unencrypted). The engine owns the policy (which remote
// Endpoints get a tunnel, which one of a cluster wins, what is invalid); a Driver
// owns the mechanism (devices, keys, pluto, and the routes that send the remote
// subnets into its tunnels).
//
// Drivers register themselves from their package's init with Register, the way
// CoreDNS plugins and flannel backends do; the engine creates the configured one
// with New and never imports a concrete driver. The gateway binary imports the
// three driver packages for their registration.
//
// Every driver owns, on the gateway node, the routes that send remote subnets into
// its tunnels: table 100 (route.TableCable), looked up by the rule of priority 100,
// every route marked with route.ProtocolCable (241) and leaving from the CNI
// interface's address, so that host-network traffic is routable too. The route agent
// never touches them, and drivers never touch the route agent's routes (protocol
// 240) or iptables chains.
package cable

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/go-logr/logr"

	"github.com/submariner-go/submariner/agents/netkit/route"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Driver keeps the tunnels from the local gateway to the remote clusters' gateways.
//
// The engine calls Init once, on every gateway of the cluster (passive ones too, so
// that a takeover only has to connect), then Connect and Disconnect as remote
// Endpoints come and go while the gateway is active. Losing leadership does not tear
// the driver down; Close does, when the process stops. All methods may be called
// from several goroutines.
type Driver interface {
	// Backend names the driver.
	Backend() submv1.Backend
	// Init prepares the driver: devices, keys, pluto. It must be called, and
	// succeed, before the other methods; it may be called again after a failure.
	Init(ctx context.Context) error
	// BackendConfig returns what the local Endpoint must publish for the peers of
	// this driver (the WireGuard publicKey, for instance), merged into the
	// Endpoint's backend_config. Valid after Init.
	BackendConfig() map[string]string
	// Connect sets up, or brings up to date, the tunnel to t.Remote. Tunnels are
	// keyed by the remote cable name; connecting a cable that exists with other
	// parameters replaces it.
	Connect(ctx context.Context, t Tunnel) error
	// Disconnect removes the tunnel to remote. A tunnel that does not exist is not
	// an error.
	Disconnect(ctx context.Context, remote Endpoint) error
	// Connections returns the state of every tunnel, sorted by remote cable name.
	Connections(ctx context.Context) ([]Status, error)
	// Close removes the tunnels and the routes, and stops what Init started
	// (devices, pluto). The driver cannot be used afterwards.
	Close(ctx context.Context) error
}

// Factory creates a driver and cleans up after any driver of its kind.
type Factory struct {
	// New returns an uninitialised driver, or an error naming the configuration
	// value that is wrong.
	New func(Config) (Driver, error)
	// Cleanup removes everything a driver of this kind may have left on the node
	// (uninstall mode): devices, routes, rules, kernel IPsec state. It needs no
	// driver and no configuration beyond the host; nothing to remove is not an
	// error.
	Cleanup func(ctx context.Context, h *Host) error
}

// Config is what every driver is created with. Driver-specific fields say which
// driver reads them.
type Config struct {
	// Host is where the driver acts: the gateway's network namespace (with
	// hostNetwork, the node's).
	Host *Host
	// Log receives the driver's logs.
	Log logr.Logger
	// Port is the local tunnel port (backend_config udp-port), UDP.
	Port uint16
	// PSK is the clusterset's pre-shared key as the join Secret holds it; nil when
	// none is configured. Libreswan authenticates with it; WireGuard derives its
	// peers' preshared key from it.
	PSK []byte
	// RouteSrc is the address that host-network traffic to remote clusters leaves
	// from: the CNI interface's address. Invalid leaves the kernel to choose.
	RouteSrc netip.Addr
	// LocalIP is the gateway's private IP, the underlay address its tunnels use.
	LocalIP netip.Addr

	// StateDir is the libreswan driver's directory for pluto (run/, nss/,
	// ipsec.secrets). Absolute.
	StateDir string
	// Debug turns on pluto's debug logging (libreswan).
	Debug bool
	// WireGuardMode chooses the WireGuard device: "kernel", "userspace" or "auto"
	// (kernel when the kernel supports it, else userspace).
	WireGuardMode string
	// WireGuardSocketDir is where the userspace WireGuard device serves its UAPI
	// socket (<dir>/<device>.sock) for wg(8) and wgctrl; empty means
	// /var/run/wireguard.
	WireGuardSocketDir string
}

// Tunnel is the tunnel from the local gateway to a remote one.
type Tunnel struct {
	Local, Remote Endpoint
	// UseIP is the remote address the tunnel goes to: the remote's public IP when
	// NAT is involved, else its private IP.
	UseIP netip.Addr
	// UseNAT says that NAT lies on the path: IPsec encapsulates ESP in UDP.
	UseNAT bool
}

// Equal reports whether two tunnels have the same parameters. The local side's
// health-check IP, public IP and hostname are not parameters of a tunnel: when
// they change, the tunnels stay as they are.
func (t Tunnel) Equal(o Tunnel) bool {
	local := func(e Endpoint) Endpoint {
		e.HealthCheckIP, e.PublicIP, e.Hostname = netip.Addr{}, netip.Addr{}, ""
		return e
	}
	return local(t.Local).Equal(local(o.Local)) && t.Remote.Equal(o.Remote) && t.UseIP == o.UseIP && t.UseNAT == o.UseNAT
}

// String describes the tunnel for logs.
func (t Tunnel) String() string {
	nat := ""
	if t.UseNAT {
		nat = " (NAT)"
	}
	return fmt.Sprintf("%s -> %s at %s%s", t.Local.CableName, t.Remote.CableName, t.UseIP, nat)
}

// Status is the state of one tunnel as its driver sees it.
type Status struct {
	// Remote is the tunnel's remote Endpoint.
	Remote Endpoint
	// Status is connected, connecting or error.
	Status submv1.ConnectionStatus
	// Message says why the tunnel is not connected, or what it is doing.
	Message string
	// UsingIP and UsingNAT are the tunnel's remote address and NAT flag.
	UsingIP  netip.Addr
	UsingNAT bool
	// RxBytes and TxBytes count the traffic through the tunnel, when the driver
	// knows them.
	RxBytes, TxBytes uint64
}

// TunnelRoutes returns the routes that send the remote subnets of tunnels into
// them, in TableCable, and the rule that looks the table up (none without
// tunnels): each remote subnet gets the route that via returns for its tunnel.
func TunnelRoutes(tunnels []Tunnel, via func(Tunnel, netip.Prefix) route.Route) route.State {
	var st route.State
	for _, t := range tunnels {
		for _, s := range t.Remote.Subnets {
			r := via(t, s)
			r.Dst = s
			r.Table = route.TableCable
			st.Routes = append(st.Routes, r)
		}
	}
	if len(st.Routes) > 0 {
		st.Rules = []route.Rule{{Priority: route.TableCable, Table: route.TableCable}}
	}
	return st
}

// SortedTunnels returns the values of m sorted by remote cable name.
func SortedTunnels[M ~map[string]V, V any](m M, tunnel func(V) Tunnel) []Tunnel {
	out := make([]Tunnel, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, tunnel(m[k]))
	}
	return out
}

var (
	registryMu sync.RWMutex
	registry   = map[submv1.Backend]Factory{}
)

// Register makes a driver available under its backend name. It is called from the
// driver package's init; registering a name twice panics, as a programming error.
func Register(b submv1.Backend, f Factory) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if f.New == nil || f.Cleanup == nil {
		panic(fmt.Sprintf("cable: driver %s registered without New or Cleanup", b))
	}
	if _, ok := registry[b]; ok {
		panic(fmt.Sprintf("cable: driver %s registered twice", b))
	}
	registry[b] = f
}

// Registered returns the names of the registered drivers, sorted.
func Registered() []submv1.Backend {
	registryMu.RLock()
	defer registryMu.RUnlock()
	return slices.Sorted(maps.Keys(registry))
}

// New creates the driver named b, uninitialised. An unknown name is an error that
// lists the registered drivers.
func New(b submv1.Backend, cfg Config) (Driver, error) {
	registryMu.RLock()
	f, ok := registry[b]
	registryMu.RUnlock()
	if !ok {
		return nil, unknownDriver(string(b))
	}
	if cfg.Host == nil {
		return nil, fmt.Errorf("creating cable driver %s: no host to act on", b)
	}
	d, err := f.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating cable driver %s: %w", b, err)
	}
	return d, nil
}

// ParseBackend returns the registered driver named s, or an error that names s and
// lists the registered drivers.
func ParseBackend(s string) (submv1.Backend, error) {
	registryMu.RLock()
	_, ok := registry[submv1.Backend(s)]
	registryMu.RUnlock()
	if !ok {
		return "", unknownDriver(s)
	}
	return submv1.Backend(s), nil
}

func unknownDriver(s string) error {
	var names []string
	for _, b := range Registered() {
		names = append(names, string(b))
	}
	if len(names) == 0 {
		return fmt.Errorf("unknown cable driver %q: no cable driver is built into this binary", s)
	}
	return fmt.Errorf("unknown cable driver %q: use one of %s", s, strings.Join(names, ", "))
}

// Cleanup runs the Cleanup of every registered driver, so that uninstalling
// removes what any driver left, whichever one was configured. Every cleanup runs;
// their errors are returned together.
func Cleanup(ctx context.Context, h *Host) error {
	var errs []string
	for _, b := range Registered() {
		registryMu.RLock()
		f := registry[b]
		registryMu.RUnlock()
		if err := f.Cleanup(ctx, h); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", b, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("cleaning up the cable drivers: %s", strings.Join(errs, "; "))
	}
	return nil
}
