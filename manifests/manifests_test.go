package manifests_test

import (
	"context"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/controlplane"
	"github.com/submariner-go/submariner/manifests"
	"github.com/submariner-go/submariner/manifests/manifeststest"
	"github.com/submariner-go/submariner/subctl/apply"
	"github.com/submariner-go/submariner/subctl/cluster"
	"github.com/submariner-go/submariner/subctl/render"
)

func images(t *testing.T) map[string]string {
	t.Helper()
	imgs, err := render.Images(manifests.DefaultRepository, manifests.ManifestTag, nil)
	if err != nil {
		t.Fatal(err)
	}
	return imgs
}

var testConfig = map[string]string{
	"SUBMARINER_CLUSTERID":   "cluster1",
	"SUBMARINER_CLUSTERCIDR": "10.1.0.0/16",
	"SUBMARINER_SERVICECIDR": "10.101.0.0/16",
	"SUBMARINER_GLOBALCIDR":  "242.0.0.0/16",
	"SUBMARINER_CABLEDRIVER": "libreswan",
	"SUBMARINER_NATENABLED":  "false",
}

// TestApplyDryRun renders every overlay (each cable driver, with and without
// Globalnet) and the broker, and has a real API server validate and admit every
// object with a server-side apply dry run: schemas, defaults, RBAC references and
// the admission policies' CEL all pass.
func TestApplyDryRun(t *testing.T) {
	p := controlplane.Start(t, "manifests")[0]
	c, err := cluster.New(p.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// A dry run cannot create objects inside a namespace that a dry run created.
	real := &apply.Applier{Dynamic: c.Dynamic, Mapper: c.Mapper}
	for _, ns := range []string{submv1.ComponentNamespace, submv1.BrokerNamespace} {
		if err := real.ApplyOne(ctx, namespace(ns)); err != nil {
			t.Fatal(err)
		}
	}
	dry := &apply.Applier{Dynamic: c.Dynamic, Mapper: c.Mapper, DryRun: true}
	for _, driver := range submv1.Backends {
		for _, gn := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/globalnet=%v", driver, gn), func(t *testing.T) {
				objs, err := render.Cluster(render.ClusterOptions{CableDriver: driver, Globalnet: gn, Images: images(t), Config: testConfig})
				if err != nil {
					t.Fatal(err)
				}
				if err := dry.Apply(ctx, objs); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
	t.Run("broker", func(t *testing.T) {
		objs, err := render.Broker()
		if err != nil {
			t.Fatal(err)
		}
		if err := dry.Apply(ctx, objs); err != nil {
			t.Fatal(err)
		}
	})
	// Nothing was stored.
	dss, err := p.Kube.AppsV1().DaemonSets(submv1.ComponentNamespace).List(ctx, metav1.ListOptions{})
	if err != nil || len(dss.Items) != 0 {
		t.Errorf("the dry run stored DaemonSets: %d (err %v)", len(dss.Items), err)
	}
}

func namespace(name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name},
	}}
}

// TestLeastPrivilege applies the components (libreswan with Globalnet: every
// ServiceAccount) to a real API server and asks it, with SubjectAccessReviews,
// whether each component's ServiceAccount may do what the component needs (it
// must) and a set of things it does not need (it must not).
func TestLeastPrivilege(t *testing.T) {
	p := controlplane.Start(t, "rbac")[0]
	c, err := cluster.New(p.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	objs, err := render.Cluster(render.ClusterOptions{CableDriver: submv1.BackendLibreswan, Globalnet: true, Images: images(t), Config: testConfig})
	if err != nil {
		t.Fatal(err)
	}
	if err := (&apply.Applier{Dynamic: c.Dynamic, Mapper: c.Mapper}).Apply(ctx, objs); err != nil {
		t.Fatal(err)
	}
	if n := manifeststest.Check(t, p.Kube); n == 0 {
		t.Error("no access was checked")
	}
}
