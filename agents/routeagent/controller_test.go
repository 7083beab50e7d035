package routeagent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/controlplane"
)

// convergeTimeout bounds waiting for agents to converge; it only turns a hang into a
// failure with a diff, the test measures nothing with it.
const convergeTimeout = time.Minute

// testAgent is an agent running its controller against an API server, on fakes.
type testAgent struct {
	node  string
	fakes *fakes
	reg   *prometheus.Registry

	mu    sync.Mutex
	ready error
}

func (a *testAgent) setReady(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ready = err
}

func (a *testAgent) readiness() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ready
}

// startAgent runs node's agent until the test ends.
func startAgent(t *testing.T, cfg *rest.Config, node string, links []Link) *testAgent {
	t.Helper()
	return startAgentResync(t, cfg, node, links, time.Minute)
}

// startAgentResync is startAgent with a resync period.
func startAgentResync(t *testing.T, cfg *rest.Config, node string, links []Link, resync time.Duration) *testAgent {
	t.Helper()
	ta := &testAgent{node: node, fakes: newFakes("1", links...), reg: prometheus.NewRegistry(), ready: errors.New("not started")}
	agent, err := NewAgent(testConfig, ta.fakes.kernel(), ta.reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(logr.NewContext(context.Background(), testr.NewWithOptions(t, testr.Options{LogTimestamp: true}).WithName(node)))
	done := make(chan error, 1)
	go func() {
		done <- RunController(ctx, cfg, agent, ControllerConfig{NodeName: node, Namespace: submv1.ComponentNamespace, Resync: resync, Ready: ta.setReady})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent of %s: %v", node, err)
		}
	})
	return ta
}

func createNode(t *testing.T, c client.Client, name, ip string) {
	t.Helper()
	ctx := context.Background()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := c.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: ip}}
	if err := c.Status().Update(ctx, n); err != nil {
		t.Fatal(err)
	}
}

// createEndpoint creates an API copy of ep (its creation time is the server's).
func createEndpoint(t *testing.T, c client.Client, ep submv1.Endpoint) {
	t.Helper()
	obj := &submv1.Endpoint{ObjectMeta: metav1.ObjectMeta{Name: ep.Name, Namespace: submv1.ComponentNamespace}, Spec: ep.Spec}
	if err := c.Create(context.Background(), obj); err != nil {
		t.Fatal(err)
	}
}

func deleteEndpoint(t *testing.T, c client.Client, name string) {
	t.Helper()
	obj := &submv1.Endpoint{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: submv1.ComponentNamespace}}
	if err := c.Delete(context.Background(), obj); err != nil {
		t.Fatal(err)
	}
}

func annotateNode(t *testing.T, c client.Client, name, key, value string) {
	t.Helper()
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, key, value)
	if value == "" {
		patch = fmt.Appendf(nil, `{"metadata":{"annotations":{%q:null}}}`, key)
	}
	if err := c.Patch(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, client.RawPatch("application/merge-patch+json", patch)); err != nil {
		t.Fatal(err)
	}
}

// render is the fake kernels of the agents, one after the other.
func render(agents []*testAgent) string {
	var b strings.Builder
	for _, a := range agents {
		fmt.Fprintf(&b, "===== %s\n%s", a.node, a.fakes)
	}
	return b.String()
}

