// Package globalnet_test holds the end-to-end test of Globalnet in the sandbox:
// two clusters with the same Pod and Service CIDRs, joined to a Globalnet broker,
// reach each other's exported Services through global IPs.
package globalnet_test

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/clustersettest"
	"github.com/submariner-go/submariner/e2e/nettest"
	"github.com/submariner-go/submariner/e2e/sandbox"
	"github.com/submariner-go/submariner/e2e/sandbox/sandboxtest"
)

func TestMain(m *testing.M) {
	opts := sandbox.DefaultOptions()
	opts.OverlappingCIDRs = true
	sandboxtest.Main(m, opts)
}

// TestOverlappingClusters: cluster2 exports a Service; cluster1, whose Pods use
// the very same addresses, resolves it to a global IP of cluster2's global CIDR
// and reaches it, and the server sees a global egress IP of cluster1.
func TestOverlappingClusters(t *testing.T) {
	sb := sandboxtest.Get(t)
	ctx := context.Background()
	c1, c2 := sandboxtest.ClusterFor(t, "cluster1"), sandboxtest.ClusterFor(t, "cluster2")
	if c1.Topology.PodCIDR != c2.Topology.PodCIDR {
		t.Fatalf("the sandbox's clusters do not overlap: %s and %s", c1.Topology.PodCIDR, c2.Topology.PodCIDR)
	}
	kubeconfig := func(name string) string {
		k, err := sb.Kubeconfig(name)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
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
	var got string
	sandboxtest.Eventually(t, func() bool {
		out, _, err := c1.Exec(ctx, ns, clientPod.Name, "dig", "+short", "+time=1", "+tries=1", name)
		got = strings.TrimSpace(out)
		a, perr := netip.ParseAddr(got)
		return err == nil && perr == nil && global[c2.Name].Contains(a)
	})
	if a, err := netip.ParseAddr(got); err != nil || !global[c2.Name].Contains(a) {
		t.Fatalf("%s resolves to %q in %s, want a global IP of %s (%s)", name, got, c1.Name, c2.Name, global[c2.Name])
	}
	url := fmt.Sprintf("http://%s:%d/", name, sandboxtest.HTTPPort)
	r := clustersettest.ConnectReply(t, c1, ns, clientPod.Name, "--http", url)
	if !global[c1.Name].Contains(r.Client.Addr()) {
		t.Errorf("the server in %s saw client %s, want a global egress IP of %s (%s)", c2.Name, r.Client.Addr(), c1.Name, global[c1.Name])
	}

	t.Run("namespace egress IP", func(t *testing.T) {
		geip := &submv1.GlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Name: "ns-egress", Namespace: ns}}
		if err := c1.Client.Create(ctx, geip); err != nil {
			t.Fatal(err)
		}
		var allocated []string
		sandboxtest.Eventually(t, func() bool {
			if err := c1.Client.Get(ctx, client.ObjectKeyFromObject(geip), geip); err != nil {
				return false
			}
			allocated = geip.Status.AllocatedIPs
			return len(allocated) == 1
		})
		if len(allocated) != 1 {
			t.Fatalf("GlobalEgressIP %s/ns-egress got %v, want one address (conditions %+v)", ns, allocated, geip.Status.Conditions)
		}
		var seen string
		sandboxtest.Eventually(t, func() bool {
			out, err := c1.Connect(ctx, ns, clientPod.Name, "--http", url, "--timeout=2s")
			if err != nil {
				return false
			}
			first, _, _ := strings.Cut(out, "\n")
			reply, err := nettest.ParseReply(first)
			seen = reply.Client.Addr().String()
			return err == nil && seen == allocated[0]
		})
		if seen != allocated[0] {
			t.Errorf("with GlobalEgressIP %s/ns-egress (%s), the server saw client %s", ns, allocated[0], seen)
		}
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
	})
}
