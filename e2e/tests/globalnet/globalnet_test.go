// Package globalnet_test holds the end-to-end test of Globalnet in the sandbox:
// two clusters with the same Pod and Service CIDRs, joined to a Globalnet broker,
// reach each other's exported Services through global IPs.
package globalnet_test

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/clustersettest"
	"github.com/submariner-go/submariner/e2e/nettest"
	"github.com/submariner-go/submariner/e2e/sandbox"
	"github.com/submariner-go/submariner/e2e/sandbox/sandboxtest"
	"github.com/submariner-go/submariner/manifests"
)

func TestMain(m *testing.M) {
	opts := sandbox.DefaultOptions()
	opts.OverlappingCIDRs = true
	sandboxtest.Main(m, opts)
}

// TestOverlappingClusters: cluster2 exports a Service; cluster1, whose Pods use
// the very same addresses, resolves it to a global IP of cluster2's global CIDR
// and reaches it, and the server sees a global egress IP of cluster1. Then:
// namespace and pod-selector GlobalEgressIPs, a headless Service's pod through
// its global IP, Globalnet restarts that change nothing, unexport releasing the
// address and its rules, and uninstall leaving nothing.
func TestOverlappingClusters(t *testing.T) {
	sb := sandboxtest.Get(t)
	ctx := context.Background()
	c1, c2 := sandboxtest.ClusterFor(t, "cluster1"), sandboxtest.ClusterFor(t, "cluster2")
	if c1.Topology.PodCIDR != c2.Topology.PodCIDR {
		t.Fatalf("the sandbox's clusters do not overlap: %s and %s", c1.Topology.PodCIDR, c2.Topology.PodCIDR)
	}
	kubeconfig := func(name string) string { return clustersettest.Kubeconfig(t, sb, name) }
	info := filepath.Join(t.TempDir(), "broker-info.subm")
	clustersettest.MustSubctl(t, "deploy-broker", "--kubeconfig", kubeconfig("broker"), "--globalnet", "-o", info)
	// Without Globalnet the second join is refused (the CIDRs overlap); with it
	// both join.
	for _, c := range []*sandboxtest.Cluster{c1, c2} {
		clustersettest.MustSubctl(t, "join", info, "--kubeconfig", kubeconfig(c.Name), "--clusterid", c.Name, "--cable-driver", "wireguard", "--natt=false")
	}
	clustersettest.WaitConnected(t, sb, c1, "wireguard")
	clustersettest.WaitConnected(t, sb, c2, "wireguard")
	global := map[string]netip.Prefix{}
	for _, c := range []*sandboxtest.Cluster{c1, c2} {
		var list submv1.ClusterList
		if err := c.Client.List(ctx, &list, client.InNamespace(submv1.ComponentNamespace)); err != nil {
			t.Fatalf("listing the Clusters of %s: %v", c.Name, err)
		}
		for _, cl := range list.Items {
			if cl.Spec.ClusterID == c.Name && len(cl.Spec.GlobalCIDR) == 1 {
				global[c.Name] = netip.MustParsePrefix(cl.Spec.GlobalCIDR[0])
			}
		}
		if !global[c.Name].IsValid() {
			t.Fatalf("%s has no Cluster of its own with one global CIDR", c.Name)
		}
	}

	ns := sandboxtest.Namespace(t, c1, c2)
	if _, err := c2.Kube.AppsV1().Deployments(ns).Create(ctx, sandboxtest.NettestDeployment(ns, "echo", 1, ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Kube.CoreV1().Services(ns).Create(ctx, sandboxtest.NettestService(ns, "echo"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c1.Kube.CoreV1().Pods(ns).Create(ctx, sandboxtest.NettestPod(ns, "client", c1.Topology.Nodes[len(c1.Topology.Nodes)-1].Name), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c2.WaitDeployment(t, ns, "echo")
	clientPod := c1.WaitPod(t, ns, "client")
	clustersettest.MustSubctl(t, "export", "service", "echo", "--namespace", ns, "--kubeconfig", kubeconfig(c2.Name))

	name := fmt.Sprintf("echo.%s.svc.clusterset.local", ns)
	got := resolveWithin(t, c1, ns, clientPod.Name, name, global[c2.Name])
	if a, err := netip.ParseAddr(got); err != nil || !global[c2.Name].Contains(a) {
		t.Fatalf("%s resolves to %q in %s, want a global IP of %s (%s)", name, got, c1.Name, c2.Name, global[c2.Name])
	}
	url := fmt.Sprintf("http://%s:%d/", name, sandboxtest.HTTPPort)
	r := clustersettest.ConnectReply(t, c1, ns, clientPod.Name, "--http", url)
	if !global[c1.Name].Contains(r.Client.Addr()) {
		t.Errorf("the server in %s saw client %s, want a global egress IP of %s (%s)", c2.Name, r.Client.Addr(), c1.Name, global[c1.Name])
	}

	t.Run("namespace egress IP", func(t *testing.T) {
		allocated := egressIP(t, c1, &submv1.GlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Name: "ns-egress", Namespace: ns}})
		if seen := seenAs(t, c1, ns, clientPod.Name, url, allocated); seen != allocated {
			t.Errorf("with GlobalEgressIP %s/ns-egress (%s), the server saw client %s", ns, allocated, seen)
		}
	})

	t.Run("pod-selector egress IP", func(t *testing.T) {
		if _, err := c1.Kube.CoreV1().Pods(ns).Create(ctx, sandboxtest.NettestPod(ns, "picked", c1.Topology.Nodes[0].Name), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		c1.WaitPod(t, ns, "picked")
		allocated := egressIP(t, c1, &submv1.GlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Name: "picked-egress", Namespace: ns},
			Spec: submv1.GlobalEgressIPSpec{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{sandboxtest.AppLabel: "picked"}}}})
		if seen := seenAs(t, c1, ns, "picked", url, allocated); seen != allocated {
			t.Errorf("with GlobalEgressIP %s/picked-egress (%s) selecting pod picked, the server saw client %s", ns, allocated, seen)
		}
		// The other pods of the namespace keep the namespace's address.
		var nsEgress submv1.GlobalEgressIP
		if err := c1.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "ns-egress"}, &nsEgress); err != nil {
			t.Fatal(err)
		}
		r := clustersettest.ConnectReply(t, c1, ns, clientPod.Name, "--http", url)
		if len(nsEgress.Status.AllocatedIPs) != 1 || r.Client.Addr().String() != nsEgress.Status.AllocatedIPs[0] {
			t.Errorf("pod client (not selected) was seen as %s, want the namespace's %v", r.Client.Addr(), nsEgress.Status.AllocatedIPs)
		}
	})

	t.Run("headless pods through their global IPs", func(t *testing.T) {
		hl := sandboxtest.NettestService(ns, "echo-headless")
		hl.Spec.ClusterIP = corev1.ClusterIPNone
		hl.Spec.Selector = map[string]string{sandboxtest.AppLabel: "echo"}
		if _, err := c2.Kube.CoreV1().Services(ns).Create(ctx, hl, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		clustersettest.MustSubctl(t, "export", "service", "echo-headless", "--namespace", ns, "--kubeconfig", kubeconfig(c2.Name))
		echoPods := c2.Pods(t, ns, map[string]string{sandboxtest.AppLabel: "echo"})
		if len(echoPods) != 1 {
			t.Fatalf("%s runs %d echo pods, want 1", c2.Name, len(echoPods))
		}
		name := fmt.Sprintf("echo-headless.%s.svc.clusterset.local", ns)
		got := resolveWithin(t, c1, ns, clientPod.Name, name, global[c2.Name])
		addr, err := netip.ParseAddr(got)
		if err != nil || !global[c2.Name].Contains(addr) {
			t.Fatalf("%s resolves to %q in %s, want the global IP of %s's pod %s", name, got, c1.Name, c2.Name, echoPods[0].Name)
		}
		var gip submv1.GlobalIngressIP
		if err := c2.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: submv1.PodGlobalIngressIPName(echoPods[0].Name)}, &gip); err != nil || gip.Status.AllocatedIP != got {
			t.Errorf("%s resolves to %s, but the GlobalIngressIP of pod %s holds %q (err %v)", name, got, echoPods[0].Name, gip.Status.AllocatedIP, err)
		}
		// subctl lists the global IPs in use.
		if out := clustersettest.MustSubctl(t, "show", "globalnet", "--kubeconfig", kubeconfig(c2.Name)); !strings.Contains(out, "Pod "+echoPods[0].Name) || !strings.Contains(out, got) {
			t.Errorf("subctl show globalnet does not list pod %s with %s:\n%s", echoPods[0].Name, got, out)
		}
		r := clustersettest.ConnectReply(t, c1, ns, clientPod.Name, "--tcp", sandboxtest.HostPort(got, sandboxtest.TCPPort), "--timeout=2s", "--retries=10")
		if r.Pod != echoPods[0].Name || !global[c1.Name].Contains(r.Client.Addr()) {
			t.Errorf("reply %+v through %s: want pod %s seeing a global IP of %s", r, got, echoPods[0].Name, c1.Name)
		}
	})

	t.Run("globalnet restart", func(t *testing.T) {
		for _, c := range []*sandboxtest.Cluster{c1, c2} {
			restartGlobalnet(t, c)
		}
		clustersettest.ConnectReply(t, c1, ns, clientPod.Name, "--http", url, "--timeout=2s", "--retries=10")
	})

	t.Run("unexport releases the global IP", func(t *testing.T) {
		var gip submv1.GlobalIngressIP
		if err := c2.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "echo"}, &gip); err != nil {
			t.Fatalf("the exported Service's GlobalIngressIP: %v", err)
		}
		clustersettest.MustSubctl(t, "unexport", "service", "echo", "--namespace", ns, "--kubeconfig", kubeconfig(c2.Name))
		gone := false
		sandboxtest.Eventually(t, func() bool {
			err := c2.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "echo"}, &gip)
			gone = apierrors.IsNotFound(err)
			return gone
		})
		if !gone {
			t.Errorf("GlobalIngressIP %s/echo (%s) is still there after unexport", ns, gip.Status.AllocatedIP)
		}
		// Its rules go with it, on the gateway that had them.
		node := clustersettest.ActiveNode(t, c2).NetNS
		var rules []string
		sandboxtest.Eventually(t, func() bool {
			rules = nil
			for _, line := range clustersettest.KernelState(t, node) {
				if strings.Contains(line, gip.Status.AllocatedIP+"/32") || strings.Contains(line, gip.Status.AllocatedIP+" ") {
					rules = append(rules, line)
				}
			}
			return len(rules) == 0
		})
		if len(rules) > 0 {
			t.Errorf("after unexport, %s still has state for %s:\n%s", node, gip.Status.AllocatedIP, strings.Join(rules, "\n"))
		}
	})

	if t.Failed() {
		// Uninstall removes the pods and their logs.
		clustersettest.KeepComponentLogs(t, c1, c2)
	}
	t.Run("uninstall", func(t *testing.T) {
		clustersettest.CheckUninstall(t, sb, c1, c2)
		clustersettest.CheckUninstall(t, sb, c2, nil)
		for _, c := range []*sandboxtest.Cluster{c1, c2} {
			var gips submv1.GlobalIngressIPList
			if err := c.Client.List(ctx, &gips); err == nil && len(gips.Items) > 0 {
				t.Errorf("%s still has %d GlobalIngressIPs after uninstall", c.Name, len(gips.Items))
			}
		}
	})
}

