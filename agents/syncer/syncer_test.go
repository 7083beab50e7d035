package syncer

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

var endpointsGVR = submv1.SchemeGroupVersion.WithResource("endpoints")

func fakeClient(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{endpointsGVR: "EndpointList"}, objs...)
}

// fakeState renders the Endpoints of a fake client, one sorted line each:
// namespace/name, the labels the syncer sets, and the hostname.
func fakeState(t *testing.T, c *dynamicfake.FakeDynamicClient) string {
	t.Helper()
	list, err := c.Resource(endpointsGVR).Namespace("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, u := range list.Items {
		host, _, _ := unstructured.NestedString(u.Object, "spec", "hostname")
		line := fmt.Sprintf("%s/%s host=%s", u.GetNamespace(), u.GetName(), host)
		for _, k := range []string{submv1.ClusterIDLabel, LabelCopy} {
			if v, ok := u.GetLabels()[k]; ok {
				line += " " + k + "=" + v
			}
		}
		for _, k := range []string{"local-only", AnnotationBrokerName} {
			if v, ok := u.GetAnnotations()[k]; ok {
				line += " " + k + "=" + v
			}
		}
		lines = append(lines, line)
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// TestSyncerWithFakeClients runs the whole syncer of cluster1 on fake clients. The
// local cluster has two endpoints (one not for the broker) and a stale copy of an
// object the broker no longer has; the broker has an orphan of cluster1 and
// cluster2's endpoints, one of them overlapping cluster1's subnets.
func TestSyncerWithFakeClients(t *testing.T) {
	const ns = "submariner-operator"
	brokerEP := func(cluster, name string, opts ...func(*submv1.Endpoint)) *unstructured.Unstructured {
		opts = append([]func(*submv1.Endpoint){
			withLabels(submv1.ClusterIDLabel, cluster, LabelOriginNamespace, ns),
			withAnnotations(AnnotationOriginName, name),
		}, opts...)
		return ep(t, cluster, "submariner-k8s-broker", name+"."+ns+"."+cluster, opts...)
	}
	local := fakeClient(
		ep(t, "cluster1", ns, "gw1", withAnnotations("local-only", "secret", "kept", "yes")),
		ep(t, "cluster1", ns, "test-endpoint", withLabels("skip", "true")),
		ep(t, "cluster3", ns, "gone.submariner-operator.cluster3",
			withLabels(submv1.ClusterIDLabel, "cluster3", LabelCopy, "true"),
			withAnnotations(AnnotationBrokerName, "gone.submariner-operator.cluster3")),
	)
	broker := fakeClient(
		brokerEP("cluster1", "old-gw"),
		brokerEP("cluster2", "gw1", withHost("c2-gw1"), func(e *submv1.Endpoint) {
			e.Spec.Subnets = []string{"10.2.0.0/16"}
		}),
		brokerEP("cluster2", "overlap", withHost("c2-overlap"), func(e *submv1.Endpoint) {
			e.Spec.Subnets = []string{"10.1.0.0/16"}
		}),
	)
	cfg := validEndpointConfig()
	cfg.Backoff = Backoff{Initial: time.Millisecond, Max: 10 * time.Millisecond}
	cfg.Log = funcr.New(func(p, a string) { t.Log(p, a) }, funcr.Options{Verbosity: 1})
	cfg.ToBroker.Filter = func(e *submv1.Endpoint) bool { return e.Labels["skip"] != "true" }
	cfg.ToBroker.Transform = func(e *submv1.Endpoint) error {
		delete(e.Annotations, "local-only")
		return nil
	}
	cfg.FromBroker.Filter = func(e *submv1.Endpoint) bool { return !slices.Contains(e.Spec.Subnets, "10.1.0.0/16") }
	settings, err := cfg.settings()
	if err != nil {
		t.Fatal(err)
	}
	s := newSyncer(settings, local, broker,
		func(context.Context) (resource, error) { return resource{gvr: endpointsGVR}, nil },
		func(context.Context) error { return nil })

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v", err)
		}
	}()

	wantBroker := strings.Join([]string{
		"submariner-k8s-broker/gw1.submariner-operator.cluster1 host=gw1 submariner-io/clusterID=cluster1",
		"submariner-k8s-broker/gw1.submariner-operator.cluster2 host=c2-gw1 submariner-io/clusterID=cluster2",
		"submariner-k8s-broker/overlap.submariner-operator.cluster2 host=c2-overlap submariner-io/clusterID=cluster2",
	}, "\n")
	wantLocal := strings.Join([]string{
		"submariner-operator/gw1 host=gw1 local-only=secret",
		"submariner-operator/gw1.submariner-operator.cluster2 host=c2-gw1 submariner-io/clusterID=cluster2 syncer.submariner.io/copy=true " +
			"syncer.submariner.io/broker-name=gw1.submariner-operator.cluster2",
		"submariner-operator/test-endpoint host=gw1",
	}, "\n")
	var gotBroker, gotLocal string
	err = wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, guard, true, func(context.Context) (bool, error) {
		gotBroker, gotLocal = fakeState(t, broker), fakeState(t, local)
		return s.HasSynced() && gotBroker == wantBroker && gotLocal == wantLocal, nil
	})
	if err != nil {
		t.Errorf("synced %v; broker (-want +got):\n%s\nlocal (-want +got):\n%s", s.HasSynced(),
			cmp.Diff(wantBroker, gotBroker), cmp.Diff(wantLocal, gotLocal))
	}

	// The broker object keeps the source's other annotations and records its
	// origin.
	got, err := broker.Resource(endpointsGVR).Namespace("submariner-k8s-broker").Get(ctx, "gw1.submariner-operator.cluster1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"kept": "yes", AnnotationOriginName: "gw1"}
	if d := cmp.Diff(want, got.GetAnnotations()); d != "" {
		t.Errorf("annotations on the broker (-want +got):\n%s", d)
	}
}
