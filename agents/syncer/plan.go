package syncer

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// shape says how an object's status travels.
type shape struct {
	// syncStatus copies the status at all.
	syncStatus bool
	// statusSubresource says that the status is written through /status, apart
	// from the rest of the object.
	statusSubresource bool
}

// contentKeys reports whether the top-level field key is part of what an object's
// main write carries and what the syncer compares: everything but the metadata,
// and the status only when it is synced and has no subresource of its own.
func (sh shape) contentKey(key string) bool {
	switch key {
	case "metadata":
		return false
	case "status":
		return sh.syncStatus && !sh.statusSubresource
	}
	return true
}

// separateStatus reports whether the status is synced through the subresource.
func (sh shape) separateStatus() bool { return sh.syncStatus && sh.statusSubresource }

// rejection is the reason an object is not synced: it cannot be, as it is, and
// retrying will not help until something changes.
type rejection struct {
	reason string // reasonConflict, reasonInvalid, reasonNamespaceMissing
	err    error
}

func (r *rejection) Error() string { return r.err.Error() }
func (r *rejection) Unwrap() error { return r.err }

func reject(reason string, format string, args ...any) *rejection {
	return &rejection{reason: reason, err: fmt.Errorf(format, args...)}
}

// desiredBroker returns the broker object that local object src should have, or
// nil when it should have none: src is gone, being deleted, a copy, another
// cluster's, or filtered out.
func (s *settings) desiredBroker(src *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	if src == nil || src.GetDeletionTimestamp() != nil {
		return nil, nil
	}
	labels := src.GetLabels()
	if _, copied := labels[LabelCopy]; copied {
		return nil, nil
	}
	if origin, ok := labels[submv1.ClusterIDLabel]; ok && origin != s.clusterID {
		return nil, nil
	}
	if s.up.filter != nil {
		ok, err := s.up.filter(src)
		if err != nil {
			return nil, reject(reasonInvalid, "filtering %s: %w", objectKey(src), err)
		}
		if !ok {
			return nil, nil
		}
	}
	obj := src
	if s.up.transform != nil {
		var err error
		if obj, err = s.up.transform(src.DeepCopy()); err != nil {
			return nil, reject(reasonInvalid, "transforming %s for the broker: %w", objectKey(src), err)
		}
	}
	name := s.up.brokerName(s.clusterID, src.GetNamespace(), src.GetName())
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return nil, reject(reasonInvalid, "broker name %q of %s is not valid (%s): fix the ToBroker.Name function",
			name, objectKey(src), strings.Join(errs, "; "))
	}

	labels = maps.Clone(obj.GetLabels())
	if labels == nil {
		labels = map[string]string{}
	}
	delete(labels, LabelCopy)
	labels[submv1.ClusterIDLabel] = s.clusterID
	labels[LabelOriginNamespace] = src.GetNamespace()
	annotations := maps.Clone(obj.GetAnnotations())
	if annotations == nil {
		annotations = map[string]string{}
	}
	delete(annotations, AnnotationBrokerName)
	annotations[AnnotationOriginName] = src.GetName()

	out := s.body(obj)
	out.SetNamespace(s.brokerNamespace)
	out.SetName(name)
	out.SetLabels(labels)
	out.SetAnnotations(annotations)
	return out, nil
}

