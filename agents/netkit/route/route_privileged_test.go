//go:build linux

package route

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/submariner-go/submariner/agents/netkit/netns"
	"github.com/submariner-go/submariner/agents/netkit/netns/netnstest"
)

// TestPrivilegedRoutes converges one owner's routes and rules through a series of
// states among routes and rules of others, which must stay untouched, and checks
// that a foreign route in the way is reported rather than overwritten:
//
//	+------------------------------------------------------------+
//	| node (IPv6 off)                                            |
//	|  eth0 192.0.2.11/24 <-veth-> eth0p 192.0.2.1/24            |
//	|  lo 10.1.0.1/32                                            |
//	|  foreign: 10.9.0.0/16 via 192.0.2.1 (proto boot), rule 200 |
//	+------------------------------------------------------------+
func TestPrivilegedRoutes(t *testing.T) {
	netnstest.RequirePrivileged(t)
	ctx := context.Background()
	ns := netnstest.New(t)
	run(t, ns,
		[]string{"sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"},
		[]string{"ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"},
		[]string{"ip", "addr", "add", "192.0.2.11/24", "dev", "eth0"},
		[]string{"ip", "addr", "add", "192.0.2.1/24", "dev", "eth0p"},
		[]string{"ip", "addr", "add", "10.1.0.1/32", "dev", "lo"},
		[]string{"ip", "link", "set", "eth0", "up"},
		[]string{"ip", "link", "set", "eth0p", "up"},
		[]string{"ip", "route", "add", "10.9.0.0/16", "via", "192.0.2.1", "dev", "eth0"},
		[]string{"ip", "rule", "add", "pref", "200", "lookup", "200"},
	)
	foreign := snapshot(t, ns)
	ours := New(ns.Netlink, ProtocolRouteAgent)

	states := []State{
		{
			Routes: []Route{
				{Dst: p("10.2.0.0/16"), Gw: a("192.0.2.21"), Dev: "eth0"},
				{Dst: p("10.2.0.0/16"), Dev: "eth0", Table: TableHostNetwork, Src: a("10.1.0.1")},
				{Dst: p("100.2.0.0/16"), Dev: "eth0", Table: TableHostNetwork, Src: a("10.1.0.1"), Metric: 10},
			},
			Rules: []Rule{
				{Priority: TableHostNetwork, Table: TableHostNetwork},
				{Priority: 110, Table: TableCable, From: p("10.1.0.0/16"), To: p("10.2.0.0/16")},
				{Priority: 120, Table: TableCable, Mark: 0xc0000, Mask: 0xc0000},
			},
		},
		{ // the gateway moved: same destinations, new next hop and source
			Routes: []Route{
				{Dst: p("10.2.0.0/16"), Gw: a("192.0.2.22"), Dev: "eth0"},
				{Dst: p("10.2.0.0/16"), Dev: "eth0", Table: TableHostNetwork},
			},
			Rules: []Rule{{Priority: TableHostNetwork, Table: TableHostNetwork}},
		},
		{},
	}
	for _, s := range states {
		if err := ours.Apply(ctx, s); err != nil {
			t.Fatal(err)
		}
		got, err := ours.State(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(s.String(), got.String()); diff != "" {
			t.Errorf("read back (-applied +kernel):\n%s", diff)
		}
		once := snapshot(t, ns)
		if err := ours.Apply(ctx, s); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(once, snapshot(t, ns)); diff != "" {
			t.Errorf("applied twice (-once +twice):\n%s", diff)
		}
		if !strings.Contains(once, "10.9.0.0/16 via 192.0.2.1 dev eth0") || !strings.Contains(once, "200:\tfrom all lookup 200") {
			t.Errorf("the foreign route or rule is gone:\n%s", once)
		}
	}
	if diff := cmp.Diff(foreign, snapshot(t, ns)); diff != "" {
		t.Errorf("after the empty state (-before +after):\n%s", diff)
	}

	err := ours.Apply(ctx, State{Routes: []Route{{Dst: p("10.9.0.0/16"), Dev: "eth0"}}})
	if err == nil || !strings.Contains(err.Error(), "exists and is not ours") {
		t.Errorf("Apply over a foreign route = %v, want a conflict error", err)
	}
	if diff := cmp.Diff(foreign, snapshot(t, ns)); diff != "" {
		t.Errorf("the conflicting Apply changed the kernel (-before +after):\n%s", diff)
	}
}

func run(t *testing.T, ns *netns.NS, cmds ...[]string) {
	t.Helper()
	for _, c := range cmds {
		if _, err := ns.Run(context.Background(), c[0], c[1:]...); err != nil {
			t.Fatal(err)
		}
	}
}

func snapshot(t *testing.T, ns *netns.NS) string {
	t.Helper()
	var b strings.Builder
	for _, c := range [][]string{{"ip", "route", "show", "table", "all"}, {"ip", "rule", "show"}} {
		out, err := ns.Command(context.Background(), c[0], c[1:]...).Output()
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		b.WriteString("$ " + strings.Join(c, " ") + "\n" + string(out))
	}
	return b.String()
}
