// Package manifeststest checks, against a real API server, that each component's
// ServiceAccount may do what the component needs and nothing it does not need
// (DESIGN.md section 3, docs/subctl.md "RBAC per component"). The integration tests
// of package manifests and the sandbox e2e tests of subctl share it.
package manifeststest

import (
	"context"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/manifests"
)

// Access is one SubjectAccessReview question.
type Access struct {
	Verb, Group, Resource, Subresource, Namespace, Name string
}

func (a Access) String() string {
	r := a.Resource
	if a.Group != "" {
		r += "." + a.Group
	}
	if a.Subresource != "" {
		r += "/" + a.Subresource
	}
	where := "cluster-wide"
	if a.Namespace != "" {
		where = "in " + a.Namespace
	}
	if a.Name != "" {
		r += " " + a.Name
	}
	return a.Verb + " " + r + " " + where
}

// Expectation is what one component's ServiceAccount must and must not be allowed.
type Expectation struct {
	ServiceAccount string
	Allow, Forbid  []Access
}

const ns = submv1.ComponentNamespace

// Expectations lists every component; the components' authors confirm their needs
// here when they change.
var Expectations = []Expectation{
	{
		ServiceAccount: "submariner-gateway",
		Allow: []Access{
			{"create", "coordination.k8s.io", "leases", "", ns, ""},
			{"update", "coordination.k8s.io", "leases", "", ns, submv1.GatewayLeaseName},
			{"create", "submariner.io", "endpoints", "", ns, ""},
			{"delete", "submariner.io", "clusters", "", ns, "cluster2"},
			{"watch", "submariner.io", "endpoints", "", ns, ""},
			{"update", "submariner.io", "gateways", "status", ns, "gw1"},
			{"patch", "", "pods", "", ns, "submariner-gateway-abcde"},
			{"get", "", "nodes", "", "", "gw1"},
		},
		Forbid: []Access{
			{"update", "coordination.k8s.io", "leases", "", ns, submv1.GlobalnetLeaseName},
			{"get", "", "secrets", "", ns, "submariner-broker-secret"},
			{"list", "", "secrets", "", "", ""},
			{"update", "", "nodes", "", "", "gw1"},
			{"delete", "", "pods", "", ns, "submariner-gateway-abcde"},
			{"create", "multicluster.x-k8s.io", "serviceimports", "", ns, ""},
			{"create", "submariner.io", "endpoints", "", "default", ""},
		},
	},
	{
		ServiceAccount: "submariner-routeagent",
		Allow: []Access{
			{"list", "submariner.io", "endpoints", "", ns, ""},
			{"watch", "submariner.io", "gateways", "", ns, ""},
			{"get", "submariner.io", "clusters", "", ns, "cluster2"},
			{"watch", "", "nodes", "", "", ""},
		},
		Forbid: []Access{
			{"create", "submariner.io", "endpoints", "", ns, ""},
			{"update", "submariner.io", "gateways", "status", ns, "gw1"},
			{"patch", "", "nodes", "", "", "node1"},
			{"get", "", "secrets", "", ns, manifests.PSKSecretName},
			{"create", "coordination.k8s.io", "leases", "", ns, ""},
		},
	},
	{
		ServiceAccount: "submariner-globalnet",
		Allow: []Access{
			{"update", "coordination.k8s.io", "leases", "", ns, submv1.GlobalnetLeaseName},
			{"create", "submariner.io", "globalingressips", "", "default", ""},
			{"update", "submariner.io", "globalegressips", "status", "apps", "egress"},
			{"create", "submariner.io", "clusterglobalegressips", "", "", ""},
			{"create", "", "services", "", "apps", ""},
			{"list", "", "pods", "", "", ""},
			{"watch", "multicluster.x-k8s.io", "serviceexports", "", "", ""},
		},
		Forbid: []Access{
			{"update", "coordination.k8s.io", "leases", "", ns, submv1.GatewayLeaseName},
			{"create", "submariner.io", "endpoints", "", ns, ""},
			{"get", "", "secrets", "", ns, "submariner-broker-secret"},
			{"update", "multicluster.x-k8s.io", "serviceexports", "", "apps", "web"},
			{"delete", "", "pods", "", "apps", "web-1"},
		},
	},
	{
		ServiceAccount: "submariner-lighthouse-agent",
		Allow: []Access{
			{"watch", "multicluster.x-k8s.io", "serviceexports", "", "", ""},
			{"update", "multicluster.x-k8s.io", "serviceexports", "status", "apps", "web"},
			{"create", "multicluster.x-k8s.io", "serviceimports", "", "apps", ""},
			{"update", "multicluster.x-k8s.io", "serviceimports", "status", ns, "web-apps-cluster1"},
			{"delete", "discovery.k8s.io", "endpointslices", "", "apps", "web-abcde"},
			{"list", "", "services", "", "", ""},
			{"watch", "", "namespaces", "", "", ""},
			{"list", "submariner.io", "globalingressips", "", "", ""},
		},
		Forbid: []Access{
			{"create", "multicluster.x-k8s.io", "serviceexports", "", "apps", ""},
			{"update", "", "services", "", "apps", "web"},
			{"get", "", "secrets", "", ns, "submariner-broker-secret"},
			{"create", "submariner.io", "endpoints", "", ns, ""},
			{"create", "coordination.k8s.io", "leases", "", ns, ""},
		},
	},
	{
		ServiceAccount: "submariner-lighthouse-coredns",
		Allow: []Access{
			{"list", "multicluster.x-k8s.io", "serviceimports", "", "", ""},
			{"watch", "discovery.k8s.io", "endpointslices", "", "", ""},
			{"list", "submariner.io", "gateways", "", "", ""},
		},
		Forbid: []Access{
			{"create", "multicluster.x-k8s.io", "serviceimports", "", "apps", ""},
			{"get", "", "secrets", "", ns, "submariner-broker-secret"},
			{"list", "", "services", "", "", ""},
			{"list", "", "pods", "", "", ""},
			{"create", "", "events", "", ns, ""},
		},
	},
}

// Check asks the API server behind kube, for every expectation whose
// ServiceAccount is installed, whether the ServiceAccount may do each thing, and
// fails the test where the answer is not the expected one. It returns how many
// questions it asked.
func Check(t *testing.T, kube kubernetes.Interface) int {
	t.Helper()
	ctx := context.Background()
	asked := 0
	for _, e := range Expectations {
		t.Run(e.ServiceAccount, func(t *testing.T) {
			if _, err := kube.CoreV1().ServiceAccounts(ns).Get(ctx, e.ServiceAccount, metav1.GetOptions{}); apierrors.IsNotFound(err) {
				t.Skipf("skipped: ServiceAccount %s/%s is not installed (its component is not deployed)", ns, e.ServiceAccount)
			}
			user := "system:serviceaccount:" + ns + ":" + e.ServiceAccount
			ask := func(a Access) bool {
				t.Helper()
				asked++
				sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
					User:   user,
					Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
					ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: a.Verb, Group: a.Group, Resource: a.Resource,
						Subresource: a.Subresource, Namespace: a.Namespace, Name: a.Name},
				}}
				res, err := kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
				if err != nil {
					t.Fatal(err)
				}
				return res.Status.Allowed
			}
			for _, a := range e.Allow {
				if !ask(a) {
					t.Errorf("%s may not %s, which it needs", e.ServiceAccount, a)
				}
			}
			for _, a := range e.Forbid {
				if ask(a) {
					t.Errorf("%s may %s, which it does not need", e.ServiceAccount, a)
				}
			}
		})
	}
	return asked
}
