package lighthouse_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/submariner-go/submariner/agents/lighthouse"
	"github.com/submariner-go/submariner/agents/syncer"
	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/controlplane"
)

// Test address plan (as in agents/syncer): cluster1 services 100.1.0.0/16, pods
// 10.1.0.0/16; cluster2 services 100.2.0.0/16, pods 10.2.0.0/16. The API servers
// allocate the ClusterIPs from these ranges; nothing is ever routed.
var serviceRanges = map[string]string{"cluster1": "100.1.0.0/16", "cluster2": "100.2.0.0/16"}

// convergeTimeout only guards against a hang; the tests wait for states, never
// for a time.
const convergeTimeout = 3 * time.Minute

const brokerNS = submv1.BrokerNamespace

// member is one cluster of the fleet.
type member struct {
	id    string
	plane *controlplane.Plane
	// local and broker are the agent's identities: users bound to exactly
	// lighthouse.ClusterRules() in the cluster and lighthouse.BrokerRules() in
	// the broker namespace.
	local, broker *rest.Config
	agent         *runningAgent
	// dns is the address of a CoreDNS with the lighthouse plugin reading this
	// cluster, when the test started one.
	dns string
}

// fleet is a broker and two clusters, each a real API server.
type fleet struct {
	// t is the test that started the fleet: agents started in its subtests
	// log to it and run until it ends.
	t        testing.TB
	broker   *controlplane.Plane
	clusters map[string]*member
	lease    time.Duration
}

func (f *fleet) c(id string) *member { return f.clusters[id] }

// startFleet starts the broker (restartable) and cluster1 and cluster2 with their
// own service ranges, gives each cluster's agent its least-privilege identities,
// and tells the lighthouse plugin that the clusters' tunnels are up.
func startFleet(t testing.TB, lease time.Duration) *fleet {
	t.Helper()
	assets := controlplane.SkipUnlessAssets(t)
	names := []string{"broker", "cluster1", "cluster2"}
	planes := make([]*controlplane.Plane, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		opts := controlplane.Options{APIServerFlags: controlplane.RestartFlags()}
		if r, ok := serviceRanges[name]; ok {
			opts.APIServerFlags = map[string][]string{"service-cluster-ip-range": {r}}
		}
		dir := t.TempDir()
		wg.Go(func() {
			var ps []*controlplane.Plane
			ps, errs[i] = controlplane.StartPlanesWith(context.Background(), assets, dir, opts, name)
			if errs[i] == nil {
				planes[i] = ps[0]
			}
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		var started []*controlplane.Plane
		for _, p := range planes {
			if p != nil {
				started = append(started, p)
			}
		}
		if err := controlplane.StopAll(started); err != nil {
			t.Error(err)
		}
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	f := &fleet{t: t, broker: planes[0], clusters: map[string]*member{}, lease: lease}
	createNamespace(t, f.broker, brokerNS)
	create(t, f.broker.Client, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: brokerNS, Name: "lighthouse-agent"},
		Rules: lighthouse.BrokerRules()})
	for _, p := range planes[1:] {
		m := &member{id: p.Name, plane: p}
		f.clusters[p.Name] = m
		createNamespace(t, p, submv1.ComponentNamespace)
		var err error
		if m.local, err = p.AddUser("lighthouse-agent"); err != nil {
			t.Fatal(err)
		}
		create(t, p.Client, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "lighthouse-agent"}, Rules: lighthouse.ClusterRules()})
		create(t, p.Client, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "lighthouse-agent"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "lighthouse-agent"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "lighthouse-agent"}}})
		identity := "cluster-" + p.Name
		if m.broker, err = f.broker.AddUser(identity); err != nil {
			t.Fatal(err)
		}
		create(t, f.broker.Client, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: brokerNS, Name: identity},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "lighthouse-agent"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: identity}}})
	}
	for id, m := range f.clusters {
		var peers []string
		for other := range f.clusters {
			if other != id {
				peers = append(peers, other)
			}
		}
		connectGateway(t, m.plane, id, peers...)
	}
	return f
}

