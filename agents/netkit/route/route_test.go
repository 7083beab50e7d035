package route

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Test address plan: cluster1 (local) pods 10.1.0.0/16, services 100.1.0.0/16;
// cluster2 (remote) pods 10.2.0.0/16, services 100.2.0.0/16; underlay 192.0.2.0/24;
// VTEPs 240.0.2.x.

var (
	p = netip.MustParsePrefix
	a = netip.MustParseAddr
)

// gatewayState is what the route agent on an active gateway wants.
func gatewayState() State {
	return State{
		Routes: []Route{
			{Dst: p("100.2.0.0/16"), Dev: "eth0", Table: TableHostNetwork, Src: a("10.1.0.1")},
			{Dst: p("10.2.0.0/16"), Dev: "eth0", Table: TableHostNetwork, Src: a("10.1.0.1")},
			{Dst: p("10.2.0.0/16"), Gw: a("240.0.2.21"), Dev: "vx-submariner"},
			{Dst: p("10.3.0.0/16"), Gw: a("240.0.2.21"), Dev: "vx-submariner", Metric: 100},
		},
		Rules: []Rule{
			{Priority: TableHostNetwork, Table: TableHostNetwork},
			{Priority: 120, Table: TableCable, From: p("10.1.0.0/16"), To: p("10.2.0.0/16")},
			{Priority: 110, Table: TableCable, Mark: 0xc0000, Mask: 0xc0000},
			{Priority: 130, Table: TableCable, IPv6: true},
		},
	}
}

func TestStateString(t *testing.T) {
	want := strings.TrimLeft(`
route 10.2.0.0/16 via 240.0.2.21 dev vx-submariner table main
route 10.3.0.0/16 via 240.0.2.21 dev vx-submariner table main metric 100
route 10.2.0.0/16 dev eth0 table 150 src 10.1.0.1
route 100.2.0.0/16 dev eth0 table 150 src 10.1.0.1
rule 110: from all fwmark 0xc0000/0xc0000 lookup 100
rule 120: from 10.1.0.0/16 to 10.2.0.0/16 lookup 100
rule 130: from all lookup 100 (ipv6)
rule 150: from all lookup 150
`, "\n")
	if diff := cmp.Diff(want, gatewayState().String()); diff != "" {
		t.Errorf("String() (-want +got):\n%s", diff)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		state State
		want  string
	}{
		{"valid", gatewayState(), ""},
		{"no destination", State{Routes: []Route{{Dev: "eth0"}}}, "no destination"},
		{"host bits", State{Routes: []Route{{Dst: p("10.2.0.1/16"), Dev: "eth0"}}}, "use 10.2.0.0/16"},
		{"no device", State{Routes: []Route{{Dst: p("10.2.0.0/16")}}}, "set Dev"},
		{"mixed families", State{Routes: []Route{{Dst: p("10.2.0.0/16"), Gw: a("2001:db8::1"), Dev: "eth0"}}}, "different IP families"},
		{"duplicate", State{Routes: []Route{
			{Dst: p("10.2.0.0/16"), Dev: "eth0"},
			{Dst: p("10.2.0.0/16"), Dev: "eth1"},
		}}, "same destination, table and metric"},
		{"rule without priority", State{Rules: []Rule{{Table: 150}}}, "set Priority"},
		{"rule without table", State{Rules: []Rule{{Priority: 150}}}, "set Table"},
		{"mark without mask", State{Rules: []Rule{{Priority: 1, Table: 1, Mark: 1}}}, "without a mask"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.state.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.want)
			}
			if err := NewFake().Apply(context.Background(), tc.state); err == nil {
				t.Error("Fake.Apply accepted an invalid state")
			}
		})
	}
}

func TestFake(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	if err := f.Apply(ctx, gatewayState()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(gatewayState().String(), f.String()); diff != "" {
		t.Errorf("Fake.String() (-want +got):\n%s", diff)
	}
	if err := f.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.String(); got != "" || f.Applies() != 2 {
		t.Errorf("after Flush: %q after %d applies, want nothing after 2", got, f.Applies())
	}
}