// converge waits until every agent's fake kernel holds the state in the golden
// file testdata/name (with -update: until until holds, then writes the file).
func converge(t *testing.T, name string, agents []*testAgent, until func(string) bool) {
	t.Helper()
	path := filepath.Join("testdata", name)
	want, err := os.ReadFile(path)
	if err != nil && !*update {
		t.Fatalf("reading golden file: %v (run `go test -run %s -update` to create it)", err, t.Name())
	}
	var got string
	err = wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, convergeTimeout, true, func(context.Context) (bool, error) {
		got = render(agents)
		return until(got) && (*update || got == string(want)), nil
	})
	if *update {
		if err != nil {
			t.Fatalf("%s: the agents did not reach the state to record:\n%s", name, got)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err != nil {
		t.Fatalf("%s: the agents did not converge (-want +got):\n%s", name, cmp.Diff(string(want), got))
	}
}

func contains(subs ...string) func(string) bool {
	return func(s string) bool {
		for _, sub := range subs {
			if !strings.Contains(s, sub) {
				return false
			}
		}
		return true
	}
}

// TestControllerDrivesAgents runs the agents of node1 and of the two gateway nodes
// on fake kernels against a real API server, and changes Endpoints and Nodes the
// way the gateway, the syncer and the kubelet do; after each change the fake
// kernels must hold the state in the step's golden file.
func TestControllerDrivesAgents(t *testing.T) {
	plane := controlplane.Start(t, "cluster1")[0]
	c := plane.Client
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: submv1.ComponentNamespace}}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []struct{ name, ip string }{{"gw1", "192.0.2.21"}, {"gw2", "192.0.2.22"}, {"node1", "192.0.2.11"}} {
		createNode(t, c, n.name, n.ip)
	}
	agents := []*testAgent{
		startAgent(t, plane.Config, "gw1", hostLinks("21")),
		startAgent(t, plane.Config, "gw2", hostLinks("22")),
		startAgent(t, plane.Config, "node1", hostLinks("11")),
	}

	t.Run("no gateway", func(t *testing.T) {
		for _, a := range agents {
			if err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, convergeTimeout, true, func(context.Context) (bool, error) {
				return a.readiness() == nil, nil
			}); err != nil {
				t.Fatalf("agent of %s not ready: %v", a.node, a.readiness())
			}
		}
		converge(t, "controller/1-no-gateway.golden", agents, func(s string) bool { return strings.Count(s, "-A SUBMARINER-INPUT") == len(agents) })
	})
	t.Run("gateway published", func(t *testing.T) {
		createEndpoint(t, c, localGW1)
		converge(t, "controller/2-gateway.golden", agents, contains("dst 192.0.2.11", "remote 192.0.2.21 local 192.0.2.11", "remote 192.0.2.21 local 192.0.2.22"))
	})
	t.Run("remote cluster", func(t *testing.T) {
		createEndpoint(t, c, cluster2)
		converge(t, "controller/3-remote.golden", agents, contains("route 100.2.0.0/16 via 240.0.2.21 dev vx-submariner table main src 10.1.11.1", "route 100.2.0.0/16 via 240.0.2.21 dev vx-submariner table main src 10.1.22.1"))
	})
	t.Run("node added", func(t *testing.T) {
		createNode(t, c, "node2", "192.0.2.12")
		converge(t, "controller/4-node-added.golden", agents, contains("dst 192.0.2.12"))
	})
	t.Run("failover", func(t *testing.T) {
		// The new gateway publishes its Endpoint, then removes the old one.
		createEndpoint(t, c, localGW2)
		deleteEndpoint(t, c, localGW1.Name)
		converge(t, "controller/5-failover.golden", agents, contains("route 10.2.0.0/16 via 240.0.2.22 dev vx-submariner table main src 10.1.11.1", "route 10.2.0.0/16 via 240.0.2.22 dev vx-submariner table main src 10.1.21.1", "dst 192.0.2.21"))
		for _, a := range agents {
			if a.node == "node1" {
				want := []string{"create vx-submariner", "replace vx-submariner: remote 192.0.2.21, want 192.0.2.22"}
				if diff := cmp.Diff(want, a.fakes.vx.Events()); diff != "" {
					t.Errorf("node1's overlay events (-want +got):\n%s", diff)
				}
			}
		}
	})
	t.Run("MSS annotation", func(t *testing.T) {
		annotateNode(t, c, "node1", TCPClampMSSAnnotation, "1300")
		converge(t, "controller/6-mss.golden", agents, contains("--set-mss 1300"))
	})
	t.Run("remote cluster gone", func(t *testing.T) {
		annotateNode(t, c, "node1", TCPClampMSSAnnotation, "")
		deleteEndpoint(t, c, cluster2.Name)
		converge(t, "controller/7-remote-gone.golden", agents, func(s string) bool {
			return !strings.Contains(s, "10.2.0.0/16") && !strings.Contains(s, "set-mss")
		})
	})
}

// TestControllerReadiness: an agent whose node is not (yet) in the API is not ready
// and says why; it becomes ready as soon as its Node appears, without a restart.
func TestControllerReadiness(t *testing.T) {
	plane := controlplane.Start(t, "cluster1")[0]
	a := startAgent(t, plane.Config, "node1", hostLinks("11"))
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, convergeTimeout, true, func(context.Context) (bool, error) {
		err := a.readiness()
		return err != nil && strings.Contains(err.Error(), "node node1 is not among the cluster's Nodes"), nil
	})
	if err != nil {
		t.Fatalf("readiness = %v, want the reason the first sync fails", a.readiness())
	}
	createNode(t, plane.Client, "node1", "192.0.2.11")
	if err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, convergeTimeout, true, func(context.Context) (bool, error) {
		return a.readiness() == nil, nil
	}); err != nil {
		t.Fatalf("readiness = %v after the Node appeared, want ready", a.readiness())
	}
	if got := gathered(t, a.reg, "submariner_routeagent_sync_errors_total"); got < 1 {
		t.Errorf("sync errors = %v, want the failed first syncs counted", got)
	}
}

