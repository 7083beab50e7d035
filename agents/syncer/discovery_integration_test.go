package syncer_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/submariner-go/submariner/agents/syncer"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// lighthouseSlice returns an EndpointSlice as the lighthouse agent of cluster
// publishes it for service in namespace, with one endpoint at address.
func lighthouseSlice(cluster, namespace, name, service, address string) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{
			discoveryv1.LabelManagedBy:    submv1.LighthouseManagedBy,
			submv1.LabelSourceNamespace:   namespace,
			mcsv1beta1.LabelServiceName:   service,
			mcsv1beta1.LabelSourceCluster: cluster,
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{address},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](80), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
}

// describeSlice describes the slices of services; it leaves out the API server's
// own slice of the kubernetes Service.
func describeSlice(u *unstructured.Unstructured) string {
	if u.GetNamespace() == metav1.NamespaceDefault {
		return ""
	}
	var s discoveryv1.EndpointSlice
	if err := runtimeFromUnstructured(u, &s); err != nil {
		return err.Error()
	}
	var addrs []string
	for _, e := range s.Endpoints {
		addrs = append(addrs, e.Addresses...)
	}
	return fmt.Sprintf("service=%s addresses=%s", s.Labels[mcsv1beta1.LabelServiceName], strings.Join(addrs, ","))
}

