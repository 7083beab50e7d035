package integration

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/submariner-go/submariner/agents/component"
	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/controlplane"
	"github.com/submariner-go/submariner/subctl/cluster"
	"github.com/submariner-go/submariner/subctl/commands"
)

// subctl runs the command line args as the subctl binary would and returns its
// output.
func subctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := commands.New(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	t.Logf("subctl %s\n%s(err: %v)", strings.Join(args, " "), out.String(), err)
	return out.String(), err
}

// mustSubctl is subctl that fails the test on error.
func mustSubctl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := subctl(t, args...)
	if err != nil {
		t.Fatalf("subctl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// deployBroker deploys the broker into p and returns the broker-info path.
func deployBroker(t *testing.T, p *controlplane.Plane, args ...string) string {
	t.Helper()
	info := filepath.Join(t.TempDir(), "broker-info.subm")
	mustSubctl(t, append([]string{"deploy-broker", "--kubeconfig", p.Kubeconfig, "-o", info}, args...)...)
	return info
}

// snapshot lists every object the API server of p stores (except the Events and
// Leases that control planes write all the time) as "resource namespace/name rv",
// sorted, to prove that a refused command changed nothing.
func snapshot(t *testing.T, p *controlplane.Plane) []string {
	t.Helper()
	ctx := context.Background()
	lists, err := p.Kube.Discovery().ServerPreferredResources()
	if err != nil {
		t.Fatalf("discovery of %s: %v", p.Name, err)
	}
	dyn, err := dynamic.NewForConfig(p.Config)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range l.APIResources {
			if !slices.Contains(r.Verbs, "list") || r.Name == "events" || r.Name == "leases" {
				continue
			}
			gvr := gv.WithResource(r.Name)
			items, err := dyn.Resource(gvr).List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatalf("listing %s on %s: %v", gvr, p.Name, err)
			}
			for _, it := range items.Items {
				out = append(out, fmt.Sprintf("%s %s/%s %s", gvr.GroupResource(), it.GetNamespace(), it.GetName(), it.GetResourceVersion()))
			}
		}
	}
	sort.Strings(out)
	return out
}

// asIdentity returns a client of the broker p with token.
func asIdentity(t *testing.T, p *controlplane.Plane, token string) *cluster.Cluster {
	t.Helper()
	c, err := cluster.New(cluster.BrokerConfig(p.Config.Host, p.Config.CAData, token))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// brokerSecret returns the broker Secret join stored in the cluster p.
func brokerSecret(t *testing.T, p *controlplane.Plane) *corev1.Secret {
	t.Helper()
	s, err := p.Kube.CoreV1().Secrets(submv1.ComponentNamespace).Get(context.Background(), component.BrokerSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading the broker Secret of %s: %v", p.Name, err)
	}
	return s
}

// clusterIdentity returns a broker client with the identity join stored in p.
func clusterIdentity(t *testing.T, broker, p *controlplane.Plane) *cluster.Cluster {
	t.Helper()
	return asIdentity(t, broker, string(brokerSecret(t, p).Data[component.BrokerSecretToken]))
}

// eventually polls cond until it holds, failing the test after a minute.
func eventually(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		ok, err := cond()
		last = err
		return ok && err == nil, nil
	})
	if err != nil {
		t.Fatalf("%s did not happen: %v (last error: %v)", what, err, last)
	}
}

// wantError checks that err contains every one of parts.
func wantError(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}

func endpoint(clusterID, name, ip string) *submv1.Endpoint {
	return &submv1.Endpoint{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: submv1.BrokerNamespace, Labels: map[string]string{submv1.ClusterIDLabel: clusterID}},
		Spec: submv1.EndpointSpec{ClusterID: clusterID, CableName: "submariner-cable-" + clusterID + "-" + strings.ReplaceAll(ip, ".", "-"),
			Hostname: "gw1", PrivateIP: ip, Backend: submv1.BackendLibreswan, Subnets: []string{"10.0.0.0/16"}},
	}
}
