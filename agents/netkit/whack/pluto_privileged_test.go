//go:build linux

package whack

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"github.com/vishvananda/netlink"

	"github.com/submariner-go/submariner/agents/netkit/netns"
	"github.com/submariner-go/submariner/agents/netkit/netns/netnstest"
)

// TestPrivilegedTwoPlutos runs two real plutos, each supervised in its own network
// namespace with its own run directory, NSS database and secrets file, and drives
// them only through this package: connections are added, routed and initiated
// until "IKE SA established" shows in --status on both sides, bidirectionally and as
// server/client; the Child SA step reports what the kernel said (this kernel has
// no ESP, so it is skipped with that reason); a killed pluto is restarted and its
// connections come back; finally connections are deleted and both plutos shut down.
//
//	+--------------------------------+        veth        +--------------------------------+
//	| west (netns)                   |                    | east (netns)                   |
//	|  eth0 192.0.2.1/24             |--------------------|  eth0 192.0.2.2/24             |
//	|  pluto: IKEv2, PSK, UDP 4500   |                    |  pluto: IKEv2, PSK, UDP 4500   |
//	|  cluster1 10.1.0.0/16          |                    |  cluster2 10.2.0.0/16          |
//	+--------------------------------+                    +--------------------------------+
func TestPrivilegedTwoPlutos(t *testing.T) {
	netnstest.RequirePrivileged(t)
	requireLibreswan(t)
	westNS, eastNS := link(t)
	psk := randomPSK(t)
	ctx := logr.NewContext(context.Background(), testr.New(t))

	west := endpoint("cluster1", "192.0.2.1", "10.1.0.0/16")
	east := endpoint("cluster2", "192.0.2.2", "10.2.0.0/16")

	// The tunnel each side's pluto (re)creates whenever it starts.
	var mu sync.Mutex
	tunnels := map[string]*Tunnel{}
	setTunnel := func(side string, tun *Tunnel) { mu.Lock(); tunnels[side] = tun; mu.Unlock() }
	exits := make(chan Exit, 10)
	shutdowns := map[string]func() error{}
	start := func(side string, ns *netns.NS) *Pluto {
		p, err := NewPluto(PlutoConfig{
			Dir: t.TempDir(), Netns: ns.Name, PSK: psk, MinBackoff: 100 * time.Millisecond,
			OnStart: func(ctx context.Context, c *Client) error {
				mu.Lock()
				tun := tunnels[side]
				mu.Unlock()
				if tun == nil {
					return nil
				}
				return c.Connect(ctx, *tun)
			},
			OnExit: func(e Exit) {
				if side == "west" {
					exits <- e
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- p.Run(runCtx) }()
		var once sync.Once
		var runErr error
		shutdown := func() error {
			once.Do(func() { stop(); runErr = <-done })
			return runErr
		}
		shutdowns[side] = shutdown
		t.Cleanup(func() {
			if err := shutdown(); err != nil {
				t.Errorf("%s pluto: %v", side, err)
			}
		})
		waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := p.WaitReady(waitCtx); err != nil {
			t.Fatalf("%s pluto: %v", side, err)
		}
		return p
	}
	westPluto, eastPluto := start("west", westNS), start("east", eastNS)

	bidi := func(local, remote Endpoint) Tunnel {
		return Tunnel{Local: local, Remote: remote, Mode: ModeBidirectional, ForceEncaps: true}
	}
	westBidi, eastBidi := bidi(west, east), bidi(east, west)

	t.Run("bidirectional IKE SA established", func(t *testing.T) {
		for _, x := range []struct {
			p   *Pluto
			tun Tunnel
		}{{westPluto, westBidi}, {eastPluto, eastBidi}} {
			if err := x.p.Client().Connect(ctx, x.tun); err != nil {
				t.Fatal(err)
			}
		}
		for _, x := range []struct {
			p    *Pluto
			conn string
			ids  [2]string
		}{{westPluto, connName(t, westBidi), [2]string{"192.0.2.1", "192.0.2.2"}}, {eastPluto, connName(t, eastBidi), [2]string{"192.0.2.2", "192.0.2.1"}}} {
			st := waitStatus(t, ctx, x.p, "IKE SA established on "+x.conn, func(s *Status) bool { return s.IKEEstablished(x.conn) })
			c, ok := st.Connection(x.conn)
			if !ok || c.Policy != "IKEv2+PSK+ENCRYPT+TUNNEL+UP" || c.Encaps != "yes" || c.OurID != x.ids[0] || c.TheirID != x.ids[1] || c.DPDAction != "hold" {
				t.Errorf("connection %s as pluto reports it: %+v; want IKEv2, PSK, encryption, forced UDP encapsulation, ids %v, DPD hold", x.conn, c, x.ids)
			}
		}
	})

	t.Run("bidirectional Child SA", func(t *testing.T) {
		conn := connName(t, westBidi)
		var kernelErrs []KernelError
		waitStatus(t, ctx, westPluto, "the Child SA to be established or refused by the kernel", func(s *Status) bool {
			kernelErrs = kernelErrors(westPluto, eastPluto)
			return s.ChildEstablished(conn) || len(kernelErrs) > 0
		})
		if len(kernelErrs) == 0 {
			traffic, err := westPluto.Client().TrafficStatus(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if s := Summarize(traffic, conn); !s.Connected {
				t.Errorf("Child SA established but --trafficstatus does not list %s: %+v", conn, traffic)
			}
			return
		}
		var reasons []string
		for _, e := range kernelErrs {
			reasons = append(reasons, e.String())
		}
		probe := "ESP probe: the kernel accepted an ESP SA"
		if err := ProbeESP(westNS.Netlink); err != nil {
			probe = "ESP probe: " + err.Error()
		}
		t.Skipf("skipped: the kernel cannot install the Child SA: %s; %s", strings.Join(reasons, "; "), probe)
	})

	// Server/client: east prefers to be the server and accepts west from any address.
	westClient := Tunnel{Local: west, Remote: east, Mode: ChooseMode(peer(west, false), peer(east, true))}
	eastServer := Tunnel{Local: east, Remote: west, Mode: ChooseMode(peer(east, true), peer(west, false))}
	t.Run("server/client IKE SA established", func(t *testing.T) {
		if westClient.Mode != ModeClient || eastServer.Mode != ModeServer {
			t.Fatalf("modes %s/%s, want client/server", westClient.Mode, eastServer.Mode)
		}
		if err := westPluto.Client().Disconnect(ctx, westBidi); err != nil {
			t.Fatal(err)
		}
		if err := eastPluto.Client().Disconnect(ctx, eastBidi); err != nil {
			t.Fatal(err)
		}
		if err := eastPluto.Client().Connect(ctx, eastServer); err != nil {
			t.Fatal(err)
		}
		if err := westPluto.Client().Connect(ctx, westClient); err != nil {
			t.Fatal(err)
		}
		setTunnel("west", &westClient)
		setTunnel("east", &eastServer)
		waitStatus(t, ctx, westPluto, "IKE SA established as client", func(s *Status) bool { return s.IKEEstablished(connName(t, westClient)) })
		st := waitStatus(t, ctx, eastPluto, "IKE SA established as server", func(s *Status) bool { return s.IKEEstablished(connName(t, eastServer)) })
		if c, _ := st.Connection(connName(t, eastServer)); !strings.Contains(c.Spec, "%any") || c.OurID != "@192.0.2.2-0-0" || c.TheirID != "@192.0.2.1-0-0" {
			t.Errorf("server connection %+v: want a %%any peer and @ identities", c)
		}
	})

	t.Run("restart after pluto dies", func(t *testing.T) {
		pid := westPluto.PID()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		var exit Exit
		select {
		case exit = <-exits:
		case <-time.After(time.Minute):
			t.Fatal("no exit reported for the killed pluto")
		}
		if exit.PID != pid || !exit.Restart || exit.Err == nil {
			t.Errorf("exit report %v: want pid %d, killed, restarting", exit, pid)
		}
		waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		for westPluto.Generation() < 2 {
			if err := westPluto.WaitReady(waitCtx); err != nil {
				t.Fatal(err)
			}
		}
		if westPluto.PID() == pid {
			t.Fatalf("pluto still has the killed pid %d", pid)
		}
		// OnStart added and initiated the client connection again.
		waitStatus(t, ctx, westPluto, "IKE SA established after the restart", func(s *Status) bool { return s.IKEEstablished(connName(t, westClient)) })
	})

	t.Run("delete and shut down", func(t *testing.T) {
		for _, x := range []struct {
			p   *Pluto
			tun Tunnel
		}{{westPluto, westClient}, {eastPluto, eastServer}} {
			if err := x.p.Client().Disconnect(ctx, x.tun); err != nil {
				t.Fatal(err)
			}
			st, err := x.p.Client().Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Connections) != 0 || st.IKESAs != 0 {
				t.Errorf("after Disconnect pluto still has %d connections and %d IKE SAs", len(st.Connections), st.IKESAs)
			}
		}
		pids := []int{westPluto.PID(), eastPluto.PID()}
		for _, side := range []string{"west", "east"} {
			if err := shutdowns[side](); err != nil {
				t.Errorf("shutting down %s's pluto: %v", side, err)
			}
		}
		for i, p := range []*Pluto{westPluto, eastPluto} {
			if alive(pids[i]) || p.PID() != 0 {
				t.Errorf("pluto %d is still running after shutdown", pids[i])
			}
			if _, err := os.Stat(p.CtlSocket()); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("control socket %s left behind (%v)", p.CtlSocket(), err)
			}
		}
	})
}

func TestPrivilegedPlutoBadStart(t *testing.T) {
	netnstest.RequirePrivileged(t)
	requireLibreswan(t)
	p, err := NewPluto(PlutoConfig{Dir: t.TempDir(), PSK: randomPSK(t), ExtraArgs: []string{"--no-such-option"}})
	if err != nil {
		t.Fatal(err)
	}
	err = p.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "pluto exited before it listened") {
		t.Fatalf("Run with a bad option = %v, want a start error with pluto's last words", err)
	}
	if err := p.WaitReady(context.Background()); err == nil {
		t.Error("WaitReady after a failed Run returned nil")
	}

	for _, cfg := range []PlutoConfig{
		{Dir: "relative", PSK: "x"},
		{Dir: "/" + strings.Repeat("d", 120), PSK: "x"},
		{Dir: t.TempDir()},
		{Dir: t.TempDir(), PSK: `a"b`},
	} {
		if _, err := NewPluto(cfg); err == nil {
			t.Errorf("NewPluto(%+v) accepted a bad configuration", cfg)
		}
	}
}

// requireLibreswan skips the test when pluto, whack or NSS's certutil is missing.
func requireLibreswan(t *testing.T) {
	t.Helper()
	for _, p := range []string{"pluto", "whack"} {
		if _, err := LookPath(p); err != nil {
			t.Skip("skipped: " + err.Error())
		}
	}
	if _, err := exec.LookPath("certutil"); err != nil {
		t.Skip("skipped: NSS's certutil is not installed: run `make deps`")
	}
}

// link makes two namespaces joined by a veth, eth0 on both sides.
func link(t *testing.T) (*netns.NS, *netns.NS) {
	t.Helper()
	ctx := context.Background()
	a, b := netnstest.New(t), netnstest.New(t)
	if err := a.Netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "eth0-peer", PeerNamespace: netlink.NsFd(b.Handle())}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Run(ctx, "ip", "link", "set", "eth0-peer", "name", "eth0"); err != nil {
		t.Fatal(err)
	}
	for i, ns := range []*netns.NS{a, b} {
		l, err := ns.Netlink.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(192, 0, 2, byte(i+1)), Mask: net.CIDRMask(24, 32)}}
		if err := ns.Netlink.AddrAdd(l, addr); err != nil {
			t.Fatal(err)
		}
		if err := ns.Netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	return a, b
}

