package globalnet

import (
	"context"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Allocation is one allocation of global IPs as the cluster records it: what
// `subctl show` lists as the global IPs in use.
type Allocation struct {
	// Kind is GlobalIngressIP, GlobalEgressIP, ClusterGlobalEgressIP or Gateway.
	Kind      string
	Namespace string
	Name      string
	// For says what the addresses serve, in words ("Service web", "Pod db-0
	// (10.241.1.7)", "namespace web", "Pods app=x", "the cluster", "health check").
	For string
	// IPs are the addresses, in order.
	IPs []string
	// Status is the Allocated condition's reason ("Success", "IPPoolAllocationFailed",
	// ...), "" when there is none yet.
	Status string
	// Message is the Allocated condition's message.
	Message string
}

// ListAllocations reads every Globalnet allocation from the cluster through c:
// GlobalIngressIPs, GlobalEgressIPs, ClusterGlobalEgressIPs, and the gateways'
// global IPs in namespace. The result is sorted by kind, namespace and name.
func ListAllocations(ctx context.Context, c client.Reader, namespace string) ([]Allocation, error) {
	var out []Allocation
	var giips submv1.GlobalIngressIPList
	if err := c.List(ctx, &giips); err != nil {
		return nil, fmt.Errorf("listing GlobalIngressIPs: %w", err)
	}
	for _, g := range giips.Items {
		a := Allocation{Kind: "GlobalIngressIP", Namespace: g.Namespace, Name: g.Name, For: ingressFor(&g)}
		if g.Status.AllocatedIP != "" {
			a.IPs = []string{g.Status.AllocatedIP}
		}
		a.Status, a.Message = conditionOf(g.Status.Conditions)
		out = append(out, a)
	}
	var geips submv1.GlobalEgressIPList
	if err := c.List(ctx, &geips); err != nil {
		return nil, fmt.Errorf("listing GlobalEgressIPs: %w", err)
	}
	for _, g := range geips.Items {
		what := "namespace " + g.Namespace
		if g.Spec.PodSelector != nil {
			what = "Pods " + metav1.FormatLabelSelector(g.Spec.PodSelector)
		}
		a := Allocation{Kind: "GlobalEgressIP", Namespace: g.Namespace, Name: g.Name, For: what, IPs: g.Status.AllocatedIPs}
		a.Status, a.Message = conditionOf(g.Status.Conditions)
		out = append(out, a)
	}
	var cgeips submv1.ClusterGlobalEgressIPList
	if err := c.List(ctx, &cgeips); err != nil {
		return nil, fmt.Errorf("listing ClusterGlobalEgressIPs: %w", err)
	}
	for _, g := range cgeips.Items {
		a := Allocation{Kind: "ClusterGlobalEgressIP", Name: g.Name, For: "the cluster", IPs: g.Status.AllocatedIPs}
		a.Status, a.Message = conditionOf(g.Status.Conditions)
		out = append(out, a)
	}
	var gws submv1.GatewayList
	if err := c.List(ctx, &gws, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing Gateways in %s: %w", namespace, err)
	}
	for _, g := range gws.Items {
		if ip := g.Annotations[submv1.AnnotationGlobalIP]; ip != "" {
			out = append(out, Allocation{Kind: "Gateway", Namespace: g.Namespace, Name: g.Name, For: "health check", IPs: []string{ip}, Status: submv1.ReasonSuccess})
		}
	}
	order := []string{"ClusterGlobalEgressIP", "GlobalEgressIP", "GlobalIngressIP", "Gateway"}
	slices.SortFunc(out, func(a, b Allocation) int {
		if c := slices.Index(order, a.Kind) - slices.Index(order, b.Kind); c != 0 {
			return c
		}
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

func ingressFor(g *submv1.GlobalIngressIP) string {
	switch g.Spec.Target {
	case submv1.HeadlessServicePod:
		pod := ""
		if g.Spec.PodRef != nil {
			pod = g.Spec.PodRef.Name
		}
		return fmt.Sprintf("Pod %s (%s)", pod, g.Annotations[submv1.AnnotationHeadlessPodIP])
	case submv1.HeadlessServiceEndpoints:
		return "endpoint " + g.Annotations[submv1.AnnotationHeadlessEndpointsIP]
	}
	if g.Spec.ServiceRef != nil {
		return "Service " + g.Spec.ServiceRef.Name
	}
	return string(g.Spec.Target)
}

func conditionOf(conds []metav1.Condition) (string, string) {
	for _, c := range conds {
		if c.Type == submv1.ConditionAllocated {
			return c.Reason, c.Message
		}
	}
	return "", ""
}