// connectGateway publishes an active Gateway in p whose tunnels to peers are up,
// as the gateway agent would: the lighthouse plugin answers only with clusters
// the local cluster is connected to.
func connectGateway(t testing.TB, p *controlplane.Plane, id string, peers ...string) {
	t.Helper()
	gw := &submv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: submv1.ComponentNamespace, Name: id + "-gw1"}}
	create(t, p.Client, gw)
	gw.Status.HAStatus = submv1.HAStatusActive
	for i, peer := range peers {
		gw.Status.Connections = append(gw.Status.Connections, submv1.Connection{Status: submv1.Connected,
			Endpoint: submv1.EndpointSpec{ClusterID: peer, CableName: "submariner-cable-" + peer + "-192-0-2-" + fmt.Sprint(10+i),
				PrivateIP: fmt.Sprintf("192.0.2.%d", 10+i), Backend: submv1.BackendVXLAN, Subnets: []string{serviceRanges[peer]}}})
	}
	if err := p.Client.Status().Update(context.Background(), gw); err != nil {
		t.Fatalf("updating the status of Gateway %s in %s: %v", gw.Name, p.Name, err)
	}
}

func createNamespace(t testing.TB, p *controlplane.Plane, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := p.Client.Create(context.Background(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating namespace %s in %s: %v", name, p.Name, err)
	}
}

func create(t testing.TB, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s/%s: %v", obj, obj.GetNamespace(), obj.GetName(), err)
	}
}

func remove(t testing.TB, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Delete(context.Background(), obj); err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("deleting %T %s/%s: %v", obj, obj.GetNamespace(), obj.GetName(), err)
	}
}

// testLogger logs through t with the time of day.
func testLogger(t testing.TB, verbosity int) logr.Logger {
	return funcr.New(func(prefix, args string) {
		t.Log(time.Now().Format("15:04:05.000"), prefix, args)
	}, funcr.Options{Verbosity: verbosity})
}

// runningAgent is an agent running in the background.
type runningAgent struct {
	agent    *lighthouse.Agent
	registry *prometheus.Registry
	cancel   context.CancelFunc
	done     chan error
}