// TestEndpointSlicesGoToTheirNamespace syncs lighthouse EndpointSlices, from all
// namespaces, into the namespace their label names in the other cluster:
//
//	cluster1 (demo, shop) --- broker --- cluster2 (demo; shop created later)
//
// Slices of the default controller stay home; a copy whose namespace does not
// exist waits for it; a slice that names no namespace is refused with a reason.
func TestEndpointSlicesGoToTheirNamespace(t *testing.T) {
	f := startFleet(t)
	createNamespace(t, f.c1, "demo")
	createNamespace(t, f.c2, "demo")
	createNamespace(t, f.c1, "shop")
	cfg := syncer.Config[*discoveryv1.EndpointSlice]{
		ToBroker: syncer.ToBroker[*discoveryv1.EndpointSlice]{
			Namespace:     syncer.AllNamespaces,
			LabelSelector: discoveryv1.LabelManagedBy + "=" + submv1.LighthouseManagedBy,
		},
		FromBroker: syncer.FromBroker[*discoveryv1.EndpointSlice]{
			Namespace: syncer.NamespaceFromLabel[*discoveryv1.EndpointSlice](submv1.LabelSourceNamespace),
		},
	}
	startSyncer(t, f, f.c1, cfg)
	s2 := startSyncer(t, f, f.c2, cfg)

	native := lighthouseSlice("cluster1", "demo", "web-abcde", "web", "10.1.0.7")
	native.Labels[discoveryv1.LabelManagedBy] = "endpointslice-controller.k8s.io"
	create(t, f.c1.Client, native)
	create(t, f.c1.Client, lighthouseSlice("cluster1", "demo", "web-cluster1", "web", "100.1.0.10"))
	create(t, f.c2.Client, lighthouseSlice("cluster2", "demo", "web-cluster2", "web", "100.2.0.10"))
	create(t, f.c1.Client, lighthouseSlice("cluster1", "shop", "cart-cluster1", "cart", "100.1.0.20"))

	exps := func(broker, c1, c2 []string) []expectation {
		return []expectation{
			{f.broker, endpointSlicesGVR, brokerNS, describeSlice, broker},
			{f.c1, endpointSlicesGVR, "", describeSlice, c1},
			{f.c2, endpointSlicesGVR, "", describeSlice, c2},
		}
	}
	broker := []string{
		"submariner-k8s-broker/cart-cluster1.shop.cluster1 cluster=cluster1 service=cart addresses=100.1.0.20",
		"submariner-k8s-broker/web-cluster1.demo.cluster1 cluster=cluster1 service=web addresses=100.1.0.10",
		"submariner-k8s-broker/web-cluster2.demo.cluster2 cluster=cluster2 service=web addresses=100.2.0.10",
	}
	c1 := []string{
		"demo/web-abcde service=web addresses=10.1.0.7",
		"demo/web-cluster1 service=web addresses=100.1.0.10",
		"demo/web-cluster2.demo.cluster2 cluster=cluster2 copy service=web addresses=100.2.0.10",
		"shop/cart-cluster1 service=cart addresses=100.1.0.20",
	}
	eventually(t, exps(broker, c1, []string{
		"demo/web-cluster1.demo.cluster1 cluster=cluster1 copy service=web addresses=100.1.0.10",
		"demo/web-cluster2 service=web addresses=100.2.0.10",
	})...)
	waitCounter(t, s2.metrics.Rejected, map[string]string{"reason": "namespace_missing"})

	t.Run("a copy waits for its namespace", func(t *testing.T) {
		createNamespace(t, f.c2, "shop")
		eventually(t, exps(broker, c1, []string{
			"demo/web-cluster1.demo.cluster1 cluster=cluster1 copy service=web addresses=100.1.0.10",
			"demo/web-cluster2 service=web addresses=100.2.0.10",
			"shop/cart-cluster1.shop.cluster1 cluster=cluster1 copy service=cart addresses=100.1.0.20",
		})...)
	})

	t.Run("a slice without its namespace label is refused", func(t *testing.T) {
		bad := lighthouseSlice("cluster1", "demo", "orphan-cluster1", "orphan", "100.1.0.30")
		delete(bad.Labels, submv1.LabelSourceNamespace)
		create(t, f.c1.Client, bad)
		waitCounter(t, s2.metrics.Rejected, map[string]string{"reason": "invalid", "direction": "from_broker"})
		got, err := render(context.Background(), f.c2, endpointSlicesGVR, "", describeSlice)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(got, "orphan") {
			t.Errorf("cluster2 copied a slice that names no namespace:\n%s", got)
		}
		remove(t, f.c1.Client, bad)
	})

	t.Run("updates and deletes propagate", func(t *testing.T) {
		var s discoveryv1.EndpointSlice
		get(t, f.c2.Client, "demo", "web-cluster2", &s)
		s.Endpoints[0].Addresses = []string{"100.2.0.11"}
		if err := f.c2.Client.Update(context.Background(), &s); err != nil {
			t.Fatal(err)
		}
		remove(t, f.c1.Client, &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart-cluster1"}})
		eventually(t, exps(
			[]string{
				"submariner-k8s-broker/web-cluster1.demo.cluster1 cluster=cluster1 service=web addresses=100.1.0.10",
				"submariner-k8s-broker/web-cluster2.demo.cluster2 cluster=cluster2 service=web addresses=100.2.0.11",
			},
			[]string{
				"demo/web-abcde service=web addresses=10.1.0.7",
				"demo/web-cluster1 service=web addresses=100.1.0.10",
				"demo/web-cluster2.demo.cluster2 cluster=cluster2 copy service=web addresses=100.2.0.11",
			},
			[]string{
				"demo/web-cluster1.demo.cluster1 cluster=cluster1 copy service=web addresses=100.1.0.10",
				"demo/web-cluster2 service=web addresses=100.2.0.11",
			})...)
	})
}

// brokerImport returns the aggregated ServiceImport of service in namespace as it
// sits on the broker: named <service>-<namespace>, with the lighthouse
// bookkeeping annotations, shared by all clusters (no cluster label).
func brokerImport(service, namespace string, clusters ...string) *mcsv1beta1.ServiceImport {
	si := &mcsv1beta1.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{Name: service + "-" + namespace, Namespace: brokerNS, Annotations: map[string]string{
			mcsv1beta1.LabelServiceName: service,
			submv1.LabelSourceNamespace: namespace,
		}},
		Spec: mcsv1beta1.ServiceImportSpec{
			Type:  mcsv1beta1.ClusterSetIP,
			Ports: []mcsv1beta1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
	for _, c := range clusters {
		si.Annotations["timestamp.submariner.io/"+c] = "1700000000000000000"
		si.Status.Clusters = append(si.Status.Clusters, mcsv1beta1.ClusterStatus{Cluster: c})
	}
	return si
}

func describeImport(u *unstructured.Unstructured) string {
	var si mcsv1beta1.ServiceImport
	if err := runtimeFromUnstructured(u, &si); err != nil {
		return err.Error()
	}
	var clusters []string
	for _, c := range si.Status.Clusters {
		clusters = append(clusters, c.Cluster)
	}
	keys := slices.Sorted(maps.Keys(si.Annotations))
	return fmt.Sprintf("type=%s ports=%d clusters=%s annotations=%s", si.Spec.Type, len(si.Spec.Ports),
		strings.Join(clusters, ","), strings.Join(keys, ","))
}

// TestServiceImportsComeDownWithStatus copies the broker's aggregated
// ServiceImports, which belong to no single cluster, into every cluster:
//
//	broker nginx-demo (status.clusters) ---> cluster1 demo/nginx, cluster2 demo/nginx
//
// The copy is renamed after the service and put into its namespace, the
// lighthouse bookkeeping annotations are stripped, and the status comes along
// through the status subresource. A local ServiceImport that is not a copy is
// never overwritten.
func TestServiceImportsComeDownWithStatus(t *testing.T) {
	f := startFleet(t)
	createNamespace(t, f.c1, "demo")
	createNamespace(t, f.c2, "demo")
	cfg := syncer.Config[*mcsv1beta1.ServiceImport]{
		SyncStatus: true,
		ToBroker:   syncer.ToBroker[*mcsv1beta1.ServiceImport]{Disabled: true},
		FromBroker: syncer.FromBroker[*mcsv1beta1.ServiceImport]{
			Namespace: func(si *mcsv1beta1.ServiceImport) (string, error) {
				ns, ok := si.Annotations[submv1.LabelSourceNamespace]
				if !ok {
					return "", fmt.Errorf("no annotation %s", submv1.LabelSourceNamespace)
				}
				return ns, nil
			},
			Transform: func(si *mcsv1beta1.ServiceImport) error {
				si.Name = si.Annotations[mcsv1beta1.LabelServiceName]
				for k := range si.Annotations {
					if strings.HasPrefix(k, "timestamp.submariner.io/") {
						delete(si.Annotations, k)
					}
				}
				return nil
			},
		},
	}
	// A user's own ServiceImport in cluster2 sits where the copy would go.
	mine := brokerImport("nginx", "demo")
	mine.Name, mine.Namespace, mine.Annotations = "nginx", "demo", nil
	create(t, f.c2.Client, mine)

	s1 := startSyncer(t, f, f.c1, cfg)
	s2 := startSyncer(t, f, f.c2, cfg)
	si := brokerImport("nginx", "demo", "cluster1")
	create(t, f.broker.Client, si)
	updateImportStatus(t, f.broker.Client, si)

	copyLine := func(clusters string) string {
		return "demo/nginx copy type=ClusterSetIP ports=1 clusters=" + clusters + " annotations=" +
			strings.Join([]string{
				submv1.LabelSourceNamespace, mcsv1beta1.LabelServiceName, syncer.AnnotationBrokerName,
			}, ",")
	}
	brokerLine := func(clusters ...string) string {
		keys := []string{submv1.LabelSourceNamespace, mcsv1beta1.LabelServiceName}
		for _, c := range clusters {
			keys = append(keys, "timestamp.submariner.io/"+c)
		}
		slices.Sort(keys)
		return "submariner-k8s-broker/nginx-demo type=ClusterSetIP ports=1 clusters=" + strings.Join(clusters, ",") +
			" annotations=" + strings.Join(keys, ",")
	}
	const user = "demo/nginx type=ClusterSetIP ports=1 clusters= annotations="
	eventually(t,
		expectation{f.broker, serviceImportsGVR, brokerNS, describeImport, []string{brokerLine("cluster1")}},
		expectation{f.c1, serviceImportsGVR, "demo", describeImport, []string{copyLine("cluster1")}},
		expectation{f.c2, serviceImportsGVR, "demo", describeImport, []string{user}},
	)
	waitCounter(t, s2.metrics.Rejected, map[string]string{"reason": "conflict"})

	t.Run("status changes come down", func(t *testing.T) {
		// The user's object goes away; the next change of the broker object
		// brings the copy to cluster2 as well.
		remove(t, f.c2.Client, mine)
		si := brokerImport("nginx", "demo", "cluster1", "cluster2")
		var live mcsv1beta1.ServiceImport
		get(t, f.broker.Client, brokerNS, si.Name, &live)
		live.Annotations = si.Annotations
		if err := f.broker.Client.Update(context.Background(), &live); err != nil {
			t.Fatal(err)
		}
		live.Status = si.Status
		updateImportStatus(t, f.broker.Client, &live)
		eventually(t,
			expectation{f.broker, serviceImportsGVR, brokerNS, describeImport, []string{brokerLine("cluster1", "cluster2")}},
			expectation{f.c1, serviceImportsGVR, "demo", describeImport, []string{copyLine("cluster1,cluster2")}},
			expectation{f.c2, serviceImportsGVR, "demo", describeImport, []string{copyLine("cluster1,cluster2")}},
		)
		for _, r := range []*running{s1, s2} {
			if n := sumCounter(t, r.metrics.Operations, map[string]string{"operation": "update_status", "result": "success"}); n == 0 {
				t.Errorf("the syncer in %s wrote no status through the subresource", r.name)
			}
		}
	})

	t.Run("deletes come down", func(t *testing.T) {
		remove(t, f.broker.Client, &mcsv1beta1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: brokerNS, Name: "nginx-demo"}})
		eventually(t,
			expectation{f.broker, serviceImportsGVR, brokerNS, describeImport, nil},
			expectation{f.c1, serviceImportsGVR, "demo", describeImport, nil},
			expectation{f.c2, serviceImportsGVR, "demo", describeImport, nil},
		)
	})
}

func updateImportStatus(t *testing.T, c client.Client, si *mcsv1beta1.ServiceImport) {
	t.Helper()
	var live mcsv1beta1.ServiceImport
	get(t, c, si.Namespace, si.Name, &live)
	live.Status = si.Status
	if err := c.Status().Update(context.Background(), &live); err != nil {
		t.Fatalf("updating the status of %s/%s: %v", si.Namespace, si.Name, err)
	}
}

// waitCounter waits until the counters of vec with labels match add up to more
// than zero.
func waitCounter(t *testing.T, vec prometheus.Collector, match map[string]string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, convergeTimeout, true,
		func(context.Context) (bool, error) { return sumCounter(t, vec, match) > 0, nil })
	if err != nil {
		t.Fatalf("no count of %v: %v", match, err)
	}
}

func runtimeFromUnstructured(u *unstructured.Unstructured, obj any) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, obj)
}
