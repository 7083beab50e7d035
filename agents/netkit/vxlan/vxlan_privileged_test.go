//go:build linux

package vxlan

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"

	"github.com/submariner-go/submariner/agents/netkit/iptables"
	"github.com/submariner-go/submariner/agents/netkit/netns"
	"github.com/submariner-go/submariner/agents/netkit/netns/netnstest"
	"github.com/submariner-go/submariner/agents/netkit/route"
)

// TestPrivilegedApply converges node1's overlay through a series of states, then the
// same states in random order, and demands that `ip -d link`, `ip route show table
// all`, `ip rule`, `bridge fdb` (sorted) and `iptables-save` read the same each time
// a state is reached (but for the interface index of a replaced device); applying a
// state twice must change nothing at all, and what the kernel holds must read back as
// the state applied:
//
//	+---------------------------------------------+
//	| node1 (IPv6 off)                            |
//	|  eth0 192.0.2.11/24 <-veth-> eth0p (no addr) |
//	|  vx-submariner 240.0.2.11/8                 |
//	|  lo 10.1.0.1/32 (the CNI interface's addr)  |
//	|  route agent's iptables                     |
//	+---------------------------------------------+
func TestPrivilegedApply(t *testing.T) {
	netnstest.RequirePrivileged(t)
	requireTools(t)
	ctx := context.Background()
	node := loneUnderlay(t, "192.0.2.11/24")
	// The CNI interface's address, the source of host-network routes.
	if _, err := node.Run(ctx, "ip", "addr", "add", "10.1.0.1/32", "dev", "lo"); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, node)

	logs := &logSink{}
	ctx = logr.NewContext(ctx, funcr.New(logs.add, funcr.Options{}))
	vx := New(node.Netlink, route.ProtocolRouteAgent)
	ipt, err := iptables.NewWriter(iptables.New(iptables.ExecRunner{Netns: node.Name}, iptables.IPv4),
		iptables.Owner{Chains: []iptables.Chain{iptables.SubmarinerPostrouting}})
	if err != nil {
		t.Fatal(err)
	}
	states := testStates(t)
	apply := func(t *testing.T, i int) {
		t.Helper()
		if err := vx.Apply(ctx, states[i].State); err != nil {
			t.Fatalf("state %q: %v", states[i].Name, err)
		}
		if _, err := ipt.Sync(ctx, rulesFor(states[i].State)); err != nil {
			t.Fatalf("state %q: %v", states[i].Name, err)
		}
	}

	// A device of our name left behind with the wrong VNI is replaced, and the log
	// says why.
	if _, err := node.Run(ctx, "ip", "link", "add", DeviceName, "type", "vxlan", "id", "999", "dstport", "4800", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}

	want := make([]string, len(states))
	for i, st := range states {
		apply(t, i)
		got, err := vx.State(ctx, DeviceName)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(st.State.String(), got.String()); diff != "" {
			t.Errorf("state %q: the kernel holds (-want +read back):\n%s", st.Name, diff)
		}
		want[i] = snapshot(t, node)
		apply(t, i)
		if diff := cmp.Diff(want[i], snapshot(t, node)); diff != "" {
			t.Errorf("state %q applied twice (-once +twice):\n%s", st.Name, diff)
		}
	}
	for _, msg := range []string{
		`"msg"="Replacing incompatible device" "device"="vx-submariner" "reason"="VNI 999, want 100; remote invalid IP, want 192.0.2.21; local invalid IP, want 192.0.2.11; learning on, want off"`,
		`"msg"="Replacing incompatible device" "device"="vx-submariner" "reason"="remote 192.0.2.21, want 192.0.2.22"`,
		`"msg"="Setting MTU" "device"="vx-submariner" "mtu"=1350 "was"=1450`,
		`"msg"="Setting MAC address" "device"="vx-submariner" "mac"="02:00:00:00:01:01" "was"="02:53:f0:00:02:0b"`,
		`"msg"="Setting MAC address" "device"="vx-submariner" "mac"="02:53:f0:00:02:0b" "was"="02:00:00:00:01:01"`,
	} {
		if !logs.contains(msg) {
			t.Errorf("log lacks %s; it has:\n%s", msg, logs)
		}
	}

	rng := rand.New(rand.NewPCG(3, 4))
	for n := 0; n < 30; n++ {
		i := rng.IntN(len(states))
		apply(t, i)
		// A replaced device gets a new interface index; nothing else may differ.
		if diff := cmp.Diff(ifindexless(want[i]), ifindexless(snapshot(t, node))); diff != "" {
			t.Fatalf("step %d: state %q reached in random order (-first time +now):\n%s", n, states[i].Name, diff)
		}
	}

	if err := vx.Delete(ctx, DeviceName); err != nil {
		t.Fatal(err)
	}
	if _, err := ipt.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if err := vx.Delete(ctx, DeviceName); err != nil {
		t.Errorf("deleting a device that is gone: %v", err)
	}
	// iptables-nft leaves the nat table it created, empty: tables are shared by
	// every program and not ours to remove.
	after := emptyNAT.ReplaceAllString(snapshot(t, node), "")
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("Delete and Cleanup left something behind (-before +after):\n%s", diff)
	}
}

