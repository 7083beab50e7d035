//go:build linux

package vxlan_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/submariner-go/submariner/agents/gateway/cable"
	"github.com/submariner-go/submariner/agents/gateway/cable/cabletest"
	cablevxlan "github.com/submariner-go/submariner/agents/gateway/cable/vxlan"
	"github.com/submariner-go/submariner/agents/netkit/netns/netnstest"
	"github.com/submariner-go/submariner/agents/netkit/route"
	"github.com/submariner-go/submariner/agents/netkit/vxlan"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// TestPrivilegedVXLANCable connects two gateways with the VXLAN cable driver and
// carries TCP from a pod of cluster1 to a pod of cluster2 through it; what the
// driver installed reads back from the kernel as the driver's state; after
// Disconnect the pods cannot reach each other and after Close nothing of the
// driver is left:
//
//	west pod (netns)        west gateway (netns)                      east gateway (netns)        east pod (netns)
//	eth0 10.1.1.2/24 ---veth--- cni0 10.1.1.1/24 (bridge)            cni0 10.2.1.1/24 (bridge) ---veth--- eth0 10.2.1.2/24
//	                            eth0 198.51.100.1/24 <---veth---> eth0 198.51.100.2/24
//	                            vxlan-tunnel 241.51.100.1/8  <== VNI 1000, UDP 4500 ==>  vxlan-tunnel 241.51.100.2/8
func TestPrivilegedVXLANCable(t *testing.T) {
	netnstest.RequirePrivileged(t)
	ctx := context.Background()
	tp := cabletest.New(t)

	drivers := map[*cabletest.Side]cable.Driver{}
	for _, s := range []*cabletest.Side{tp.West, tp.East} {
		cfg := s.Config(nil, t.TempDir())
		cfg.Log = testr.New(t).WithName(s.ClusterID)
		d, err := cable.New(submv1.BackendVXLAN, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Init(ctx); err != nil {
			t.Fatal(err)
		}
		// Close may run twice (a subtest closes west): the second must be a no-op.
		t.Cleanup(func() {
			if err := d.Close(ctx); err != nil {
				t.Errorf("closing %s's driver: %v", s.ClusterID, err)
			}
		})
		drivers[s] = d
	}
	west, east := tp.West.Endpoint(submv1.BackendVXLAN, nil), tp.East.Endpoint(submv1.BackendVXLAN, nil)

	if err := tp.TCP(time.Second); err == nil {
		t.Fatal("the pods reach each other before any tunnel exists: the topology leaks")
	}
	if err := drivers[tp.West].Connect(ctx, cable.Tunnel{Local: west, Remote: east, UseIP: east.PrivateIP}); err != nil {
		t.Fatal(err)
	}
	if err := drivers[tp.East].Connect(ctx, cable.Tunnel{Local: east, Remote: west, UseIP: west.PrivateIP}); err != nil {
		t.Fatal(err)
	}

	t.Run("the kernel holds the driver's state", func(t *testing.T) {
		got, err := vxlan.New(tp.West.Gateway.Netlink, route.ProtocolCable).State(ctx, vxlan.CableDeviceName)
		if err != nil {
			t.Fatal(err)
		}
		want := "link vxlan-tunnel: vxlan id 1000 dstport 4500 local 198.51.100.1 dev eth0 nolearning mtu 1450 address 02:53:f1:33:64:01 inet 241.51.100.1/8\n" +
			"fdb 00:00:00:00:00:00 dev vxlan-tunnel dst 198.51.100.2\n" +
			"route 10.2.0.0/16 via 241.51.100.2 dev vxlan-tunnel table 100 src 10.1.1.1\n" +
			"route 100.2.0.0/16 via 241.51.100.2 dev vxlan-tunnel table 100 src 10.1.1.1\n" +
			"rule 100: from all lookup 100\n"
		if diff := cmp.Diff(want, got.String()); diff != "" {
			t.Errorf("west gateway (-want +got):\n%s", diff)
		}
	})

	t.Run("pod to remote pod over TCP", func(t *testing.T) {
		var last error
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			last = tp.TCP(2 * time.Second)
			return last == nil, nil
		})
		if err != nil {
			t.Fatalf("TCP from the west pod to the east pod: %v", last)
		}
		sts, err := drivers[tp.West].Connections(ctx)
		if err != nil || len(sts) != 1 || sts[0].Status != submv1.Connected || sts[0].Remote.ClusterID != "cluster2" {
			t.Errorf("connections %+v, %v: want cluster2 connected", sts, err)
		}
	})

	t.Run("disconnected, the pods are apart again", func(t *testing.T) {
		if err := drivers[tp.West].Disconnect(ctx, east); err != nil {
			t.Fatal(err)
		}
		if err := tp.TCP(time.Second); err == nil {
			t.Error("the pods still reach each other after Disconnect")
		}
		rs, err := route.New(tp.West.Gateway.Netlink, route.ProtocolCable).State(ctx)
		if err != nil || rs.String() != "" {
			t.Errorf("the cable's routes left after Disconnect: %q, %v", rs.String(), err)
		}
	})

	t.Run("close and cleanup leave nothing", func(t *testing.T) {
		if err := drivers[tp.West].Close(ctx); err != nil {
			t.Fatal(err)
		}
		var nf netlink.LinkNotFoundError
		if _, err := tp.West.Gateway.Netlink.LinkByName(vxlan.CableDeviceName); !errors.As(err, &nf) {
			t.Errorf("%s after Close: %v", vxlan.CableDeviceName, err)
		}
		// The east side is cleaned up as uninstall does, without its driver.
		if err := cablevxlan.Cleanup(ctx, tp.East.Host); err != nil {
			t.Fatal(err)
		}
		if _, err := tp.East.Gateway.Netlink.LinkByName(vxlan.CableDeviceName); !errors.As(err, &nf) {
			t.Errorf("%s after Cleanup: %v", vxlan.CableDeviceName, err)
		}
		rs, err := route.New(tp.East.Gateway.Netlink, route.ProtocolCable).State(ctx)
		if err != nil || rs.String() != "" {
			t.Errorf("routes after Cleanup: %q, %v", rs.String(), err)
		}
	})
}
