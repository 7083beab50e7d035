package syncer_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/submariner-go/submariner/agents/syncer"
	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/controlplane"
)

// Test address plan (keep in sync across packages):
//   cluster1 pods 10.1.0.0/16, services 100.1.0.0/16; cluster2 pods 10.2.0.0/16, services 100.2.0.0/16
//   gateway underlay 192.0.2.0/24 (RFC 5737)

// convergeTimeout only guards against a hang; the tests wait for a state, never for
// a time.
const convergeTimeout = 3 * time.Minute

var (
	endpointsGVR      = submv1.SchemeGroupVersion.WithResource("endpoints")
	clustersGVR       = submv1.SchemeGroupVersion.WithResource("clusters")
	endpointSlicesGVR = schema.GroupVersionResource{Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices"}
	serviceImportsGVR = schema.GroupVersionResource{Group: "multicluster.x-k8s.io", Version: "v1beta1", Resource: "serviceimports"}
)

// fleet is a broker and two clusters, each a real API server.
type fleet struct {
	broker, c1, c2 *controlplane.Plane
}

// startFleet starts the planes; the broker can be stopped and restarted.
func startFleet(t *testing.T) fleet {
	t.Helper()
	planes := controlplane.StartWith(t, controlplane.Options{APIServerFlags: controlplane.RestartFlags()}, "broker", "cluster1", "cluster2")
	f := fleet{broker: planes[0], c1: planes[1], c2: planes[2]}
	createNamespace(t, f.broker, submv1.BrokerNamespace)
	createNamespace(t, f.c1, submv1.ComponentNamespace)
	createNamespace(t, f.c2, submv1.ComponentNamespace)
	return f
}

func createNamespace(t *testing.T, p *controlplane.Plane, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := p.Kube.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil &&
		!apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating namespace %s in %s: %v", name, p.Name, err)
	}
}

// testLogger logs through t with the time of day, at verbosity 1 (each write).
func testLogger(t *testing.T) logr.Logger {
	return funcr.New(func(prefix, args string) {
		t.Log(time.Now().Format("15:04:05.000"), prefix, args)
	}, funcr.Options{Verbosity: 1})
}

// running is a syncer running in the background.
type running struct {
	name    string
	syncer  *syncer.Syncer
	metrics *syncer.Metrics
	cancel  context.CancelFunc
	done    chan error
}

// startSyncer starts a syncer for cluster with cfg (ClusterID, Local and Broker
// filled in from the planes), waits until it has synced, and stops it when the
// test ends.
func startSyncer[T syncer.Object](t *testing.T, f fleet, cluster *controlplane.Plane, cfg syncer.Config[T]) *running {
	t.Helper()
	r := launchSyncer(t, f, cluster, cfg)
	r.waitSynced(t)
	return r
}

// launchSyncer is startSyncer without waiting for the sync.
func launchSyncer[T syncer.Object](t *testing.T, f fleet, cluster *controlplane.Plane, cfg syncer.Config[T]) *running {
	t.Helper()
	cfg.ClusterID = cluster.Name
	cfg.Local = cluster.Config
	cfg.Broker = f.broker.Config
	cfg.Metrics = syncer.NewMetrics()
	cfg.Log = testLogger(t).WithValues("cluster", cluster.Name)
	s, err := syncer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{name: cluster.Name, syncer: s, metrics: cfg.Metrics, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) waitSynced(t *testing.T) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, convergeTimeout, true,
		func(context.Context) (bool, error) {
			select {
			case err := <-r.done:
				return false, fmt.Errorf("Run returned %v before the syncer synced", err)
			default:
				return r.syncer.HasSynced(), nil
			}
		})
	if err != nil {
		t.Fatalf("syncer in %s: %v", r.name, err)
	}
}

// stop stops the syncer and waits for Run to return; stopping twice is harmless.
func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	if err := <-r.done; err != nil {
		t.Errorf("Run in %s returned %v", r.name, err)
	}
}

// writes returns the number of successful writes the syncer made.
func (r *running) writes(t *testing.T) int {
	t.Helper()
	return int(sumCounter(t, r.metrics.Operations, map[string]string{"result": "success"}))
}