// desiredCopy returns the local copy that broker object b should have, or nil when
// it should have none: b is gone, being deleted, this cluster's own, or filtered
// out.
func (s *settings) desiredCopy(b *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	if b == nil || b.GetDeletionTimestamp() != nil {
		return nil, nil
	}
	origin, hasOrigin := b.GetLabels()[submv1.ClusterIDLabel]
	if origin == s.clusterID {
		return nil, nil
	}
	if s.down.filter != nil {
		ok, err := s.down.filter(b)
		if err != nil {
			return nil, reject(reasonInvalid, "filtering broker object %s: %w", objectKey(b), err)
		}
		if !ok {
			return nil, nil
		}
	}
	namespace := s.down.into
	if s.down.namespace != nil {
		var err error
		if namespace, err = s.down.namespace(b); err != nil {
			return nil, reject(reasonInvalid, "choosing the namespace of the copy of broker object %s: %w", objectKey(b), err)
		}
	}
	obj := b.DeepCopy()
	obj.SetNamespace(namespace)
	if s.down.transform != nil {
		var err error
		if obj, err = s.down.transform(obj); err != nil {
			return nil, reject(reasonInvalid, "transforming broker object %s for this cluster: %w", objectKey(b), err)
		}
	}
	if errs := validation.IsDNS1123Label(obj.GetNamespace()); len(errs) > 0 {
		return nil, reject(reasonInvalid, "the copy of broker object %s would go to namespace %q, which is not valid (%s): fix FromBroker.Namespace or Transform",
			objectKey(b), obj.GetNamespace(), strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(obj.GetName()); len(errs) > 0 {
		return nil, reject(reasonInvalid, "the copy of broker object %s would be named %q, which is not valid (%s): fix FromBroker.Transform",
			objectKey(b), obj.GetName(), strings.Join(errs, "; "))
	}

	labels := maps.Clone(obj.GetLabels())
	if labels == nil {
		labels = map[string]string{}
	}
	if hasOrigin {
		labels[submv1.ClusterIDLabel] = origin
	}
	labels[LabelCopy] = "true"
	annotations := maps.Clone(obj.GetAnnotations())
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[AnnotationBrokerName] = b.GetName()

	out := s.body(obj)
	out.SetNamespace(obj.GetNamespace())
	out.SetName(obj.GetName())
	out.SetLabels(labels)
	out.SetAnnotations(annotations)
	return out, nil
}

// body returns a new object of the syncer's kind with everything of obj but its
// metadata, and its status only when the status is synced.
func (s *settings) body(obj *unstructured.Unstructured) *unstructured.Unstructured {
	out := &unstructured.Unstructured{Object: map[string]any{}}
	for k, v := range obj.Object {
		if k == "metadata" || (k == "status" && !s.syncStatus) {
			continue
		}
		out.Object[k] = runtime.DeepCopyJSONValue(v)
	}
	out.SetGroupVersionKind(s.gvk)
	return out
}

// action is one write.
type action struct {
	op string // opCreate, opUpdate, opUpdateStatus, opDelete
	// obj is what is sent: the object to create or update, the object whose
	// status to update, or the object to delete (by name, on condition of its UID).
	obj *unstructured.Unstructured
	// desired is the whole object the write works towards; nil for a delete.
	desired *unstructured.Unstructured
}

// writeMemo remembers the last write to an object: the fingerprint of what was
// wanted and the resourceVersion that the write produced. When the object still
// has that resourceVersion and the same is wanted, it is in sync even if the API
// server stored it differently (defaults, normalisation), so the syncer does not
// write it again and again.
type writeMemo struct {
	fingerprint     string
	resourceVersion string
}

// compare returns the writes that turn actual into desired (neither nil): none,
// an update, a status update, or both.
func (sh shape) compare(desired, actual *unstructured.Unstructured, memo writeMemo) []action {
	if memo.resourceVersion != "" && memo.resourceVersion == actual.GetResourceVersion() &&
		memo.fingerprint == sh.fingerprint(desired) {
		return nil
	}
	var actions []action
	if !sh.sameContent(desired, actual) {
		actions = append(actions, action{op: opUpdate, obj: sh.merge(desired, actual), desired: desired})
	}
	if sh.separateStatus() && !equality.Semantic.DeepEqual(normalize(desired.Object["status"]), normalize(actual.Object["status"])) {
		actions = append(actions, action{op: opUpdateStatus, obj: withStatus(actual, desired), desired: desired})
	}
	return actions
}

// withStatus returns obj with the status of from.
func withStatus(obj, from *unstructured.Unstructured) *unstructured.Unstructured {
	out := obj.DeepCopy()
	if status, ok := from.Object["status"]; ok {
		out.Object["status"] = runtime.DeepCopyJSONValue(status)
	} else {
		delete(out.Object, "status")
	}
	return out
}

// sameContent reports whether actual has desired's labels, annotations and
// content.
func (sh shape) sameContent(desired, actual *unstructured.Unstructured) bool {
	if !maps.Equal(desired.GetLabels(), actual.GetLabels()) || !maps.Equal(desired.GetAnnotations(), actual.GetAnnotations()) {
		return false
	}
	return equality.Semantic.DeepEqual(sh.content(desired), sh.content(actual))
}

// content returns the fields of obj that sameContent compares, normalized.
func (sh shape) content(obj *unstructured.Unstructured) map[string]any {
	out := map[string]any{}
	for k, v := range obj.Object {
		if sh.contentKey(k) {
			if v = normalize(v); v != nil {
				out[k] = v
			}
		}
	}
	return out
}

// merge returns actual with desired's labels, annotations and content, keeping
// actual's identity (UID, resourceVersion) for an update.
func (sh shape) merge(desired, actual *unstructured.Unstructured) *unstructured.Unstructured {
	out := actual.DeepCopy()
	for k := range out.Object {
		if sh.contentKey(k) {
			delete(out.Object, k)
		}
	}
	for k, v := range desired.Object {
		if sh.contentKey(k) {
			out.Object[k] = runtime.DeepCopyJSONValue(v)
		}
	}
	out.SetLabels(desired.GetLabels())
	out.SetAnnotations(desired.GetAnnotations())
	return out
}

// fingerprint identifies what desired asks for.
func (sh shape) fingerprint(desired *unstructured.Unstructured) string {
	v := map[string]any{
		"labels":      desired.GetLabels(),
		"annotations": desired.GetAnnotations(),
		"content":     sh.content(desired),
	}
	if sh.separateStatus() {
		v["status"] = normalize(desired.Object["status"])
	}
	data, err := json.Marshal(v) // maps marshal with sorted keys
	if err != nil {
		return "" // not JSON: never matches, so the object is compared in full
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// normalize returns v as the syncer compares it: without map entries that are
// null, empty maps or empty lists, recursively, and nil for v itself when it is
// one of those. An API server may store "field: null" or "field: {}" as no field
// at all, and JSON clients treat them alike.
func normalize(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			if e = normalize(e); e != nil {
				out[k] = e
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	case []any:
		if len(v) == 0 {
			return nil
		}
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = normalize(e)
		}
		return out
	}
	return v
}

// ownedBy reports whether broker object b was pushed from local object
// namespace/name of cluster clusterID, or carries that cluster's label without
// saying where from (then the syncer adopts it).
func ownedBy(b *unstructured.Unstructured, clusterID, namespace, name string) bool {
	labels, annotations := b.GetLabels(), b.GetAnnotations()
	if labels[submv1.ClusterIDLabel] != clusterID {
		return false
	}
	originNS, hasNS := labels[LabelOriginNamespace]
	originName, hasName := annotations[AnnotationOriginName]
	if !hasNS && !hasName {
		return true
	}
	return originNS == namespace && originName == name
}

// planToBroker returns the writes that give local object namespace/name the
// broker object desired (nil: none), where the broker has existing (nil: nothing
// under that name).
func (s *settings) planToBroker(sh shape, desired, existing *unstructured.Unstructured, namespace, name string, memo writeMemo) ([]action, error) {
	switch {
	case desired == nil && existing == nil:
		return nil, nil
	case desired == nil:
		if existing.GetDeletionTimestamp() == nil && pushedBy(existing, s.clusterID, namespace, name) {
			return []action{{op: opDelete, obj: existing}}, nil
		}
		return nil, nil
	case existing == nil:
		return []action{{op: opCreate, obj: desired, desired: desired}}, nil
	case !ownedBy(existing, s.clusterID, namespace, name):
		return nil, reject(reasonConflict, "broker object %s already exists for %s: %s cannot use the name; rename the object or change ToBroker.Name",
			objectKey(existing), describeOrigin(existing), objectKeyOf(namespace, name))
	}
	return sh.compare(desired, existing, memo), nil
}

// pushedBy reports whether broker object b says it was pushed from local object
// namespace/name of cluster clusterID.
func pushedBy(b *unstructured.Unstructured, clusterID, namespace, name string) bool {
	return b.GetLabels()[submv1.ClusterIDLabel] == clusterID &&
		b.GetLabels()[LabelOriginNamespace] == namespace &&
		b.GetAnnotations()[AnnotationOriginName] == name
}

// planFromBroker returns the writes that give broker object brokerName the local
// copy desired (nil: none). copies are the existing copies of that broker object,
// atTarget the copy of any broker object where desired goes (nil: none).
func planFromBroker(sh shape, brokerName string, desired *unstructured.Unstructured, copies []*unstructured.Unstructured,
	atTarget *unstructured.Unstructured, memo writeMemo) ([]action, error) {
	var actions []action
	var current *unstructured.Unstructured
	for _, c := range copies {
		if desired != nil && c.GetNamespace() == desired.GetNamespace() && c.GetName() == desired.GetName() {
			current = c
			continue
		}
		if c.GetDeletionTimestamp() == nil {
			actions = append(actions, action{op: opDelete, obj: c})
		}
	}
	if desired == nil {
		return actions, nil
	}
	if current == nil && atTarget != nil {
		return actions, reject(reasonConflict, "%s is already the copy of broker object %s: the copy of broker object %s cannot go there; fix FromBroker.Transform",
			objectKey(atTarget), atTarget.GetAnnotations()[AnnotationBrokerName], brokerName)
	}
	if current == nil {
		return append(actions, action{op: opCreate, obj: desired, desired: desired}), nil
	}
	return append(actions, sh.compare(desired, current, memo)...), nil
}

func describeOrigin(b *unstructured.Unstructured) string {
	cluster, ok := b.GetLabels()[submv1.ClusterIDLabel]
	if !ok {
		return "no cluster"
	}
	name, ok := b.GetAnnotations()[AnnotationOriginName]
	if !ok {
		return "cluster " + cluster
	}
	return fmt.Sprintf("%s in cluster %s", objectKeyOf(b.GetLabels()[LabelOriginNamespace], name), cluster)
}

func objectKey(obj *unstructured.Unstructured) string {
	return objectKeyOf(obj.GetNamespace(), obj.GetName())
}

func objectKeyOf(namespace, name string) string {
	return types.NamespacedName{Namespace: namespace, Name: name}.String()
}
