//go:build linux

package wireguard_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/submariner-go/submariner/agents/gateway/cable"
	"github.com/submariner-go/submariner/agents/gateway/cable/cabletest"
	"github.com/submariner-go/submariner/agents/gateway/cable/wireguard"
	"github.com/submariner-go/submariner/agents/netkit/netns/netnstest"
	"github.com/submariner-go/submariner/agents/netkit/route"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// TestPrivilegedWireGuardCable connects two gateways with the WireGuard cable
// driver (the kernel's device where the kernel has WireGuard, else the embedded
// wireguard-go on a TUN device, as on this machine) and carries TCP from a pod of
// cluster1 to a pod of cluster2 through it once both sides report the handshake;
// wg(8) reads the device through its UAPI socket; Disconnect and Close take the
// peer, the routes and the device away:
//
//	west pod (netns)        west gateway (netns)                      east gateway (netns)        east pod (netns)
//	eth0 10.1.1.2/24 ---veth--- cni0 10.1.1.1/24 (bridge)            cni0 10.2.1.1/24 (bridge) ---veth--- eth0 10.2.1.2/24
//	                            eth0 198.51.100.1/24 <---veth---> eth0 198.51.100.2/24
//	                            submariner (WireGuard) <====== UDP 4500 ======> submariner (WireGuard)
func TestPrivilegedWireGuardCable(t *testing.T) {
	netnstest.RequirePrivileged(t)
	ctx := context.Background()
	tp := cabletest.New(t)
	psk := make([]byte, 48)
	if _, err := rand.Read(psk); err != nil {
		t.Fatal(err)
	}

	drivers := map[*cabletest.Side]cable.Driver{}
	dirs := map[*cabletest.Side]string{}
	for _, s := range []*cabletest.Side{tp.West, tp.East} {
		dirs[s] = t.TempDir()
		cfg := s.Config(psk, dirs[s])
		cfg.Log = testr.NewWithOptions(t, testr.Options{Verbosity: 4, LogTimestamp: true}).WithName(s.ClusterID)
		d, err := cable.New(submv1.BackendWireGuard, cfg)
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
	west := tp.West.Endpoint(submv1.BackendWireGuard, drivers[tp.West].BackendConfig())
	east := tp.East.Endpoint(submv1.BackendWireGuard, drivers[tp.East].BackendConfig())
	if err := tp.TCP(time.Second); err == nil {
		t.Fatal("the pods reach each other before any tunnel exists: the topology leaks")
	}
	if err := drivers[tp.West].Connect(ctx, cable.Tunnel{Local: west, Remote: east, UseIP: east.PrivateIP}); err != nil {
		t.Fatal(err)
	}
	if err := drivers[tp.East].Connect(ctx, cable.Tunnel{Local: east, Remote: west, UseIP: west.PrivateIP}); err != nil {
		t.Fatal(err)
	}

	t.Run("the routes go into the device", func(t *testing.T) {
		got, err := route.New(tp.West.Gateway.Netlink, route.ProtocolCable).State(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := "route 10.2.0.0/16 dev submariner table 100 src 10.1.1.1\nroute 100.2.0.0/16 dev submariner table 100 src 10.1.1.1\nrule 100: from all lookup 100\n"
		if diff := cmp.Diff(want, got.String()); diff != "" {
			t.Errorf("west gateway's routes (-want +got):\n%s", diff)
		}
	})

	t.Run("the handshake completes and both sides report connected", func(t *testing.T) {
		// Traffic sent while both sides are still initiating can void both
		// handshakes (WireGuard then retries after 5 s): the keepalive of the
		// initiating side brings the tunnel up first.
		var sts []cable.Status
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			sts = nil
			for _, s := range []*cabletest.Side{tp.West, tp.East} {
				got, err := drivers[s].Connections(ctx)
				if err != nil {
					return false, err
				}
				sts = append(sts, got...)
			}
			return len(sts) == 2 && sts[0].Status == submv1.Connected && sts[1].Status == submv1.Connected, nil
		})
		if err != nil {
			t.Fatalf("connections %+v: %v", sts, err)
		}
	})

	t.Run("pod to remote pod over TCP", func(t *testing.T) {
		if err := tp.TCP(10 * time.Second); err != nil {
			t.Fatalf("TCP from the west pod to the east pod: %v", err)
		}
		for _, s := range []*cabletest.Side{tp.West, tp.East} {
			sts, err := drivers[s].Connections(ctx)
			if err != nil || len(sts) != 1 || sts[0].Status != submv1.Connected || sts[0].RxBytes == 0 || sts[0].TxBytes == 0 {
				t.Errorf("%s's connections %+v, %v: want connected, with traffic both ways", s.ClusterID, sts, err)
			}
		}
	})

	t.Run("wg show reads the device", func(t *testing.T) {
		for _, tool := range []string{"wg", "unshare"} {
			if _, err := exec.LookPath(tool); err != nil {
				t.Skipf("skipped: %s is not installed: run `make deps`", tool)
			}
		}
		l, err := tp.West.Gateway.Netlink.LinkByName(wireguard.DeviceName)
		if err != nil {
			t.Fatal(err)
		}
		show := func() ([]byte, error) {
			if l.Type() == "wireguard" {
				return tp.West.Gateway.Run(ctx, "wg", "show", wireguard.DeviceName)
			}
			// wg finds userspace devices by their socket in /var/run/wireguard. The
			// test keeps each side's socket in a directory of its own; in a private
			// mount namespace, /run becomes a fresh tmpfs pointing there.
			script := "mount -t tmpfs tmpfs /run && mkdir /run/wireguard && ln -s " + dirs[tp.West] + "/submariner.sock /run/wireguard/submariner.sock && wg show submariner"
			return exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script).CombinedOutput()
		}
		pub := drivers[tp.West].BackendConfig()[cable.ConfigPublicKey]
		peer := drivers[tp.East].BackendConfig()[cable.ConfigPublicKey]
		want := []string{"public key: " + pub, "listening port: 4500", "peer: " + peer, "endpoint: 198.51.100.2:4500",
			"allowed ips: ", "10.2.0.0/16", "100.2.0.0/16", "latest handshake:", "preshared key: (hidden)",
			// The responder of the pair turns it on a second after connecting.
			"persistent keepalive: every 10 seconds"}
		var out []byte
		var missing []string
		_ = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			if out, err = show(); err != nil {
				return false, fmt.Errorf("wg show: %w\n%s", err, out)
			}
			missing = missing[:0]
			for _, w := range want {
				if !strings.Contains(string(out), w) {
					missing = append(missing, w)
				}
			}
			return len(missing) == 0, nil
		})
		if err != nil || len(missing) > 0 {
			t.Errorf("wg show: %v; it does not say %q:\n%s", err, missing, out)
		}
	})

	t.Run("disconnect and close take everything away", func(t *testing.T) {
		if err := drivers[tp.West].Disconnect(ctx, east); err != nil {
			t.Fatal(err)
		}
		if err := tp.TCP(time.Second); err == nil {
			t.Error("the pods still reach each other after Disconnect")
		}
		if err := drivers[tp.West].Close(ctx); err != nil {
			t.Fatal(err)
		}
		var nf netlink.LinkNotFoundError
		if _, err := tp.West.Gateway.Netlink.LinkByName(wireguard.DeviceName); !errors.As(err, &nf) {
			t.Errorf("%s after Close: %v", wireguard.DeviceName, err)
		}
		if err := wireguard.Cleanup(ctx, tp.East.Host); err != nil {
			t.Fatal(err)
		}
		rs, err := route.New(tp.East.Gateway.Netlink, route.ProtocolCable).State(ctx)
		if err != nil || rs.String() != "" {
			t.Errorf("east's routes after Cleanup: %q, %v", rs.String(), err)
		}
	})
}