// sumCounter adds up the counters of vec whose labels include match.
func sumCounter(t *testing.T, vec prometheus.Collector, match map[string]string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(vec); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, fam := range families {
		for _, m := range fam.GetMetric() {
			if labelsMatch(m, match) {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func labelsMatch(m *dto.Metric, match map[string]string) bool {
	found := 0
	for _, l := range m.GetLabel() {
		if v, ok := match[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			found++
		}
	}
	return found == len(match)
}

// describeFunc renders the interesting part of an object on one line, or ""
// for an object the test does not look at.
type describeFunc func(*unstructured.Unstructured) string

// render lists gvr in namespace ("" for all) on plane p, one sorted line per
// object: namespace/name, the origin cluster label, "copy" for copies, and what
// describe says; objects describe says nothing about are left out.
func render(ctx context.Context, p *controlplane.Plane, gvr schema.GroupVersionResource, namespace string, describe describeFunc) (string, error) {
	client, err := dynamic.NewForConfig(p.Config)
	if err != nil {
		return "", err
	}
	list, err := client.Resource(gvr).Namespace(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	var lines []string
	for _, u := range list.Items {
		desc := describe(&u)
		if desc == "" {
			continue
		}
		line := u.GetNamespace() + "/" + u.GetName()
		if c, ok := u.GetLabels()[submv1.ClusterIDLabel]; ok {
			line += " cluster=" + c
		}
		if _, ok := u.GetLabels()[syncer.LabelCopy]; ok {
			line += " copy"
		}
		lines = append(lines, line+" "+desc)
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n"), nil
}

// expectation is the wanted rendering of one kind on one plane.
type expectation struct {
	plane     *controlplane.Plane
	gvr       schema.GroupVersionResource
	namespace string
	describe  describeFunc
	want      []string
}

// eventually waits until every expectation holds at the same time, and fails the
// test with the differences when they do not before convergeTimeout.
func eventually(t *testing.T, exps ...expectation) {
	t.Helper()
	var diffs []string
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, convergeTimeout, true,
		func(ctx context.Context) (bool, error) {
			diffs = diffs[:0]
			for _, e := range exps {
				got, err := render(ctx, e.plane, e.gvr, e.namespace, e.describe)
				if err != nil {
					diffs = append(diffs, fmt.Sprintf("%s: %v", e.plane.Name, err))
					continue
				}
				want := slices.Clone(e.want)
				slices.Sort(want)
				if d := cmp.Diff(strings.Join(want, "\n"), got); d != "" {
					diffs = append(diffs, fmt.Sprintf("%s %s (-want +got):\n%s", e.plane.Name, e.gvr.Resource, d))
				}
			}
			return len(diffs) == 0, nil
		})
	if err != nil {
		t.Fatalf("no convergence: %v\n%s", err, strings.Join(diffs, "\n"))
	}
}

// resourceVersions returns namespace/name -> resourceVersion of gvr on plane p.
func resourceVersions(t *testing.T, p *controlplane.Plane, gvr schema.GroupVersionResource) map[string]string {
	t.Helper()
	client, err := dynamic.NewForConfig(p.Config)
	if err != nil {
		t.Fatal(err)
	}
	list, err := client.Resource(gvr).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, u := range list.Items {
		out[u.GetNamespace()+"/"+u.GetName()] = u.GetResourceVersion()
	}
	return out
}

func describeEndpoint(u *unstructured.Unstructured) string {
	host, _, _ := unstructured.NestedString(u.Object, "spec", "hostname")
	ip, _, _ := unstructured.NestedString(u.Object, "spec", "private_ip")
	subnets, _, _ := unstructured.NestedStringSlice(u.Object, "spec", "subnets")
	return fmt.Sprintf("host=%s ip=%s subnets=%s", host, ip, strings.Join(subnets, ","))
}

func describeCluster(u *unstructured.Unstructured) string {
	id, _, _ := unstructured.NestedString(u.Object, "spec", "cluster_id")
	pods, _, _ := unstructured.NestedStringSlice(u.Object, "spec", "cluster_cidr")
	return fmt.Sprintf("id=%s pods=%s", id, strings.Join(pods, ","))
}

// endpoint returns the Endpoint that cluster's gateway host publishes as name.
func endpoint(cluster, name, host, ip, subnet string) *submv1.Endpoint {
	return &submv1.Endpoint{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: submv1.ComponentNamespace},
		Spec: submv1.EndpointSpec{
			ClusterID: cluster,
			CableName: "submariner-cable-" + cluster + "-" + strings.ReplaceAll(ip, ".", "-"),
			Hostname:  host,
			PrivateIP: ip,
			Subnets:   []string{subnet},
			Backend:   submv1.BackendLibreswan,
		},
	}
}

func cluster(id, podCIDR, serviceCIDR string) *submv1.Cluster {
	return &submv1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: id, Namespace: submv1.ComponentNamespace},
		Spec: submv1.ClusterSpec{
			ClusterID:   id,
			ClusterCIDR: []string{podCIDR},
			ServiceCIDR: []string{serviceCIDR},
			GlobalCIDR:  []string{},
		},
	}
}