func endpoint(cluster, addr, subnet string) Endpoint {
	a := netip.MustParseAddr(addr)
	return Endpoint{
		CableName: "submariner-cable-" + cluster + "-" + strings.ReplaceAll(addr, ".", "-"),
		PrivateIP: a, IP: a,
		Subnets: []netip.Prefix{netip.MustParsePrefix(subnet)},
		Port:    DefaultPort,
	}
}

func peer(e Endpoint, preferred bool) Peer {
	return Peer{CableName: e.CableName, PreferredServer: preferred, PreferenceKnown: true}
}

func connName(t *testing.T, tun Tunnel) string {
	t.Helper()
	conns, err := tun.Connections()
	if err != nil || len(conns) != 1 {
		t.Fatalf("tunnel connections: %v (%d)", err, len(conns))
	}
	return conns[0].Name
}

func randomPSK(t *testing.T) string {
	t.Helper()
	b := make([]byte, 48)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// waitStatus polls pluto's --status until cond holds, for at most a minute.
func waitStatus(t *testing.T, ctx context.Context, p *Pluto, what string, cond func(*Status) bool) *Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last *Status
	for {
		st, err := p.Client().Status(ctx)
		if err == nil {
			last = st
			if cond(st) {
				return st
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v; last status: %+v; pluto's last lines:\n%s", what, ctx.Err(), last, strings.Join(lastN(p.Log(), 20), "\n"))
		case <-tick.C:
		}
	}
}

// kernelErrors collects the kernel's refusals from the plutos' logs.
func kernelErrors(ps ...*Pluto) []KernelError {
	var out []KernelError
	for _, p := range ps {
		for _, line := range p.Log() {
			if e, ok := ParseKernelError(line); ok {
				out = append(out, e)
			}
		}
	}
	return out
}
