package apply_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/submariner-go/submariner/e2e/controlplane"
	"github.com/submariner-go/submariner/subctl/apply"
	"github.com/submariner-go/submariner/subctl/cluster"
)

func TestRefs(t *testing.T) {
	refs := []apply.Ref{
		{APIVersion: "apps/v1", Kind: "DaemonSet", Namespace: "ns", Name: "gw"},
		{APIVersion: "v1", Kind: "Namespace", Name: "ns"},
		{APIVersion: "example.com/v1", Kind: "Widget", Namespace: "ns", Name: "w"},
		{APIVersion: "v1", Kind: "ServiceAccount", Namespace: "ns", Name: "b"},
		{APIVersion: "v1", Kind: "ServiceAccount", Namespace: "ns", Name: "a"},
	}
	apply.SortRefs(refs)
	var got []string
	for _, r := range refs {
		got = append(got, r.String())
		back, err := apply.ParseRef(r.String())
		if err != nil || back != r {
			t.Errorf("ParseRef(%q) = %v, %v; want %v", r.String(), back, err, r)
		}
	}
	want := []string{
		"v1 Namespace /ns",
		"v1 ServiceAccount ns/a",
		"v1 ServiceAccount ns/b",
		"apps/v1 DaemonSet ns/gw",
		"example.com/v1 Widget ns/w",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sorted refs (-want +got):\n%s", diff)
	}
	if _, err := apply.ParseRef("v1 Namespace"); err == nil {
		t.Error("ParseRef accepted an entry without a name")
	}
}

func configMap(name, value string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": name, "namespace": "inv-test", "labels": map[string]any{"app.kubernetes.io/managed-by": "subctl"}},
		"data":     map[string]any{"k": value},
	}}
}

// TestSync applies, re-applies, prunes and dry-runs against a real API server.
func TestSync(t *testing.T) {
	p := controlplane.Start(t, "apply")[0]
	c, err := cluster.New(p.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a := &apply.Applier{Dynamic: c.Dynamic, Mapper: c.Mapper}
	inv := apply.Inventory{Namespace: "inv-test", Name: "inventory"}
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "inv-test"}}}
	labels := map[string]string{"app.kubernetes.io/managed-by": "subctl"}
	rv := func(name string) string {
		cm, err := p.Kube.CoreV1().ConfigMaps("inv-test").Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return "gone"
		}
		if err != nil {
			t.Fatal(err)
		}
		return cm.ResourceVersion
	}

	if _, err := a.Sync(ctx, inv, []*unstructured.Unstructured{ns, configMap("a", "1"), configMap("b", "1"), configMap("c", "1")}, map[string]string{"note": "x"}, labels, "subctl"); err != nil {
		t.Fatal(err)
	}
	before := map[string]string{"a": rv("a"), "b": rv("b"), "c": rv("c"), "inventory": rv("inventory")}

	// The same objects again: nothing changes, not even the inventory.
	if _, err := a.Sync(ctx, inv, []*unstructured.Unstructured{ns, configMap("a", "1"), configMap("b", "1"), configMap("c", "1")}, map[string]string{"note": "x"}, labels, "subctl"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, map[string]string{"a": rv("a"), "b": rv("b"), "c": rv("c"), "inventory": rv("inventory")}); diff != "" {
		t.Errorf("a repeated Sync changed objects (-before +after):\n%s", diff)
	}

	// c is handed to someone else (no longer our label); then a Sync without b and c
	// prunes b and keeps c.
	cm, _ := p.Kube.CoreV1().ConfigMaps("inv-test").Get(ctx, "c", metav1.GetOptions{})
	cm.Labels = map[string]string{"app.kubernetes.io/managed-by": "someone-else"}
	if _, err := p.Kube.CoreV1().ConfigMaps("inv-test").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := a.Sync(ctx, inv, []*unstructured.Unstructured{ns, configMap("a", "2")}, nil, labels, "subctl")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(apply.SyncResult{
		Pruned: []apply.Ref{{APIVersion: "v1", Kind: "ConfigMap", Namespace: "inv-test", Name: "b"}},
		Kept:   []apply.Ref{{APIVersion: "v1", Kind: "ConfigMap", Namespace: "inv-test", Name: "c"}},
	}, res); diff != "" {
		t.Errorf("Sync result (-want +got):\n%s", diff)
	}
	if rv("b") != "gone" || rv("c") == "gone" {
		t.Errorf("after pruning: b %s, c %s; want b gone and c kept", rv("b"), rv("c"))
	}
	data, err := inv.Read(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{apply.InventoryObjectsKey: "v1 ConfigMap inv-test/a\nv1 Namespace /inv-test\n"}, data); diff != "" {
		t.Errorf("inventory (-want +got):\n%s", diff)
	}

	// A dry run stores nothing.
	dry := &apply.Applier{Dynamic: c.Dynamic, Mapper: c.Mapper, DryRun: true}
	if _, err := dry.Sync(ctx, inv, []*unstructured.Unstructured{ns, configMap("d", "1")}, nil, labels, "subctl"); err != nil {
		t.Fatal(err)
	}
	if rv("d") != "gone" || rv("a") == "gone" {
		t.Errorf("the dry run stored d (%s) or pruned a (%s)", rv("d"), rv("a"))
	}
}
