package globalnet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/submariner-go/submariner/agents/netkit/iptables"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// waitTimeout bounds every wait for the agent to converge. It is not a performance
// assertion: a healthy agent converges in well under a second.
const waitTimeout = 60 * time.Second

// fakeHost has fixed addresses.
type fakeHost []HostAddr

func (h fakeHost) Addrs() ([]HostAddr, error) { return h, nil }

// readiness records what an agent last said about its readiness.
type readiness struct {
	mu  sync.Mutex
	err error
	set bool
}

func (r *readiness) set_(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err, r.set = err, true
}

func (r *readiness) ready() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.set && r.err == nil, r.err
}

// runningAgent is an agent started by a test.
type runningAgent struct {
	agent   *Agent
	kernel  iptables.Interface
	metrics *Metrics
	ready   *readiness
	cancel  context.CancelFunc
	done    chan error
}

func testConfig(node string) Config {
	return Config{
		ClusterID: "cluster1", Namespace: submv1.ComponentNamespace, NodeName: node,
		ClusterCIDRs: []netip.Prefix{prefix("10.241.0.0/16")}, ServiceCIDRs: []netip.Prefix{prefix("10.141.0.0/16")},
		GlobalCIDR: prefix("242.0.0.0/27"), ClusterEgressIPs: submv1.DefaultClusterGlobalEgressIPs,
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond,
	}
}

// startAgent runs an agent for node on kernel until stop (or the test's end).
func startAgent(t *testing.T, kube *rest.Config, cfg Config, kernel iptables.Interface, host Host) *runningAgent {
	t.Helper()
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ra := &runningAgent{agent: NewAgent(cfg, kube, kernel, host, m), kernel: kernel, metrics: m, ready: &readiness{}, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(logr.NewContext(context.Background(), testr.NewWithOptions(t, testr.Options{Verbosity: 1}).WithName(cfg.NodeName)))
	ra.cancel = cancel
	go func() { ra.done <- ra.agent.Run(ctx, ra.ready.set_) }()
	t.Cleanup(ra.stop)
	return ra
}

// stop stops the agent and waits until it returned.
func (ra *runningAgent) stop() {
	if ra.cancel == nil {
		return
	}
	ra.cancel()
	<-ra.done
	ra.cancel = nil
}

// waitFor polls cond until it holds, failing the test with the last reason.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	last := ""
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, waitTimeout, true, func(context.Context) (bool, error) {
		ok, why := cond()
		last = why
		return ok, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v; last: %s", what, err, last)
	}
}

func gauge(t *testing.T, g *prometheus.GaugeVec, cidr string) int {
	t.Helper()
	var m dto.Metric
	if err := g.WithLabelValues(cidr).Write(&m); err != nil {
		t.Fatal(err)
	}
	return int(m.GetGauge().GetValue())
}

// kernelText renders a kernel's nat table.
func kernelText(t *testing.T, k iptables.Interface) string {
	t.Helper()
	out, err := k.Save(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// ourRules returns the lines of iptables-save text that belong to Globalnet (its
// chains' rules and the jumps into them), sorted.
func ourRules(save string) []string {
	var out []string
	for _, l := range strings.Split(save, "\n") {
		if strings.Contains(l, "SUBMARINER-GN-") || strings.Contains(l, "SM-GN-") {
			out = append(out, strings.TrimSpace(l))
		}
	}
	sort.Strings(out)
	return out
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if strings.HasSuffix(l, want) || l == want {
			return true
		}
	}
	return false
}

// Objects.

func mustCreate(t *testing.T, c client.Client, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := c.Create(context.Background(), o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

func mustDelete(t *testing.T, c client.Client, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := c.Delete(context.Background(), o); err != nil && !apierrors.IsNotFound(err) {
			t.Fatalf("deleting %T %s: %v", o, o.GetName(), err)
		}
	}
}

func namespace(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

func endpoint(name, clusterID, hostname string, subnets ...string) *submv1.Endpoint {
	return &submv1.Endpoint{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: submv1.ComponentNamespace},
		Spec: submv1.EndpointSpec{
			ClusterID: clusterID, CableName: "submariner-cable-" + clusterID + "-192-168-0-1", Hostname: hostname,
			Subnets: subnets, PrivateIP: "192.168.0.1", Backend: submv1.BackendVXLAN,
		},
	}
}

func gatewayObj(name string) *submv1.Gateway {
	return &submv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: submv1.ComponentNamespace}}
}

