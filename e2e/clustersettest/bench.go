package clustersettest

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/sandbox"
	"github.com/submariner-go/submariner/e2e/sandbox/sandboxtest"
)

// iperfSeconds is how long each iperf3 run sends.
const iperfSeconds = 5

// Throughput measures TCP throughput with iperf3 in the package's sandbox, with
// driver's tunnels between the clusters:
//
//   - through the tunnel: from cluster1's active gateway node to the cluster
//     address (its CNI address) of cluster2's active gateway node, which the
//     cable carries;
//   - the reference, in the same run: the same two nodes over the fabric
//     between their own addresses, the same path without the tunnel;
//   - pod to pod, from a pod on cluster1's worker to one on cluster2's worker,
//     what workloads get: the tunnel plus both clusters' vx-submariner hops.
//
// It reports the three in Gbit/s and the ratio of the first to the second.
//
// Read the ratio with the sandbox in mind: the reference's TCP segments cross
// the fabric as GSO packets of tens of KB, while a VXLAN cable's encapsulated
// GSO packets leave the fabric's cluster bridge segmented to 1.5 KB (counted
// with `ip -s link`: about 42 KB per packet into the fabric, 1.5 KB out), so
// the fabric's software segmentation is charged to the tunnel; WireGuard's
// crypto runs in wireguard-go on the same cores as both iperf3 ends where the
// kernel has no WireGuard. On real NICs segmentation happens in hardware for
// both paths.
func Throughput(b *testing.B, driver string) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("skipped: iperf3 is not installed (make deps)")
	}
	sb := sandboxtest.Get(b)
	ctx := context.Background()
	c1, c2 := sandboxtest.ClusterFor(b, "cluster1"), sandboxtest.ClusterFor(b, "cluster2")
	kubeconfig := func(name string) string { return Kubeconfig(b, sb, name) }
	info := filepath.Join(b.TempDir(), "broker-info.subm")
	MustSubctl(b, "deploy-broker", "--kubeconfig", kubeconfig("broker"), "-o", info)
	for _, c := range []*sandboxtest.Cluster{c1, c2} {
		MustSubctl(b, "join", info, "--kubeconfig", kubeconfig(c.Name), "--clusterid", c.Name, "--cable-driver", driver, "--natt=false")
	}
	WaitConnected(b, sb, c1, driver)
	ns := sandboxtest.Namespace(b, c1, c2)
	worker := func(c *sandboxtest.Cluster) string { return c.Topology.Nodes[len(c.Topology.Nodes)-1].Name }
	for _, c := range []*sandboxtest.Cluster{c1, c2} {
		if _, err := c.Kube.CoreV1().Pods(ns).Create(ctx, sandboxtest.NettestPod(ns, "iperf", worker(c)), metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	c1.WaitPod(b, ns, "iperf")
	server := c2.WaitPod(b, ns, "iperf")
	// The first exchange also proves the path is up.
	ConnectReply(b, c1, ns, "iperf", "--tcp", sandboxtest.HostPort(server.Status.PodIP, sandboxtest.TCPPort))

	gw1, gw2 := ActiveNode(b, c1), ActiveNode(b, c2)
	remote := remoteHealthCheckIP(b, c1, c2.Name)

	// Through the tunnel, gateway node to gateway node.
	tunnel := iperfBetween(b, gw1.NetNS, gw2.NetNS, remote, "through the "+driver+" tunnel")

	// The reference: the same nodes over the fabric. The fabric lets only the
	// tunnels' traffic pass between gateways, so iperf3's port is opened for it.
	rule := []string{sandbox.GatewayChain, "-s", gw1.IP.String() + "/32", "-d", gw2.IP.String() + "/32", "-p", "tcp", "--dport", fmt.Sprint(iperfPort), "-j", "ACCEPT"}
	fabric := func(op string) error {
		out, err := exec.Command("ip", append([]string{"netns", "exec", sandbox.FabricNetNS, "iptables", op}, rule...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("iptables %s %s in %s: %v: %s", op, strings.Join(rule, " "), sandbox.FabricNetNS, err, out)
		}
		return nil
	}
	if err := fabric("-I"); err != nil {
		b.Fatal(err)
	}
	direct := iperfBetween(b, gw1.NetNS, gw2.NetNS, gw2.IP.String(), "without the tunnel")
	if err := fabric("-D"); err != nil {
		b.Error(err)
	}

	// Pod to pod across the workers. iperf3 -s -D daemonizes, so exec returns;
	// -1 makes it serve one test.
	if _, errOut, err := c2.Exec(ctx, ns, "iperf", "iperf3", "-s", "-D", "-1", "-p", fmt.Sprint(iperfPort)); err != nil {
		b.Fatalf("starting iperf3 -s in %s: %v: %s", c2.Name, err, errOut)
	}
	time.Sleep(500 * time.Millisecond)
	out, errOut, err := c1.Exec(ctx, ns, "iperf", "iperf3", "-J", "-c", server.Status.PodIP, "-p", fmt.Sprint(iperfPort), "-t", fmt.Sprint(iperfSeconds))
	if err != nil {
		b.Fatalf("iperf3 pod to pod: %v: %s%s", err, errOut, out)
	}
	pods := iperfGbps(b, "pod to pod", out)

	b.ReportMetric(tunnel, driver+"-Gbit/s")
	b.ReportMetric(direct, "no-tunnel-Gbit/s")
	b.ReportMetric(tunnel/direct, "ratio")
	b.ReportMetric(pods, "pod-to-pod-Gbit/s")
	b.Logf("%s to %s: %.2f Gbit/s through the %s tunnel, %.2f Gbit/s without it (ratio %.2f); pod to pod across the workers: %.2f Gbit/s",
		gw1.Name, gw2.Name, tunnel, driver, direct, tunnel/direct, pods)
}

// iperfPort is where the benchmark's iperf3 servers listen.
const iperfPort = 5202

// iperfBetween runs one iperf3 test from the network namespace client to a
// server in the namespace server, addressed as addr, and returns the received
// rate.
func iperfBetween(b *testing.B, client, server, addr, what string) float64 {
	b.Helper()
	srv := exec.Command("ip", "netns", "exec", server, "iperf3", "-s", "-1", "-p", fmt.Sprint(iperfPort))
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = srv.Wait() }()
	time.Sleep(500 * time.Millisecond)
	out, err := exec.Command("ip", "netns", "exec", client, "iperf3", "-J", "-c", addr, "-p", fmt.Sprint(iperfPort), "-t", fmt.Sprint(iperfSeconds)).Output()
	if err != nil {
		_ = srv.Process.Kill()
		b.Fatalf("iperf3 %s (%s to %s at %s): %v: %s", what, client, server, addr, err, out)
	}
	return iperfGbps(b, what, string(out))
}

// ActiveNode is the sandbox node of c's active gateway.
func ActiveNode(t testing.TB, c *sandboxtest.Cluster) sandbox.Node {
	t.Helper()
	name := ActiveGateway(t, c).Spec.NodeName
	for _, n := range c.Topology.Nodes {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("%s has no node %q", c.Name, name)
	return sandbox.Node{}
}

// remoteHealthCheckIP is the health-check address (the active gateway node's
// cluster address) of the remote cluster's Endpoint as c sees it.
func remoteHealthCheckIP(b *testing.B, c *sandboxtest.Cluster, remote string) string {
	b.Helper()
	var eps submv1.EndpointList
	if err := c.Client.List(context.Background(), &eps, client.InNamespace(submv1.ComponentNamespace)); err != nil {
		b.Fatal(err)
	}
	for _, ep := range eps.Items {
		if ep.Spec.ClusterID == remote && ep.Spec.HealthCheckIP != "" {
			return ep.Spec.HealthCheckIP
		}
	}
	b.Fatalf("%s has no Endpoint of %s with a health-check IP", c.Name, remote)
	return ""
}

// iperfGbps reads the received rate from iperf3's JSON report of the run what.
func iperfGbps(b *testing.B, what, report string) float64 {
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(report)), &r); err != nil || r.Error != "" {
		b.Fatalf("iperf3 %s: %v %s\n%.2000s", what, err, r.Error, report)
	}
	return r.End.SumReceived.BitsPerSecond / 1e9
}