// resolveWithin digs name from pod until it resolves to one address within
// cidr (exports take a moment to reach the other cluster), and returns the last
// answer; the caller checks it.
func resolveWithin(t *testing.T, c *sandboxtest.Cluster, ns, pod, name string, cidr netip.Prefix) string {
	t.Helper()
	var got string
	sandboxtest.Eventually(t, func() bool {
		out, _, err := c.Exec(context.Background(), ns, pod, "dig", "+short", "+time=1", "+tries=1", name)
		got = strings.TrimSpace(out)
		a, perr := netip.ParseAddr(got)
		return err == nil && perr == nil && cidr.Contains(a)
	})
	return got
}

// egressIP creates the GlobalEgressIP in c and waits for its one address.
func egressIP(t *testing.T, c *sandboxtest.Cluster, geip *submv1.GlobalEgressIP) string {
	t.Helper()
	ctx := context.Background()
	if err := c.Client.Create(ctx, geip); err != nil {
		t.Fatal(err)
	}
	sandboxtest.Eventually(t, func() bool {
		err := c.Client.Get(ctx, client.ObjectKeyFromObject(geip), geip)
		return err == nil && len(geip.Status.AllocatedIPs) == 1
	})
	if len(geip.Status.AllocatedIPs) != 1 {
		t.Fatalf("GlobalEgressIP %s/%s got %v, want one address (conditions %+v)", geip.Namespace, geip.Name, geip.Status.AllocatedIPs, geip.Status.Conditions)
	}
	return geip.Status.AllocatedIPs[0]
}

