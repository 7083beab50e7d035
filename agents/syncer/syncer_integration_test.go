package syncer_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/submariner-go/submariner/agents/syncer"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

const (
	brokerNS    = submv1.BrokerNamespace
	componentNS = submv1.ComponentNamespace
)

// TestEndpointsAndClusters runs Endpoint and Cluster syncers in two clusters against
// one broker, all real API servers:
//
//	cluster1 --- broker --- cluster2
//
// Each cluster's objects reach the broker (labelled with their cluster) and the
// other cluster (as copies), never their own cluster as a copy; updates and deletes
// propagate; tampering with a broker object or a copy is repaired; a restart
// rewrites nothing, and one after changes made while it was down applies them.
func TestEndpointsAndClusters(t *testing.T) {
	f := startFleet(t)
	startAll := func() []*running {
		return []*running{
			startSyncer(t, f, f.c1, syncer.Config[*submv1.Endpoint]{}),
			startSyncer(t, f, f.c2, syncer.Config[*submv1.Endpoint]{}),
			startSyncer(t, f, f.c1, syncer.Config[*submv1.Cluster]{}),
			startSyncer(t, f, f.c2, syncer.Config[*submv1.Cluster]{}),
		}
	}
	syncers := startAll()

	ep1 := endpoint("cluster1", "cluster1-gw1", "gw1", "192.0.2.11", "10.1.0.0/16")
	ep2 := endpoint("cluster2", "cluster2-gw1", "gw1", "192.0.2.21", "10.2.0.0/16")
	create(t, f.c1.Client, ep1)
	create(t, f.c2.Client, ep2)
	create(t, f.c1.Client, cluster("cluster1", "10.1.0.0/16", "100.1.0.0/16"))
	create(t, f.c2.Client, cluster("cluster2", "10.2.0.0/16", "100.2.0.0/16"))

	endpoints := func(broker, c1, c2 []string) []expectation {
		return []expectation{
			{f.broker, endpointsGVR, brokerNS, describeEndpoint, broker},
			{f.c1, endpointsGVR, componentNS, describeEndpoint, c1},
			{f.c2, endpointsGVR, componentNS, describeEndpoint, c2},
		}
	}
	clusters := []expectation{
		{f.broker, clustersGVR, brokerNS, describeCluster, []string{
			"submariner-k8s-broker/cluster1.submariner-operator.cluster1 cluster=cluster1 id=cluster1 pods=10.1.0.0/16",
			"submariner-k8s-broker/cluster2.submariner-operator.cluster2 cluster=cluster2 id=cluster2 pods=10.2.0.0/16",
		}},
		{f.c1, clustersGVR, componentNS, describeCluster, []string{
			"submariner-operator/cluster1 id=cluster1 pods=10.1.0.0/16",
			"submariner-operator/cluster2.submariner-operator.cluster2 cluster=cluster2 copy id=cluster2 pods=10.2.0.0/16",
		}},
		{f.c2, clustersGVR, componentNS, describeCluster, []string{
			"submariner-operator/cluster1.submariner-operator.cluster1 cluster=cluster1 copy id=cluster1 pods=10.1.0.0/16",
			"submariner-operator/cluster2 id=cluster2 pods=10.2.0.0/16",
		}},
	}
	eventually(t, append(clusters, endpoints(
		[]string{
			"submariner-k8s-broker/cluster1-gw1.submariner-operator.cluster1 cluster=cluster1 host=gw1 ip=192.0.2.11 subnets=10.1.0.0/16",
			"submariner-k8s-broker/cluster2-gw1.submariner-operator.cluster2 cluster=cluster2 host=gw1 ip=192.0.2.21 subnets=10.2.0.0/16",
		},
		[]string{
			"submariner-operator/cluster1-gw1 host=gw1 ip=192.0.2.11 subnets=10.1.0.0/16",
			"submariner-operator/cluster2-gw1.submariner-operator.cluster2 cluster=cluster2 copy host=gw1 ip=192.0.2.21 subnets=10.2.0.0/16",
		},
		[]string{
			"submariner-operator/cluster1-gw1.submariner-operator.cluster1 cluster=cluster1 copy host=gw1 ip=192.0.2.11 subnets=10.1.0.0/16",
			"submariner-operator/cluster2-gw1 host=gw1 ip=192.0.2.21 subnets=10.2.0.0/16",
		})...)...)

	t.Run("copies carry their origin", func(t *testing.T) {
		var got submv1.Endpoint
		get(t, f.c2.Client, componentNS, "cluster1-gw1.submariner-operator.cluster1", &got)
		want := map[string]string{
			submv1.ClusterIDLabel:       "cluster1",
			syncer.LabelOriginNamespace: componentNS,
			syncer.LabelCopy:            "true",
		}
		if d := cmp.Diff(want, got.Labels); d != "" {
			t.Errorf("labels of the copy (-want +got):\n%s", d)
		}
		wantAnn := map[string]string{
			syncer.AnnotationOriginName: "cluster1-gw1",
			syncer.AnnotationBrokerName: "cluster1-gw1.submariner-operator.cluster1",
		}
		if d := cmp.Diff(wantAnn, got.Annotations); d != "" {
			t.Errorf("annotations of the copy (-want +got):\n%s", d)
		}
		if d := cmp.Diff(ep1.Spec, got.Spec); d != "" {
			t.Errorf("spec of the copy (-want +got):\n%s", d)
		}
	})

	t.Run("updates and deletes propagate", func(t *testing.T) {
		update(t, f.c1.Client, componentNS, "cluster1-gw1", func(e *submv1.Endpoint) {
			e.Spec.Hostname = "gw2"
			e.Spec.PrivateIP = "192.0.2.12"
		})
		remove(t, f.c2.Client, ep2)
		eventually(t, endpoints(
			[]string{"submariner-k8s-broker/cluster1-gw1.submariner-operator.cluster1 cluster=cluster1 host=gw2 ip=192.0.2.12 subnets=10.1.0.0/16"},
			[]string{"submariner-operator/cluster1-gw1 host=gw2 ip=192.0.2.12 subnets=10.1.0.0/16"},
			[]string{"submariner-operator/cluster1-gw1.submariner-operator.cluster1 cluster=cluster1 copy host=gw2 ip=192.0.2.12 subnets=10.1.0.0/16"},
		)...)
		create(t, f.c2.Client, endpoint("cluster2", "cluster2-gw1", "gw1", "192.0.2.21", "10.2.0.0/16"))
		eventually(t, endpoints(
			[]string{
				"submariner-k8s-broker/cluster1-gw1.submariner-operator.cluster1 cluster=cluster1 host=gw2 ip=192.0.2.12 subnets=10.1.0.0/16",
				"submariner-k8s-broker/cluster2-gw1.submariner-operator.cluster2 cluster=cluster2 host=gw1 ip=192.0.2.21 subnets=10.2.0.0/16",
			},
			[]string{
				"submariner-operator/cluster1-gw1 host=gw2 ip=192.0.2.12 subnets=10.1.0.0/16",
				"submariner-operator/cluster2-gw1.submariner-operator.cluster2 cluster=cluster2 copy host=gw1 ip=192.0.2.21 subnets=10.2.0.0/16",
			},
			[]string{
				"submariner-operator/cluster1-gw1.submariner-operator.cluster1 cluster=cluster1 copy host=gw2 ip=192.0.2.12 subnets=10.1.0.0/16",
				"submariner-operator/cluster2-gw1 host=gw1 ip=192.0.2.21 subnets=10.2.0.0/16",
			})...)
	})

	converged := endpoints(
		[]string{
			"submariner-k8s-broker/cluster1-gw1.submariner-operator.cluster1 cluster=cluster1 host=gw2 ip=192.0.2.12 subnets=10.1.0.0/16",
			"submariner-k8s-broker/cluster2-gw1.submariner-operator.cluster2 cluster=cluster2 host=gw1 ip=192.0.2.21 subnets=10.2.0.0/16",
		},
		[]string{
			"submariner-operator/cluster1-gw1 host=gw2 ip=192.0.2.12 subnets=10.1.0.0/16",
			"submariner-operator/cluster2-gw1.submariner-operator.cluster2 cluster=cluster2 copy host=gw1 ip=192.0.2.21 subnets=10.2.0.0/16",
		},
		[]string{
			"submariner-operator/cluster1-gw1.submariner-operator.cluster1 cluster=cluster1 copy host=gw2 ip=192.0.2.12 subnets=10.1.0.0/16",
			"submariner-operator/cluster2-gw1 host=gw1 ip=192.0.2.21 subnets=10.2.0.0/16",
		})

	t.Run("tampering is repaired", func(t *testing.T) {
		// Someone edits cluster2's copy of cluster1's endpoint, deletes cluster1's
		// copy of cluster2's, and deletes cluster1's object on the broker; each time
		// the syncers put things back.
		update(t, f.c2.Client, componentNS, "cluster1-gw1.submariner-operator.cluster1", func(e *submv1.Endpoint) {
			e.Spec.Hostname = "forged"
		})
		eventually(t, converged...)
		remove(t, f.c1.Client, &submv1.Endpoint{ObjectMeta: metav1.ObjectMeta{
			Namespace: componentNS, Name: "cluster2-gw1.submariner-operator.cluster2"}})
		eventually(t, converged...)
		remove(t, f.broker.Client, &submv1.Endpoint{ObjectMeta: metav1.ObjectMeta{
			Namespace: brokerNS, Name: "cluster1-gw1.submariner-operator.cluster1"}})
		eventually(t, converged...)
	})

	t.Run("restart rewrites nothing", func(t *testing.T) {
		before := allResourceVersions(t, f)
		for _, r := range syncers {
			r.stop(t)
		}
		syncers = startAll()
		eventually(t, append(clusters, converged...)...)
		if d := cmp.Diff(before, allResourceVersions(t, f)); d != "" {
			t.Errorf("resourceVersions moved across a restart (-before +after):\n%s", d)
		}
		for _, r := range syncers {
			if n := r.writes(t); n != 0 {
				t.Errorf("the restarted syncer in %s made %d writes, want none", r.name, n)
			}
		}
	})

	t.Run("restart applies what changed meanwhile", func(t *testing.T) {
		for _, r := range syncers {
			r.stop(t)
		}
		// While cluster1's syncers are down its endpoint moves to another name,
		// and cluster2's endpoint changes.
		remove(t, f.c1.Client, &submv1.Endpoint{ObjectMeta: metav1.ObjectMeta{Namespace: componentNS, Name: "cluster1-gw1"}})
		create(t, f.c1.Client, endpoint("cluster1", "cluster1-gw3", "gw3", "192.0.2.13", "10.1.0.0/16"))
		update(t, f.c2.Client, componentNS, "cluster2-gw1", func(e *submv1.Endpoint) { e.Spec.Subnets = []string{"10.2.0.0/16", "100.2.0.0/16"} })
		syncers = startAll()
		eventually(t, endpoints(
			[]string{
				"submariner-k8s-broker/cluster1-gw3.submariner-operator.cluster1 cluster=cluster1 host=gw3 ip=192.0.2.13 subnets=10.1.0.0/16",
				"submariner-k8s-broker/cluster2-gw1.submariner-operator.cluster2 cluster=cluster2 host=gw1 ip=192.0.2.21 subnets=10.2.0.0/16,100.2.0.0/16",
			},
			[]string{
				"submariner-operator/cluster1-gw3 host=gw3 ip=192.0.2.13 subnets=10.1.0.0/16",
				"submariner-operator/cluster2-gw1.submariner-operator.cluster2 cluster=cluster2 copy host=gw1 ip=192.0.2.21 subnets=10.2.0.0/16,100.2.0.0/16",
			},
			[]string{
				"submariner-operator/cluster1-gw3.submariner-operator.cluster1 cluster=cluster1 copy host=gw3 ip=192.0.2.13 subnets=10.1.0.0/16",
				"submariner-operator/cluster2-gw1 host=gw1 ip=192.0.2.21 subnets=10.2.0.0/16,100.2.0.0/16",
			})...)
	})
}

