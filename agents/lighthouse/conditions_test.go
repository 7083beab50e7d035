package lighthouse

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// short is a condition without its times, as the table states it.
type short struct{ Type, Status, Reason, Message string }

func shorten(cs []metav1.Condition) []short {
	out := make([]short, len(cs))
	for i, c := range cs {
		out[i] = short{c.Type, string(c.Status), c.Reason, c.Message}
	}
	return out
}

func TestExportConditions(t *testing.T) {
	valid := short{"Valid", "True", "Valid", "The Service can be exported"}
	noConflicts := short{"Conflict", "False", "NoConflicts", "The exports of this Service in the clusterset agree"}
	one := Merge([]Record{rec("cluster2", 0, tcp("http", 80))})
	typeConflict := Merge([]Record{rec("cluster1", 0, tcp("http", 80)), headless(rec("cluster2", 5, tcp("http", 80)))})
	portConflict := Merge([]Record{rec("cluster1", 0, tcp("http", 80)), rec("cluster2", 5, tcp("http", 8080))})
	tests := []struct {
		name      string
		st        exportState
		want      []short
		wantState string
	}{
		{
			name: "no Service yet",
			st:   exportState{invalid: &Invalid{Reason: mcsv1beta1.ServiceExportReasonNoService, Message: "Service demo/web does not exist"}},
			want: []short{
				{"Valid", "False", "NoService", "Service demo/web does not exist"},
				{"Ready", "False", "Pending", "Not exported: waiting for the Service"},
			},
			wantState: stateInvalid,
		},
		{
			name: "ExternalName",
			st:   exportState{invalid: &Invalid{Reason: mcsv1beta1.ServiceExportReasonInvalidServiceType, Message: "ExternalName"}},
			want: []short{
				{"Valid", "False", "InvalidServiceType", "ExternalName"},
				{"Ready", "False", "Failed", "Not exported: the export is not valid"},
			},
			wantState: stateInvalid,
		},
		{
			name:      "the name of the aggregated ServiceImport is taken",
			st:        exportState{failure: errors.New("web-demo is taken")},
			want:      []short{valid, {"Ready", "False", "Failed", "Not exported: web-demo is taken"}},
			wantState: stateFailed,
		},
		{
			name:      "the ServiceImport is not on the broker yet",
			st:        exportState{cluster: "cluster2", merged: one},
			want:      []short{valid, {"Ready", "False", "Pending", "Waiting for the ServiceImport to be published on the broker"}, noConflicts},
			wantState: statePending,
		},
		{
			name:      "the broker refused the write",
			st:        exportState{cluster: "cluster2", merged: one, brokerErr: errors.New("connection refused")},
			want:      []short{valid, {"Ready", "False", "Pending", "Waiting for the broker: connection refused"}, noConflicts},
			wantState: statePending,
		},
		{
			name:      "slices on their way",
			st:        exportState{cluster: "cluster2", merged: one, published: true, slices: 3, slicesPending: 2},
			want:      []short{valid, {"Ready", "False", "Pending", "Waiting for 2 of 3 EndpointSlices to reach the broker"}, noConflicts},
			wantState: statePending,
		},
		{
			name:      "exported",
			st:        exportState{cluster: "cluster2", merged: one, published: true, slices: 1},
			want:      []short{valid, {"Ready", "True", "Exported", "The Service is exported: its ServiceImport and 1 EndpointSlice(s) are on the broker"}, noConflicts},
			wantState: stateExported,
		},
		{
			name: "the oldest export of a type conflict is exported and has the conflict too",
			st:   exportState{cluster: "cluster1", merged: typeConflict, published: true, slices: 1},
			want: []short{valid,
				{"Ready", "True", "Exported", "The Service is exported: its ServiceImport and 1 EndpointSlice(s) are on the broker"},
				{"Conflict", "True", "TypeConflict", typeConflict.Conflicts[0].Message}},
			wantState: stateExported,
		},
		{
			name: "the younger export of a type conflict is not exported",
			st:   exportState{cluster: "cluster2", merged: typeConflict, published: true},
			want: []short{valid,
				{"Ready", "False", "Failed", "Not exported: the Service is Headless but the oldest export of this Service, in cluster cluster1, makes it ClusterSetIP (see the Conflict condition)"},
				{"Conflict", "True", "TypeConflict", typeConflict.Conflicts[0].Message}},
			wantState: stateFailed,
		},
		{
			name: "a port conflict still exports the union",
			st:   exportState{cluster: "cluster2", merged: portConflict, published: true, slices: 1},
			want: []short{valid,
				{"Ready", "True", "Exported", "The Service is exported: its ServiceImport and 1 EndpointSlice(s) are on the broker"},
				{"Conflict", "True", "PortConflict", portConflict.Conflicts[0].Message}},
			wantState: stateExported,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, state := exportConditions(tt.st)
			if diff := cmp.Diff(tt.want, shorten(got)); diff != "" {
				t.Errorf("exportConditions (-want +got):\n%s", diff)
			}
			if state != tt.wantState {
				t.Errorf("state = %q, want %q", state, tt.wantState)
			}
		})
	}
}

func TestSetConditions(t *testing.T) {
	t1 := metav1.NewTime(t0)
	t2 := metav1.NewTime(t0.Add(time.Minute))
	pending := []metav1.Condition{
		{Type: "Valid", Status: "True", Reason: "Valid", Message: "ok"},
		{Type: "Ready", Status: "False", Reason: "Pending", Message: "waiting"},
		{Type: "Conflict", Status: "False", Reason: "NoConflicts", Message: "agree"},
	}
	var have []metav1.Condition
	if !setConditions(&have, pending, 1, t1) {
		t.Fatal("setting conditions on an empty status reported no change")
	}
	if setConditions(&have, pending, 1, t2) {
		t.Error("setting the same conditions again reported a change")
	}
	exported := append([]metav1.Condition(nil), pending...)
	exported[1] = metav1.Condition{Type: "Ready", Status: "True", Reason: "Exported", Message: "done"}
	if !setConditions(&have, exported, 1, t2) {
		t.Fatal("a new Ready status reported no change")
	}
	times := map[string]metav1.Time{}
	for _, c := range have {
		times[c.Type] = c.LastTransitionTime
	}
	if valid, ready := times["Valid"], times["Ready"]; !valid.Equal(&t1) || !ready.Equal(&t2) {
		t.Errorf("transition times Valid=%v Ready=%v: want Valid unchanged at %v and Ready moved to %v", times["Valid"], times["Ready"], t1, t2)
	}
	// An export that becomes invalid has no Conflict condition.
	if !setConditions(&have, exported[:2], 2, t2) {
		t.Fatal("dropping Conflict reported no change")
	}
	var types []string
	for _, c := range have {
		types = append(types, c.Type)
		if c.ObservedGeneration != 2 {
			t.Errorf("condition %s has observedGeneration %d, want 2", c.Type, c.ObservedGeneration)
		}
	}
	if diff := cmp.Diff([]string{"Valid", "Ready"}, types); diff != "" {
		t.Errorf("condition types (-want +got):\n%s", diff)
	}
}