// TestControllerFollowsInterfaces: a CNI interface that appears after the agent
// started, and a new underlay MTU, are picked up at once (the periodic sync is an
// hour away here).
func TestControllerFollowsInterfaces(t *testing.T) {
	plane := controlplane.Start(t, "cluster1")[0]
	c := plane.Client
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: submv1.ComponentNamespace}}); err != nil {
		t.Fatal(err)
	}
	createNode(t, c, "node1", "192.0.2.11")
	createEndpoint(t, c, localGW1)
	createEndpoint(t, c, cluster2)
	noCNI := hostLinks("11")[:2]
	a := startAgentResync(t, plane.Config, "node1", noCNI, time.Hour)
	wantVX := func(want ...string) {
		t.Helper()
		var got string
		if err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, convergeTimeout, true, func(context.Context) (bool, error) {
			got = a.fakes.vx.String()
			return contains(want...)(got), nil
		}); err != nil {
			t.Fatalf("the overlay lacks %q:\n%s", want, got)
		}
	}
	wantVX("route 10.2.0.0/16 via 240.0.2.21 dev vx-submariner table main\n", "mtu 1450")

	links := hostLinks("11")
	a.fakes.sys.SetLinks(links...)
	wantVX("route 10.2.0.0/16 via 240.0.2.21 dev vx-submariner table main src 10.1.11.1\n")

	links[1].MTU = 9000
	a.fakes.sys.SetLinks(links...)
	wantVX("mtu 8950")
}

// TestOwnChanges: changes the agent makes itself do not make it sync again.
func TestOwnChanges(t *testing.T) {
	for _, tc := range []struct {
		link string
		ip   string
		own  bool
	}{
		{link: "vx-submariner", ip: "240.0.2.11", own: true},
		{link: "eth0", ip: "192.0.2.11", own: false},
		{link: "cni0", ip: "10.1.11.1", own: false},
		{link: "vxlan-tunnel", ip: "241.0.2.21", own: false},
	} {
		if got := ownLink(tc.link); got != tc.own {
			t.Errorf("ownLink(%s) = %v, want %v", tc.link, got, tc.own)
		}
		if got := ownAddr(net.ParseIP(tc.ip)); got != tc.own {
			t.Errorf("ownAddr(%s) = %v, want %v", tc.ip, got, tc.own)
		}
	}
}

// TestNodeFilter: kubelet status updates (conditions, images) do not make the agent
// sync; changes of the InternalIP or the MSS annotation do.
func TestNodeFilter(t *testing.T) {
	base := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node1", ResourceVersion: "1", Annotations: map[string]string{"other": "x"}},
		Status: corev1.NodeStatus{
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "node1"}, {Type: corev1.NodeInternalIP, Address: "192.0.2.11"}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			Images:     []corev1.ContainerImage{{Names: []string{"registry.example/big:1"}, SizeBytes: 1 << 30}},
		},
	}
	trim := func(n *corev1.Node) *corev1.Node {
		t.Helper()
		out, err := trimNode(n)
		if err != nil {
			t.Fatal(err)
		}
		return out.(*corev1.Node)
	}
	trimmed := trim(base)
	if len(trimmed.Status.Images)+len(trimmed.Status.Conditions)+len(trimmed.Annotations) != 0 || len(trimmed.Status.Addresses) != 1 {
		t.Errorf("trimNode kept more than the InternalIP and the MSS annotation: %+v", trimmed)
	}
	if got, want := nodeFrom(trimmed), (Node{Name: "node1", IP: netip.MustParseAddr("192.0.2.11")}); got != want {
		t.Errorf("nodeFrom(trimmed) = %+v, want %+v", got, want)
	}
	for _, tc := range []struct {
		name   string
		change func(n *corev1.Node)
		want   bool
	}{
		{name: "heartbeat", change: func(n *corev1.Node) {
			n.ResourceVersion = "2"
			n.Status.Conditions[0].LastHeartbeatTime = metav1.Now()
		}, want: false},
		{name: "other annotation", change: func(n *corev1.Node) { n.Annotations["other"] = "y" }, want: false},
		{name: "new InternalIP", change: func(n *corev1.Node) { n.Status.Addresses[1].Address = "192.0.2.111" }, want: true},
		{name: "MSS annotation", change: func(n *corev1.Node) { n.Annotations[TCPClampMSSAnnotation] = "1300" }, want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := base.DeepCopy()
			tc.change(n)
			if got := nodeChanged.Update(event.UpdateEvent{ObjectOld: trim(base), ObjectNew: trim(n)}); got != tc.want {
				t.Errorf("nodeChanged = %v, want %v", got, tc.want)
			}
		})
	}
}