// allResourceVersions returns the resourceVersion of every Endpoint and Cluster on
// every plane of f.
func allResourceVersions(t *testing.T, f fleet) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, plane := range []struct {
		name string
		rvs  func() map[string]string
	}{
		{"broker endpoints", func() map[string]string { return resourceVersions(t, f.broker, endpointsGVR) }},
		{"broker clusters", func() map[string]string { return resourceVersions(t, f.broker, clustersGVR) }},
		{"cluster1 endpoints", func() map[string]string { return resourceVersions(t, f.c1, endpointsGVR) }},
		{"cluster1 clusters", func() map[string]string { return resourceVersions(t, f.c1, clustersGVR) }},
		{"cluster2 endpoints", func() map[string]string { return resourceVersions(t, f.c2, endpointsGVR) }},
		{"cluster2 clusters", func() map[string]string { return resourceVersions(t, f.c2, clustersGVR) }},
	} {
		for k, v := range plane.rvs() {
			out[plane.name+" "+k] = v
		}
	}
	return out
}

func create(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(context.Background(), obj.DeepCopyObject().(client.Object)); err != nil {
		t.Fatalf("creating %s/%s: %v", obj.GetNamespace(), obj.GetName(), err)
	}
}

func get(t *testing.T, c client.Client, namespace, name string, obj client.Object) {
	t.Helper()
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: name}, obj); err != nil {
		t.Fatalf("getting %s/%s: %v", namespace, name, err)
	}
}

func remove(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Delete(context.Background(), obj.DeepCopyObject().(client.Object)); err != nil {
		t.Fatalf("deleting %s/%s: %v", obj.GetNamespace(), obj.GetName(), err)
	}
}

// update reads the Endpoint namespace/name, changes it with edit and writes it.
func update(t *testing.T, c client.Client, namespace, name string, edit func(*submv1.Endpoint)) {
	t.Helper()
	var e submv1.Endpoint
	get(t, c, namespace, name, &e)
	edit(&e)
	if err := c.Update(context.Background(), &e); err != nil {
		t.Fatalf("updating %s/%s: %v", namespace, name, err)
	}
}
