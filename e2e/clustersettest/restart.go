package clustersettest

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/submariner-go/submariner/agents/netkit/netns"
	"github.com/submariner-go/submariner/e2e/nettest"
	"github.com/submariner-go/submariner/e2e/sandbox/nodeagent"
	"github.com/submariner-go/submariner/e2e/sandbox/sandboxtest"
	"github.com/submariner-go/submariner/manifests"
)

// checkRouteAgentRestart holds a TCP connection open from a pod of the first
// cluster to a pod of the second, restarts the first cluster's route agents on
// every node, and checks that the connection still carries data and that no
// node's kernel state (links, routes, rules, FDB, iptables) changed.
func checkRouteAgentRestart(t *testing.T, c1 *sandboxtest.Cluster, w1 *workloads, w2 *workloads) {
	client := w1.clients[w1.nodes[len(w1.nodes)-1]]
	server := w2.servers[w2.nodes[len(w2.nodes)-1]]
	conn := dialFromPod(t, string(client.UID), sandboxtest.HostPort(server.Status.PodIP, sandboxtest.TCPPort))
	echo(t, conn, "before the restart")

	before := map[string][]string{}
	for _, n := range c1.Topology.Nodes {
		before[n.Name] = KernelState(t, n.NetNS)
	}
	// Every node runs a new, ready route agent (it has synced its state).
	if old := RestartDaemonSet(t, c1, manifests.RouteAgentDaemonSet); len(old) != len(c1.Topology.Nodes) {
		t.Fatalf("%s ran %d route agent pods, want one on each of its %d nodes", c1.Name, len(old), len(c1.Topology.Nodes))
	}

	echo(t, conn, "after the restart")
	for _, n := range c1.Topology.Nodes {
		if diff := cmp.Diff(before[n.Name], KernelState(t, n.NetNS)); diff != "" {
			t.Errorf("restarting the route agents changed %s's kernel state (-before +after):\n%s", n.Name, diff)
		}
	}
}

// dialFromPod opens a TCP connection to target from inside the network
// namespace of the sandbox pod with uid and reads the nettest server's reply
// line. The connection is closed when the test ends.
func dialFromPod(t *testing.T, uid, target string) *bufio.ReadWriter {
	t.Helper()
	ns, err := netns.Open(nodeagent.PodNetNSPrefix + uid)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	var conn net.Conn
	if err := ns.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", target, 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("connecting to %s from pod %s: %v", target, uid, err)
	}
	t.Cleanup(func() { conn.Close() })
	rw := bufio.NewReadWriter(bufio.NewReader(conn), bufio.NewWriter(conn))
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := rw.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the reply of %s: %v", target, err)
	}
	if _, err := nettest.ParseReply(strings.TrimSpace(line)); err != nil {
		t.Fatalf("reply of %s: %v", target, err)
	}
	return rw
}

// echo sends a line over the connection to a nettest server, which sends it
// back.
func echo(t *testing.T, rw *bufio.ReadWriter, msg string) {
	t.Helper()
	if _, err := rw.WriteString(msg + "\n"); err != nil {
		t.Fatalf("sending %q: %v", msg, err)
	}
	if err := rw.Flush(); err != nil {
		t.Fatalf("sending %q: %v", msg, err)
	}
	got, err := rw.ReadString('\n')
	if err != nil || strings.TrimSpace(got) != msg {
		t.Fatalf("echo of %q: got %q, %v: the established connection broke", msg, got, err)
	}
}
