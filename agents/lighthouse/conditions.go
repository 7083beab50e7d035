package lighthouse

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// exportState is what the conditions of one ServiceExport are computed from.
type exportState struct {
	// cluster is this cluster's ID.
	cluster string
	// invalid is set when the export is not valid (no Service, ExternalName).
	invalid *Invalid
	// failure is set when the export cannot be published for a reason that
	// waiting does not cure (the aggregated ServiceImport's name is taken).
	failure error
	// merged merges the records of the live clusters, this cluster's included.
	merged Merged
	// published says that this cluster's record is in the aggregated
	// ServiceImport on the broker.
	published bool
	// slices is the number of EndpointSlices the export has; slicesPending the
	// number of them not yet on the broker as they are in the cluster.
	slices, slicesPending int
	// brokerErr is the last failure to write the aggregated ServiceImport.
	brokerErr error
}

// State names of the submariner_service_export metric.
const (
	stateExported = "exported"
	statePending  = "pending"
	stateFailed   = "failed"
	stateInvalid  = "invalid"
)

// exportConditions returns the Valid, Ready and Conflict conditions of a
// ServiceExport in st (their LastTransitionTime is left for setConditions), and
// the state the metric counts it under.
func exportConditions(st exportState) ([]metav1.Condition, string) {
	cond := func(t mcsv1beta1.ServiceExportConditionType, s metav1.ConditionStatus, r mcsv1beta1.ServiceExportConditionReason, msg string) metav1.Condition {
		return metav1.Condition{Type: string(t), Status: s, Reason: string(r), Message: msg}
	}
	if st.invalid != nil {
		ready := cond(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionFalse, mcsv1beta1.ServiceExportReasonPending,
			"Not exported: waiting for the Service")
		if st.invalid.Reason != mcsv1beta1.ServiceExportReasonNoService {
			ready.Reason, ready.Message = string(mcsv1beta1.ServiceExportReasonFailed), "Not exported: the export is not valid"
		}
		return []metav1.Condition{
			cond(mcsv1beta1.ServiceExportConditionValid, metav1.ConditionFalse, st.invalid.Reason, st.invalid.Message),
			ready,
		}, stateInvalid
	}
	valid := cond(mcsv1beta1.ServiceExportConditionValid, metav1.ConditionTrue, mcsv1beta1.ServiceExportReasonValid,
		"The Service can be exported")
	if st.failure != nil {
		return []metav1.Condition{valid,
			cond(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionFalse, mcsv1beta1.ServiceExportReasonFailed, "Not exported: "+st.failure.Error()),
		}, stateFailed
	}
	conflict := cond(mcsv1beta1.ServiceExportConditionConflict, metav1.ConditionFalse, mcsv1beta1.ServiceExportReasonNoConflicts,
		"The exports of this Service in the clusterset agree")
	if len(st.merged.Conflicts) > 0 {
		conflict = cond(mcsv1beta1.ServiceExportConditionConflict, metav1.ConditionTrue,
			mcsv1beta1.ServiceExportConditionReason(st.merged.Reasons()), st.merged.Messages())
	}
	var ready metav1.Condition
	state := statePending
	switch {
	case st.published && !st.merged.Exported(st.cluster):
		ready = cond(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionFalse, mcsv1beta1.ServiceExportReasonFailed,
			fmt.Sprintf("Not exported: the Service is %s but the oldest export of this Service, in cluster %s, makes it %s (see the Conflict condition)",
				otherType(st.merged.Type), st.merged.Winner, st.merged.Type))
		state = stateFailed
	case st.brokerErr != nil:
		ready = cond(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionFalse, mcsv1beta1.ServiceExportReasonPending,
			"Waiting for the broker: "+st.brokerErr.Error())
	case !st.published:
		ready = cond(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionFalse, mcsv1beta1.ServiceExportReasonPending,
			"Waiting for the ServiceImport to be published on the broker")
	case st.slicesPending > 0:
		ready = cond(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionFalse, mcsv1beta1.ServiceExportReasonPending,
			fmt.Sprintf("Waiting for %d of %d EndpointSlices to reach the broker", st.slicesPending, st.slices))
	default:
		ready = cond(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionTrue, mcsv1beta1.ServiceExportReasonExported,
			fmt.Sprintf("The Service is exported: its ServiceImport and %d EndpointSlice(s) are on the broker", st.slices))
		state = stateExported
	}
	return []metav1.Condition{valid, ready, conflict}, state
}

func otherType(t mcsv1beta1.ServiceImportType) mcsv1beta1.ServiceImportType {
	if t == mcsv1beta1.Headless {
		return mcsv1beta1.ClusterSetIP
	}
	return mcsv1beta1.Headless
}

// setConditions sets want on the conditions in have (types not in want are
// removed: an invalid export has no Conflict), keeping the transition time of
// the conditions whose status does not change, and reports whether anything
// changed.
func setConditions(have *[]metav1.Condition, want []metav1.Condition, generation int64, now metav1.Time) bool {
	changed := false
	keep := map[string]bool{}
	for _, c := range want {
		keep[c.Type] = true
		c.ObservedGeneration = generation
		c.LastTransitionTime = now
		old := meta.FindStatusCondition(*have, c.Type)
		if old != nil && old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message &&
			old.ObservedGeneration == c.ObservedGeneration {
			continue
		}
		meta.SetStatusCondition(have, c)
		changed = true
	}
	var drop []string
	for _, c := range *have {
		if !keep[c.Type] {
			drop = append(drop, c.Type)
		}
	}
	for _, t := range drop {
		meta.RemoveStatusCondition(have, t)
		changed = true
	}
	return changed
}
