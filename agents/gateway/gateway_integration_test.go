package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/submariner-go/submariner/agents/component"
	"github.com/submariner-go/submariner/agents/gateway/cable"
	"github.com/submariner-go/submariner/agents/gateway/cable/fake"
	"github.com/submariner-go/submariner/agents/syncer"
	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/controlplane"
)

// convergeTimeout only guards against a hang; the tests wait for states, never
// for a time.
const convergeTimeout = 2 * time.Minute

// testGateway is a gateway running in the test process.
type testGateway struct {
	node   string
	plane  *controlplane.Plane
	driver *fake.Driver
	cancel context.CancelFunc
	done   chan error
	ready  *readiness
	link   *link
	once   sync.Once
}

// link is the network between a test gateway and the API servers. Cut, its
// requests hang until their context ends or the link comes back, as over a dead
// network; watches already open are not cut.
type link struct {
	mu sync.Mutex
	up chan struct{} // closed while the link is up
}

func newLink() *link {
	up := make(chan struct{})
	close(up)
	return &link{up: up}
}

func (l *link) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.up:
		l.up = make(chan struct{})
	default:
	}
}

func (l *link) restore() {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.up:
	default:
		close(l.up)
	}
}

func (l *link) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		l.mu.Lock()
		up := l.up
		l.mu.Unlock()
		select {
		case <-up:
			return rt.RoundTrip(r)
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
	})
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// through returns a copy of cfg whose requests go over l.
func (l *link) through(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(l.wrap)
	return cfg
}

// readiness records what the gateway says about its readiness.
type readiness struct {
	mu  sync.Mutex
	err error
	set bool
}

func (r *readiness) report(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err, r.set = err, true
}

func (r *readiness) get() (error, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err, r.set
}

// gatewayNode creates the Node of a gateway with the address ip, and its pod.
func gatewayNode(t *testing.T, p *controlplane.Plane, name, ip string) {
	t.Helper()
	ctx := context.Background()
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{submv1.GatewayLabel: "true"}},
	}
	if err := p.Client.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: ip}}
	if err := p.Client.Status().Update(ctx, n); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "gateway-" + name, Namespace: submv1.ComponentNamespace},
		Spec:       corev1.PodSpec{NodeName: name, Containers: []corev1.Container{{Name: "gateway", Image: "ghcr.io/submariner-go/submariner-gateway:dev"}}},
	}
	if err := p.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
}

