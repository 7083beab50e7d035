package clustersettest

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/submariner-go/submariner/agents/gateway"
	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/sandbox"
	"github.com/submariner-go/submariner/e2e/sandbox/sandboxtest"
)

// Clusterset runs the whole flow with one cable driver in the package's sandbox:
// deploy-broker, join both clusters, traffic both ways from every node (Pod,
// Service and hostNetwork clients; the server sees the client Pod's address),
// discovery, a route agent restart under an established connection, gateway
// failover, and uninstall of both clusters.
func Clusterset(t *testing.T, driver string) {
	sb := sandboxtest.Get(t)
	c1, c2 := sandboxtest.ClusterFor(t, "cluster1"), sandboxtest.ClusterFor(t, "cluster2")
	brokerKubeconfig := Kubeconfig(t, sb, "broker")
	info := filepath.Join(t.TempDir(), "broker-info.subm")
	MustSubctl(t, "deploy-broker", "--kubeconfig", brokerKubeconfig, "-o", info)

	ns := sandboxtest.Namespace(t, c1, c2)
	w1, w2 := deployWorkloads(t, c1, ns), deployWorkloads(t, c2, ns)

	for _, c := range []*sandboxtest.Cluster{c1, c2} {
		kubeconfig := Kubeconfig(t, sb, c.Name)
		MustSubctl(t, "join", info, "--kubeconfig", kubeconfig, "--clusterid", c.Name, "--cable-driver", driver, "--natt=false")
	}
	WaitConnected(t, sb, c1, driver)
	WaitConnected(t, sb, c2, driver)

	step(t, "cluster1 to cluster2", func(t *testing.T) { checkConnectivity(t, c1, w1, c2, w2) }, c1, c2)
	step(t, "cluster2 to cluster1", func(t *testing.T) { checkConnectivity(t, c2, w2, c1, w1) }, c1, c2)
	step(t, "discovery", func(t *testing.T) { checkDiscovery(t, sb, c1, w1, c2, w2) }, c1, c2)
	step(t, "route agent restart", func(t *testing.T) { checkRouteAgentRestart(t, c1, w1, w2) }, c1, c2)
	step(t, "failover", func(t *testing.T) { checkFailover(t, sb, c1, w1, c2, w2) }, c1, c2)
	step(t, "link cut", func(t *testing.T) { checkLinkCut(t, sb, c1, w1, c2, w2) }, c1, c2)
	step(t, "uninstall", func(t *testing.T) {
		CheckUninstall(t, sb, c1, c2)
		CheckUninstall(t, sb, c2, nil)
	}, c1, c2)
}

// workloads are the test pods of one cluster, in the test's namespace: a server
// pod and a client pod on every node, a hostNetwork client on the worker, and a
// Service "echo" for the server pods.
type workloads struct {
	ns       string
	servers  map[string]corev1.Pod // by node
	clients  map[string]corev1.Pod // by node
	host     corev1.Pod            // hostNetwork client on the worker
	echo     *corev1.Service
	nodes    []string
	gateways []string
}