func clusterIPService(ns, name string, selector map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector: selector,
			Ports:    []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
}

func headlessService(ns, name string, selector map[string]string) *corev1.Service {
	s := clusterIPService(ns, name, selector)
	s.Spec.ClusterIP = corev1.ClusterIPNone
	return s
}

func export(ns, name string) *mcsv1beta1.ServiceExport {
	return &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
}

// headlessSlice is the EndpointSlice the endpoint slice controller would write for
// a headless Service: pods maps Pod names ("" for none) to addresses.
func headlessSlice(ns, svc, name string, pods map[string]string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{
			discoveryv1.LabelServiceName: svc, corev1.IsHeadlessService: "",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	names := make([]string, 0, len(pods))
	for n := range pods {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, pod := range names {
		ep := discoveryv1.Endpoint{Addresses: []string{pods[pod]}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}
		if !strings.HasPrefix(pod, "-") {
			ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod}
		}
		s.Endpoints = append(s.Endpoints, ep)
	}
	return s
}

// runningPod creates a Pod and gives it an IP, as a kubelet would.
func runningPod(t *testing.T, c client.Client, ns, name, ip string, labels map[string]string) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nettest"}}},
	}
	mustCreate(t, c, p)
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}
	if err := c.Status().Update(context.Background(), p); err != nil {
		t.Fatalf("setting the IP of pod %s: %v", name, err)
	}
	return p
}

// Reading state.

func getGIIP(c client.Client, ns, name string) (*submv1.GlobalIngressIP, error) {
	g := &submv1.GlobalIngressIP{}
	err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, g)
	return g, err
}

// allocatedIngress waits until the GlobalIngressIP ns/name is Allocated and returns
// its address.
func allocatedIngress(t *testing.T, c client.Client, ns, name string) netip.Addr {
	t.Helper()
	var ip netip.Addr
	waitFor(t, "GlobalIngressIP "+ns+"/"+name+" to be allocated", func() (bool, string) {
		g, err := getGIIP(c, ns, name)
		if err != nil {
			return false, err.Error()
		}
		cond := meta(g.Status.Conditions)
		if cond == nil || cond.Status != metav1.ConditionTrue || g.Status.AllocatedIP == "" {
			return false, fmt.Sprintf("status %+v", g.Status)
		}
		ip = netip.MustParseAddr(g.Status.AllocatedIP)
		return true, ""
	})
	return ip
}

func meta(conds []metav1.Condition) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == submv1.ConditionAllocated {
			return &conds[i]
		}
	}
	return nil
}

// egressStatus returns a (Cluster)GlobalEgressIP's allocated IPs and condition.
func egressStatus(c client.Client, obj client.Object) ([]string, *metav1.Condition, error) {
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
		return nil, nil, err
	}
	switch o := obj.(type) {
	case *submv1.GlobalEgressIP:
		return o.Status.AllocatedIPs, meta(o.Status.Conditions), nil
	case *submv1.ClusterGlobalEgressIP:
		return o.Status.AllocatedIPs, meta(o.Status.Conditions), nil
	}
	return nil, nil, errors.New("not an egress object")
}

// waitEgress waits until obj's Allocated condition has reason and returns its IPs.
func waitEgress(t *testing.T, c client.Client, obj client.Object, reason string) []string {
	t.Helper()
	var ips []string
	waitFor(t, fmt.Sprintf("%s to have reason %s", describe(obj), reason), func() (bool, string) {
		got, cond, err := egressStatus(c, obj)
		if err != nil {
			return false, err.Error()
		}
		if cond == nil || cond.Reason != reason {
			return false, fmt.Sprintf("ips %v condition %+v", got, cond)
		}
		ips = got
		return true, ""
	})
	return ips
}
