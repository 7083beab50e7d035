package uninstall

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestCleanupDone(t *testing.T) {
	ds := func(gen, observed int64, desired, updated, ready, unavailable int32) *appsv1.DaemonSet {
		return &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Generation: gen}, Status: appsv1.DaemonSetStatus{
			ObservedGeneration: observed, DesiredNumberScheduled: desired, UpdatedNumberScheduled: updated,
			NumberReady: ready, NumberUnavailable: unavailable}}
	}
	for _, tc := range []struct {
		name string
		ds   *appsv1.DaemonSet
		want bool
	}{
		{"the controller has not seen the switch", ds(2, 1, 3, 3, 3, 0), false},
		{"old pods still on some nodes", ds(2, 2, 3, 1, 3, 0), false},
		{"cleanup pods not ready yet", ds(2, 2, 3, 3, 2, 1), false},
		{"every node cleaned", ds(2, 2, 3, 3, 3, 0), true},
		{"no node selected", ds(2, 2, 0, 0, 0, 0), true},
	} {
		if got := CleanupDone(tc.ds); got != tc.want {
			t.Errorf("%s: CleanupDone = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestForeignManager(t *testing.T) {
	crd := func(managers ...string) *apiextensionsv1.CustomResourceDefinition {
		c := &apiextensionsv1.CustomResourceDefinition{}
		for _, m := range managers {
			c.ManagedFields = append(c.ManagedFields, metav1.ManagedFieldsEntry{Manager: m})
		}
		return c
	}
	if got := foreignManager(crd("submariner", "kube-apiserver")); got != "" {
		t.Errorf("our own CRD reported as managed by %q", got)
	}
	if got := foreignManager(crd("submariner", "mcs-controller")); got != "mcs-controller" {
		t.Errorf("a shared CRD reported as managed by %q, want mcs-controller", got)
	}
}
