// Package apply puts rendered objects into a cluster with server-side apply and
// prunes what an earlier run applied and this one no longer does. Each run records
// what it applied in an inventory ConfigMap, so that re-running converges and
// uninstall knows what to remove.
package apply

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// FieldManager is subctl's server-side apply field manager.
const FieldManager = "subctl"

// InventoryObjectsKey is the inventory ConfigMap's key listing the applied objects,
// one Ref per line.
const InventoryObjectsKey = "objects"

// Ref names one object: group/version, kind, namespace and name.
type Ref struct {
	APIVersion string
	Kind       string
	Namespace  string
	Name       string
}

// String renders r as "apps/v1 DaemonSet submariner-operator/submariner-gateway"
// ("v1 Namespace /submariner-operator" for a cluster-scoped object); ParseRef reads it.
func (r Ref) String() string {
	return r.APIVersion + " " + r.Kind + " " + r.Namespace + "/" + r.Name
}

// ParseRef parses the String form of a Ref.
func ParseRef(s string) (Ref, error) {
	f := strings.Fields(s)
	if len(f) != 3 {
		return Ref{}, fmt.Errorf("inventory entry %q is not \"apiVersion kind namespace/name\"", s)
	}
	ns, name, ok := strings.Cut(f[2], "/")
	if !ok || name == "" {
		return Ref{}, fmt.Errorf("inventory entry %q has no namespace/name", s)
	}
	return Ref{APIVersion: f[0], Kind: f[1], Namespace: ns, Name: name}, nil
}

// GroupVersionKind returns r's GVK.
func (r Ref) GroupVersionKind() schema.GroupVersionKind {
	gv, _ := schema.ParseGroupVersion(r.APIVersion)
	return gv.WithKind(r.Kind)
}

// RefOf returns the Ref of obj.
func RefOf(obj *unstructured.Unstructured) Ref {
	return Ref{APIVersion: obj.GetAPIVersion(), Kind: obj.GetKind(), Namespace: obj.GetNamespace(), Name: obj.GetName()}
}

// kindOrder is the order in which kinds are applied: what others refer to comes
// first. Deletion runs in the reverse order. Unknown kinds go last.
var kindOrder = []string{
	"Namespace",
	"CustomResourceDefinition",
	"ServiceAccount",
	"ClusterRole",
	"Role",
	"ClusterRoleBinding",
	"RoleBinding",
	"ConfigMap",
	"Secret",
	"Service",
	"DaemonSet",
	"Deployment",
	"ValidatingAdmissionPolicy",
	"ValidatingAdmissionPolicyBinding",
}

func rank(kind string) int {
	for i, k := range kindOrder {
		if k == kind {
			return i
		}
	}
	return len(kindOrder)
}

// SortRefs orders refs for applying: by kind as kindOrder says, then by namespace
// and name.
func SortRefs(refs []Ref) {
	sort.SliceStable(refs, func(i, j int) bool {
		a, b := refs[i], refs[j]
		if ra, rb := rank(a.Kind), rank(b.Kind); ra != rb {
			return ra < rb
		}
		return a.String() < b.String()
	})
}

// Sort orders objs for applying, like SortRefs.
func Sort(objs []*unstructured.Unstructured) {
	sort.SliceStable(objs, func(i, j int) bool {
		a, b := RefOf(objs[i]), RefOf(objs[j])
		if ra, rb := rank(a.Kind), rank(b.Kind); ra != rb {
			return ra < rb
		}
		return a.String() < b.String()
	})
}

// Applier applies objects to one cluster.
type Applier struct {
	Dynamic dynamic.Interface
	Mapper  meta.ResettableRESTMapper
	// DryRun asks the API server to validate and admit everything without storing it.
	DryRun bool
}

// Resource maps a GVK to its resource, refreshing discovery once when the kind is
// unknown (a CRD installed a moment ago).
func (a *Applier) Resource(gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	m, err := a.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		a.Mapper.Reset()
		m, err = a.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return nil, fmt.Errorf("finding the resource of %s: %w", gvk, err)
	}
	return m, nil
}

func (a *Applier) client(gvk schema.GroupVersionKind, namespace string) (dynamic.ResourceInterface, error) {
	m, err := a.Resource(gvk)
	if err != nil {
		return nil, err
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return a.Dynamic.Resource(m.Resource).Namespace(namespace), nil
	}
	return a.Dynamic.Resource(m.Resource), nil
}

// Apply applies every object with server-side apply as FieldManager, taking
// ownership of conflicting fields, in dependency order. An object the server
// already has exactly like this is not changed.
func (a *Applier) Apply(ctx context.Context, objs []*unstructured.Unstructured) error {
	sorted := append([]*unstructured.Unstructured(nil), objs...)
	Sort(sorted)
	for _, obj := range sorted {
		if err := a.ApplyOne(ctx, obj); err != nil {
			return err
		}
	}
	return nil
}

// ApplyOne applies one object.
func (a *Applier) ApplyOne(ctx context.Context, obj *unstructured.Unstructured) error {
	ref := RefOf(obj)
	rc, err := a.client(ref.GroupVersionKind(), ref.Namespace)
	if err != nil {
		return err
	}
	opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
	if a.DryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	if _, err := rc.Apply(ctx, ref.Name, obj, opts); err != nil {
		return fmt.Errorf("applying %s: %w", ref, err)
	}
	return nil
}