// seenAs fetches url from pod until the server sees the client as want (the
// rules of a new egress IP take a sync to apply), and returns what it saw last.
func seenAs(t *testing.T, c *sandboxtest.Cluster, ns, pod, url, want string) string {
	t.Helper()
	var seen string
	sandboxtest.Eventually(t, func() bool {
		out, err := c.Connect(context.Background(), ns, pod, "--http", url, "--timeout=2s")
		if err != nil {
			return false
		}
		first, _, _ := strings.Cut(out, "\n")
		reply, err := nettest.ParseReply(first)
		seen = reply.Client.Addr().String()
		return err == nil && seen == want
	})
	return seen
}

// restartGlobalnet restarts every Globalnet pod of c: once a new one is active,
// every allocation is as before and the active gateway node's kernel state
// (iptables-save without counters, routes, links) is identical.
func restartGlobalnet(t *testing.T, c *sandboxtest.Cluster) {
	t.Helper()
	before := allocations(t, c)
	node := clustersettest.ActiveNode(t, c).NetNS
	state := clustersettest.KernelState(t, node)
	clustersettest.RestartDaemonSet(t, c, manifests.GlobalnetDaemonSet)
	if diff := cmp.Diff(before, allocations(t, c)); diff != "" {
		t.Errorf("restarting Globalnet in %s changed allocations (-before +after):\n%s", c.Name, diff)
	}
	// The new leader syncs once it holds the Lease; the state must come back to
	// exactly what it was.
	var after []string
	sandboxtest.Eventually(t, func() bool { after = clustersettest.KernelState(t, node); return slices.Equal(after, state) })
	if diff := cmp.Diff(state, after); diff != "" {
		t.Errorf("restarting Globalnet in %s changed %s's kernel state (-before +after):\n%s", c.Name, node, diff)
	}
}

// allocations lists every global IP allocated in c, by object.
func allocations(t *testing.T, c *sandboxtest.Cluster) map[string][]string {
	t.Helper()
	ctx := context.Background()
	out := map[string][]string{}
	var in submv1.GlobalIngressIPList
	var eg submv1.GlobalEgressIPList
	var cl submv1.ClusterGlobalEgressIPList
	for _, l := range []client.ObjectList{&in, &eg, &cl} {
		if err := c.Client.List(ctx, l); err != nil {
			t.Fatalf("listing %T in %s: %v", l, c.Name, err)
		}
	}
	for _, g := range in.Items {
		out["GlobalIngressIP "+g.Namespace+"/"+g.Name] = []string{g.Status.AllocatedIP}
	}
	for _, g := range eg.Items {
		out["GlobalEgressIP "+g.Namespace+"/"+g.Name] = g.Status.AllocatedIPs
	}
	for _, g := range cl.Items {
		out["ClusterGlobalEgressIP "+g.Name] = g.Status.AllocatedIPs
	}
	return out
}
