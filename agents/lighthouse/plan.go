package lighthouse

import (
	"errors"
	"fmt"
	"maps"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Operations on the aggregated ServiceImport.
const (
	opNone   = ""
	opCreate = "create"
	opUpdate = "update"
	opDelete = "delete"
)

// aggregatePlan is what to write to the broker so that one cluster's record is
// in (or out of) the aggregated ServiceImport of a Service.
type aggregatePlan struct {
	// op is opNone, opCreate, opUpdate (the object, then its status when
	// statusChanged) or opDelete (the last record went).
	op string
	// obj is the object to create or update (its spec, metadata and status as
	// wanted), or to delete.
	obj *mcsv1beta1.ServiceImport
	// specChanged says that the metadata or spec needs writing (opUpdate).
	specChanged bool
	// statusChanged says that the status needs writing through the subresource.
	statusChanged bool
}

// errNameTaken says that the aggregated ServiceImport's name belongs to another
// Service: names <svc>-<ns> can collide ("a-b" in "c" and "a" in "b-c").
var errNameTaken = errors.New("the name of the aggregated ServiceImport is taken")

// planAggregate returns the writes that put rec (nil: remove cluster's record)
// into cur, the aggregated ServiceImport of Service namespace/name on the broker
// in brokerNS (nil: there is none yet). The merged spec and status are computed
// from all records, whatever the clusters' liveness: every agent computes the
// same object from the same records, so the agents never undo each other's
// writes.
func planAggregate(cur *mcsv1beta1.ServiceImport, brokerNS, namespace, name, cluster string, rec *Record) (aggregatePlan, error) {
	if cur != nil {
		if ns, n, ok := aggregateOf(cur); !ok || ns != namespace || n != name {
			return aggregatePlan{}, fmt.Errorf("%w: %s/%s on the broker aggregates %s, not Service %s/%s; rename the Service or its namespace",
				errNameTaken, cur.Namespace, cur.Name, describeAggregate(cur), namespace, name)
		}
	}
	if rec == nil && !holdsRecordOf(cur, cluster) {
		// Nothing of this cluster's to withdraw: the object is the others'.
		return aggregatePlan{obj: cur}, nil
	}
	desired := &mcsv1beta1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: brokerNS, Name: AggregateName(name, namespace)}}
	if cur != nil {
		desired = cur.DeepCopy()
	}
	annotations := maps.Clone(desired.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[mcsv1beta1.LabelServiceName] = name
	annotations[submv1.LabelSourceNamespace] = namespace
	delete(annotations, AnnotationTimestampPrefix+cluster)
	delete(annotations, AnnotationExportPrefix+cluster)
	if rec != nil {
		ts, export, err := encodeRecord(*rec)
		if err != nil {
			return aggregatePlan{}, err
		}
		annotations[AnnotationTimestampPrefix+cluster] = ts
		annotations[AnnotationExportPrefix+cluster] = export
	}
	desired.Annotations = annotations

	records, _ := decodeRecords(annotations)
	if len(records) == 0 {
		if cur == nil {
			return aggregatePlan{}, nil
		}
		return aggregatePlan{op: opDelete, obj: cur}, nil
	}
	merged := Merge(records)
	desired.Spec = merged.Spec(desired.Spec.IPs)
	desired.Status.Clusters = merged.Status().Clusters

	if cur == nil {
		return aggregatePlan{op: opCreate, obj: desired, statusChanged: len(desired.Status.Clusters) > 0}, nil
	}
	p := aggregatePlan{obj: desired}
	p.statusChanged = !equality.Semantic.DeepEqual(cur.Status.Clusters, desired.Status.Clusters)
	p.specChanged = !maps.Equal(cur.Annotations, desired.Annotations) || !equality.Semantic.DeepEqual(cur.Spec, desired.Spec)
	if p.specChanged || p.statusChanged {
		p.op = opUpdate
	}
	return p, nil
}

// describeAggregate names the Service an aggregated ServiceImport stands for.
func describeAggregate(si *mcsv1beta1.ServiceImport) string {
	ns, n, ok := aggregateOf(si)
	if !ok {
		return "no Service (it lacks the annotations " + mcsv1beta1.LabelServiceName + " and " + submv1.LabelSourceNamespace + ")"
	}
	return "Service " + ns + "/" + n
}

// hasRecord reports whether the aggregated ServiceImport holds cluster's record
// exactly as rec.
func hasRecord(si *mcsv1beta1.ServiceImport, rec Record) bool {
	if si == nil {
		return false
	}
	ts, export, err := encodeRecord(rec)
	if err != nil {
		return false
	}
	return si.Annotations[AnnotationTimestampPrefix+rec.Cluster] == ts && si.Annotations[AnnotationExportPrefix+rec.Cluster] == export
}

// holdsRecordOf reports whether si carries an annotation of cluster's record.
func holdsRecordOf(si *mcsv1beta1.ServiceImport, cluster string) bool {
	if si == nil {
		return false
	}
	_, export := si.Annotations[AnnotationExportPrefix+cluster]
	_, ts := si.Annotations[AnnotationTimestampPrefix+cluster]
	return export || ts
}
