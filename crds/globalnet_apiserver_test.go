package crds_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/submariner-go/submariner/crds"
	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/controlplane"
)

// TestGlobalnetCRDs checks the Globalnet CRDs as generated: names, scopes, short
// names and the status subresource.
func TestGlobalnetCRDs(t *testing.T) {
	ours, err := crds.Submariner()
	if err != nil {
		t.Fatal(err)
	}
	type shape struct {
		Scope      apiextensionsv1.ResourceScope
		ShortNames []string
		Status     bool
	}
	got := map[string]shape{}
	for _, crd := range ours {
		if !strings.Contains(crd.Name, "global") {
			continue
		}
		s := shape{Scope: crd.Spec.Scope, ShortNames: crd.Spec.Names.ShortNames}
		for _, v := range crd.Spec.Versions {
			s.Status = v.Subresources != nil && v.Subresources.Status != nil
		}
		got[crd.Name] = s
	}
	want := map[string]shape{
		"clusterglobalegressips.submariner.io": {Scope: apiextensionsv1.ClusterScoped, ShortNames: []string{"cgeip"}, Status: true},
		"globalegressips.submariner.io":        {Scope: apiextensionsv1.NamespaceScoped, ShortNames: []string{"geip"}, Status: true},
		"globalingressips.submariner.io":       {Scope: apiextensionsv1.NamespaceScoped, ShortNames: []string{"giip"}, Status: true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Globalnet CRDs (-want +got):\n%s", diff)
	}
}

// TestGlobalnetAPIServer installs the CRDs into a real API server and checks what it
// accepts, defaults and refuses for GlobalEgressIP, ClusterGlobalEgressIP and
// GlobalIngressIP.
func TestGlobalnetAPIServer(t *testing.T) {
	plane := controlplane.Start(t, "globalnet-crds")[0]
	ctx := context.Background()
	c := plane.Client

	t.Run("defaults and round trip", func(t *testing.T) {
		geip := &submv1.GlobalEgressIP{
			ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "default"},
			Spec: submv1.GlobalEgressIPSpec{PodSelector: &metav1.LabelSelector{
				MatchLabels:      map[string]string{"app": "db"},
				MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"a", "b"}}},
			}},
		}
		cgeip := &submv1.ClusterGlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Name: submv1.ClusterGlobalEgressIPName}}
		giip := &submv1.GlobalIngressIP{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec:       submv1.GlobalIngressIPSpec{Target: submv1.ClusterIPService, ServiceRef: &submv1.LocalRef{Name: "web"}},
		}
		for _, obj := range []client.Object{geip, cgeip, giip} {
			if err := c.Create(ctx, obj); err != nil {
				t.Fatalf("creating %T: %v", obj, err)
			}
		}
		gotGEIP := &submv1.GlobalEgressIP{}
		mustGet(t, c, geip, gotGEIP)
		if got := ptr.Deref(gotGEIP.Spec.NumberOfIPs, -1); got != submv1.DefaultGlobalEgressIPs {
			t.Errorf("GlobalEgressIP numberOfIPs defaulted to %d, want %d", got, submv1.DefaultGlobalEgressIPs)
		}
		if diff := cmp.Diff(geip.Spec.PodSelector, gotGEIP.Spec.PodSelector); diff != "" {
			t.Errorf("podSelector after a round trip (-sent +read):\n%s", diff)
		}
		gotCGEIP := &submv1.ClusterGlobalEgressIP{}
		mustGet(t, c, cgeip, gotCGEIP)
		if got := ptr.Deref(gotCGEIP.Spec.NumberOfIPs, -1); got != submv1.DefaultClusterGlobalEgressIPs {
			t.Errorf("ClusterGlobalEgressIP numGlobalIPs defaulted to %d, want %d", got, submv1.DefaultClusterGlobalEgressIPs)
		}

		// Status is written through the status subresource and read back whole.
		now := metav1.Now().Rfc3339Copy()
		gotGEIP.Status = submv1.GlobalEgressIPStatus{
			AllocatedIPs: []string{"242.0.0.1", "242.0.0.2"},
			Conditions: []metav1.Condition{{Type: submv1.ConditionAllocated, Status: metav1.ConditionTrue,
				Reason: submv1.ReasonSuccess, Message: "allocated", LastTransitionTime: now, ObservedGeneration: gotGEIP.Generation}},
		}
		want := gotGEIP.Status
		if err := c.Status().Update(ctx, gotGEIP); err != nil {
			t.Fatalf("updating GlobalEgressIP status: %v", err)
		}
		reread := &submv1.GlobalEgressIP{}
		mustGet(t, c, geip, reread)
		if diff := cmp.Diff(want, reread.Status); diff != "" {
			t.Errorf("GlobalEgressIP status after a round trip (-sent +read):\n%s", diff)
		}

		gotGIIP := &submv1.GlobalIngressIP{}
		mustGet(t, c, giip, gotGIIP)
		gotGIIP.Status.AllocatedIP = "242.0.255.254"
		if err := c.Status().Update(ctx, gotGIIP); err != nil {
			t.Fatalf("updating GlobalIngressIP status: %v", err)
		}
		mustGet(t, c, giip, gotGIIP)
		if gotGIIP.Status.AllocatedIP != "242.0.255.254" {
			t.Errorf("GlobalIngressIP allocatedIP read back as %q", gotGIIP.Status.AllocatedIP)
		}
	})

	t.Run("invalid objects are refused", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			obj    client.Object
			fields []string // what the API server's message must name
		}{{
			name:   "21 egress IPs",
			obj:    geipWith(func(s *submv1.GlobalEgressIPSpec) { s.NumberOfIPs = ptr.To(21) }),
			fields: []string{"spec.numberOfIPs", "20"},
		}, {
			name:   "negative egress IPs",
			obj:    geipWith(func(s *submv1.GlobalEgressIPSpec) { s.NumberOfIPs = ptr.To(-1) }),
			fields: []string{"spec.numberOfIPs", "0"},
		}, {
			name: "selector with an unknown operator",
			obj: geipWith(func(s *submv1.GlobalEgressIPSpec) {
				s.PodSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Matches", Values: []string{"x"}}}}
			}),
			fields: []string{"spec.podSelector", "In, NotIn, Exists or DoesNotExist"},
		}, {
			name: "selector In without values",
			obj: geipWith(func(s *submv1.GlobalEgressIPSpec) {
				s.PodSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpIn}}}
			}),
			fields: []string{"spec.podSelector", "at least one value"},
		}, {
			name: "selector Exists with values",
			obj: geipWith(func(s *submv1.GlobalEgressIPSpec) {
				s.PodSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpExists, Values: []string{"x"}}}}
			}),
			fields: []string{"spec.podSelector", "take no values"},
		}, {
			name: "21 cluster egress IPs",
			obj: &submv1.ClusterGlobalEgressIP{ObjectMeta: metav1.ObjectMeta{GenerateName: "bad-"},
				Spec: submv1.ClusterGlobalEgressIPSpec{NumberOfIPs: ptr.To(21)}},
			fields: []string{"spec.numGlobalIPs", "20"},
		}, {
			name:   "unknown ingress target",
			obj:    giipWith(submv1.GlobalIngressIPSpec{Target: "NodePortService", ServiceRef: &submv1.LocalRef{Name: "web"}}),
			fields: []string{"spec.target", `"NodePortService"`, "ClusterIPService", "HeadlessServicePod", "HeadlessServiceEndpoints"},
		}, {
			name:   "ClusterIPService without serviceRef",
			obj:    giipWith(submv1.GlobalIngressIPSpec{Target: submv1.ClusterIPService}),
			fields: []string{"spec", "needs serviceRef"},
		}, {
			name:   "HeadlessServicePod without podRef",
			obj:    giipWith(submv1.GlobalIngressIPSpec{Target: submv1.HeadlessServicePod, ServiceRef: &submv1.LocalRef{Name: "db"}}),
			fields: []string{"spec", "needs podRef"},
		}, {
			name:   "HeadlessServiceEndpoints without serviceRef",
			obj:    giipWith(submv1.GlobalIngressIPSpec{Target: submv1.HeadlessServiceEndpoints}),
			fields: []string{"spec", "needs serviceRef"},
		}, {
			name:   "empty serviceRef name",
			obj:    giipWith(submv1.GlobalIngressIPSpec{Target: submv1.ClusterIPService, ServiceRef: &submv1.LocalRef{}}),
			fields: []string{"spec.serviceRef.name"},
		}} {
			t.Run(tc.name, func(t *testing.T) {
				err := c.Create(ctx, tc.obj)
				if !apierrors.IsInvalid(err) {
					t.Fatalf("creating %T: got %v, want the API server to refuse it as invalid", tc.obj, err)
				}
				for _, f := range tc.fields {
					if !strings.Contains(err.Error(), f) {
						t.Errorf("refusal %q does not mention %q", err, f)
					}
				}
			})
		}
	})

	t.Run("immutable fields", func(t *testing.T) {
		geip := geipWith(func(s *submv1.GlobalEgressIPSpec) {
			s.PodSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}}
		})
		bare := geipWith(func(*submv1.GlobalEgressIPSpec) {})
		giip := giipWith(submv1.GlobalIngressIPSpec{Target: submv1.HeadlessServicePod, PodRef: &submv1.LocalRef{Name: "db-0"}, ServiceRef: &submv1.LocalRef{Name: "db"}})
		for _, obj := range []client.Object{geip, bare, giip} {
			if err := c.Create(ctx, obj); err != nil {
				t.Fatalf("creating %T: %v", obj, err)
			}
		}
		for _, tc := range []struct {
			name   string
			obj    client.Object
			mutate func()
			fields []string // empty: the update must succeed
		}{{
			name:   "changing the pod selector",
			obj:    geip,
			mutate: func() { geip.Spec.PodSelector.MatchLabels["app"] = "b" },
			fields: []string{"podSelector cannot be changed"},
		}, {
			name:   "adding a pod selector",
			obj:    bare,
			mutate: func() { bare.Spec.PodSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}} },
			fields: []string{"podSelector cannot be changed"},
		}, {
			name:   "changing the number of IPs is allowed",
			obj:    bare,
			mutate: func() { bare.Spec.NumberOfIPs = ptr.To(4) },
		}, {
			name:   "changing an ingress target",
			obj:    giip,
			mutate: func() { giip.Spec.Target = submv1.HeadlessServiceEndpoints },
			fields: []string{"target cannot change"},
		}, {
			name:   "changing an ingress pod",
			obj:    giip,
			mutate: func() { giip.Spec.PodRef = &submv1.LocalRef{Name: "db-1"} },
			fields: []string{"podRef cannot change"},
		}, {
			name:   "changing the service of a pod's ingress IP is allowed",
			obj:    giip,
			mutate: func() { giip.Spec.ServiceRef = &submv1.LocalRef{Name: "db-replicas"} },
		}} {
			t.Run(tc.name, func(t *testing.T) {
				fresh := tc.obj.DeepCopyObject().(client.Object)
				if err := c.Get(ctx, client.ObjectKeyFromObject(tc.obj), fresh); err != nil {
					t.Fatal(err)
				}
				// Re-apply the mutation to the object as stored now.
				switch o := tc.obj.(type) {
				case *submv1.GlobalEgressIP:
					*o = *fresh.(*submv1.GlobalEgressIP)
				case *submv1.GlobalIngressIP:
					*o = *fresh.(*submv1.GlobalIngressIP)
				}
				tc.mutate()
				err := c.Update(ctx, tc.obj)
				if len(tc.fields) == 0 {
					if err != nil {
						t.Fatalf("update refused: %v", err)
					}
					return
				}
				if !apierrors.IsInvalid(err) {
					t.Fatalf("update: got %v, want the API server to refuse it as invalid", err)
				}
				for _, f := range tc.fields {
					if !strings.Contains(err.Error(), f) {
						t.Errorf("refusal %q does not mention %q", err, f)
					}
				}
			})
		}
	})

	t.Run("status must hold IP addresses", func(t *testing.T) {
		giip := giipWith(submv1.GlobalIngressIPSpec{Target: submv1.ClusterIPService, ServiceRef: &submv1.LocalRef{Name: "web"}})
		geip := geipWith(func(*submv1.GlobalEgressIPSpec) {})
		for _, obj := range []client.Object{giip, geip} {
			if err := c.Create(ctx, obj); err != nil {
				t.Fatal(err)
			}
		}
		giip.Status.AllocatedIP = "242.0.0.256"
		err := c.Status().Update(ctx, giip)
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "status.allocatedIP") {
			t.Errorf("GlobalIngressIP status with a bad IP: got %v, want a refusal naming status.allocatedIP", err)
		}
		geip.Status.AllocatedIPs = []string{"242.0.0.1", "global"}
		err = c.Status().Update(ctx, geip)
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "status.allocatedIPs[1]") {
			t.Errorf("GlobalEgressIP status with a bad IP: got %v, want a refusal naming status.allocatedIPs[1]", err)
		}
	})
}

func geipWith(mutate func(*submv1.GlobalEgressIPSpec)) *submv1.GlobalEgressIP {
	var spec submv1.GlobalEgressIPSpec
	mutate(&spec)
	return &submv1.GlobalEgressIP{ObjectMeta: metav1.ObjectMeta{GenerateName: "geip-", Namespace: "default"}, Spec: spec}
}

func giipWith(spec submv1.GlobalIngressIPSpec) *submv1.GlobalIngressIP {
	return &submv1.GlobalIngressIP{ObjectMeta: metav1.ObjectMeta{GenerateName: "giip-", Namespace: "default"}, Spec: spec}
}
