//go:build linux

package gateway

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/vishvananda/netlink"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/submariner-go/submariner/agents/gateway/cable"
	"github.com/submariner-go/submariner/agents/netkit/netns/netnstest"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// TestPrivilegedHealthChecker probes, with the health checker's raw ICMP socket
// bound to the local health-check address, a peer namespace: replies make the
// target connected with round-trip times; with the link down the probes go
// unanswered and the target turns to error; with the link up again, connected; a
// target no longer listed is not probed any more:
//
//	+------------------------------+        veth        +------------------------------+
//	| local (netns)                |                    | remote (netns)               |
//	|  eth0 10.1.1.1/24            |--------------------|  eth0 10.1.1.2/24            |
//	|  health checker: ICMP echo   |                    |  answers echo requests       |
//	+------------------------------+                    +------------------------------+
func TestPrivilegedHealthChecker(t *testing.T) {
	netnstest.RequirePrivileged(t)
	ctx := context.Background()
	local, remote := netnstest.New(t), netnstest.New(t)
	if err := local.Netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "hc-peer", PeerNamespace: netlink.NsFd(remote.Handle())}); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Run(ctx, "ip", "link", "set", "hc-peer", "name", "eth0"); err != nil {
		t.Fatal(err)
	}
	for ns, addr := range map[string]string{local.Name: "10.1.1.1/24", remote.Name: "10.1.1.2/24"} {
		n := local
		if ns == remote.Name {
			n = remote
		}
		if _, err := n.Run(ctx, "ip", "addr", "add", addr, "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
		if _, err := n.Run(ctx, "ip", "link", "set", "eth0", "up"); err != nil {
			t.Fatal(err)
		}
	}

	// A short interval keeps the test short; what it checks does not depend on it.
	h := NewHealthChecker(cable.NamespaceHost(local), 50*time.Millisecond, DefaultMaxPacketLoss, testr.New(t))
	defer h.Stop()
	target := HealthTarget{CableName: "c2", Src: netip.MustParseAddr("10.1.1.1"), Dst: netip.MustParseAddr("10.1.1.2")}
	h.Set(ctx, []HealthTarget{target})

	waitHealth := func(what string, cond func(HealthResult) bool) HealthResult {
		t.Helper()
		var last HealthResult
		err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			r, ok := h.Result("c2")
			last = r
			return ok && cond(r), nil
		})
		if err != nil {
			t.Fatalf("waiting for %s: %v; last result %+v", what, err, last)
		}
		return last
	}
	r := waitHealth("a reply", func(r HealthResult) bool { return r.Status == submv1.Connected })
	if r.RTT == nil || r.RTT.Last == "" || r.RTT.Min == "" || r.RTT.Average == "" || r.RTT.Max == "" || r.RTT.StdDev == "" {
		t.Errorf("connected without round-trip statistics: %+v", r.RTT)
	}
	if d, err := time.ParseDuration(r.RTT.Last); err != nil || d <= 0 {
		t.Errorf("last RTT %q is not a positive duration: %v", r.RTT.Last, err)
	}

	if _, err := remote.Run(ctx, "ip", "link", "set", "eth0", "down"); err != nil {
		t.Fatal(err)
	}
	r = waitHealth("the losses to turn it to error", func(r HealthResult) bool { return r.Status == submv1.ConnError })
	if r.Message == "" || r.RTT == nil {
		t.Errorf("error without a message or without the earlier statistics: %+v", r)
	}
	if _, err := remote.Run(ctx, "ip", "link", "set", "eth0", "up"); err != nil {
		t.Fatal(err)
	}
	waitHealth("the recovery", func(r HealthResult) bool { return r.Status == submv1.Connected })

	h.Set(ctx, nil)
	if _, ok := h.Result("c2"); ok {
		t.Error("a target no longer listed is still probed")
	}
}
