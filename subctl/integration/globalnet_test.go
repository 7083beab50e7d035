package integration

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/controlplane"
	"github.com/submariner-go/submariner/manifests"
	"github.com/submariner-go/submariner/subctl/globalnet"
	"github.com/submariner-go/submariner/subctl/join"
)

// TestGlobalnet joins two clusters with the same CIDRs to a Globalnet broker at the
// same time: both are accepted and get distinct global CIDRs from the broker's
// range. A requested global CIDR that overlaps another cluster's is refused with
// the conflict named; opting out of Globalnet prunes the globalnet component and
// frees the block. Many allocations racing on the real ConfigMap never collide.
func TestGlobalnet(t *testing.T) {
	planes := controlplane.Start(t, "broker", "cluster1", "cluster2")
	b, c1, c2 := planes[0], planes[1], planes[2]
	ctx := context.Background()
	info := deployBroker(t, b, "--globalnet", "--globalnet-cidr-range", "242.0.0.0/16", "--default-globalnet-cluster-size", "4096")

	// The same CIDRs for both, and both joins at once.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, p := range []*controlplane.Plane{c1, c2} {
		wg.Go(func() {
			_, errs[i] = subctl(t, "join", info, "--kubeconfig", p.Kubeconfig, "--clusterid", p.Name,
				"--clustercidr", "10.1.0.0/16", "--servicecidr", "10.101.0.0/16", "--cable-driver", "vxlan")
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("join of cluster%d: %v", i+1, err)
		}
	}
	global := map[string]netip.Prefix{}
	for _, p := range []*controlplane.Plane{c1, c2} {
		cm, err := p.Kube.CoreV1().ConfigMaps(submv1.ComponentNamespace).Get(ctx, manifests.ConfigMapName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		g, err := netip.ParsePrefix(cm.Data["SUBMARINER_GLOBALCIDR"])
		if err != nil || g.Bits() != 20 || !netip.MustParsePrefix("242.0.0.0/16").Contains(g.Addr()) {
			t.Errorf("%s got global CIDR %q (%v), want a /20 inside 242.0.0.0/16", p.Name, cm.Data["SUBMARINER_GLOBALCIDR"], err)
		}
		global[p.Name] = g
		if _, err := p.Kube.AppsV1().DaemonSets(submv1.ComponentNamespace).Get(ctx, manifests.GlobalnetDaemonSet, metav1.GetOptions{}); err != nil {
			t.Errorf("%s has no globalnet DaemonSet: %v", p.Name, err)
		}
	}
	if global["cluster1"].Overlaps(global["cluster2"]) {
		t.Fatalf("the clusters got overlapping global CIDRs %s and %s", global["cluster1"], global["cluster2"])
	}
	gn := globalnet.Broker{Kube: b.Kube, Namespace: submv1.BrokerNamespace}
	recorded, _, err := gn.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]globalnet.Allocation{
		{ClusterID: "cluster1", GlobalCIDRs: []string{global["cluster1"].String()}},
		{ClusterID: "cluster2", GlobalCIDRs: []string{global["cluster2"].String()}},
	}, recorded.Clusters); diff != "" {
		t.Errorf("allocations on the broker (-want +got):\n%s", diff)
	}
	var cl submv1.Cluster
	if err := b.Client.Get(ctx, clusterKey("cluster2"), &cl); err != nil || !cmp.Equal(cl.Spec.GlobalCIDR, []string{global["cluster2"].String()}) {
		t.Errorf("cluster2's Cluster on the broker: %v, global CIDR %v", err, cl.Spec.GlobalCIDR)
	}

	// The Globalnet settings cannot change under clusters that hold global CIDRs.
	before := snapshot(t, b)
	_, err = subctl(t, "deploy-broker", "--kubeconfig", b.Kubeconfig, "-o", filepath.Join(t.TempDir(), "x.subm"))
	wantError(t, err, "the broker has Globalnet on, range 242.0.0.0/16, 4096 addresses per cluster and 2 clusters hold global CIDRs; this run asks for Globalnet off")
	if diff := cmp.Diff(before, snapshot(t, b)); diff != "" {
		t.Errorf("the refused deploy-broker changed the broker (-before +after):\n%s", diff)
	}

	// A requested global CIDR that overlaps cluster1's is refused, and nothing changes.
	_, err = subctl(t, "join", info, "--kubeconfig", c2.Kubeconfig, "--clusterid", "cluster2",
		"--clustercidr", "10.1.0.0/16", "--servicecidr", "10.101.0.0/16", "--cable-driver", "vxlan",
		"--globalnet-cidr", global["cluster1"].String())
	wantError(t, err, fmt.Sprintf("global CIDR %s overlaps cluster cluster1's global CIDR %s", global["cluster1"], global["cluster1"]))
	if diff := cmp.Diff(before, snapshot(t, b)); diff != "" {
		t.Errorf("the refused join changed the broker (-before +after):\n%s", diff)
	}

	// cluster2 opts out of Globalnet: the component and its RBAC are pruned and its
	// block is freed. (Its CIDRs are only checked against cluster1's global CIDR.)
	mustSubctl(t, "join", info, "--kubeconfig", c2.Kubeconfig, "--clusterid", "cluster2",
		"--clustercidr", "10.2.0.0/16", "--servicecidr", "10.102.0.0/16", "--cable-driver", "vxlan", "--globalnet=false")
	if _, err := c2.Kube.AppsV1().DaemonSets(submv1.ComponentNamespace).Get(ctx, manifests.GlobalnetDaemonSet, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the globalnet DaemonSet was not pruned: %v", err)
	}
	if _, err := c2.Kube.RbacV1().ClusterRoles().Get(ctx, "submariner-globalnet", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the globalnet ClusterRole was not pruned: %v", err)
	}
	recorded, _, err = gn.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(recorded.Clusters) != 1 || recorded.Clusters[0].ClusterID != "cluster1" {
		t.Errorf("allocations after cluster2 opted out: %v, want only cluster1's", recorded.Clusters)
	}

	// Many allocations at once on the real ConfigMap, each retried on conflict.
	const n = 12
	got := make([]netip.Prefix, n)
	allocErrs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			got[i], allocErrs[i] = gn.Allocate(ctx, fmt.Sprintf("racer%d", i), netip.Prefix{}, 256, nil)
		})
	}
	wg.Wait()
	taken := []netip.Prefix{global["cluster1"]}
	for i := range n {
		if allocErrs[i] != nil {
			t.Fatalf("racer%d: %v", i, allocErrs[i])
		}
		for _, o := range taken {
			if o.Overlaps(got[i]) {
				t.Fatalf("racer%d got %s, which overlaps %s", i, got[i], o)
			}
		}
		taken = append(taken, got[i])
	}
	recorded, _, err = gn.Read(ctx)
	if err != nil || len(recorded.Clusters) != n+1 {
		t.Errorf("the ConfigMap records %d allocations (err %v), want %d", len(recorded.Clusters), err, n+1)
	}
}

func clusterKey(id string) client.ObjectKey {
	return client.ObjectKey{Namespace: submv1.BrokerNamespace, Name: join.BrokerClusterName(id)}
}