// startAgent starts the agent of m with its identities, waits until it is ready,
// and stops it when the fleet's test ends.
func (f *fleet) startAgent(t testing.TB, m *member) {
	t.Helper()
	reg := prometheus.NewRegistry()
	a, err := lighthouse.New(lighthouse.Config{ClusterID: m.id, Local: m.local, Broker: m.broker,
		LeaseDuration: f.lease, Log: testLogger(f.t, 0).WithValues("agent", m.id), Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningAgent{agent: a, registry: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	m.agent = r
	f.t.Cleanup(func() { f.stopAgent(f.t, m) })
	err = wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, convergeTimeout, true, func(context.Context) (bool, error) {
		select {
		case err := <-r.done:
			return false, fmt.Errorf("Run returned %v before the agent was ready", err)
		default:
			return a.Ready() == nil, nil
		}
	})
	if err != nil {
		t.Fatalf("agent of %s: %v (last: %v)", m.id, err, a.Ready())
	}
}

// stopAgent stops m's agent and waits for Run to return; stopping twice is harmless.
func (f *fleet) stopAgent(t testing.TB, m *member) {
	t.Helper()
	r := m.agent
	if r == nil || r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	if err := <-r.done; err != nil {
		t.Errorf("Run of the agent of %s returned %v", m.id, err)
	}
}

// metric returns the value of the gauge or counter name with labels in the
// agent's registry (0 when it has no such series).
func (r *runningAgent) metric(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := r.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if matches(m, labels) {
				sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func matches(m *dto.Metric, labels map[string]string) bool {
	for k, v := range labels {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == k && lp.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// eventually waits until every expectation renders what it wants.
func eventually(t testing.TB, exps ...expectation) {
	t.Helper()
	var last []string
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, convergeTimeout, true, func(ctx context.Context) (bool, error) {
		last = last[:0]
		for _, e := range exps {
			got, err := e.render(ctx)
			if err != nil {
				last = append(last, e.what+": "+err.Error())
				continue
			}
			if diff := cmp.Diff(e.want, got); diff != "" {
				msg := fmt.Sprintf("%s (-want +got):\n%s", e.what, diff)
				if e.detail != nil {
					msg += e.detail(ctx)
				}
				last = append(last, msg)
			}
		}
		return len(last) == 0, nil
	})
	if err != nil {
		t.Fatalf("no convergence: %v\n%s", err, strings.Join(last, "\n"))
	}
}

// expectation is a state to wait for: the lines render returns.
type expectation struct {
	what   string
	render func(context.Context) ([]string, error)
	want   []string
	// detail, when set, adds what explains a mismatch to the failure.
	detail func(context.Context) string
}

// imports expects the ServiceImports in namespace ns of p, one line each:
// "ns/name type ports clusters=...".
func imports(p *controlplane.Plane, ns string, want ...string) expectation {
	return expectation{what: "ServiceImports in " + p.Name + " " + ns, want: want, render: func(ctx context.Context) ([]string, error) {
		var list mcsv1beta1.ServiceImportList
		if err := p.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return nil, err
		}
		var out []string
		for _, si := range list.Items {
			var ports, clusters []string
			for _, port := range si.Spec.Ports {
				ports = append(ports, fmt.Sprintf("%s/%s/%d", port.Name, port.Protocol, port.Port))
			}
			for _, c := range si.Status.Clusters {
				clusters = append(clusters, c.Cluster)
			}
			out = append(out, fmt.Sprintf("%s/%s %s ports=%s clusters=%s", si.Namespace, si.Name, si.Spec.Type,
				strings.Join(ports, ","), strings.Join(clusters, ",")))
		}
		slices.Sort(out)
		return out, nil
	}}
}

// mcsSlices expects the lighthouse EndpointSlices of service in namespace ns of
// p (the broker: its namespace, slices of all namespaces), one line each:
// "service source-cluster addresses" with each address's readiness.
func mcsSlices(p *controlplane.Plane, ns, service string, want ...string) expectation {
	return expectation{what: "EndpointSlices of " + service + " in " + p.Name + " " + ns, want: want, render: func(ctx context.Context) ([]string, error) {
		var list discoveryv1.EndpointSliceList
		if err := p.Client.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{
			discoveryv1.LabelManagedBy: submv1.LighthouseManagedBy, mcsv1beta1.LabelServiceName: service}); err != nil {
			return nil, err
		}
		var out []string
		for _, es := range list.Items {
			var addrs []string
			for _, ep := range es.Endpoints {
				ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
				a := strings.Join(ep.Addresses, ",")
				if ep.Hostname != nil {
					a = *ep.Hostname + "=" + a
				}
				if !ready {
					a += "(not ready)"
				}
				addrs = append(addrs, a)
			}
			slices.Sort(addrs)
			out = append(out, fmt.Sprintf("%s from %s: %s", service, es.Labels[mcsv1beta1.LabelSourceCluster], strings.Join(addrs, " ")))
		}
		slices.Sort(out)
		return out, nil
	}}
}

// conditions expects the conditions of ServiceExport ns/name in p, one line
// each: "Type=Status/Reason", and the message when withMessage.
func conditions(p *controlplane.Plane, ns, name string, want ...string) expectation {
	return expectation{what: "conditions of ServiceExport " + ns + "/" + name + " in " + p.Name, want: want,
		render: func(ctx context.Context) ([]string, error) {
			var se mcsv1beta1.ServiceExport
			if err := p.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &se); err != nil {
				return nil, err
			}
			var out []string
			for _, typ := range []mcsv1beta1.ServiceExportConditionType{mcsv1beta1.ServiceExportConditionValid,
				mcsv1beta1.ServiceExportConditionReady, mcsv1beta1.ServiceExportConditionConflict} {
				if c := meta.FindStatusCondition(se.Status.Conditions, string(typ)); c != nil {
					out = append(out, fmt.Sprintf("%s=%s/%s", c.Type, c.Status, c.Reason))
				}
			}
			return out, nil
		},
		detail: func(ctx context.Context) string {
			var se mcsv1beta1.ServiceExport
			if err := p.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &se); err != nil {
				return err.Error()
			}
			var b strings.Builder
			for _, c := range se.Status.Conditions {
				fmt.Fprintf(&b, "  %s=%s/%s: %s\n", c.Type, c.Status, c.Reason, c.Message)
			}
			return b.String()
		}}
}

// metricIs expects the value of a metric of m's agent.
func metricIs(t testing.TB, m *member, name string, labels map[string]string, want float64) expectation {
	return expectation{what: fmt.Sprintf("metric %s%v of %s", name, labels, m.id), want: []string{fmt.Sprint(want)},
		render: func(context.Context) ([]string, error) {
			return []string{fmt.Sprint(m.agent.metric(t, name, labels))}, nil
		}}
}

// brokerImport expects the aggregated ServiceImport of ns/name on the broker:
// "type ports clusters=... records=<clusters with a record>", or none.
func brokerImport(f *fleet, ns, name string, want ...string) expectation {
	return expectation{what: "aggregated ServiceImport of " + ns + "/" + name, want: want, render: func(ctx context.Context) ([]string, error) {
		var si mcsv1beta1.ServiceImport
		err := f.broker.Client.Get(ctx, client.ObjectKey{Namespace: brokerNS, Name: lighthouse.AggregateName(name, ns)}, &si)
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		var ports, clusters, records []string
		for _, port := range si.Spec.Ports {
			ports = append(ports, fmt.Sprintf("%s/%s/%d", port.Name, port.Protocol, port.Port))
		}
		for _, c := range si.Status.Clusters {
			clusters = append(clusters, c.Cluster)
		}
		for k := range si.Annotations {
			if c, ok := strings.CutPrefix(k, lighthouse.AnnotationExportPrefix); ok {
				records = append(records, c)
			}
		}
		slices.Sort(records)
		return []string{fmt.Sprintf("%s ports=%s clusters=%s records=%s", si.Spec.Type, strings.Join(ports, ","),
			strings.Join(clusters, ","), strings.Join(records, ","))}, nil
	}}
}

// resolves expects the answer of m's CoreDNS to qtype name: the rcode and the
// records' data, sorted.
func resolves(m *member, qtype uint16, name string, want ...string) expectation {
	return expectation{what: fmt.Sprintf("%s %s from the CoreDNS of %s", dns.TypeToString[qtype], name, m.id), want: want,
		render: func(context.Context) ([]string, error) { return query(m.dns, qtype, name) }}
}

// query asks server and returns the rcode followed by the answers' data.
func query(server string, qtype uint16, name string) ([]string, error) {
	msg := new(dns.Msg)
	msg.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Timeout: 2 * time.Second}
	in, _, err := c.Exchange(msg, server)
	if err != nil {
		return nil, err
	}
	out := []string{dns.RcodeToString[in.Rcode]}
	var data []string
	for _, rr := range in.Answer {
		switch r := rr.(type) {
		case *dns.A:
			data = append(data, r.A.String())
		case *dns.SRV:
			data = append(data, fmt.Sprintf("%d %s", r.Port, r.Target))
		default:
			data = append(data, rr.String())
		}
	}
	slices.Sort(data)
	return append(out, data...), nil
}

