package vxlan

// Test address plan (shared by the netkit packages):
//   cluster1 (local) pods 10.1.0.0/16, services 100.1.0.0/16
//   cluster2 (remote) pods 10.2.0.0/16, services 100.2.0.0/16
//   underlay 192.0.2.0/24: node1 .11, node2 .12, gateways .21 and .22
//   vx-submariner VTEPs 240.0.2.x/8; vxlan-tunnel VTEPs 241.0.2.x/8

import (
	"context"
	"flag"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/submariner-go/submariner/agents/netkit/route"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file: %v (run `go test -update` to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got):\n%s", path, diff)
	}
}

var (
	pfx   = netip.MustParsePrefix
	addr4 = netip.MustParseAddr
)

func vtep(t testing.TB, node string, first byte) netip.Prefix {
	t.Helper()
	v, err := VTEP(addr4(node), first)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// remoteRoutes routes cluster2's CIDRs through the overlay to gw's VTEP.
func remoteRoutes(gw netip.Addr) []route.Route {
	return []route.Route{
		{Dst: pfx("10.2.0.0/16"), Gw: gw, Dev: DeviceName},
		{Dst: pfx("100.2.0.0/16"), Gw: gw, Dev: DeviceName},
	}
}

// testStates are route-agent states of node1 (192.0.2.11), in a fixed order.
func testStates(t testing.TB) []struct {
	Name  string
	State State
} {
	node := vtep(t, "192.0.2.11", VTEPFirstOctet)
	base := Device{Name: DeviceName, VNI: VNI, Port: Port, VTEP: node, MTU: MTU(1500), Local: addr4("192.0.2.11"), Parent: "eth0"}
	toGW := func(gw string) Device {
		d := base
		d.Remote = addr4(gw)
		return d
	}
	gw1, gw2 := vtep(t, "192.0.2.21", VTEPFirstOctet).Addr(), vtep(t, "192.0.2.22", VTEPFirstOctet).Addr()
	return []struct {
		Name  string
		State State
	}{
		{"non-gateway, active gateway gw1", State{Device: toGW("192.0.2.21"), Routes: remoteRoutes(gw1)}},
		{"non-gateway, failed over to gw2", State{Device: toGW("192.0.2.22"), Routes: remoteRoutes(gw2)}},
		{"non-gateway, smaller underlay MTU", func() State {
			d := toGW("192.0.2.22")
			d.MTU = MTU(1400)
			return State{Device: d, Routes: remoteRoutes(gw2)}
		}()},
		{"gateway", State{
			Device: base,
			FDB:    []netip.Addr{addr4("192.0.2.12"), addr4("192.0.2.13")},
			Routes: []route.Route{
				{Dst: pfx("10.2.0.0/16"), Dev: "eth0", Table: route.TableHostNetwork, Src: addr4("10.1.0.1")},
				{Dst: pfx("100.2.0.0/16"), Dev: "eth0", Table: route.TableHostNetwork, Src: addr4("10.1.0.1")},
			},
			Rules: []route.Rule{{Priority: route.TableHostNetwork, Table: route.TableHostNetwork}},
		}},
		{"gateway, administrator's MAC", func() State {
			d := base
			d.MAC = net.HardwareAddr{0x02, 0, 0, 0, 0x01, 0x01}
			return State{Device: d, FDB: []netip.Addr{addr4("192.0.2.12"), addr4("192.0.2.13")}}
		}()},
		{"gateway, one node gone", State{
			Device: base,
			FDB:    []netip.Addr{addr4("192.0.2.13")},
			Routes: []route.Route{
				{Dst: pfx("10.2.0.0/16"), Dev: "eth0", Table: route.TableHostNetwork, Src: addr4("10.1.0.1")},
			},
			Rules: []route.Rule{{Priority: route.TableHostNetwork, Table: route.TableHostNetwork}},
		}},
	}
}

// cableState is the VXLAN cable driver's state on gateway 192.0.2.21 with one remote
// gateway (192.0.2.31, cluster2).
func cableState(t testing.TB) State {
	remote := vtep(t, "192.0.2.31", CableVTEPFirstOctet).Addr()
	return State{
		Device: Device{Name: CableDeviceName, VNI: CableVNI, Port: 4500, VTEP: vtep(t, "192.0.2.21", CableVTEPFirstOctet), MTU: MTU(1500)},
		FDB:    []netip.Addr{addr4("192.0.2.31")},
		Routes: []route.Route{
			{Dst: pfx("10.2.0.0/16"), Gw: remote, Dev: CableDeviceName, Table: route.TableCable, Src: addr4("10.1.0.1")},
			{Dst: pfx("100.2.0.0/16"), Gw: remote, Dev: CableDeviceName, Table: route.TableCable, Src: addr4("10.1.0.1")},
		},
		Rules: []route.Rule{{Priority: route.TableCable, Table: route.TableCable}},
	}
}

func TestStateStrings(t *testing.T) {
	var b strings.Builder
	for _, st := range testStates(t) {
		if err := st.State.Validate(); err != nil {
			t.Fatalf("state %q: %v", st.Name, err)
		}
		b.WriteString("# " + st.Name + "\n" + st.State.String() + "\n")
	}
	cs := cableState(t)
	b.WriteString("# cable\n" + cs.String())
	golden(t, "states.golden", b.String())
}

func TestHelpers(t *testing.T) {
	if got, want := vtep(t, "192.168.1.100", VTEPFirstOctet), pfx("240.168.1.100/8"); got != want {
		t.Errorf("VTEP(192.168.1.100, 240) = %s, want %s", got, want)
	}
	if _, err := VTEP(addr4("2001:db8::1"), VTEPFirstOctet); err == nil || !strings.Contains(err.Error(), "not IPv4") {
		t.Errorf("VTEP of an IPv6 address = %v, want a not-IPv4 error", err)
	}
	if got := MTU(1500); got != 1450 {
		t.Errorf("MTU(1500) = %d, want 1450", got)
	}
	if got := MSS(1500, MSSOverheadIPsec); got != 1380 {
		t.Errorf("MSS(1500, IPsec) = %d, want 1380", got)
	}
	if got, want := MAC(addr4("240.0.2.11")).String(), "02:53:f0:00:02:0b"; got != want {
		t.Errorf("MAC(240.0.2.11) = %s, want %s", got, want)
	}
}

func TestValidate(t *testing.T) {
	good := testStates(t)[0].State
	for _, tc := range []struct {
		name   string
		mutate func(*State)
		want   string
	}{
		{"no name", func(s *State) { s.Device.Name = "" }, "no name"},
		{"long name", func(s *State) { s.Device.Name = "vx-submariner-too-long" }, "not a valid interface name"},
		{"VNI", func(s *State) { s.Device.VNI = 1 << 24 }, "VNI 16777216 is out of range"},
		{"port", func(s *State) { s.Device.Port = 0 }, "no UDP port"},
		{"VTEP", func(s *State) { s.Device.VTEP = netip.Prefix{} }, "is not an IPv4 prefix"},
		{"MTU", func(s *State) { s.Device.MTU = 20 }, "MTU 20 is out of range"},
		{"remote family", func(s *State) { s.Device.Remote = addr4("2001:db8::1") }, "must be IPv4"},
		{"multicast MAC", func(s *State) { s.Device.MAC = net.HardwareAddr{1, 0, 0x5e, 0, 0, 1} }, "not a unicast"},
		{"duplicate FDB", func(s *State) { s.FDB = []netip.Addr{addr4("192.0.2.12"), addr4("192.0.2.12")} }, "listed twice"},
		{"bad route", func(s *State) { s.Routes = append(s.Routes, route.Route{Dst: pfx("10.9.0.0/16")}) }, "set Dev"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			s.Routes = append([]route.Route(nil), good.Routes...)
			tc.mutate(&s)
			err := s.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.want)
			}
			f := NewFake()
			if err := f.Apply(context.Background(), s); err == nil || f.String() != "" {
				t.Errorf("Fake.Apply accepted an invalid state (err %v, state %q)", err, f.String())
			}
		})
	}
}

