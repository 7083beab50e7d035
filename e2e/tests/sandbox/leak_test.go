package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/submariner-go/submariner/agents/netkit/netns/netnstest"
	"github.com/submariner-go/submariner/e2e/sandbox"
	"github.com/submariner-go/submariner/e2e/sandbox/sandboxtest"
)

// probeChain counts (and drops) packets to sandbox ranges that leave the root
// netns through any interface but the sandbox's: it is the uplink watch of
// TestPrivilegedLeakGuard.
const probeChain = "SANDBOX-E2E-LEAK"

// TestPrivilegedLeakGuard: a packet to an unassigned sandbox address never leaves
// through the machine's uplink, whether the root netns or a pod sends it. A
// counting chain on every other interface of the root netns must see nothing:
//
//	root netns --X--> uplink (counted, dropped)      root: blackhole routes
//	    | sbx-root
//	fabric (no default route) <-- c1 pod             pod: refused by the fabric
func TestPrivilegedLeakGuard(t *testing.T) {
	netnstest.RequirePrivileged(t)
	s := sandboxtest.Get(t)
	c1 := sandboxtest.ClusterFor(t, "cluster1")
	ns := sandboxtest.Namespace(t, c1)
	ctx := context.Background()
	if _, err := c1.Kube.CoreV1().Pods(ns).Create(ctx, sandboxtest.NettestPod(ns, "client", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c1.WaitPod(t, ns, "client")

	installProbe(t, s.Topology)

	// Unassigned addresses in every range the sandbox guards.
	targets := []string{"192.168.250.9", "192.168.240.3", "242.250.0.9", "10.140.250.9"}
	for _, c := range s.Topology.Clusters {
		for _, p := range []netip.Prefix{c.PodCIDR, c.ServiceCIDR} {
			a := p.Addr().As4()
			targets = append(targets, netip.AddrFrom4([4]byte{a[0], a[1], 250, 9}).String())
		}
	}
	t.Run("from the root netns", func(t *testing.T) {
		for _, dst := range targets {
			if dst == "192.168.240.3" {
				continue // on the root's own link to the fabric: it goes there, not out
			}
			c, err := net.Dial("udp", dst+":9")
			if err == nil {
				_, err = c.Write([]byte("leak?"))
				c.Close()
			}
			if !errors.Is(err, syscall.EINVAL) {
				t.Errorf("sending to %s from the root netns: %v, want %v from the blackhole route", dst, err, syscall.EINVAL)
			}
		}
	})
	t.Run("from a pod", func(t *testing.T) {
		for _, dst := range targets {
			out, err := c1.Connect(ctx, ns, "client", "--tcp", dst+":9", "--timeout", "5s")
			if err == nil {
				t.Errorf("a pod connected to the unassigned %s: %q", dst, out)
			}
			// UDP gets no answer; what counts is that nothing leaves.
			_, _ = c1.Connect(ctx, ns, "client", "--udp", dst+":9", "--timeout", "1s")
		}
	})
	if n := probeCount(t); n != 0 {
		t.Errorf("%d packets to sandbox ranges left through the uplink", n)
	}
}

// installProbe adds probeChain, jumped to first from OUTPUT and FORWARD, with a
// counting DROP rule per guarded range and interface of the root netns other
// than lo and the sandbox's; it is removed when the test ends.
func installProbe(t *testing.T, topo sandbox.Topology) {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*filter\n:%s - [0:0]\n-I OUTPUT 1 -j %s\n-I FORWARD 1 -j %s\n", probeChain, probeChain, probeChain)
	var ifaces []string
	for _, l := range links {
		name := l.Attrs().Name
		if name == "lo" || strings.HasPrefix(name, sandbox.Prefix) {
			continue
		}
		ifaces = append(ifaces, name)
		for _, r := range topo.GuardedRanges() {
			fmt.Fprintf(&b, "-A %s -o %s -d %s -j DROP\n", probeChain, name, r)
		}
	}
	b.WriteString("COMMIT\n")
	if len(ifaces) == 0 {
		t.Skip("skipped: the root netns has no interface besides lo and the sandbox's, so there is no uplink to watch")
	}
	t.Cleanup(func() {
		payload := fmt.Sprintf("*filter\n-D OUTPUT -j %s\n-D FORWARD -j %s\n-F %s\n-X %s\nCOMMIT\n", probeChain, probeChain, probeChain, probeChain)
		cmd := exec.Command("iptables-restore", "-w", "--noflush")
		cmd.Stdin = strings.NewReader(payload)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("removing %s: %v: %s", probeChain, err, out)
		}
	})
	cmd := exec.Command("iptables-restore", "-w", "--noflush")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("installing %s: %v: %s", probeChain, err, out)
	}
	t.Logf("watching %v for packets to %v", ifaces, topo.GuardedRanges())
}

// probeCount sums the packet counters of probeChain's rules.
func probeCount(t *testing.T) int {
	t.Helper()
	out, err := exec.Command("iptables", "-w", "-L", probeChain, "-n", "-v", "-x").CombinedOutput()
	if err != nil {
		t.Fatalf("reading %s: %v: %s", probeChain, err, out)
	}
	total := 0
	for _, line := range strings.Split(string(out), "\n")[2:] {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.Atoi(f[0])
		if err != nil {
			t.Fatalf("parsing %q of %s: %v", line, probeChain, err)
		}
		total += n
	}
	return total
}