func deployWorkloads(t *testing.T, c *sandboxtest.Cluster, ns string) *workloads {
	t.Helper()
	ctx := context.Background()
	w := &workloads{ns: ns, servers: map[string]corev1.Pod{}, clients: map[string]corev1.Pod{}}
	for _, n := range c.Topology.Nodes {
		w.nodes = append(w.nodes, n.Name)
	}
	for _, g := range c.Topology.Gateways() {
		w.gateways = append(w.gateways, g.Name)
	}
	create := func(p *corev1.Pod) {
		if _, err := c.Kube.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating pod %s in %s: %v", p.Name, c.Name, err)
		}
	}
	for i, node := range w.nodes {
		server := sandboxtest.NettestPod(ns, fmt.Sprintf("server-%d", i), node)
		server.Labels[sandboxtest.AppLabel] = "echo"
		create(server)
		create(sandboxtest.NettestPod(ns, fmt.Sprintf("client-%d", i), node))
	}
	worker := w.nodes[len(w.nodes)-1]
	host := sandboxtest.NettestPod(ns, "host-client", worker)
	host.Spec.HostNetwork = true
	// The host's network namespace is the node's: the client only connects.
	host.Spec.Containers[0].Args = []string{"serve", "--tcp-port=0", "--udp-port=0", "--http-port=18081"}
	host.Spec.Containers[0].Ports = nil
	host.Spec.Containers[0].ReadinessProbe.HTTPGet.Port.IntVal = 18081
	create(host)
	svc, err := c.Kube.CoreV1().Services(ns).Create(ctx, sandboxtest.NettestService(ns, "echo"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.echo = svc
	for i, node := range w.nodes {
		w.servers[node] = *c.WaitPod(t, ns, fmt.Sprintf("server-%d", i))
		w.clients[node] = *c.WaitPod(t, ns, fmt.Sprintf("client-%d", i))
	}
	w.host = *c.WaitPod(t, ns, "host-client")
	return w
}

// checkConnectivity connects from every client of the first cluster to every
// server pod of the second and to its Service, over TCP, and checks that the
// server sees the client pod's own address (no SNAT); then from the hostNetwork
// client to a remote pod.
func checkConnectivity(t *testing.T, from *sandboxtest.Cluster, fw *workloads, to *sandboxtest.Cluster, tw *workloads) {
	for _, cnode := range fw.nodes {
		client := fw.clients[cnode]
		for _, snode := range tw.nodes {
			server := tw.servers[snode]
			t.Run(fmt.Sprintf("pod on %s to pod on %s", cnode, snode), func(t *testing.T) {
				r := ConnectReply(t, from, fw.ns, client.Name, "--tcp", sandboxtest.HostPort(server.Status.PodIP, sandboxtest.TCPPort))
				if r.Pod != server.Name || r.Client.Addr().String() != client.Status.PodIP {
					t.Errorf("reply %+v: want pod %s seeing client %s (the client pod's own address)", r, server.Name, client.Status.PodIP)
				}
			})
		}
		t.Run(fmt.Sprintf("pod on %s to the Service", cnode), func(t *testing.T) {
			r := ConnectReply(t, from, fw.ns, client.Name, "--tcp", sandboxtest.HostPort(tw.echo.Spec.ClusterIP, sandboxtest.TCPPort))
			if !strings.HasPrefix(r.Pod, "server-") || r.Client.Addr().String() != client.Status.PodIP {
				t.Errorf("reply %+v: want a server pod seeing client %s", r, client.Status.PodIP)
			}
		})
	}
	t.Run("hostNetwork pod to a remote pod", func(t *testing.T) {
		server := tw.servers[tw.nodes[len(tw.nodes)-1]]
		r := ConnectReply(t, from, fw.ns, fw.host.Name, "--tcp", sandboxtest.HostPort(server.Status.PodIP, sandboxtest.TCPPort))
		if r.Pod != server.Name {
			t.Errorf("reply %+v: want pod %s", r, server.Name)
		}
	})
}

// checkFailover deletes the active gateway pod of the second cluster: the
// passive gateway takes over, the first cluster re-points, and cross-cluster TCP
// works again.
func checkFailover(t *testing.T, sb *sandbox.Sandbox, c1 *sandboxtest.Cluster, w1 *workloads, c2 *sandboxtest.Cluster, w2 *workloads) {
	ctx := context.Background()
	client := w1.clients[w1.nodes[len(w1.nodes)-1]]
	server := w2.servers[w2.nodes[len(w2.nodes)-1]]
	target := sandboxtest.HostPort(server.Status.PodIP, sandboxtest.TCPPort)
	ConnectReply(t, c1, w1.ns, client.Name, "--tcp", target)

	active := ActiveGateway(t, c2)
	began := time.Now()
	if err := c2.Kube.CoreV1().Pods(submv1.ComponentNamespace).Delete(ctx, active.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	// The first successful connection after the kill.
	ConnectReply(t, c1, w1.ns, client.Name, "--tcp", target, "--timeout=1s", "--retries=60")
	t.Logf("cross-cluster TCP worked again %v after deleting gateway pod %s on %s", time.Since(began).Round(time.Millisecond), active.Name, active.Spec.NodeName)

	var now corev1.Pod
	sandboxtest.Eventually(t, func() bool {
		p, ok := FindActive(c2)
		now = p
		return ok && p.Name != active.Name
	})
	if now.Name == "" || now.Name == active.Name {
		t.Fatalf("no other gateway pod of %s became active after %s was deleted", c2.Name, active.Name)
	}
	WaitConnected(t, sb, c1, "")
	WaitConnected(t, sb, c2, "")
}

// checkLinkCut cuts the link of the second cluster's active gateway node (its
// port on the fabric goes down: it reaches neither the API server nor the other
// cluster): the passive gateway takes over when the Lease expires, the first
// cluster re-points, and cross-cluster TCP works again. The link comes back
// afterwards and the cut gateway settles as passive.
func checkLinkCut(t *testing.T, sb *sandbox.Sandbox, c1 *sandboxtest.Cluster, w1 *workloads, c2 *sandboxtest.Cluster, w2 *workloads) {
	client := w1.clients[w1.nodes[len(w1.nodes)-1]]
	server := w2.servers[w2.nodes[len(w2.nodes)-1]]
	target := sandboxtest.HostPort(server.Status.PodIP, sandboxtest.TCPPort)
	ConnectReply(t, c1, w1.ns, client.Name, "--tcp", target)

	active := ActiveGateway(t, c2)
	node := active.Spec.NodeName
	link := func(state string) {
		out, err := exec.Command("ip", "-n", sandbox.FabricNetNS, "link", "set", node, state).CombinedOutput()
		if err != nil {
			t.Fatalf("ip -n %s link set %s %s: %v: %s", sandbox.FabricNetNS, node, state, err, out)
		}
	}
	began := time.Now()
	link("down")
	restored := false
	defer func() {
		if !restored {
			link("up")
		}
	}()
	ConnectReply(t, c1, w1.ns, client.Name, "--tcp", target, "--timeout=1s", "--retries=90")
	t.Logf("cross-cluster TCP worked again %v after cutting the link of %s (active gateway pod %s)", time.Since(began).Round(time.Millisecond), node, active.Name)
	link("up")
	restored = true

	var now corev1.Pod
	sandboxtest.Eventually(t, func() bool {
		p, ok := FindActive(c2)
		now = p
		return ok && p.Spec.NodeName != node
	})
	if now.Name == "" || now.Spec.NodeName == node {
		t.Fatalf("after its link came back, %s's gateway on %s is still the active one, or none is", c2.Name, node)
	}
	WaitConnected(t, sb, c1, "")
	WaitConnected(t, sb, c2, "")
	ConnectReply(t, c1, w1.ns, client.Name, "--tcp", target)
}

// FindActive returns the ready active gateway pod of c.
func FindActive(c *sandboxtest.Cluster) (corev1.Pod, bool) {
	pods, err := c.Kube.CoreV1().Pods(submv1.ComponentNamespace).List(context.Background(),
		metav1.ListOptions{LabelSelector: gateway.LabelGatewayStatus + "=active"})
	if err != nil || len(pods.Items) != 1 || pods.Items[0].DeletionTimestamp != nil || !sandboxtest.PodReady(&pods.Items[0]) {
		return corev1.Pod{}, false
	}
	return pods.Items[0], true
}

// ActiveGateway waits for the active gateway pod of c.
func ActiveGateway(t testing.TB, c *sandboxtest.Cluster) corev1.Pod {
	t.Helper()
	var p corev1.Pod
	ok := false
	sandboxtest.Eventually(t, func() bool { p, ok = FindActive(c); return ok })
	if !ok {
		t.Fatalf("%s has no active gateway pod (label %s=active)", c.Name, gateway.LabelGatewayStatus)
	}
	return p
}

// checkDiscovery exports echo from the second cluster: the first resolves
// echo.NS.svc.clusterset.local to the Service's address and reaches it by name;
// exported from both, each cluster resolves its own; a headless Service's pods
// resolve by hostname; after unexporting, the name is gone.
func checkDiscovery(t *testing.T, sb *sandbox.Sandbox, c1 *sandboxtest.Cluster, w1 *workloads, c2 *sandboxtest.Cluster, w2 *workloads) {
	ctx := context.Background()
	kubeconfig2 := Kubeconfig(t, sb, c2.Name)
	client := w1.clients[w1.nodes[0]]
	name := fmt.Sprintf("echo.%s.svc.clusterset.local", w2.ns)
	dig := func(name string) string {
		out, _, err := c1.Exec(ctx, w1.ns, client.Name, "dig", "+short", "+time=1", "+tries=1", name)
		if err != nil {
			return "error: " + err.Error()
		}
		return strings.TrimSpace(out)
	}

	MustSubctl(t, "export", "service", "echo", "--namespace", w2.ns, "--kubeconfig", kubeconfig2)
	var got string
	sandboxtest.Eventually(t, func() bool { got = dig(name); return got == w2.echo.Spec.ClusterIP })
	if got != w2.echo.Spec.ClusterIP {
		t.Fatalf("%s resolves to %q in %s, want %s (the Service's address in %s)", name, got, c1.Name, w2.echo.Spec.ClusterIP, c2.Name)
	}
	r := ConnectReply(t, c1, w1.ns, client.Name, "--http", fmt.Sprintf("http://%s:%d/", name, sandboxtest.HTTPPort))
	if !strings.HasPrefix(r.Pod, "server-") || r.Client.Addr().String() != client.Status.PodIP {
		t.Errorf("reply %+v through %s: want a server pod of %s seeing client %s", r, name, c2.Name, client.Status.PodIP)
	}

	// Exported in both clusters, each cluster resolves its own.
	kubeconfig1 := Kubeconfig(t, sb, c1.Name)
	MustSubctl(t, "export", "service", "echo", "--namespace", w1.ns, "--kubeconfig", kubeconfig1)
	digIn := func(c *sandboxtest.Cluster, w *workloads, qname string) string {
		out, _, err := c.Exec(ctx, w.ns, w.clients[w.nodes[0]].Name, "dig", "+short", "+time=1", "+tries=1", qname)
		if err != nil {
			return "error: " + err.Error()
		}
		return strings.TrimSpace(out)
	}
	for _, side := range []struct {
		c *sandboxtest.Cluster
		w *workloads
	}{{c1, w1}, {c2, w2}} {
		want := side.w.echo.Spec.ClusterIP
		sandboxtest.Eventually(t, func() bool { got = digIn(side.c, side.w, name); return got == want })
		if got != want {
			t.Errorf("exported in both clusters, %s resolves %s to %q, want its own Service's %s", side.c.Name, name, got, want)
		}
	}
	MustSubctl(t, "unexport", "service", "echo", "--namespace", w1.ns, "--kubeconfig", kubeconfig1)

	// A headless Service's pods resolve by hostname (the pod's name) under
	// HOSTNAME.CLUSTER.SERVICE.NS.svc.clusterset.local.
	headless := sandboxtest.NettestService(w2.ns, "headless")
	headless.Spec.ClusterIP = corev1.ClusterIPNone
	headless.Spec.Selector = map[string]string{sandboxtest.AppLabel: "echo"}
	if _, err := c2.Kube.CoreV1().Services(w2.ns).Create(ctx, headless, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	MustSubctl(t, "export", "service", "headless", "--namespace", w2.ns, "--kubeconfig", kubeconfig2)
	pod := w2.servers[w2.nodes[0]]
	hostname := fmt.Sprintf("%s.%s.headless.%s.svc.clusterset.local", pod.Name, c2.Name, w2.ns)
	sandboxtest.Eventually(t, func() bool { got = dig(hostname); return got == pod.Status.PodIP })
	if got != pod.Status.PodIP {
		t.Errorf("%s resolves to %q in %s, want pod %s's address %s", hostname, got, c1.Name, pod.Name, pod.Status.PodIP)
	}
	MustSubctl(t, "unexport", "service", "headless", "--namespace", w2.ns, "--kubeconfig", kubeconfig2)
	if err := c2.Kube.CoreV1().Services(w2.ns).Delete(ctx, "headless", metav1.DeleteOptions{}); err != nil {
		t.Error(err)
	}

	MustSubctl(t, "unexport", "service", "echo", "--namespace", w2.ns, "--kubeconfig", kubeconfig2)
	sandboxtest.Eventually(t, func() bool { got = dig(name); return got == "" })
	if got != "" {
		t.Errorf("%s still resolves to %q in %s after unexport", name, got, c1.Name)
	}
}

// CheckUninstall removes c1 from the clusterset: its namespace, broker objects
// and kernel state on every node go, and c2 (when given) forgets it.
func CheckUninstall(t *testing.T, sb *sandbox.Sandbox, c1, c2 *sandboxtest.Cluster) {
	ctx := context.Background()
	kubeconfig1 := Kubeconfig(t, sb, c1.Name)
	MustSubctl(t, "uninstall", "--kubeconfig", kubeconfig1)
	if _, err := c1.Kube.CoreV1().Namespaces().Get(ctx, submv1.ComponentNamespace, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace %s in %s after uninstall: %v, want NotFound", submv1.ComponentNamespace, c1.Name, err)
	}
	if left := Leftovers(t, c1); len(left) > 0 {
		t.Errorf("uninstall left in %s's nodes:\n%s", c1.Name, strings.Join(left, "\n"))
	}
	if c2 == nil {
		return
	}
	var left []string
	sandboxtest.Eventually(t, func() bool {
		var clusters submv1.ClusterList
		if err := c2.Client.List(ctx, &clusters, client.InNamespace(submv1.ComponentNamespace)); err != nil {
			left = []string{err.Error()}
			return false
		}
		left = nil
		for _, c := range clusters.Items {
			if c.Spec.ClusterID == c1.Name {
				left = append(left, c.Name)
			}
		}
		return len(left) == 0
	})
	if len(left) > 0 {
		t.Errorf("%s still has Clusters of %s after its uninstall: %v", c2.Name, c1.Name, left)
	}
}
