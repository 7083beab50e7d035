package globalnet

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// outcome is the Allocated condition a reconcile wants.
type outcome struct {
	ok      bool
	reason  string
	message string
}

func success(format string, args ...any) outcome {
	return outcome{ok: true, reason: submv1.ReasonSuccess, message: fmt.Sprintf(format, args...)}
}

func failure(reason, format string, args ...any) outcome {
	return outcome{reason: reason, message: fmt.Sprintf(format, args...)}
}

func (o outcome) status() metav1.ConditionStatus {
	if o.ok {
		return metav1.ConditionTrue
	}
	return metav1.ConditionFalse
}

// same reports whether have already says o for generation.
func (o outcome) same(have condition, generation int64) bool {
	return have.Status == o.status() && have.Reason == o.reason && have.MessageHash == hash([]byte(o.message)) && have.ObservedGeneration == generation
}

// condition renders o, keeping the transition time when the status did not change.
func (e *Engine) condition(o outcome, have condition, generation int64) metav1.Condition {
	t := metav1.Unix(have.LastTransition, 0).Rfc3339Copy()
	if have.Status != o.status() || have.LastTransition <= 0 {
		t = metav1.NewTime(e.now().UTC().Truncate(1e9))
	}
	return metav1.Condition{
		Type: submv1.ConditionAllocated, Status: o.status(), Reason: o.reason, Message: o.message,
		ObservedGeneration: generation, LastTransitionTime: t,
	}
}

// writeIngressStatus records ip (invalid: none) and o in a GlobalIngressIP's status,
// unless it says so already.
func (e *Engine) writeIngressStatus(ctx context.Context, key types.NamespacedName, rec ingressRec, ip netip.Addr, o outcome) error {
	want := ""
	if ip.IsValid() {
		want = ip.String()
	}
	if rec.AllocatedIP == want && o.same(rec.Cond, rec.Generation) {
		return nil
	}
	var allocated any
	if want != "" {
		allocated = want
	}
	status := map[string]any{"allocatedIP": allocated, "conditions": []metav1.Condition{e.condition(o, rec.Cond, rec.Generation)}}
	obj := &submv1.GlobalIngressIP{ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace}}
	return e.patchStatus(ctx, obj, rec.UID, status)
}

// writeEgressStatus records ips and o in a (Cluster)GlobalEgressIP's status, unless
// it says so already.
func (e *Engine) writeEgressStatus(ctx context.Context, obj client.Object, rec egressRec, ips []netip.Addr, o outcome) error {
	want := addrStrings(ips)
	if sameStrings(rec.AllocatedIPs, want) && o.same(rec.Cond, rec.Generation) {
		return nil
	}
	var allocated any
	if len(want) > 0 {
		allocated = want
	}
	status := map[string]any{"allocatedIPs": allocated, "conditions": []metav1.Condition{e.condition(o, rec.Cond, rec.Generation)}}
	return e.patchStatus(ctx, obj, rec.UID, status)
}

// patchStatus merge-patches obj's status, on the condition that the object is still
// the one with uid: a status is never written into a new object of the same name.
// An object that is gone or replaced needs no status: its own events follow.
func (e *Engine) patchStatus(ctx context.Context, obj client.Object, uid types.UID, status map[string]any) error {
	data, err := json.Marshal(map[string]any{"metadata": map[string]any{"uid": uid}, "status": status})
	if err != nil {
		return fmt.Errorf("encoding the status of %s: %w", describe(obj), err)
	}
	err = e.kube.Status().Patch(ctx, obj, client.RawPatch(types.MergePatchType, data))
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("writing the status of %s: %w", describe(obj), err)
	}
	return nil
}

// deleteObject deletes obj if it is still the one with uid (empty: any).
func (e *Engine) deleteObject(ctx context.Context, obj client.Object, uid types.UID) error {
	var opts []client.DeleteOption
	if uid != "" {
		opts = append(opts, client.Preconditions{UID: &uid})
	}
	err := e.kube.Delete(ctx, obj, opts...)
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("deleting %s: %w", describe(obj), err)
	}
	return nil
}

func describe(obj client.Object) string {
	kind := fmt.Sprintf("%T", obj)
	switch obj.(type) {
	case *submv1.GlobalIngressIP:
		kind = "GlobalIngressIP"
	case *submv1.GlobalEgressIP:
		kind = "GlobalEgressIP"
	case *submv1.ClusterGlobalEgressIP:
		kind = "ClusterGlobalEgressIP"
	}
	if obj.GetNamespace() == "" {
		return kind + " " + obj.GetName()
	}
	return kind + " " + obj.GetNamespace() + "/" + obj.GetName()
}
