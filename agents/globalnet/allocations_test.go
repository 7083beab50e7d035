package globalnet

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

func TestListAllocations(t *testing.T) {
	ok := []metav1.Condition{{Type: submv1.ConditionAllocated, Status: metav1.ConditionTrue, Reason: submv1.ReasonSuccess, Message: "allocated"}}
	full := []metav1.Condition{{Type: submv1.ConditionAllocated, Status: metav1.ConditionFalse, Reason: submv1.ReasonIPPoolAllocationFailed, Message: "exhausted"}}
	c := fake.NewClientBuilder().WithScheme(clientScheme()).WithObjects(
		&submv1.GlobalIngressIP{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "web"},
			Spec:   submv1.GlobalIngressIPSpec{Target: submv1.ClusterIPService, ServiceRef: &submv1.LocalRef{Name: "web"}},
			Status: submv1.GlobalIngressIPStatus{AllocatedIP: "242.0.255.254", Conditions: ok}},
		&submv1.GlobalIngressIP{ObjectMeta: metav1.ObjectMeta{Name: "pod.db-0", Namespace: "db", Annotations: map[string]string{submv1.AnnotationHeadlessPodIP: "10.241.1.7"}},
			Spec:   submv1.GlobalIngressIPSpec{Target: submv1.HeadlessServicePod, PodRef: &submv1.LocalRef{Name: "db-0"}, ServiceRef: &submv1.LocalRef{Name: "db"}},
			Status: submv1.GlobalIngressIPStatus{AllocatedIP: "242.0.255.253", Conditions: ok}},
		&submv1.GlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Name: "big", Namespace: "db"},
			Spec:   submv1.GlobalEgressIPSpec{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}},
			Status: submv1.GlobalEgressIPStatus{Conditions: full}},
		&submv1.ClusterGlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Name: submv1.ClusterGlobalEgressIPName},
			Status: submv1.GlobalEgressIPStatus{AllocatedIPs: []string{"242.0.0.1", "242.0.0.2"}, Conditions: ok}},
		&submv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "gw1", Namespace: submv1.ComponentNamespace, Annotations: map[string]string{submv1.AnnotationGlobalIP: "242.0.255.252"}}},
		&submv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "gw2", Namespace: submv1.ComponentNamespace}},
	).Build()
	got, err := ListAllocations(context.Background(), c, submv1.ComponentNamespace)
	if err != nil {
		t.Fatal(err)
	}
	want := []Allocation{
		{Kind: "ClusterGlobalEgressIP", Name: submv1.ClusterGlobalEgressIPName, For: "the cluster", IPs: []string{"242.0.0.1", "242.0.0.2"}, Status: "Success", Message: "allocated"},
		{Kind: "GlobalEgressIP", Namespace: "db", Name: "big", For: "Pods app=db", Status: "IPPoolAllocationFailed", Message: "exhausted"},
		{Kind: "GlobalIngressIP", Namespace: "db", Name: "pod.db-0", For: "Pod db-0 (10.241.1.7)", IPs: []string{"242.0.255.253"}, Status: "Success", Message: "allocated"},
		{Kind: "GlobalIngressIP", Namespace: "web", Name: "web", For: "Service web", IPs: []string{"242.0.255.254"}, Status: "Success", Message: "allocated"},
		{Kind: "Gateway", Namespace: submv1.ComponentNamespace, Name: "gw1", For: "health check", IPs: []string{"242.0.255.252"}, Status: "Success"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("allocations (-want +got):\n%s", diff)
	}
}