// TestPrivilegedOwners: the route agent's overlay and the VXLAN cable driver's live
// on one gateway, each owning its routes and rules; applying or deleting one leaves
// the other exactly as it was.
//
//	+---------------------------------+      veth      +----------------+
//	| gw (IPv6 off), eth0 192.0.2.21  |----------------| peer 192.0.2.11|
//	|  vx-submariner (route agent)    |                +----------------+
//	|  vxlan-tunnel (cable driver)    |
//	+---------------------------------+
func TestPrivilegedOwners(t *testing.T) {
	netnstest.RequirePrivileged(t)
	requireTools(t)
	ctx := context.Background()
	gw, _ := underlay(t, "192.0.2.21/24", "192.0.2.11/24")
	agent := New(gw.Netlink, route.ProtocolRouteAgent)
	cable := New(gw.Netlink, route.ProtocolCable)

	agentState := testStates(t)[3].State // gateway mode
	agentState.Device.Local = addr4("192.0.2.21")
	agentState.Device.VTEP = vtep(t, "192.0.2.21", VTEPFirstOctet)
	agentState.FDB = []netip.Addr{addr4("192.0.2.11")}
	for i := range agentState.Routes {
		agentState.Routes[i].Src = netip.Addr{}
	}
	cs := cableState(t)
	cs.Routes = append(cs.Routes[:0:0], cs.Routes...)
	for i := range cs.Routes {
		cs.Routes[i].Src = netip.Addr{} // 10.1.0.1 is not an address of this namespace
	}

	for _, step := range []struct {
		c *Netlink
		s State
	}{{agent, agentState}, {cable, cs}, {agent, agentState}} {
		if err := step.c.Apply(ctx, step.s); err != nil {
			t.Fatal(err)
		}
	}
	check := func(c *Netlink, name string, want State) {
		t.Helper()
		got, err := c.State(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want.String(), got.String()); diff != "" {
			t.Errorf("%s (-want +read back):\n%s", name, diff)
		}
	}
	check(agent, DeviceName, agentState)
	check(cable, CableDeviceName, cs)

	if err := agent.Delete(ctx, DeviceName); err != nil {
		t.Fatal(err)
	}
	check(cable, CableDeviceName, cs)
	if err := cable.Delete(ctx, CableDeviceName); err != nil {
		t.Fatal(err)
	}
	out, err := gw.Command(ctx, "ip", "-br", "link", "show", "type", "vxlan").Output()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("vxlan devices left: %q (%v)", out, err)
	}

	// A device of the cable's name that is not VXLAN is not ours to delete.
	if err := gw.Netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: CableDeviceName}}); err != nil {
		t.Fatal(err)
	}
	if err := cable.Delete(ctx, CableDeviceName); err == nil || !strings.Contains(err.Error(), "it is a bridge device, not one of ours") {
		t.Errorf("Delete of a bridge named %s = %v, want a refusal", CableDeviceName, err)
	}
}

