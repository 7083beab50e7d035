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

	"github.com/submariner-go/submariner/e2e/sandbox"
	"github.com/submariner-go/submariner/e2e/sandbox/sandboxtest"
)

// iperfSeconds is how long each iperf3 run sends.
const iperfSeconds = 5

// Throughput measures, in the package's sandbox, TCP throughput with iperf3 from
// a pod on cluster1's worker to a pod on cluster2's worker through the tunnel of
// driver, and, as the reference in the same run, between the two clusters'
// gateway nodes directly over the fabric (the same path without the tunnel and
// without the hops to the workers). It reports both in Gbit/s and their ratio.
func Throughput(b *testing.B, driver string) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("skipped: iperf3 is not installed (make deps)")
	}
	sb := sandboxtest.Get(b)
	ctx := context.Background()
	c1, c2 := sandboxtest.ClusterFor(b, "cluster1"), sandboxtest.ClusterFor(b, "cluster2")
	kubeconfig := func(name string) string {
		k, err := sb.Kubeconfig(name)
		if err != nil {
			b.Fatal(err)
		}
		return k
	}
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

	// iperf3 -s -D daemonizes, so exec returns; -1 makes it serve one test.
	if _, errOut, err := c2.Exec(ctx, ns, "iperf", "iperf3", "-s", "-D", "-1", "-p", "5201"); err != nil {
		b.Fatalf("starting iperf3 -s in %s: %v: %s", c2.Name, err, errOut)
	}
	time.Sleep(500 * time.Millisecond)
	out, errOut, err := c1.Exec(ctx, ns, "iperf", "iperf3", "-J", "-c", server.Status.PodIP, "-p", "5201", "-t", fmt.Sprint(iperfSeconds))
	if err != nil {
		b.Fatalf("iperf3 through the %s tunnel: %v: %s%s", driver, err, errOut, out)
	}
	tunnel := iperfGbps(b, "through the "+driver+" tunnel", out)

	// The reference: gateway node to gateway node over the fabric, no tunnel.
	// The fabric lets only the tunnels' traffic pass between gateways, so iperf3's
	// port is opened for the measurement.
	gw1, gw2 := c1.Topology.Gateways()[0], c2.Topology.Gateways()[0]
	rule := []string{sandbox.GatewayChain, "-s", gw1.IP.String() + "/32", "-d", gw2.IP.String() + "/32", "-p", "tcp", "--dport", "5202", "-j", "ACCEPT"}
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
	defer func() {
		if err := fabric("-D"); err != nil {
			b.Error(err)
		}
	}()
	srv := exec.Command("ip", "netns", "exec", gw2.NetNS, "iperf3", "-s", "-1", "-p", "5202", "-B", gw2.IP.String())
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = srv.Wait() }()
	time.Sleep(500 * time.Millisecond)
	ref, err := exec.Command("ip", "netns", "exec", gw1.NetNS, "iperf3", "-J", "-c", gw2.IP.String(), "-p", "5202", "-t", fmt.Sprint(iperfSeconds)).Output()
	if err != nil {
		_ = srv.Process.Kill()
		b.Fatalf("iperf3 between %s and %s without the tunnel: %v", gw1.Name, gw2.Name, err)
	}
	direct := iperfGbps(b, "without the tunnel", string(ref))
	b.ReportMetric(tunnel, driver+"-Gbit/s")
	b.ReportMetric(direct, "no-tunnel-Gbit/s")
	b.ReportMetric(tunnel/direct, "ratio")
	b.Logf("%s tunnel, pod to pod across workers: %.2f Gbit/s; %s to %s without the tunnel: %.2f Gbit/s", driver, tunnel, gw1.Name, gw2.Name, direct)
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