// Delete deletes the object ref names, in the background (its dependents are
// garbage-collected). An object that does not exist is not an error. When
// managedBy is not empty, an object whose app.kubernetes.io/managed-by label is not
// managedBy is left alone (someone else owns it now), and skipped reports that.
func (a *Applier) Delete(ctx context.Context, ref Ref, managedBy string) (skipped bool, err error) {
	rc, err := a.client(ref.GroupVersionKind(), ref.Namespace)
	if err != nil {
		if meta.IsNoMatchError(err) {
			return false, nil // the kind is gone, and with it the object
		}
		return false, err
	}
	var precondition *metav1.Preconditions
	if managedBy != "" {
		cur, err := rc.Get(ctx, ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("reading %s: %w", ref, err)
		}
		if cur.GetLabels()["app.kubernetes.io/managed-by"] != managedBy {
			return true, nil
		}
		uid := cur.GetUID()
		precondition = &metav1.Preconditions{UID: &uid}
	}
	policy := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &policy, Preconditions: precondition}
	if a.DryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	if err := rc.Delete(ctx, ref.Name, opts); err != nil && !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("deleting %s: %w", ref, err)
	}
	return false, nil
}

// Inventory is the ConfigMap that records what a run applied.
type Inventory struct {
	Namespace, Name string
}

// Read returns the inventory's data, or nil when there is none.
func (inv Inventory) Read(ctx context.Context, a *Applier) (map[string]string, error) {
	rc, err := a.client(corev1.SchemeGroupVersion.WithKind("ConfigMap"), inv.Namespace)
	if err != nil {
		return nil, err
	}
	obj, err := rc.Get(ctx, inv.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the inventory %s/%s: %w", inv.Namespace, inv.Name, err)
	}
	data, _, err := unstructured.NestedStringMap(obj.Object, "data")
	if err != nil {
		return nil, fmt.Errorf("reading the inventory %s/%s: %w", inv.Namespace, inv.Name, err)
	}
	return data, nil
}

// Refs parses the inventory's object list.
func Refs(data map[string]string) ([]Ref, error) {
	var refs []Ref
	for _, line := range strings.Split(data[InventoryObjectsKey], "\n") {
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		r, err := ParseRef(line)
		if err != nil {
			return nil, err
		}
		refs = append(refs, r)
	}
	return refs, nil
}

// write applies the inventory with refs and extra keys.
func (inv Inventory) write(ctx context.Context, a *Applier, refs []Ref, extra map[string]string, labels map[string]string) error {
	lines := make([]string, 0, len(refs))
	for _, r := range refs {
		lines = append(lines, r.String())
	}
	sort.Strings(lines)
	data := map[string]string{InventoryObjectsKey: strings.Join(lines, "\n") + "\n"}
	for k, v := range extra {
		data[k] = v
	}
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: inv.Name, Namespace: inv.Namespace, Labels: labels},
		Data:       data,
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(cm)
	if err != nil {
		return err
	}
	return a.ApplyOne(ctx, &unstructured.Unstructured{Object: m})
}

// SyncResult says what Sync did.
type SyncResult struct {
	// Pruned lists the objects of the previous inventory that were deleted.
	Pruned []Ref
	// Kept lists objects of the previous inventory that are no longer wanted but
	// were left alone because they no longer carry our managed-by label.
	Kept []Ref
}

// Sync makes the cluster hold objs: it applies them (namespaces first, so that the
// inventory can be written into one of them), deletes what the previous inventory
// lists and objs no longer contain (only objects still labelled managedBy), and
// records objs and extra in the inventory. The inventory is written twice: before
// applying it lists the previous objects and the new ones, so that an interrupted
// run leaves nothing unrecorded; at the end it lists exactly objs.
func (a *Applier) Sync(ctx context.Context, inv Inventory, objs []*unstructured.Unstructured, extra, labels map[string]string, managedBy string) (SyncResult, error) {
	var res SyncResult
	old, err := inv.Read(ctx, a)
	if err != nil {
		return res, err
	}
	oldRefs, err := Refs(old)
	if err != nil {
		return res, fmt.Errorf("inventory %s/%s: %w", inv.Namespace, inv.Name, err)
	}
	want := map[string]bool{}
	var newRefs []Ref
	for _, o := range objs {
		r := RefOf(o)
		if !want[r.String()] {
			want[r.String()] = true
			newRefs = append(newRefs, r)
		}
	}
	union := append([]Ref(nil), newRefs...)
	for _, r := range oldRefs {
		if !want[r.String()] {
			union = append(union, r)
		}
	}
	sorted := append([]*unstructured.Unstructured(nil), objs...)
	Sort(sorted)
	i := 0
	for ; i < len(sorted) && sorted[i].GetKind() == "Namespace"; i++ {
		if err := a.ApplyOne(ctx, sorted[i]); err != nil {
			return res, err
		}
	}
	if !a.DryRun {
		if err := inv.write(ctx, a, union, mergeExtra(old, extra), labels); err != nil {
			return res, err
		}
	}
	for ; i < len(sorted); i++ {
		if err := a.ApplyOne(ctx, sorted[i]); err != nil {
			return res, err
		}
	}
	var stale []Ref
	for _, r := range oldRefs {
		if !want[r.String()] {
			stale = append(stale, r)
		}
	}
	SortRefs(stale)
	for j := len(stale) - 1; j >= 0; j-- {
		skipped, err := a.Delete(ctx, stale[j], managedBy)
		if err != nil {
			return res, fmt.Errorf("pruning: %w", err)
		}
		if skipped {
			res.Kept = append(res.Kept, stale[j])
		} else {
			res.Pruned = append(res.Pruned, stale[j])
		}
	}
	if a.DryRun {
		return res, nil
	}
	return res, inv.write(ctx, a, newRefs, extra, labels)
}

// mergeExtra keeps the previous inventory's extra keys under the new ones while a
// run is in progress, so that what an earlier run recorded (labelled nodes, for
// example) is not forgotten if this one stops half-way.
func mergeExtra(old, extra map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range old {
		if k != InventoryObjectsKey {
			out[k] = v
		}
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}