// clusterIP returns the ClusterIP the API server gave Service ns/name in p.
func clusterIP(t testing.TB, p *controlplane.Plane, ns, name string) string {
	t.Helper()
	var svc corev1.Service
	if err := p.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &svc); err != nil {
		t.Fatal(err)
	}
	return svc.Spec.ClusterIP
}

// exportService creates Service ns/name in p with ports (and headless when
// headless), and its ServiceExport; it returns the Service's ClusterIP.
func exportService(t testing.TB, p *controlplane.Plane, ns, name string, headless bool, ports ...corev1.ServicePort) string {
	t.Helper()
	createService(t, p, ns, name, headless, ports...)
	createExport(t, p, ns, name)
	return clusterIP(t, p, ns, name)
}

func createService(t testing.TB, p *controlplane.Plane, ns, name string, headless bool, ports ...corev1.ServicePort) {
	t.Helper()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Ports: ports, Selector: map[string]string{"app": name}}}
	if headless {
		svc.Spec.ClusterIP = corev1.ClusterIPNone
	}
	create(t, p.Client, svc)
}

func createExport(t testing.TB, p *controlplane.Plane, ns, name string) {
	t.Helper()
	create(t, p.Client, &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})
}

func port(name string, number int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: corev1.ProtocolTCP, Port: number}
}

// podEndpoint is one endpoint of a source slice: a Pod at addr.
type podEndpoint struct {
	pod, addr, hostname string
	ready               bool
}

// setEndpoints writes the EndpointSlice name of Service ns/svc in p as the
// Kubernetes EndpointSlice controller would (envtest runs no controller
// manager), with target port 8080.
func setEndpoints(t testing.TB, p *controlplane.Plane, ns, svc, name string, eps ...podEndpoint) {
	t.Helper()
	es := newSourceSlice(ns, svc, name, eps...)
	var cur discoveryv1.EndpointSlice
	err := p.Client.Get(context.Background(), client.ObjectKeyFromObject(es), &cur)
	switch {
	case apierrors.IsNotFound(err):
		create(t, p.Client, es)
	case err != nil:
		t.Fatal(err)
	default:
		cur.Endpoints, cur.Ports = es.Endpoints, es.Ports
		if err := p.Client.Update(context.Background(), &cur); err != nil {
			t.Fatalf("updating EndpointSlice %s/%s in %s: %v", ns, name, p.Name, err)
		}
	}
}

