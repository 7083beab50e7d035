package vxlan

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/submariner-go/submariner/agents/gateway/cable"
	"github.com/submariner-go/submariner/agents/netkit/vxlan"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Test address plan (keep in sync across the gateway's packages):
//   cluster1 pods 10.1.0.0/16, services 100.1.0.0/16; cluster2 pods 10.2.0.0/16,
//   services 100.2.0.0/16; cluster3 pods 10.3.0.0/16; gateway underlay 198.51.100.0/24

func endpoint(n, ip string, port uint16) cable.Endpoint {
	return cable.Endpoint{
		ClusterID: "cluster" + n, CableName: "submariner-cable-cluster" + n + "-" + strings.ReplaceAll(ip, ".", "-"),
		PrivateIP: netip.MustParseAddr(ip), Backend: submv1.BackendVXLAN, Port: port,
		Subnets: []netip.Prefix{netip.MustParsePrefix("100." + n + ".0.0/16"), netip.MustParsePrefix("10." + n + ".0.0/16")},
	}
}

func tunnel(local, remote cable.Endpoint) cable.Tunnel {
	return cable.Tunnel{Local: local, Remote: remote, UseIP: remote.PrivateIP}
}

// newDriver returns a driver on a fake kernel, initialised as Init would on an
// underlay eth0 with MTU 1500.
func newDriver(t *testing.T) (*Driver, *vxlan.Fake) {
	t.Helper()
	k := vxlan.NewFake()
	d, err := NewWithKernel(cable.Config{
		Port: 4500, LocalIP: netip.MustParseAddr("198.51.100.1"), RouteSrc: netip.MustParseAddr("10.1.1.1"),
	}, k)
	if err != nil {
		t.Fatal(err)
	}
	d.device = &vxlan.Device{
		Name: vxlan.CableDeviceName, VNI: vxlan.CableVNI, Port: 4500, VTEP: netip.MustParsePrefix("241.51.100.1/8"),
		MTU: vxlan.MTU(1500), Local: d.cfg.LocalIP, Parent: "eth0",
	}
	if err := d.apply(context.Background(), d.tunnels); err != nil {
		t.Fatal(err)
	}
	return d, k
}

func TestDriver(t *testing.T) {
	ctx := context.Background()
	d, k := newDriver(t)
	local := endpoint("1", "198.51.100.1", 4500)
	c2, c3 := endpoint("2", "198.51.100.2", 4500), endpoint("3", "198.51.100.3", 4500)
	device := "link vxlan-tunnel: vxlan id 1000 dstport 4500 local 198.51.100.1 dev eth0 nolearning mtu 1450 address 02:53:f1:33:64:01 inet 241.51.100.1/8\n"

	steps := []struct {
		name string
		do   func() error
		err  string
		want string
	}{
		{name: "initialised: the device, no peers, no routes", do: func() error { return nil }, want: device},
		{
			name: "two clusters",
			do: func() error {
				if err := d.Connect(ctx, tunnel(local, c2)); err != nil {
					return err
				}
				return d.Connect(ctx, tunnel(local, c3))
			},
			want: device +
				"fdb 00:00:00:00:00:00 dev vxlan-tunnel dst 198.51.100.2\n" +
				"fdb 00:00:00:00:00:00 dev vxlan-tunnel dst 198.51.100.3\n" +
				"route 10.2.0.0/16 via 241.51.100.2 dev vxlan-tunnel table 100 src 10.1.1.1\n" +
				"route 10.3.0.0/16 via 241.51.100.3 dev vxlan-tunnel table 100 src 10.1.1.1\n" +
				"route 100.2.0.0/16 via 241.51.100.2 dev vxlan-tunnel table 100 src 10.1.1.1\n" +
				"route 100.3.0.0/16 via 241.51.100.3 dev vxlan-tunnel table 100 src 10.1.1.1\n" +
				"rule 100: from all lookup 100\n",
		},
		{
			name: "NAT is refused, the other tunnels stay",
			do: func() error {
				t := tunnel(local, endpoint("4", "198.51.100.4", 4500))
				t.UseNAT = true
				return d.Connect(ctx, t)
			},
			err: "the vxlan cable driver cannot cross NAT (cluster cluster4 or this one has nat_enabled): use libreswan or wireguard, or join without NAT",
		},
		{
			name: "another port is refused",
			do:   func() error { return d.Connect(ctx, tunnel(local, endpoint("4", "198.51.100.4", 4501))) },
			err:  "cluster cluster4's gateway uses udp-port 4501 and this one 4500: the vxlan cable driver needs the same port on both sides",
		},
		{
			name: "a VTEP clash is refused",
			do:   func() error { return d.Connect(ctx, tunnel(local, endpoint("4", "10.51.100.2", 4500))) },
			err:  "cluster cluster4's gateway 10.51.100.2 has the same VTEP 241.51.100.2 as cluster cluster2's 198.51.100.2",
		},
		{
			name: "cluster2 fails over to another gateway",
			do: func() error {
				if err := d.Disconnect(ctx, c2); err != nil {
					return err
				}
				return d.Connect(ctx, tunnel(local, endpoint("2", "198.51.100.22", 4500)))
			},
			want: device +
				"fdb 00:00:00:00:00:00 dev vxlan-tunnel dst 198.51.100.3\n" +
				"fdb 00:00:00:00:00:00 dev vxlan-tunnel dst 198.51.100.22\n" +
				"route 10.2.0.0/16 via 241.51.100.22 dev vxlan-tunnel table 100 src 10.1.1.1\n" +
				"route 10.3.0.0/16 via 241.51.100.3 dev vxlan-tunnel table 100 src 10.1.1.1\n" +
				"route 100.2.0.0/16 via 241.51.100.22 dev vxlan-tunnel table 100 src 10.1.1.1\n" +
				"route 100.3.0.0/16 via 241.51.100.3 dev vxlan-tunnel table 100 src 10.1.1.1\n" +
				"rule 100: from all lookup 100\n",
		},
		{
			name: "the last tunnels go: no routes and no rule",
			do: func() error {
				if err := d.Disconnect(ctx, c3); err != nil {
					return err
				}
				return d.Disconnect(ctx, endpoint("2", "198.51.100.22", 4500))
			},
			want: device,
		},
	}
	last := ""
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			err := s.do()
			if got := errText(err); got != s.err {
				t.Fatalf("error %q, want %q", got, s.err)
			}
			want := s.want
			if s.err != "" {
				want = last // a refused tunnel changes nothing
			}
			if diff := cmp.Diff(want, k.String()); diff != "" {
				t.Errorf("kernel (-want +got):\n%s", diff)
			}
			last = k.String()
		})
	}
	t.Run("close removes the device", func(t *testing.T) {
		if err := d.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if k.String() != "" {
			t.Errorf("left behind:\n%s", k.String())
		}
		if err := d.Connect(ctx, tunnel(local, c2)); err == nil {
			t.Error("a closed driver connected")
		}
	})
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