// TestPrivilegedOverlayCarriesTraffic: a node reaches a remote cluster's address
// through vx-submariner to the active gateway, which floods back to the node.
//
//	+----------------------------------+   veth (UDP 4800)   +----------------------------------+
//	| node1: eth0 192.0.2.11/24        |---------------------| gw1: eth0 192.0.2.21/24          |
//	|  vx-submariner 240.0.2.11/8      |                     |  vx-submariner 240.0.2.21/8      |
//	|   remote 192.0.2.21              |                     |   fdb 00:..:00 dst 192.0.2.11    |
//	|  10.2.0.0/16 via 240.0.2.21      |                     |  lo 10.2.0.1/32 (stands in for   |
//	|  TCP client ------------------------------------------->  cluster2 behind the gateway)   |
//	+----------------------------------+                     +----------------------------------+
func TestPrivilegedOverlayCarriesTraffic(t *testing.T) {
	netnstest.RequirePrivileged(t)
	requireTools(t)
	ctx := context.Background()
	node, gw := underlay(t, "192.0.2.11/24", "192.0.2.21/24")

	nodeState := testStates(t)[0].State
	gwState := State{
		Device: Device{Name: DeviceName, VNI: VNI, Port: Port, VTEP: vtep(t, "192.0.2.21", VTEPFirstOctet), MTU: MTU(1500), Local: addr4("192.0.2.21"), Parent: "eth0"},
		FDB:    []netip.Addr{addr4("192.0.2.11")},
	}
	if err := New(node.Netlink, route.ProtocolRouteAgent).Apply(ctx, nodeState); err != nil {
		t.Fatal(err)
	}
	if err := New(gw.Netlink, route.ProtocolRouteAgent).Apply(ctx, gwState); err != nil {
		t.Fatal(err)
	}
	if _, err := gw.Run(ctx, "ip", "addr", "add", "10.2.0.1/32", "dev", "lo"); err != nil {
		t.Fatal(err)
	}

	var ln net.Listener
	if err := gw.Do(func() (err error) { ln, err = net.Listen("tcp", "10.2.0.1:0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			peer <- err.Error()
			return
		}
		peer <- c.RemoteAddr().(*net.TCPAddr).IP.String()
		_, _ = io.WriteString(c, "hello from cluster2")
		c.Close()
	}()
	var got []byte
	if err := node.Do(func() error {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return err
		}
		defer c.Close()
		got, err = io.ReadAll(c)
		return err
	}); err != nil {
		t.Fatalf("connecting from node1 to %s through the overlay: %v", ln.Addr(), err)
	}
	if string(got) != "hello from cluster2" {
		t.Errorf("read %q, want the gateway's greeting", got)
	}
	if from := <-peer; from != "240.0.2.11" {
		t.Errorf("the gateway saw the connection come from %s, want node1's VTEP 240.0.2.11 (so it crossed the overlay)", from)
	}
}

// underlay makes two namespaces joined by a veth named eth0 on both sides, with IPv6
// off (its link-local addresses would make route listings depend on timing).
func underlay(t *testing.T, a, b string) (*netns.NS, *netns.NS) {
	t.Helper()
	ctx := context.Background()
	na, nb := netnstest.New(t), netnstest.New(t)
	for _, ns := range []*netns.NS{na, nb} {
		if _, err := ns.Run(ctx, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"); err != nil {
			t.Fatal(err)
		}
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0", HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 0xa}},
		PeerName: "eth0-peer", PeerNamespace: netlink.NsFd(nb.Handle()), PeerHardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 0xb}}
	if err := na.Netlink.LinkAdd(veth); err != nil {
		t.Fatalf("adding veth: %v", err)
	}
	if _, err := nb.Run(ctx, "ip", "link", "set", "eth0-peer", "name", "eth0"); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		ns   *netns.NS
		cidr string
	}{{na, a}, {nb, b}} {
		if _, err := x.ns.Run(ctx, "ip", "addr", "add", x.cidr, "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
		if _, err := x.ns.Run(ctx, "ip", "link", "set", "eth0", "up"); err != nil {
			t.Fatal(err)
		}
	}
	return na, nb
}