// newSourceSlice returns EndpointSlice name of Service ns/svc as the Kubernetes
// EndpointSlice controller makes it, with target port 8080.
func newSourceSlice(ns, svc, name string, eps ...podEndpoint) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{
		lighthouse.LabelKubeServiceName: svc, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: new("http"), Protocol: new(corev1.ProtocolTCP), Port: new(int32(8080))}},
	}
	for _, e := range eps {
		ep := discoveryv1.Endpoint{Addresses: []string{e.addr}, Conditions: discoveryv1.EndpointConditions{Ready: new(e.ready)},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: e.pod}}
		if e.hostname != "" {
			ep.Hostname = new(e.hostname)
		}
		es.Endpoints = append(es.Endpoints, ep)
	}
	return es
}

// copiesOf returns the names of the syncer's copies in namespace ns of p.
func copiesOf(t testing.TB, p *controlplane.Plane, ns string) []string {
	t.Helper()
	var list discoveryv1.EndpointSliceList
	if err := p.Client.List(context.Background(), &list, client.InNamespace(ns), client.HasLabels{syncer.LabelCopy}); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, es := range list.Items {
		out = append(out, es.Name)
	}
	return out
}

// CoreDNS built from coredns-build, once per test binary.
var (
	corednsOnce sync.Once
	corednsBin  string
	corednsErr  error
	corednsDir  string
)

// corednsBinary builds CoreDNS with the lighthouse plugin into a temporary
// directory that TestMain removes.
func corednsBinary(t testing.TB) string {
	t.Helper()
	corednsOnce.Do(func() {
		root, err := controlplane.RepoRoot()
		if err != nil {
			corednsErr = err
			return
		}
		if corednsDir, err = os.MkdirTemp("", "lighthouse-coredns-"); err != nil {
			corednsErr = err
			return
		}
		bin := filepath.Join(corednsDir, "coredns")
		cmd := exec.Command("go", "build", "-o", bin, "./coredns-build")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			corednsErr = fmt.Errorf("building CoreDNS from coredns-build: %v\n%s", err, out)
			return
		}
		corednsBin = bin
	})
	if corednsErr != nil {
		t.Fatal(corednsErr)
	}
	return corednsBin
}

// freePort returns a loopback port that is free for UDP and TCP right now.
func freePort(t testing.TB) int {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		pc.Close()
		if err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no loopback port free for both UDP and TCP")
	return 0
}

// startCoreDNS starts the real CoreDNS with the lighthouse plugin reading m's
// API server, on a loopback port, waits until it is ready and stops it when the
// test ends.
func startCoreDNS(t testing.TB, m *member) {
	t.Helper()
	bin := corednsBinary(t)
	port, readyPort := freePort(t), freePort(t)
	corefile := filepath.Join(t.TempDir(), "Corefile")
	conf := fmt.Sprintf(`clusterset.local:%d {
    bind 127.0.0.1
    ready 127.0.0.1:%d
    errors
    lighthouse {
        kubeconfig %s
        cluster-id %s
    }
}
`, port, readyPort, m.plane.Kubeconfig, m.id)
	if err := os.WriteFile(corefile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-conf", corefile, "-quiet")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting CoreDNS: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("CoreDNS of %s:\n%s", m.id, logs.String())
		}
	})
	url := fmt.Sprintf("http://127.0.0.1:%d/ready", readyPort)
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, convergeTimeout, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			return false, fmt.Errorf("CoreDNS exited: %v\n%s", err, logs.String())
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("CoreDNS of %s not ready: %v", m.id, err)
	}
	m.dns = fmt.Sprintf("127.0.0.1:%d", port)
}

func TestMain(m *testing.M) {
	// The agents log through their own loggers; this silences controller-runtime's
	// complaint about its global one, which only envtest uses.
	ctrllog.SetLogger(logr.Discard())
	code := m.Run()
	if corednsDir != "" {
		os.RemoveAll(corednsDir)
	}
	os.Exit(code)
}