// startGateway runs a gateway of clusterID on node (whose host has nodeIP on eth0
// and cniIP on cni0) with a fake cable driver; newDriver, when set, creates the
// driver instead.
func startGateway(t *testing.T, p, broker *controlplane.Plane, clusterID, node, nodeIP, cniIP string, newDriver func(cable.Config) (cable.Driver, error)) *testGateway {
	t.Helper()
	n := clusterID[len(clusterID)-1:] // cluster<n>: pods 10.<n>.0.0/16, services 100.<n>.0.0/16
	nets := component.Networks{
		Cluster: []netip.Prefix{netip.MustParsePrefix("10." + n + ".0.0/16")},
		Service: []netip.Prefix{netip.MustParsePrefix("100." + n + ".0.0/16")},
	}
	g := &testGateway{node: node, plane: p, driver: fake.New(submv1.BackendVXLAN), done: make(chan error, 1), ready: &readiness{}, link: newLink()}
	g.driver.SetBackendConfig(map[string]string{"test-key": node})
	if newDriver == nil {
		newDriver = func(cable.Config) (cable.Driver, error) { return g.driver, nil }
	}
	cfg := Config{
		ClusterID: clusterID, Namespace: submv1.ComponentNamespace, NodeName: node,
		PodName: "gateway-" + node, PodNamespace: submv1.ComponentNamespace,
		Networks: nets, Backend: submv1.BackendVXLAN, Port: 4500, NATTDiscoveryPort: 4490,
		LeaseDuration: DefaultLeaseDuration, RenewDeadline: DefaultRenewDeadline, RetryPeriod: DefaultRetryPeriod,
		// One second, so that a Gateway not refreshed for 3 s is stale.
		StatusPeriod: time.Second, Resync: DefaultResync,
	}
	links := []Link{
		{Name: "eth0", Addrs: []netip.Prefix{netip.MustParsePrefix(nodeIP + "/24")}},
		{Name: "cni0", Addrs: []netip.Prefix{netip.MustParsePrefix(cniIP + "/24")}},
	}
	gw, err := New(cfg, Deps{
		Local: g.link.through(p.Config), Broker: g.link.through(broker.Config), BrokerNamespace: submv1.BrokerNamespace,
		Host:      &cable.Host{},
		Links:     func() ([]Link, error) { return links, nil },
		NewDriver: newDriver,
		Log:       testr.NewWithOptions(t, testr.Options{LogTimestamp: true}).WithName(node),
		Ready:     g.ready.report,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	go func() { g.done <- gw.Run(ctx) }()
	t.Cleanup(func() { g.stop(t) })
	return g
}

// stop stops the gateway and waits for it.
func (g *testGateway) stop(t *testing.T) {
	t.Helper()
	g.once.Do(func() {
		g.cancel()
		select {
		case err := <-g.done:
			if err != nil {
				t.Errorf("gateway %s: %v", g.node, err)
			}
		case <-time.After(convergeTimeout):
			t.Errorf("gateway %s did not stop", g.node)
		}
	})
}

// startClusterset starts a broker, with its namespace, and the clusters, each
// with the component namespace.
func startClusterset(t *testing.T, clusters ...string) (*controlplane.Plane, []*controlplane.Plane) {
	t.Helper()
	planes := controlplane.Start(t, append([]string{"broker"}, clusters...)...)
	createNamespace(t, planes[0], submv1.BrokerNamespace)
	for _, c := range planes[1:] {
		createNamespace(t, c, submv1.ComponentNamespace)
	}
	return planes[0], planes[1:]
}

func createNamespace(t *testing.T, p *controlplane.Plane, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := p.Client.Create(context.Background(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// eventually waits until cond holds, failing with describe's text when it does
// not within convergeTimeout.
func eventually(t *testing.T, what string, cond func(ctx context.Context) (bool, error), describe func() string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, convergeTimeout, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		if err != nil && !apierrors.IsNotFound(err) {
			return false, err
		}
		return ok, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v\n%s", what, err, describe())
	}
}

func leaseHolder(ctx context.Context, p *controlplane.Plane) (string, error) {
	l, err := p.Kube.CoordinationV1().Leases(submv1.ComponentNamespace).Get(ctx, submv1.GatewayLeaseName, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	if l.Spec.HolderIdentity == nil {
		return "", nil
	}
	return *l.Spec.HolderIdentity, nil
}

// endpoints lists the Endpoints of namespace ns as "name cluster=... host=..." lines, sorted.
func endpoints(ctx context.Context, p *controlplane.Plane, ns string) ([]string, error) {
	var list submv1.EndpointList
	if err := p.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	var out []string
	for _, e := range list.Items {
		out = append(out, fmt.Sprintf("%s cluster=%s host=%s ip=%s copy=%s test-key=%s", e.Name, e.Spec.ClusterID, e.Spec.Hostname, e.Spec.PrivateIP, e.Labels[syncer.LabelCopy], e.Spec.BackendConfig["test-key"]))
	}
	slices.Sort(out)
	return out, nil
}

// gateways lists the Gateways of p as "name haStatus [cluster:status ...]" lines, sorted.
func gateways(ctx context.Context, p *controlplane.Plane) ([]string, error) {
	var list submv1.GatewayList
	if err := p.Client.List(ctx, &list, client.InNamespace(submv1.ComponentNamespace)); err != nil {
		return nil, err
	}
	var out []string
	for _, g := range list.Items {
		line := g.Name + " " + string(g.Status.HAStatus)
		if g.Status.StatusFailure != "" {
			line += " failure=" + g.Status.StatusFailure
		}
		for _, c := range g.Status.Connections {
			line += " " + c.Endpoint.ClusterID + ":" + c.Endpoint.Hostname + ":" + string(c.Status)
		}
		if g.Status.LocalEndpoint != nil {
			line += " local=" + g.Status.LocalEndpoint.Hostname
		}
		out = append(out, line)
	}
	slices.Sort(out)
	return out, nil
}

func podLabel(ctx context.Context, p *controlplane.Plane, node string) (string, error) {
	pod, err := p.Kube.CoreV1().Pods(submv1.ComponentNamespace).Get(ctx, "gateway-"+node, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	return pod.Labels[LabelGatewayStatus], nil
}

// TestGatewaysElectPublishAndFailOver runs, against real API servers (a broker and
// two clusters), two gateways of cluster1 and one of cluster2, each with a fake
// cable driver: one of cluster1's is elected, publishes cluster1's Endpoint, which
// the syncer carries to the broker and into cluster2 (and cluster2's into cluster1),
// each active gateway connects to the other cluster, and the Gateway objects say so.
// Then the active gateway of cluster1 stops: it releases the Lease, the other takes
// over, evicts the old Endpoint and publishes its own; cluster2 moves its tunnel to
// it; the stopped gateway's Gateway object is deleted once stale.
func TestGatewaysElectPublishAndFailOver(t *testing.T) {
	broker, cs := startClusterset(t, "cluster1", "cluster2")
	c1, c2 := cs[0], cs[1]
	gatewayNode(t, c1, "c1-gw1", "198.51.100.11")
	gatewayNode(t, c1, "c1-gw2", "198.51.100.12")
	gatewayNode(t, c2, "c2-gw1", "198.51.100.21")

	g1 := startGateway(t, c1, broker, "cluster1", "c1-gw1", "198.51.100.11", "10.1.11.1", nil)
	g2 := startGateway(t, c1, broker, "cluster1", "c1-gw2", "198.51.100.12", "10.1.12.1", nil)
	g3 := startGateway(t, c2, broker, "cluster2", "c2-gw1", "198.51.100.21", "10.2.21.1", nil)
	byNode := map[string]*testGateway{"c1-gw1": g1, "c1-gw2": g2}

	var active, passive *testGateway
	t.Run("one gateway of cluster1 is elected", func(t *testing.T) {
		var holder string
		eventually(t, "a Lease holder in cluster1", func(ctx context.Context) (bool, error) {
			var err error
			holder, err = leaseHolder(ctx, c1)
			return holder != "", err
		}, func() string { return "holder: " + holder })
		node := strings.TrimSuffix(holder, LeaderIdentitySuffix)
		active = byNode[node]
		if active == nil {
			t.Fatalf("lease holder %q is not one of the gateways", holder)
		}
		passive = g1
		if active == g1 {
			passive = g2
		}
		for _, g := range []*testGateway{g1, g2, g3} {
			var rerr error
			eventually(t, "gateway "+g.node+" to be ready", func(context.Context) (bool, error) {
				err, set := g.ready.get()
				rerr = err
				return set && err == nil, nil
			}, func() string { return fmt.Sprint("not ready: ", rerr) })
		}
	})

	t.Run("the Endpoints travel through the broker", func(t *testing.T) {
		wantC1 := []string{
			endpointName("cluster1", active.node) + " cluster=cluster1 host=" + active.node + " ip=" + nodeIPOf(active.node) + " copy= test-key=" + active.node,
			// The syncer names copies <name>.<namespace>.<cluster>.
			endpointName("cluster2", "c2-gw1") + ".submariner-operator.cluster2 cluster=cluster2 host=c2-gw1 ip=198.51.100.21 copy=true test-key=c2-gw1",
		}
		var got []string
		eventually(t, "cluster1's Endpoints", func(ctx context.Context) (bool, error) {
			var err error
			got, err = endpoints(ctx, c1, submv1.ComponentNamespace)
			return cmp.Equal(wantC1, got), err
		}, func() string { return cmp.Diff(wantC1, got) })
		var inC2 []string
		eventually(t, "cluster1's Endpoint in cluster2", func(ctx context.Context) (bool, error) {
			var err error
			inC2, err = endpoints(ctx, c2, submv1.ComponentNamespace)
			return len(inC2) == 2 && slices.ContainsFunc(inC2, func(s string) bool {
				return strings.Contains(s, "host="+active.node) && strings.Contains(s, "copy=true")
			}), err
		}, func() string { return strings.Join(inC2, "\n") })
		var onBroker []string
		eventually(t, "both Endpoints on the broker", func(ctx context.Context) (bool, error) {
			var err error
			onBroker, err = endpoints(ctx, broker, submv1.BrokerNamespace)
			return len(onBroker) == 2, err
		}, func() string { return strings.Join(onBroker, "\n") })
		// The gateways create the local Clusters (join did not here); they reach the
		// broker too.
		var clusters []string
		eventually(t, "both Clusters on the broker", func(ctx context.Context) (bool, error) {
			var list submv1.ClusterList
			err := broker.Client.List(ctx, &list, client.InNamespace(submv1.BrokerNamespace))
			clusters = nil
			for _, c := range list.Items {
				clusters = append(clusters, c.Spec.ClusterID+" "+strings.Join(c.Spec.ClusterCIDR, ",")+" "+strings.Join(c.Spec.ServiceCIDR, ","))
			}
			slices.Sort(clusters)
			return cmp.Equal([]string{"cluster1 10.1.0.0/16 100.1.0.0/16", "cluster2 10.2.0.0/16 100.2.0.0/16"}, clusters), err
		}, func() string { return strings.Join(clusters, "\n") })
	})

	t.Run("the active gateways connect and report it", func(t *testing.T) {
		want := []string{
			active.node + " active cluster2:c2-gw1:connected local=" + active.node,
			passive.node + " passive",
		}
		slices.Sort(want)
		var got []string
		eventually(t, "cluster1's Gateways", func(ctx context.Context) (bool, error) {
			var err error
			got, err = gateways(ctx, c1)
			return cmp.Equal(want, got), err
		}, func() string { return cmp.Diff(want, got) })
		eventually(t, "cluster2's Gateway", func(ctx context.Context) (bool, error) {
			var err error
			got, err = gateways(ctx, c2)
			return cmp.Equal([]string{"c2-gw1 active cluster1:" + active.node + ":connected local=c2-gw1"}, got), err
		}, func() string { return strings.Join(got, "\n") })
		if got := passive.driver.String(); got != "" {
			t.Errorf("the passive gateway has tunnels:\n%s", got)
		}
		for node, want := range map[string]string{active.node: "active", passive.node: "passive"} {
			var label string
			eventually(t, "the pod label of "+node, func(ctx context.Context) (bool, error) {
				var err error
				label, err = podLabel(ctx, c1, node)
				return label == want, err
			}, func() string { return "label: " + label })
		}
		var gw submv1.Gateway
		if err := c1.Client.Get(context.Background(), client.ObjectKey{Namespace: submv1.ComponentNamespace, Name: active.node}, &gw); err != nil {
			t.Fatal(err)
		}
		if gw.Status.Version != component.Version || gw.Annotations[AnnotationUpdateTimestamp] == "" {
			t.Errorf("Gateway %s: version %q, update-timestamp %q", active.node, gw.Status.Version, gw.Annotations[AnnotationUpdateTimestamp])
		}
	})

	t.Run("the active gateway stops: the passive one takes over", func(t *testing.T) {
		old := active
		old.stop(t)
		if ev := old.driver.Events(); len(ev) == 0 || ev[len(ev)-1] != "close" {
			t.Errorf("the stopped gateway's driver calls end with %v, want close", ev)
		}
		var holder string
		eventually(t, "the passive gateway to take the Lease", func(ctx context.Context) (bool, error) {
			var err error
			holder, err = leaseHolder(ctx, c1)
			return holder == passive.node+LeaderIdentitySuffix, err
		}, func() string { return "holder: " + holder })
		var got []string
		eventually(t, "cluster1's only local Endpoint to be the new gateway's, everywhere", func(ctx context.Context) (bool, error) {
			for _, p := range []*controlplane.Plane{c1, c2} {
				eps, err := endpoints(ctx, p, submv1.ComponentNamespace)
				if err != nil {
					return false, err
				}
				got = eps
				var hosts []string
				for _, e := range eps {
					if strings.Contains(e, "cluster=cluster1") {
						hosts = append(hosts, e[strings.Index(e, "host="):strings.Index(e, " ip=")])
					}
				}
				if !cmp.Equal([]string{"host=" + passive.node}, hosts) {
					return false, nil
				}
			}
			return true, nil
		}, func() string { return strings.Join(got, "\n") })
		eventually(t, "cluster2's tunnel to move to the new gateway", func(context.Context) (bool, error) {
			return strings.HasPrefix(g3.driver.String(), CableName("cluster1", netip.MustParseAddr(nodeIPOf(passive.node)))+" "), nil
		}, func() string { return g3.driver.String() })
		eventually(t, "cluster2's Gateway to show the new gateway connected", func(ctx context.Context) (bool, error) {
			var err error
			got, err = gateways(ctx, c2)
			return cmp.Equal([]string{"c2-gw1 active cluster1:" + passive.node + ":connected local=c2-gw1"}, got), err
		}, func() string { return strings.Join(got, "\n") })
		eventually(t, "the stopped gateway's Gateway to be deleted as stale", func(ctx context.Context) (bool, error) {
			var err error
			got, err = gateways(ctx, c1)
			return cmp.Equal([]string{passive.node + " active cluster2:c2-gw1:connected local=" + passive.node}, got), err
		}, func() string { return strings.Join(got, "\n") })
	})
}

// nodeIPOf returns the test address of a gateway node.
func nodeIPOf(node string) string {
	return map[string]string{"c1-gw1": "198.51.100.11", "c1-gw2": "198.51.100.12", "c2-gw1": "198.51.100.21"}[node]
}

// endpointName is the name of the Endpoint that node publishes for clusterID.
func endpointName(clusterID, node string) string {
	return EndpointName(clusterID, CableName(clusterID, netip.MustParseAddr(nodeIPOf(node))))
}

// TestGatewayWithoutPSK runs a gateway whose driver cannot be created (the
// pre-shared key is missing): the Gateway object says why, the gateway takes no
// part in the election and reports not ready; once the driver can be created, it
// goes on by itself.
func TestGatewayWithoutPSK(t *testing.T) {
	broker, cs := startClusterset(t, "cluster1")
	c1 := cs[0]
	gatewayNode(t, c1, "c1-gw1", "198.51.100.11")

	var mu sync.Mutex
	missing := true
	var g *testGateway
	g = startGateway(t, c1, broker, "cluster1", "c1-gw1", "198.51.100.11", "10.1.11.1", func(cable.Config) (cable.Driver, error) {
		mu.Lock()
		defer mu.Unlock()
		if missing {
			return nil, errors.New("creating cable driver libreswan: no pre-shared key: mount the Secret submariner-ipsec-psk")
		}
		return g.driver, nil
	})
	var got []string
	eventually(t, "the Gateway to report the failure", func(ctx context.Context) (bool, error) {
		var err error
		got, err = gateways(ctx, c1)
		return cmp.Equal([]string{"c1-gw1 passive failure=creating cable driver libreswan: no pre-shared key: mount the Secret submariner-ipsec-psk"}, got), err
	}, func() string { return strings.Join(got, "\n") })
	if err, set := g.ready.get(); !set || err == nil || !strings.Contains(err.Error(), "no pre-shared key") {
		t.Errorf("readiness %v (reported: %t), want the reason", err, set)
	}
	if _, err := leaseHolder(context.Background(), c1); !apierrors.IsNotFound(err) {
		t.Errorf("a gateway that cannot work took part in the election: the Lease exists (%v)", err)
	}

	mu.Lock()
	missing = false
	mu.Unlock()
	eventually(t, "the gateway to recover and become active", func(ctx context.Context) (bool, error) {
		var err error
		got, err = gateways(ctx, c1)
		return cmp.Equal([]string{"c1-gw1 active local=c1-gw1"}, got), err
	}, func() string { return strings.Join(got, "\n") })
	if err, _ := g.ready.get(); err != nil {
		t.Errorf("not ready after recovering: %v", err)
	}
}

// TestLostLeadership takes the Lease away from the active gateway of cluster1 while
// it is alive (as an API server hiccup or a partition would): it steps down but
// neither exits nor closes its driver; once the other gateway has taken over and
// published its Endpoint, the old one removes its tunnels and stays ready, with
// its driver initialised, for the next takeover.
func TestLostLeadership(t *testing.T) {
	broker, cs := startClusterset(t, "cluster1", "cluster2")
	c1, c2 := cs[0], cs[1]
	gatewayNode(t, c1, "c1-gw1", "198.51.100.11")
	gatewayNode(t, c1, "c1-gw2", "198.51.100.12")
	gatewayNode(t, c2, "c2-gw1", "198.51.100.21")
	g1 := startGateway(t, c1, broker, "cluster1", "c1-gw1", "198.51.100.11", "10.1.11.1", nil)
	g2 := startGateway(t, c1, broker, "cluster1", "c1-gw2", "198.51.100.12", "10.1.12.1", nil)
	startGateway(t, c2, broker, "cluster2", "c2-gw1", "198.51.100.21", "10.2.21.1", nil)

	var active, other *testGateway
	eventually(t, "an active gateway in cluster1 with a tunnel to cluster2", func(ctx context.Context) (bool, error) {
		for _, g := range []*testGateway{g1, g2} {
			if strings.Contains(g.driver.String(), "cluster cluster2") {
				active = g
			}
		}
		return active != nil, nil
	}, func() string { return "no tunnel" })
	other = g1
	if active == g1 {
		other = g2
	}
	active.driver.Events()

	// The other gateway takes the Lease: the active one cannot renew it.
	ctx := context.Background()
	lease, err := c1.Kube.CoordinationV1().Leases(submv1.ComponentNamespace).Get(ctx, submv1.GatewayLeaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id := other.node + LeaderIdentitySuffix
	now := metav1.NewMicroTime(time.Now())
	lease.Spec.HolderIdentity, lease.Spec.RenewTime, lease.Spec.AcquireTime = &id, &now, &now
	if _, err := c1.Kube.CoordinationV1().Leases(submv1.ComponentNamespace).Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	var got []string
	eventually(t, "the other gateway to be active and the old one passive", func(ctx context.Context) (bool, error) {
		var err error
		got, err = gateways(ctx, c1)
		want := []string{active.node + " passive", other.node + " active cluster2:c2-gw1:connected local=" + other.node}
		slices.Sort(want)
		return cmp.Equal(want, got), err
	}, func() string { return strings.Join(got, "\n") })
	eventually(t, "the old gateway to remove its tunnels", func(context.Context) (bool, error) {
		return active.driver.String() == "", nil
	}, func() string { return active.driver.String() })
	ev := active.driver.Events()
	if !slices.Contains(ev, "disconnect "+CableName("cluster2", netip.MustParseAddr("198.51.100.21"))) || slices.Contains(ev, "close") {
		t.Errorf("the old gateway's driver calls %v: want the tunnel disconnected and the driver kept", ev)
	}
	if err, _ := active.ready.get(); err != nil {
		t.Errorf("the old gateway is not ready any more: %v", err)
	}
	select {
	case err := <-active.done:
		t.Errorf("the old gateway exited (%v): losing the Lease must not stop it", err)
	default:
	}
}

// TestPartitionedLeader cuts the active gateway of cluster1 off the API servers,
// as a failed link does, until the other gateway has taken the Lease. The link
// comes back while the old gateway may still be waiting for the API server: it
// must leave the Lease to its successor and settle as passive. (client-go's
// release after a failed renewal judged by a stale record and freed the
// successor's Lease, and the old gateway took it back.)
func TestPartitionedLeader(t *testing.T) {
	broker, cs := startClusterset(t, "cluster1")
	c1 := cs[0]
	gatewayNode(t, c1, "c1-gw1", "198.51.100.11")
	gatewayNode(t, c1, "c1-gw2", "198.51.100.12")
	gws := map[string]*testGateway{
		"c1-gw1": startGateway(t, c1, broker, "cluster1", "c1-gw1", "198.51.100.11", "10.1.11.1", nil),
		"c1-gw2": startGateway(t, c1, broker, "cluster1", "c1-gw2", "198.51.100.12", "10.1.12.1", nil),
	}
	var holder string
	eventually(t, "a Lease holder in cluster1", func(ctx context.Context) (bool, error) {
		var err error
		holder, err = leaseHolder(ctx, c1)
		return holder != "", err
	}, func() string { return "no holder" })
	active := gws[strings.TrimSuffix(holder, LeaderIdentitySuffix)]
	other := gws["c1-gw1"]
	if other == active {
		other = gws["c1-gw2"]
	}

	active.link.cut()
	want := other.node + LeaderIdentitySuffix
	eventually(t, "the other gateway to take the Lease", func(ctx context.Context) (bool, error) {
		var err error
		holder, err = leaseHolder(ctx, c1)
		return holder == want, err
	}, func() string { return "the holder is " + holder })
	active.link.restore()

	// The Lease must stay with the successor: the old gateway's waiting requests
	// go through now, and a release would come right away.
	var got []string
	eventually(t, "the old gateway passive and the other one active", func(ctx context.Context) (bool, error) {
		var err error
		if holder, err = leaseHolder(ctx, c1); err != nil {
			return false, err
		}
		if holder != want {
			t.Fatalf("after the link came back the Lease went from %s to %q", want, holder)
		}
		if got, err = gateways(ctx, c1); err != nil {
			return false, err
		}
		label, err := podLabel(ctx, c1, active.node)
		want := []string{active.node + " passive", other.node + " active local=" + other.node}
		slices.Sort(want)
		return label == "passive" && cmp.Equal(want, got), err
	}, func() string { return strings.Join(got, "\n") })
	for end := time.Now().Add(DefaultLeaseDuration); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if holder, err := leaseHolder(context.Background(), c1); err != nil || holder != want {
			t.Fatalf("the Lease went from %s to %q (%v) after the old gateway had settled", want, holder, err)
		}
	}
}

// TestUninstall runs the cleanup mode against a real API server: this node's
// Gateway and the local Endpoints naming this node go, another gateway's Endpoint
// and the remote clusters' copies stay; then the gateway reports ready and waits
// to be stopped.
func TestUninstall(t *testing.T) {
	c1 := controlplane.Start(t, "cluster1")[0]
	createNamespace(t, c1, submv1.ComponentNamespace)
	ctx := context.Background()
	ep := func(name, cluster, host string, labels map[string]string) *submv1.Endpoint {
		return &submv1.Endpoint{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: submv1.ComponentNamespace, Labels: labels},
			Spec: submv1.EndpointSpec{ClusterID: cluster, CableName: "c-" + name, Hostname: host, PrivateIP: "198.51.100.1",
				Subnets: []string{"10.1.0.0/16"}, Backend: submv1.BackendVXLAN},
		}
	}
	for _, o := range []client.Object{
		&submv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "c1-gw1", Namespace: submv1.ComponentNamespace}},
		&submv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "c1-gw2", Namespace: submv1.ComponentNamespace}},
		ep("mine", "cluster1", "c1-gw1", nil),
		ep("other-node", "cluster1", "c1-gw2", nil),
		ep("remote-copy", "cluster2", "c1-gw1", map[string]string{syncer.LabelCopy: "true"}),
	} {
		if err := c1.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	r := &readiness{}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- Uninstall(runCtx, Config{ClusterID: "cluster1", Namespace: submv1.ComponentNamespace, NodeName: "c1-gw1"},
			UninstallDeps{Local: c1.Config, Host: &cable.Host{}, Log: testr.New(t), Ready: r.report})
	}()
	var rerr error
	eventually(t, "the cleanup to report ready", func(context.Context) (bool, error) {
		err, set := r.get()
		rerr = err
		return set && err == nil, nil
	}, func() string { return fmt.Sprint(rerr) })
	var left []string
	var gws submv1.GatewayList
	var eps submv1.EndpointList
	if err := c1.Client.List(ctx, &gws, client.InNamespace(submv1.ComponentNamespace)); err != nil {
		t.Fatal(err)
	}
	if err := c1.Client.List(ctx, &eps, client.InNamespace(submv1.ComponentNamespace)); err != nil {
		t.Fatal(err)
	}
	for _, g := range gws.Items {
		left = append(left, "gateway "+g.Name)
	}
	for _, e := range eps.Items {
		left = append(left, "endpoint "+e.Name)
	}
	slices.Sort(left)
	if diff := cmp.Diff([]string{"endpoint other-node", "endpoint remote-copy", "gateway c1-gw2"}, left); diff != "" {
		t.Errorf("objects left (-want +got):\n%s", diff)
	}
	select {
	case err := <-done:
		t.Fatalf("the cleanup mode returned (%v) before being stopped", err)
	default:
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("stopping the cleanup mode: %v", err)
	}
}