// loneUnderlay makes a namespace whose eth0 is one end of a veth whose other end
// (eth0p) stays in the same namespace: an underlay whose `ip -d link` output names
// no other namespace.
func loneUnderlay(t *testing.T, cidr string) *netns.NS {
	t.Helper()
	ctx := context.Background()
	ns := netnstest.New(t)
	for _, cmd := range [][]string{
		{"sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"},
		{"ip", "link", "add", "eth0", "address", "02:00:00:00:00:0a", "type", "veth", "peer", "name", "eth0p", "address", "02:00:00:00:00:0b"},
		{"ip", "addr", "add", cidr, "dev", "eth0"},
		{"ip", "link", "set", "eth0p", "up"},
		{"ip", "link", "set", "eth0", "up"},
	} {
		if _, err := ns.Run(ctx, cmd[0], cmd[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	return ns
}

// rulesFor is a stand-in for the route agent's iptables plan: accept traffic to
// every remote CIDR routed in s.
func rulesFor(s State) *iptables.Ruleset {
	rs := iptables.NewRuleset()
	rs.Jump(iptables.Jump{Table: iptables.TableNAT, From: iptables.ChainPostrouting, To: iptables.SubmarinerPostrouting})
	seen := map[netip.Prefix]bool{}
	for _, r := range s.Routes {
		if !seen[r.Dst] {
			seen[r.Dst] = true
			rs.Rule(iptables.TableNAT, iptables.SubmarinerPostrouting, "-s", "10.1.0.0/16", "-d", r.Dst.String(), "-j", "ACCEPT")
		}
	}
	return rs
}

var (
	countersRE = regexp.MustCompile(`\[\d+:\d+\]`)
	ifindexRE  = regexp.MustCompile(`(?m)^\d+: `)
	emptyNAT   = regexp.MustCompile(`\*nat\n(:[A-Z]+ ACCEPT \[0:0\]\n)+COMMIT\n`)
)

// snapshot is the namespace's network state as the tools print it.
func snapshot(t *testing.T, ns *netns.NS) string {
	t.Helper()
	var b strings.Builder
	for _, cmd := range [][]string{
		{"ip", "-d", "link", "show"},
		{"ip", "route", "show", "table", "all"},
		{"ip", "rule", "show"},
		{"bridge", "fdb", "show"},
		{"iptables-save"},
	} {
		// Standard output only: iproute2 may complain on standard error about
		// other programs' namespaces it meets while naming a peer's namespace.
		out, err := ns.Command(context.Background(), cmd[0], cmd[1:]...).Output()
		if err != nil {
			t.Fatalf("%s in %s: %v", strings.Join(cmd, " "), ns.Name, err)
		}
		fmt.Fprintf(&b, "$ %s\n", strings.Join(cmd, " "))
		lines := strings.Split(string(out), "\n")
		if cmd[0] == "bridge" {
			// The kernel lists a device's flood destinations in the order they
			// were added; the set is what forwarding depends on.
			slices.Sort(lines)
		}
		for _, l := range lines {
			if strings.HasPrefix(l, "#") {
				continue // iptables-save's dated comments
			}
			b.WriteString(countersRE.ReplaceAllString(l, "[0:0]") + "\n")
		}
	}
	return b.String()
}

func ifindexless(s string) string { return ifindexRE.ReplaceAllString(s, "N: ") }

// logSink collects funcr output.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) add(prefix, args string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, args)
}

func (l *logSink) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// requireTools skips the test when a program it runs is missing.
func requireTools(t *testing.T) {
	t.Helper()
	for _, p := range []string{"iptables-restore", "iptables-save", "bridge", "sysctl"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("skipped: %s is not installed: run `make deps`", p)
		}
	}
}