func TestIncompatibleWith(t *testing.T) {
	d := testStates(t)[0].State.Device
	for _, tc := range []struct {
		name   string
		mutate func(*Device)
		want   string
	}{
		{"same", func(*Device) {}, ""},
		{"MTU and MAC change in place", func(h *Device) { h.MTU = 1300; h.MAC = net.HardwareAddr{2, 0, 0, 0, 0, 1} }, ""},
		{"VNI", func(h *Device) { h.VNI = 101 }, "VNI 101, want 100"},
		{"remote and port", func(h *Device) { h.Remote = addr4("192.0.2.22"); h.Port = 4789 },
			"port 4789, want 4800; remote 192.0.2.22, want 192.0.2.21"},
		{"gateway mode", func(h *Device) { h.Remote = netip.Addr{} }, "remote invalid IP, want 192.0.2.21"},
		{"underlay", func(h *Device) { h.Parent = "eth1"; h.Local = addr4("192.0.2.99") },
			`local 192.0.2.99, want 192.0.2.11; underlay device "eth1", want "eth0"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			have := d
			tc.mutate(&have)
			if got := d.incompatibleWith(have); got != tc.want {
				t.Errorf("incompatibleWith = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestFake walks the fake through the states, checking what it says it did.
func TestFake(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	for _, st := range testStates(t) {
		if err := f.Apply(ctx, st.State); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(st.State.String(), f.String()); diff != "" {
			t.Errorf("state %q: Fake.String() (-want +got):\n%s", st.Name, diff)
		}
	}
	if err := f.Delete(ctx, DeviceName); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"create vx-submariner",
		"replace vx-submariner: remote 192.0.2.21, want 192.0.2.22",
		"replace vx-submariner: remote 192.0.2.22, want invalid IP",
		"delete vx-submariner",
	}
	if diff := cmp.Diff(want, f.Events()); diff != "" {
		t.Errorf("Events() (-want +got):\n%s", diff)
	}
	if f.String() != "" {
		t.Errorf("after Delete the fake still holds:\n%s", f.String())
	}
}
