// Package sandbox_test holds the sandbox's end-to-end tests: one two-cluster
// sandbox for the whole package (TestMain), each test in namespaces of its own.
package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilexec "k8s.io/client-go/util/exec"

	"github.com/submariner-go/submariner/e2e/sandbox"
	"github.com/submariner-go/submariner/e2e/sandbox/sandboxtest"
)

func TestMain(m *testing.M) {
	sandboxtest.Main(m, sandbox.DefaultOptions())
}

// TestServiceAcrossNodes: a Deployment of the test workload behind a ClusterIP
// Service in cluster1 answers a pod on another node, through the ClusterIP and
// through NAME.NAMESPACE.svc.cluster.local, over TCP, UDP and HTTP; the server
// sees the client pod's own address (pod-to-pod routing, no SNAT).
//
//	c1-node1: client pod --(ClusterIP / DNS name, kube-proxy DNAT)--> c1-gw1: server pods
func TestServiceAcrossNodes(t *testing.T) {
	c1 := sandboxtest.ClusterFor(t, "cluster1")
	ns := sandboxtest.Namespace(t, c1)
	ctx := context.Background()
	server := c1.Topology.Gateways()[0].Name
	client := c1.Topology.Nodes[len(c1.Topology.Nodes)-1].Name
	if server == client {
		t.Fatalf("the sandbox needs a worker node besides %s", server)
	}

	if _, err := c1.Kube.AppsV1().Deployments(ns).Create(ctx, sandboxtest.NettestDeployment(ns, "echo", 2, server), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc, err := c1.Kube.CoreV1().Services(ns).Create(ctx, sandboxtest.NettestService(ns, "echo"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c1.Kube.CoreV1().Pods(ns).Create(ctx, sandboxtest.NettestPod(ns, "client", client), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c1.WaitDeployment(t, ns, "echo")
	clientPod := c1.WaitPod(t, ns, "client")
	servers := map[string]string{} // pod name -> pod IP
	for _, p := range c1.Pods(t, ns, map[string]string{sandboxtest.AppLabel: "echo"}) {
		if p.Spec.NodeName != server {
			t.Errorf("server pod %s runs on %s, want %s", p.Name, p.Spec.NodeName, server)
		}
		servers[p.Name] = p.Status.PodIP
	}
	if clientPod.Spec.NodeName != client {
		t.Errorf("client pod runs on %s, want %s", clientPod.Spec.NodeName, client)
	}
	if !c1.Topology.PodCIDR.Contains(netip.MustParseAddr(clientPod.Status.PodIP)) {
		t.Errorf("client pod IP %s is outside the cluster's pod range %s", clientPod.Status.PodIP, c1.Topology.PodCIDR)
	}

	clusterIP := svc.Spec.ClusterIP
	name := sandbox.DNSName("echo", ns)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"tcp to the ClusterIP", []string{"--tcp", sandboxtest.HostPort(clusterIP, sandboxtest.TCPPort)}},
		{"udp to the ClusterIP", []string{"--udp", sandboxtest.HostPort(clusterIP, sandboxtest.UDPPort)}},
		{"http to the ClusterIP", []string{"--http", fmt.Sprintf("http://%s/", sandboxtest.HostPort(clusterIP, sandboxtest.HTTPPort))}},
		{"tcp to the DNS name", []string{"--tcp", sandboxtest.HostPort(name, sandboxtest.TCPPort)}},
		{"http to the DNS name", []string{"--http", fmt.Sprintf("http://%s/", sandboxtest.HostPort(name, sandboxtest.HTTPPort))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Endpoints reach kube-proxy on the client's node asynchronously: retry.
			r := c1.ConnectReply(t, ns, "client", append(tc.args, "--retries", "20")...)
			ip, ok := servers[r.Pod]
			if !ok {
				t.Fatalf("answered by %q, want one of the server pods %v", r.Pod, servers)
			}
			if r.IP.String() != ip {
				t.Errorf("server %s says its IP is %s, the API says %s", r.Pod, r.IP, ip)
			}
			if r.Client.Addr().String() != clientPod.Status.PodIP {
				t.Errorf("the server saw the client as %s, want the client pod's IP %s (no SNAT inside the cluster)", r.Client, clientPod.Status.PodIP)
			}
		})
	}

	t.Run("the cluster DNS answers with the ClusterIP", func(t *testing.T) {
		out, errOut, err := c1.Exec(ctx, ns, "client", "dig", "+short", "+tries=5", name)
		if err != nil {
			t.Fatalf("dig %s: %v: %s", name, err, errOut)
		}
		if diff := cmp.Diff(clusterIP, strings.TrimSpace(out)); diff != "" {
			t.Errorf("dig %s (-want +got):\n%s", name, diff)
		}
	})
}

// TestKubernetesServiceFromPods: pods resolve kubernetes.default through the
// cluster DNS to the kubernetes Service, and CoreDNS, which lists Services through
// that Service IP from its pods, serves a Service created after it started.
func TestKubernetesServiceFromPods(t *testing.T) {
	sandboxtest.Get(t)
	for _, name := range []string{"cluster1", "cluster2"} {
		t.Run(name, func(t *testing.T) {
			c := sandboxtest.ClusterFor(t, name)
			ns := sandboxtest.Namespace(t, c)
			ctx := context.Background()
			if _, err := c.Kube.CoreV1().Pods(ns).Create(ctx, sandboxtest.NettestPod(ns, "client", ""), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			c.WaitPod(t, ns, "client")
			out, errOut, err := c.Exec(ctx, ns, "client", "dig", "+short", "kubernetes.default.svc."+sandbox.ClusterDomain)
			if err != nil {
				t.Fatalf("dig: %v: %s", err, errOut)
			}
			if got, want := strings.TrimSpace(out), c.Topology.KubernetesServiceIP().String(); got != want {
				t.Errorf("kubernetes.default resolves to %q in %s, want %s", got, name, want)
			}
			resolv, _, err := c.Exec(ctx, ns, "client", "cat", "/etc/resolv.conf")
			if err != nil {
				t.Fatal(err)
			}
			if want := "nameserver " + c.Topology.DNSServiceIP().String(); !strings.Contains(resolv, want) {
				t.Errorf("the pod's resolv.conf lacks %q:\n%s", want, resolv)
			}
			svc, err := c.Kube.CoreV1().Services(ns).Create(ctx, sandboxtest.NettestService(ns, "late"), metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			// CoreDNS learns of the new Service through its watch: poll until it does.
			var got string
			sandboxtest.Eventually(t, func() bool {
				out, _, err := c.Exec(ctx, ns, "client", "dig", "+short", sandbox.DNSName("late", ns))
				got = strings.TrimSpace(out)
				return err == nil && got == svc.Spec.ClusterIP
			})
			if got != svc.Spec.ClusterIP {
				t.Errorf("%s resolves to %q, want %s", sandbox.DNSName("late", ns), got, svc.Spec.ClusterIP)
			}
		})
	}
}

// TestDaemonSetLogsExec: a DaemonSet gets one running pod per node; a deleted pod
// is recreated and runs; logs and exec work through the API server (what kubectl
// logs and kubectl exec use).
func TestDaemonSetLogsExec(t *testing.T) {
	c1 := sandboxtest.ClusterFor(t, "cluster1")
	ns := sandboxtest.Namespace(t, c1)
	ctx := context.Background()
	if _, err := c1.Kube.AppsV1().DaemonSets(ns).Create(ctx, sandboxtest.NettestDaemonSet(ns, "everywhere"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c1.WaitDaemonSet(t, ns, "everywhere")
	selector := map[string]string{sandboxtest.AppLabel: "everywhere"}
	nodesOf := func(pods []corev1.Pod) []string {
		var nodes []string
		for _, p := range pods {
			if sandboxtest.PodReady(&p) {
				nodes = append(nodes, p.Spec.NodeName)
			}
		}
		sort.Strings(nodes)
		return nodes
	}
	var want []string
	for _, n := range c1.Topology.Nodes {
		want = append(want, n.Name)
	}
	sort.Strings(want)
	pods := c1.Pods(t, ns, selector)
	if diff := cmp.Diff(want, nodesOf(pods)); diff != "" {
		t.Fatalf("nodes with a running DaemonSet pod (-want +got):\n%s", diff)
	}

	t.Run("a deleted pod is recreated and runs", func(t *testing.T) {
		victim := pods[0]
		if err := c1.Kube.CoreV1().Pods(ns).Delete(ctx, victim.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		var replacement *corev1.Pod
		sandboxtest.Eventually(t, func() bool {
			for _, p := range c1.Pods(t, ns, selector) {
				if p.UID != victim.UID && p.Spec.NodeName == victim.Spec.NodeName && sandboxtest.PodReady(&p) {
					replacement = &p
				}
			}
			_, err := c1.Kube.CoreV1().Pods(ns).Get(ctx, victim.Name, metav1.GetOptions{})
			return replacement != nil && err != nil
		})
		if replacement == nil {
			t.Fatalf("no new running pod on %s after deleting %s", victim.Spec.NodeName, victim.Name)
		}
		if diff := cmp.Diff(want, nodesOf(c1.Pods(t, ns, selector))); diff != "" {
			t.Errorf("nodes with a running DaemonSet pod after the deletion (-want +got):\n%s", diff)
		}
	})

	t.Run("logs", func(t *testing.T) {
		pods := c1.Pods(t, ns, selector)
		server, client := pods[0], pods[1]
		r := c1.ConnectReply(t, ns, client.Name, "--tcp", sandboxtest.HostPort(server.Status.PodIP, sandboxtest.TCPPort))
		if r.Pod != server.Name {
			t.Errorf("answered by %s, want %s", r.Pod, server.Name)
		}
		// The server logs the connection after answering it: poll the log.
		want := "accepted tcp from " + r.Client.String()
		var logs string
		sandboxtest.Eventually(t, func() bool {
			b, err := c1.Kube.CoreV1().Pods(ns).GetLogs(server.Name, &corev1.PodLogOptions{Container: "nettest"}).DoRaw(ctx)
			logs = string(b)
			return err == nil && strings.Contains(logs, want)
		})
		if !strings.Contains(logs, want) {
			t.Errorf("the log of %s lacks %q:\n%s", server.Name, want, logs)
		}
	})

	t.Run("exec", func(t *testing.T) {
		pod := c1.Pods(t, ns, selector)[0]
		out, _, err := c1.Exec(ctx, ns, pod.Name, "hostname")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(out); got != pod.Name {
			t.Errorf("hostname in pod %s is %q, want the pod's name", pod.Name, got)
		}
		out, _, err = c1.Exec(ctx, ns, pod.Name, c1.Nettest(), "ips")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, pod.Status.PodIP+"/") {
			t.Errorf("nettest ips in pod %s shows %q, want the pod IP %s (the pod's network namespace)", pod.Name, out, pod.Status.PodIP)
		}
		_, _, err = c1.Exec(ctx, ns, pod.Name, "sh", "-c", "exit 7")
		var exit utilexec.ExitError
		if !errors.As(err, &exit) || exit.ExitStatus() != 7 {
			t.Errorf("exec of `exit 7`: error %v, want exit status 7", err)
		}
	})
}

// TestClustersIsolated: without our tunnels, no pod of cluster1 reaches cluster2:
// not a pod, not a node, not a Service; the same client reaches a pod of its own
// cluster, so the refusals are the fabric's.
//
//	cluster1: client pod --X--> cluster2: server pod, node, ClusterIP
func TestClustersIsolated(t *testing.T) {
	c1 := sandboxtest.ClusterFor(t, "cluster1")
	c2 := sandboxtest.ClusterFor(t, "cluster2")
	ns := sandboxtest.Namespace(t, c1, c2)
	ctx := context.Background()
	for _, c := range []*sandboxtest.Cluster{c1, c2} {
		if _, err := c.Kube.CoreV1().Pods(ns).Create(ctx, sandboxtest.NettestPod(ns, "server", c.Topology.Gateways()[0].Name), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c1.Kube.CoreV1().Pods(ns).Create(ctx, sandboxtest.NettestPod(ns, "client", c1.Topology.Gateways()[0].Name), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc2, err := c2.Kube.CoreV1().Services(ns).Create(ctx, sandboxtest.NettestService(ns, "server"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	local := c1.WaitPod(t, ns, "server")
	remote := c2.WaitPod(t, ns, "server")
	c1.WaitPod(t, ns, "client")

	r := c1.ConnectReply(t, ns, "client", "--tcp", sandboxtest.HostPort(local.Status.PodIP, sandboxtest.TCPPort))
	if r.Pod != "server" || r.IP.String() != local.Status.PodIP {
		t.Fatalf("the local server answered %s, want pod server at %s", r, local.Status.PodIP)
	}
	for _, target := range []string{
		sandboxtest.HostPort(remote.Status.PodIP, sandboxtest.TCPPort),
		sandboxtest.HostPort(remote.Status.HostIP, sandboxtest.TCPPort),
		sandboxtest.HostPort(c2.Topology.Gateways()[1].IP.String(), 4500),
		sandboxtest.HostPort(svc2.Spec.ClusterIP, sandboxtest.TCPPort),
	} {
		out, err := c1.Connect(ctx, ns, "client", "--tcp", target)
		if err == nil {
			t.Errorf("a cluster1 pod reached cluster2 at %s: %q", target, out)
			continue
		}
		if !strings.Contains(err.Error(), "unreachable") {
			t.Errorf("connecting to cluster2 at %s: %v, want it refused as unreachable by the fabric", target, err)
		}
	}
}
