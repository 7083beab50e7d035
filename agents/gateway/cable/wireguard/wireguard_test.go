//go:build linux

package wireguard

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/conn/bindtest"
	"golang.zx2c4.com/wireguard/tun/tuntest"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/submariner-go/submariner/agents/gateway/cable"
	"github.com/submariner-go/submariner/agents/netkit/route"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Test address plan (keep in sync across the gateway's packages):
//   cluster1 pods 10.1.0.0/16, services 100.1.0.0/16; cluster2 pods 10.2.0.0/16,
//   services 100.2.0.0/16; gateway underlay 198.51.100.0/24, public 203.0.113.0/24

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", name, diff)
	}
}

func key(t *testing.T, b byte) wgtypes.Key {
	t.Helper()
	var k wgtypes.Key
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

func TestRenderUAPI(t *testing.T) {
	priv, psk := key(t, 1), key(t, 100)
	port, mark := 4500, 0
	keepalive := 10 * time.Second
	cfg := wgtypes.Config{
		PrivateKey: &priv, ListenPort: &port, FirewallMark: &mark, ReplacePeers: true,
		Peers: []wgtypes.PeerConfig{
			{
				PublicKey: key(t, 50), PresharedKey: &psk,
				Endpoint:                    &net.UDPAddr{IP: net.IPv4(198, 51, 100, 2), Port: 4500},
				PersistentKeepaliveInterval: &keepalive, ReplaceAllowedIPs: true,
				AllowedIPs: []net.IPNet{
					{IP: net.IPv4(100, 2, 0, 0).To4(), Mask: net.CIDRMask(16, 32)},
					{IP: net.IPv4(10, 2, 0, 0).To4(), Mask: net.CIDRMask(16, 32)},
				},
			},
			{PublicKey: key(t, 60), UpdateOnly: true, Endpoint: &net.UDPAddr{IP: net.IPv4(203, 0, 113, 3), Port: 4501}},
			{PublicKey: key(t, 70), Remove: true, PresharedKey: &psk},
		},
	}
	golden(t, "set.golden", RenderUAPI(cfg))
}

func TestParseUAPI(t *testing.T) {
	in, err := os.ReadFile(filepath.Join("testdata", "get.txt"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := ParseUAPI(DeviceName, string(in))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	describeDevice(&b, d)
	golden(t, "get.golden", b.String())

	for _, tc := range []struct{ in, err string }{
		{"listen_port=x\n", `UAPI line 1 "listen_port=x": strconv.Atoi: parsing "x": invalid syntax`},
		{"endpoint=198.51.100.2:4500\n", `UAPI line 1 "endpoint=198.51.100.2:4500": peer key "endpoint" before any public_key`},
		{"private_key=zz\n", `UAPI line 1 "private_key=zz": key is not hexadecimal: encoding/hex: invalid byte: U+007A 'z'`},
		{"errno=22\n", "the device answered errno=22"},
		{"nonsense\n", `UAPI line 1 "nonsense" is not key=value`},
	} {
		if _, err := ParseUAPI(DeviceName, tc.in); err == nil || err.Error() != tc.err {
			t.Errorf("ParseUAPI(%q) = %v, want %s", tc.in, err, tc.err)
		}
	}
}

// describeDevice renders what the driver reads from a device, for golden files.
func describeDevice(b *strings.Builder, d *wgtypes.Device) {
	b.WriteString("device " + d.Name + " (" + d.Type.String() + ") public key " + d.PublicKey.String() + " port " + strconv.Itoa(d.ListenPort) + "\n")
	for _, p := range d.Peers {
		var ips []string
		for _, a := range p.AllowedIPs {
			ips = append(ips, a.String())
		}
		hs := "never"
		if !p.LastHandshakeTime.IsZero() {
			hs = p.LastHandshakeTime.UTC().Format(time.RFC3339Nano)
		}
		b.WriteString("  peer " + p.PublicKey.String() + " endpoint " + p.Endpoint.String() + " psk " + p.PresharedKey.String() +
			" keepalive " + p.PersistentKeepaliveInterval.String() + " allowed " + strings.Join(ips, ",") +
			" handshake " + hs + " rx " + strconv.FormatInt(p.ReceiveBytes, 10) + " tx " + strconv.FormatInt(p.TransmitBytes, 10) + "\n")
	}
}

func TestPeerStatus(t *testing.T) {
	since := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	ep := &net.UDPAddr{IP: net.IPv4(198, 51, 100, 2), Port: 4500}
	for _, tc := range []struct {
		name    string
		now     time.Time
		peer    *wgtypes.Peer
		status  submv1.ConnectionStatus
		message string
	}{
		{name: "no peer", now: since, status: submv1.ConnError, message: "the WireGuard device has no peer for this tunnel"},
		{name: "new peer, no handshake yet", now: since.Add(time.Minute), peer: &wgtypes.Peer{Endpoint: ep}, status: submv1.Connecting, message: "waiting for the first handshake"},
		{
			name: "no handshake within the timeout", now: since.Add(HandshakeTimeout), peer: &wgtypes.Peer{Endpoint: ep}, status: submv1.ConnError,
			message: "no handshake with 198.51.100.2:4500 within 2m10s: check that the remote gateway's UDP port is reachable and that both sides use the clusterset's pre-shared key",
		},
		{name: "recent handshake", now: since.Add(time.Hour), peer: &wgtypes.Peer{Endpoint: ep, LastHandshakeTime: since.Add(time.Hour - 2*time.Minute)}, status: submv1.Connected},
		{
			name: "the last handshake is too old", now: since.Add(time.Hour), peer: &wgtypes.Peer{Endpoint: ep, LastHandshakeTime: since.Add(time.Hour - 4*time.Minute)},
			status: submv1.ConnError, message: "the last handshake was 4m0s ago: the remote gateway stopped answering",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, message := PeerStatus(tc.now, since, tc.peer)
			if diff := cmp.Diff([]string{string(tc.status), tc.message}, []string{string(status), message}); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
		})
	}
}

// side is one gateway of the channel test: a driver on a real wireguard-go
// device whose TUN and UDP are Go channels.
type side struct {
	driver *Driver
	tun    *tuntest.ChannelTUN
	routes *route.Fake
	local  cable.Endpoint
}

func newSide(t *testing.T, cluster, ip string, bind conn.Bind, socketDir string) *side {
	t.Helper()
	s := &side{tun: tuntest.NewChannelTUN(), routes: route.NewFake()}
	log := testr.New(t).WithName(cluster)
	d, err := NewWithDevice(cable.Config{
		Log: log, Port: 4500, PSK: []byte("the clusterset's key"),
		LocalIP: netip.MustParseAddr(ip), RouteSrc: netip.MustParseAddr("10." + cluster[len(cluster)-1:] + ".1.1"),
	}, s.routes, func() (Device, error) { return newUserspace(DeviceName, s.tun.TUN(), bind, socketDir, log), nil })
	if err != nil {
		t.Fatal(err)
	}
	s.driver = d
	if err := d.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	n := cluster[len(cluster)-1:]
	s.local = cable.Endpoint{
		ClusterID: cluster, CableName: "submariner-cable-" + cluster + "-" + strings.ReplaceAll(ip, ".", "-"),
		PrivateIP: netip.MustParseAddr(ip), Backend: submv1.BackendWireGuard,
		Subnets:       []netip.Prefix{netip.MustParsePrefix("100." + n + ".0.0/16"), netip.MustParsePrefix("10." + n + ".0.0/16")},
		BackendConfig: d.BackendConfig(),
	}
	return s
}

// tunnel is the tunnel from s to o, whose bind is reached at port.
func (s *side) tunnel(o *side, port uint16) cable.Tunnel {
	remote := o.local
	remote.Port = port
	return cable.Tunnel{Local: s.local, Remote: remote, UseIP: remote.PrivateIP}
}

func (s *side) status(t *testing.T) []string {
	t.Helper()
	sts, err := s.driver.Connections(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, st := range sts {
		out = append(out, st.Remote.ClusterID+" "+string(st.Status)+" "+st.Message)
	}
	return out
}

// TestDriverOverChannels runs the driver of two gateways on real wireguard-go
// devices joined by in-memory channels: peers and routes are configured as
// wanted, a packet through the tunnel completes the handshake and both sides
// report connected, and disconnecting removes the peer and its routes.
func TestDriverOverChannels(t *testing.T) {
	ctx := context.Background()
	binds := bindtest.NewChannelBinds()
	socketDir := t.TempDir()
	a := newSide(t, "cluster1", "198.51.100.1", binds[0], socketDir)
	b := newSide(t, "cluster2", "198.51.100.2", binds[1], "")
	// bindtest routes port 1 from binds[0] to binds[1] and port 2 back.
	ab, ba := a.tunnel(b, 1), b.tunnel(a, 2)
	// The responder's delay runs out when the test says so (below), not on a clock.
	a.driver.responderDelay, b.driver.responderDelay = time.Hour, time.Hour

	if cfg := a.driver.BackendConfig(); cfg[cable.ConfigInterfaceName] != DeviceName || cfg[cable.ConfigPublicKey] != a.driver.key.PublicKey().String() {
		t.Errorf("backend config %v: want the device name and the public key", cfg)
	}
	if err := a.driver.Connect(ctx, ab); err != nil {
		t.Fatal(err)
	}
	// cluster2 does not know cluster1's key yet: no handshake can complete.
	if diff := cmp.Diff([]string{"cluster2 connecting waiting for the first handshake"}, a.status(t)); diff != "" {
		t.Errorf("status while the peer does not know this gateway (-want +got):\n%s", diff)
	}
	if err := b.driver.Connect(ctx, ba); err != nil {
		t.Fatal(err)
	}
	wantRoutes := "route 10.2.0.0/16 dev submariner table 100 src 10.1.1.1\nroute 100.2.0.0/16 dev submariner table 100 src 10.1.1.1\nrule 100: from all lookup 100\n"
	if diff := cmp.Diff(wantRoutes, a.routes.String()); diff != "" {
		t.Errorf("cluster1's routes (-want +got):\n%s", diff)
	}
	dev, err := a.driver.dev.Device()
	if err != nil {
		t.Fatal(err)
	}
	psk := wgtypes.Key(a.driver.psk)
	if len(dev.Peers) != 1 || dev.Peers[0].PublicKey != b.driver.key.PublicKey() || dev.Peers[0].PresharedKey != psk ||
		!cmp.Equal([]string{"100.2.0.0/16", "10.2.0.0/16"}, ipNets(dev.Peers[0].AllowedIPs), sortedStrings) {
		t.Errorf("cluster1's device: %+v", dev)
	}
	// The gateway with the smaller public key keeps its new peer alive (and so
	// initiates) at once, the other one ResponderDelay later.
	initiator, responder := a, b
	if ak, bk := a.driver.key.PublicKey(), b.driver.key.PublicKey(); bytes.Compare(ak[:], bk[:]) > 0 {
		initiator, responder = b, a
	}
	if got := keepalives(t, initiator, responder); got != [2]time.Duration{Keepalive, 0} {
		t.Errorf("keepalives of the initiator and the responder right after connecting: %v, want [%s 0s]", got, Keepalive)
	}

	// A pod of cluster1 pings one of cluster2: the packet crosses the tunnel.
	ping := tuntest.Ping(netip.MustParseAddr("10.2.5.5"), netip.MustParseAddr("10.1.5.5"))
	a.tun.Outbound <- ping
	select {
	case got := <-b.tun.Inbound:
		if !cmp.Equal(ping, got) {
			t.Errorf("cluster2 received %x, want %x", got, ping)
		}
	case <-time.After(time.Minute):
		t.Fatal("the packet never reached cluster2")
	}
	for _, s := range []*side{a, b} {
		other := "cluster2"
		if s == b {
			other = "cluster1"
		}
		if diff := cmp.Diff([]string{other + " connected "}, s.status(t)); diff != "" {
			t.Errorf("status after the handshake (-want +got):\n%s", diff)
		}
	}

	t.Run("the responder turns its keepalive on after the delay", func(t *testing.T) {
		responder.driver.mu.Lock()
		responder.driver.timers[initiator.local.CableName].Reset(0)
		responder.driver.mu.Unlock()
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			return keepalives(t, initiator, responder) == [2]time.Duration{Keepalive, Keepalive}, nil
		})
		if err != nil {
			t.Errorf("keepalives %v, want both %s", keepalives(t, initiator, responder), Keepalive)
		}
	})

	t.Run("the UAPI socket answers wg's get", func(t *testing.T) {
		c, err := net.Dial("unix", filepath.Join(socketDir, DeviceName+".sock"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("get=1\n\n")); err != nil {
			t.Fatal(err)
		}
		var lines []string
		sc := bufio.NewScanner(c)
		for sc.Scan() && sc.Text() != "" {
			lines = append(lines, sc.Text())
		}
		got, err := ParseUAPI(DeviceName, strings.Join(lines, "\n"))
		if err != nil {
			t.Fatal(err)
		}
		if got.PublicKey != a.driver.key.PublicKey() || len(got.Peers) != 1 || got.Peers[0].LastHandshakeTime.IsZero() {
			t.Errorf("the socket reports %+v", got)
		}
	})

	t.Run("peers no tunnel wants are removed", func(t *testing.T) {
		stray := key(t, 9)
		if err := a.driver.dev.Configure(wgtypes.Config{Peers: []wgtypes.PeerConfig{{PublicKey: stray}}}); err != nil {
			t.Fatal(err)
		}
		a.status(t)
		dev, _ := a.driver.dev.Device()
		if len(dev.Peers) != 1 || dev.Peers[0].PublicKey != b.driver.key.PublicKey() {
			t.Errorf("peers after the repair: %+v", dev.Peers)
		}
	})

	t.Run("bad remote keys are refused and leave the tunnel alone", func(t *testing.T) {
		for _, tc := range []struct {
			key, err string
		}{
			{"", "cluster2's Endpoint publishes no WireGuard publicKey in its backend_config: is its gateway using the wireguard cable driver?"},
			{"short", `cluster2's WireGuard publicKey "short" is not a base64 key of 32 bytes`},
			{a.driver.key.PublicKey().String(), "cluster2's WireGuard public key is this gateway's own"},
		} {
			bad := ab
			bad.Remote.BackendConfig = map[string]string{}
			if tc.key != "" {
				bad.Remote.BackendConfig[cable.ConfigPublicKey] = tc.key
			}
			if err := a.driver.Connect(ctx, bad); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Connect with key %q: %v, want %q", tc.key, err, tc.err)
			}
		}
		if diff := cmp.Diff([]string{"cluster2 connected "}, a.status(t)); diff != "" {
			t.Errorf("status (-want +got):\n%s", diff)
		}
	})

	t.Run("disconnect removes the peer and its routes", func(t *testing.T) {
		if err := a.driver.Disconnect(ctx, ab.Remote); err != nil {
			t.Fatal(err)
		}
		dev, _ := a.driver.dev.Device()
		if len(dev.Peers) != 0 || a.routes.String() != "" {
			t.Errorf("after disconnecting: peers %+v, routes %q", dev.Peers, a.routes.String())
		}
		if err := a.driver.Disconnect(ctx, ab.Remote); err != nil {
			t.Errorf("disconnecting again: %v", err)
		}
	})
}

// keepalives returns the persistent keepalive of each side's only peer.
func keepalives(t *testing.T, sides ...*side) [2]time.Duration {
	t.Helper()
	var out [2]time.Duration
	for i, s := range sides {
		dev, err := s.driver.dev.Device()
		if err != nil || len(dev.Peers) != 1 {
			t.Fatalf("reading %s's peers: %v, %+v", s.local.ClusterID, err, dev)
		}
		out[i] = dev.Peers[0].PersistentKeepaliveInterval
	}
	return out
}

func ipNets(ns []net.IPNet) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.String())
	}
	return out
}

var sortedStrings = cmp.Transformer("sorted", func(in []string) []string {
	return slices.Sorted(slices.Values(in))
})

func TestNewNeedsPSK(t *testing.T) {
	_, err := NewWithDevice(cable.Config{LocalIP: netip.MustParseAddr("198.51.100.1"), Port: 4500}, route.NewFake(), nil)
	want := "no pre-shared key: the wireguard cable driver derives its peers' preshared key from the clusterset's; mount the Secret submariner-ipsec-psk (key psk) and point --psk-file (CE_IPSEC_PSK_FILE) at it"
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
}
