//go:build linux

package routeagent

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/submariner-go/submariner/agents/netkit/netns"
	"github.com/submariner-go/submariner/agents/netkit/netns/netnstest"
	"github.com/submariner-go/submariner/agents/netkit/route"
	"github.com/submariner-go/submariner/agents/netkit/vxlan"
	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/controlplane"
)

// The privileged tests' topology (see TestPrivilegedAgent). Names and addresses are
// the shared test address plan's.
const (
	metricsAddr = "127.0.0.1:32782" // each agent's, inside its node's namespace
	cableLink   = "cable0"          // a gateway's link to cluster2, standing in for the tunnel
	remotePod   = "10.2.0.1"        // "a pod of cluster2", on cluster2's loopback
)

type testNode struct {
	name string
	ip   string // underlay address, 192.0.2.x
	last string // its last octet, also the third octet of its pod CIDR 10.1.x.0/24
	ns   *netns.NS
}

// world is the topology with its API server.
type world struct {
	plane    *controlplane.Plane
	nodes    []*testNode // gw1, gw2, node1
	lan      *netns.NS
	cluster2 *netns.NS
	logDir   string
	touches  int
}

func (w *world) node(name string) *testNode {
	for _, n := range w.nodes {
		if n.name == name {
			return n
		}
	}
	panic("no node " + name)
}

// scenario is a state of the cluster as the API shows it: which gateway is active,
// which remote clusters are known, node1's MSS annotation.
type scenario struct {
	name    string
	active  string // "gw1", "gw2" or "" for none
	remotes []submv1.Endpoint
	mss     string
}

func localEndpoint(node *testNode) submv1.Endpoint {
	return endpoint("cluster1-"+node.name, "cluster1", node.name, node.ip, 0, "10.1.0.0/16", "100.1.0.0/16")
}

// newWorld builds the topology and its API server:
//
//	         lan: bridge br0, 192.0.2.0/24
//	    +-------------+-------------+
//	    |             |             |
//	gw1 .21       gw2 .22      node1 .11      each node: eth0 on br0; cni0 (bridge) 10.1.<x>.1/24 standing
//	cable0          cable0                    in for its pods; host-gw routes to the others' pod /24s;
//	172.31.1.1/30   172.31.2.1/30             rp_filter strict (all=1); FORWARD policy DROP; a CNI
//	    |             |                       masquerade of pod traffic leaving 10.1.0.0/16
//	+---+-------------+---+
//	| cluster2: lo 10.2.0.1 (a remote pod); 10.1.0.0/16 via the active gateway's cable0
//	+---------------------+
//
// Each gateway stands in for its cable driver with `10.2.0.0/16 via 172.31.x.2 table
// 100 proto 241` and the rule `100: from all lookup 100`, which the agent must never
// touch.
func newWorld(t *testing.T) *world {
	t.Helper()
	ctx := context.Background()
	w := &world{
		lan:      netnstest.New(t),
		cluster2: netnstest.New(t),
		logDir:   t.TempDir(),
		nodes: []*testNode{
			{name: "gw1", ip: "192.0.2.21", last: "21"},
			{name: "gw2", ip: "192.0.2.22", last: "22"},
			{name: "node1", ip: "192.0.2.11", last: "11"},
		},
	}
	for _, n := range w.nodes {
		n.ns = netnstest.New(t)
	}
	all := append([]*netns.NS{w.lan, w.cluster2}, nsOf(w.nodes)...)
	for _, ns := range all {
		run(t, ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	}
	run(t, w.lan, "ip", "link", "add", "br0", "type", "bridge")
	run(t, w.lan, "ip", "link", "set", "br0", "up")
	for i, n := range w.nodes {
		veth := &netlink.Veth{
			LinkAttrs:        netlink.LinkAttrs{Name: "eth0", HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 1, byte(i)}},
			PeerName:         n.name,
			PeerNamespace:    netlink.NsFd(w.lan.Handle()),
			PeerHardwareAddr: net.HardwareAddr{2, 0, 0, 0, 2, byte(i)},
		}
		if err := n.ns.Netlink.LinkAdd(veth); err != nil {
			t.Fatalf("adding %s's eth0: %v", n.name, err)
		}
		run(t, w.lan, "ip", "link", "set", n.name, "master", "br0", "up")
		for _, cmd := range [][]string{
			{"sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=1", "net.ipv4.conf.default.rp_filter=1"},
			{"ip", "addr", "add", n.ip + "/24", "dev", "eth0"},
			{"ip", "link", "set", "eth0", "up"},
			{"ip", "link", "add", "cni0", "address", "02:00:00:00:03:" + n.last, "type", "bridge"},
			{"ip", "addr", "add", "10.1." + n.last + ".1/24", "dev", "cni0"},
			{"ip", "link", "set", "cni0", "up"},
		} {
			run(t, n.ns, cmd[0], cmd[1:]...)
		}
		for _, o := range w.nodes {
			if o != n {
				run(t, n.ns, "ip", "route", "add", "10.1."+o.last+".0/24", "via", o.ip, "dev", "eth0")
			}
		}
		restore(t, n.ns, "*filter\n:FORWARD DROP [0:0]\nCOMMIT\n*nat\n:CNI-MASQ - [0:0]\n-A POSTROUTING -j CNI-MASQ\n"+
			"-A CNI-MASQ -d 10.1.0.0/16 -j RETURN\n-A CNI-MASQ -s 10.1.0.0/16 -j MASQUERADE\nCOMMIT\n")
	}
	run(t, w.cluster2, "ip", "addr", "add", remotePod+"/32", "dev", "lo")
	for i, gw := range w.nodes[:2] {
		sub := strconv.Itoa(i + 1)
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: cableLink, HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 4, byte(i)}},
			PeerName: gw.name, PeerNamespace: netlink.NsFd(w.cluster2.Handle()), PeerHardwareAddr: net.HardwareAddr{2, 0, 0, 0, 5, byte(i)}}
		if err := gw.ns.Netlink.LinkAdd(veth); err != nil {
			t.Fatalf("adding %s's %s: %v", gw.name, cableLink, err)
		}
		run(t, gw.ns, "ip", "addr", "add", "172.31."+sub+".1/30", "dev", cableLink)
		run(t, gw.ns, "ip", "link", "set", cableLink, "up")
		run(t, gw.ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
		run(t, gw.ns, "ip", "route", "add", "10.2.0.0/16", "via", "172.31."+sub+".2", "dev", cableLink, "table", "100", "proto", "241")
		run(t, gw.ns, "ip", "rule", "add", "pref", "100", "lookup", "100")
		run(t, w.cluster2, "ip", "addr", "add", "172.31."+sub+".2/30", "dev", gw.name)
		run(t, w.cluster2, "ip", "link", "set", gw.name, "up")
	}
	run(t, w.cluster2, "ip", "route", "add", "10.1.0.0/16", "via", "172.31.1.1")

	w.plane = controlplane.Start(t, "cluster1")[0]
	c := w.plane.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: submv1.ComponentNamespace}}); err != nil {
		t.Fatal(err)
	}
	for _, n := range w.nodes {
		createNode(t, c, n.name, n.ip)
		proxyAPI(t, n.ns, w.plane.Config.Host)
	}
	return w
}

func nsOf(nodes []*testNode) []*netns.NS {
	out := make([]*netns.NS, len(nodes))
	for i, n := range nodes {
		out[i] = n.ns
	}
	return out
}

func run(t *testing.T, ns *netns.NS, name string, args ...string) string {
	t.Helper()
	out, err := ns.Run(context.Background(), name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func restore(t *testing.T, ns *netns.NS, payload string) {
	t.Helper()
	cmd := ns.Command(context.Background(), "iptables-restore", "--noflush")
	cmd.Stdin = strings.NewReader(payload)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("iptables-restore in %s: %v: %s", ns.Name, err, out)
	}
}

// proxyAPI makes the API server, which listens on the root namespace's loopback,
// reachable at the same address inside ns: it listens there and forwards every
// connection. The agents' kubeconfig works unchanged, and traffic stays on
// loopback.
func proxyAPI(t *testing.T, ns *netns.NS, apiURL string) {
	t.Helper()
	u, err := url.Parse(apiURL)
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", u.Host); return err }); err != nil {
		t.Fatalf("listening on %s in %s: %v", u.Host, ns.Name, err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	track := func(c net.Conn) {
		mu.Lock()
		defer mu.Unlock()
		conns = append(conns, c)
	}
	wg.Go(func() {
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", u.Host) // in the root namespace
			if err != nil {
				down.Close()
				continue
			}
			track(down)
			track(up)
			wg.Go(func() { _, _ = io.Copy(up, down); up.Close() })
			wg.Go(func() { _, _ = io.Copy(down, up); down.Close() })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// apply makes the API show sc (and points cluster2's return route at the active
// gateway, as a remote gateway's cable would follow a failover).
func (w *world) apply(t *testing.T, sc scenario) {
	t.Helper()
	ctx := context.Background()
	c := w.plane.Client
	want := slices.Clone(sc.remotes)
	if sc.active != "" {
		// The local Endpoint first: the new gateway publishes before the old one's
		// Endpoint goes.
		want = append([]submv1.Endpoint{localEndpoint(w.node(sc.active))}, want...)
	}
	var have submv1.EndpointList
	if err := c.List(ctx, &have, client.InNamespace(submv1.ComponentNamespace)); err != nil {
		t.Fatal(err)
	}
	exists := map[string]bool{}
	for _, ep := range have.Items {
		exists[ep.Name] = true
	}
	for _, ep := range want {
		if !exists[ep.Name] {
			createEndpoint(t, c, ep)
		}
	}
	for _, ep := range have.Items {
		if !slices.ContainsFunc(want, func(e submv1.Endpoint) bool { return e.Name == ep.Name }) {
			deleteEndpoint(t, c, ep.Name)
		}
	}
	annotateNode(t, c, "node1", TCPClampMSSAnnotation, sc.mss)
	if sc.active != "" {
		gw := "172.31.1.1"
		if sc.active == "gw2" {
			gw = "172.31.2.1"
		}
		run(t, w.cluster2, "ip", "route", "replace", "10.1.0.0/16", "via", gw)
	}
}

// touch updates every Endpoint without changing what the agents read, so that
// they sync again with the same inputs.
func (w *world) touch(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	w.touches++
	var eps submv1.EndpointList
	if err := w.plane.Client.List(ctx, &eps, client.InNamespace(submv1.ComponentNamespace)); err != nil {
		t.Fatal(err)
	}
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{"routeagent.test/touch":"%d"}}}`, w.touches)
	for _, ep := range eps.Items {
		if err := w.plane.Client.Patch(ctx, &ep, client.RawPatch("application/merge-patch+json", patch)); err != nil {
			t.Fatal(err)
		}
	}
}

// expected is what Plan says node n must hold in scenario sc, from the
// interfaces the kernel has.
func (w *world) expected(t *testing.T, n *testNode, sc scenario) State {
	t.Helper()
	links, err := (&netlinkSystem{h: n.ns.Netlink, do: n.ns.Do}).Links(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	in := Input{NodeName: n.name, Links: links, Endpoints: slices.Clone(sc.remotes)}
	for _, o := range w.nodes {
		node := Node{Name: o.name, IP: netip.MustParseAddr(o.ip)}
		if o.name == "node1" {
			node.TCPClampMSS = sc.mss
		}
		in.Nodes = append(in.Nodes, node)
	}
	if sc.active != "" {
		in.Endpoints = append(in.Endpoints, localEndpoint(w.node(sc.active)))
	}
	st, err := Plan(in, testConfig)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// holds reports how node n's kernel differs from the overlay, routes and iptables
// chains of want, or "" when it holds them.
func holds(n *testNode, want State) string {
	ctx := context.Background()
	var diffs []string
	vx := vxlan.New(n.ns.Netlink, route.ProtocolRouteAgent)
	_, err := n.ns.Netlink.LinkByName(vxlan.DeviceName)
	switch {
	case want.Overlay == nil && err == nil:
		diffs = append(diffs, vxlan.DeviceName+" exists, want none")
	case want.Overlay == nil:
		rs, err := route.New(n.ns.Netlink, route.ProtocolRouteAgent).State(ctx)
		if err != nil || rs.String() != "" {
			diffs = append(diffs, fmt.Sprintf("routes of the agent left: %q (%v)", rs, err))
		}
	case err != nil:
		diffs = append(diffs, fmt.Sprintf("%s: %v", vxlan.DeviceName, err))
	default:
		got, err := vx.State(ctx, vxlan.DeviceName)
		if err != nil {
			diffs = append(diffs, err.Error())
		} else if d := cmp.Diff(want.Overlay.String(), got.String()); d != "" {
			diffs = append(diffs, "overlay (-want +got):\n"+d)
		}
	}
	save, err := n.ns.Command(ctx, "iptables-save").Output()
	if err != nil {
		return fmt.Sprintf("iptables-save: %v", err)
	}
	if d := cmp.Diff(ourLines(want.Rules.String()), ourLines(string(save))); d != "" {
		diffs = append(diffs, "iptables (-want +got):\n"+d)
	}
	return strings.Join(diffs, "\n")
}

var jumpRE = regexp.MustCompile(`^-[AI] ([A-Z]+)(?: 1)? (.*-j SUBMARINER-[A-Z]+)$`)

// ourLines returns, per table, the rules of the agent's chains and the jumps into
// them, as `table: -A CHAIN ...` lines in the order given, from either an
// iptables-restore payload or iptables-save output.
func ourLines(text string) []string {
	var out []string
	table := ""
	for _, l := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(l, "*"):
			table = l[1:]
		case strings.HasPrefix(l, "-A SUBMARINER-"):
			out = append(out, table+": "+l)
		case jumpRE.MatchString(l):
			m := jumpRE.FindStringSubmatch(l)
			out = append(out, table+": -A "+m[1]+" "+m[2])
		}
	}
	slices.Sort(out) // tables come in different orders
	return out
}

// converge waits until every node holds its plan for sc.
func (w *world) converge(t *testing.T, sc scenario) {
	t.Helper()
	wants := map[string]State{}
	for _, n := range w.nodes {
		wants[n.name] = w.expected(t, n, sc)
	}
	var why string
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, convergeTimeout, true, func(context.Context) (bool, error) {
		why = ""
		for _, n := range w.nodes {
			if d := holds(n, wants[n.name]); d != "" {
				why += fmt.Sprintf("--- %s:\n%s\n", n.name, d)
			}
		}
		return why == "", nil
	})
	if err != nil {
		t.Fatalf("scenario %q: the agents did not converge:\n%s", sc.name, why)
	}
}

var (
	countersRE = regexp.MustCompile(`\[\d+:\d+\]`)
	// A bridge's timers (cni0's) run down between two readings.
	timersRE  = regexp.MustCompile(`(hello_timer|tcn_timer|topology_change_timer|gc_timer)\s+[\d.]+`)
	ifindexRE = regexp.MustCompile(`(?m)^\d+: `)
)

// snapshot is a namespace's network state as the tools print it.
func snapshot(t *testing.T, ns *netns.NS) string {
	t.Helper()
	var b strings.Builder
	for _, cmd := range [][]string{
		{"ip", "-d", "link", "show"},
		{"ip", "route", "show", "table", "all"},
		{"ip", "rule", "show"},
		{"bridge", "fdb", "show"},
		{"iptables-save"},
	} {
		// Standard output only: iproute2 may complain on standard error about
		// other programs' namespaces it meets while naming a peer's namespace.
		out, err := ns.Command(context.Background(), cmd[0], cmd[1:]...).Output()
		if err != nil {
			t.Fatalf("%s in %s: %v", strings.Join(cmd, " "), ns.Name, err)
		}
		lines := strings.Split(string(out), "\n")
		if cmd[0] == "bridge" {
			slices.Sort(lines) // the kernel lists flood entries in the order they were added
		}
		fmt.Fprintf(&b, "$ %s\n", strings.Join(cmd, " "))
		for _, l := range lines {
			if !strings.HasPrefix(l, "#") { // iptables-save's dated comments
				l = timersRE.ReplaceAllString(countersRE.ReplaceAllString(l, "[0:0]"), "$1 T")
				b.WriteString(l + "\n")
			}
		}
	}
	return b.String()
}

func (w *world) snapshots(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range w.nodes {
		out[n.name] = snapshot(t, n.ns)
	}
	return out
}

func ifindexless(s string) string { return ifindexRE.ReplaceAllString(s, "N: ") }

// agentProc is the real agent (this test binary running Main), started in a node's
// network namespace.
type agentProc struct {
	node *testNode
	cmd  *exec.Cmd
	log  string
	done chan error
}

// startAgent starts node n's agent with extra flags; the test's cleanup stops it.
func (w *world) startAgent(t *testing.T, n *testNode, extra ...string) *agentProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{
		"--cluster-id=cluster1", "--cluster-cidr=10.1.0.0/16", "--service-cidr=100.1.0.0/16",
		"--node-name=" + n.name, "--kubeconfig=" + w.plane.Kubeconfig, "--metrics-addr=" + metricsAddr,
		"--resync-period=1s", "--v=2",
	}, extra...)
	p := &agentProc{node: n, log: filepath.Join(w.logDir, fmt.Sprintf("%s-%d.log", n.name, time.Now().UnixNano())), done: make(chan error, 1)}
	logFile, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = n.ns.Command(context.Background(), exe, args...)
	p.cmd.Env = append(cleanEnv(), agentProcessEnv+"=1")
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait(); logFile.Close() }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			data, _ := os.ReadFile(p.log)
			t.Logf("log of %s's agent (%s):\n%s", n.name, p.log, tail(string(data), 60))
		}
	})
	return p
}

// cleanEnv is the test's environment without the variables the agent reads.
func cleanEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "SUBMARINER_") || strings.HasPrefix(kv, "NODE_NAME=") || strings.HasPrefix(kv, "KUBECONFIG=")
	})
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// stop sends SIGTERM and waits for the agent to exit; stopping twice is harmless.
func (p *agentProc) stop(t *testing.T) {
	t.Helper()
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("agent of %s exited with %v", p.node.name, err)
		}
	case <-time.After(convergeTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("agent of %s did not stop on SIGTERM", p.node.name)
	}
}

// get fetches path from the agent's HTTP server inside its namespace.
func (p *agentProc) get(path string) (int, string, error) {
	c := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
			err = p.node.ns.Do(func() error {
				conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		},
	}}
	resp, err := c.Get("http://" + metricsAddr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// waitReady waits for /readyz to answer 200.
func (p *agentProc) waitReady(t *testing.T) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, convergeTimeout, true, func(context.Context) (bool, error) {
		code, body, err := p.get("/readyz")
		last = fmt.Sprintf("%d %q %v", code, body, err)
		return code == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("agent of %s not ready: %s", p.node.name, last)
	}
}

// metric reads a metric without labels from the agent.
func (p *agentProc) metric(t *testing.T, name string) float64 {
	t.Helper()
	_, body, err := p.get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("agent of %s has no metric %s", p.node.name, name)
	return 0
}

// remoteServer answers every connection to remotePod in cluster2 with a line
// naming the client and the MSS it announced, then echoes lines.
func (w *world) remoteServer(t *testing.T) string {
	t.Helper()
	var ln net.Listener
	if err := w.cluster2.Do(func() (err error) { ln, err = net.Listen("tcp", remotePod+":0"); return err }); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				fmt.Fprintf(c, "hello %s mss %d\n", c.RemoteAddr().(*net.TCPAddr).IP, maxSeg(c))
				_, _ = io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// maxSeg returns the connection's TCP_MAXSEG: the MSS the peer announced, less TCP
// options.
func maxSeg(c net.Conn) int {
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return -1
	}
	mss := -1
	_ = rc.Control(func(fd uintptr) { mss, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG) })
	return mss
}

// dial connects from node1's host network to addr in cluster2 and returns the
// connection and the server's greeting.
func dial(t *testing.T, from *testNode, addr string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), convergeTimeout)
	defer cancel()
	var c net.Conn
	if err := from.ns.Do(func() (err error) { c, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr); return err }); err != nil {
		t.Fatalf("connecting from %s to %s: %v", from.name, addr, err)
	}
	r := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(convergeTimeout))
	greeting, err := r.ReadString('\n')
	if err != nil {
		c.Close()
		t.Fatalf("reading the greeting of %s from %s: %v", addr, from.name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c, r, strings.TrimSpace(greeting)
}

// echo sends a line through an open connection and checks it comes back.
func echo(c net.Conn, r *bufio.Reader, line string) error {
	_ = c.SetDeadline(time.Now().Add(convergeTimeout))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return err
	}
	got, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(got) != line {
		return fmt.Errorf("echoed %q, want %q", got, line)
	}
	return nil
}

// txPackets returns how many packets a link of n has sent.
func txPackets(t *testing.T, n *testNode, link string) uint64 {
	t.Helper()
	l, err := n.ns.Netlink.LinkByName(link)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Statistics.TxPackets
}

var greetingRE = regexp.MustCompile(`^hello (\S+) mss (\d+)$`)

// checkGreeting checks that cluster2 saw node1's pod address (no SNAT on the way)
// and returns the MSS it got.
func checkGreeting(t *testing.T, greeting string) int {
	t.Helper()
	m := greetingRE.FindStringSubmatch(greeting)
	if m == nil {
		t.Fatalf("greeting %q", greeting)
	}
	if m[1] != "10.1.11.1" {
		t.Errorf("cluster2 saw the connection come from %s, want node1's cni0 address 10.1.11.1 (cross-cluster traffic keeps its source)", m[1])
	}
	mss, _ := strconv.Atoi(m[2])
	return mss
}

// TestPrivilegedAgent runs the real agent (this binary's Main, one process per
// node, inside the node's network namespace) against a real API server on the
// topology drawn at newWorld, and checks that:
//   - each scenario (the gateway and remote clusters as the API shows them) leaves
//     every node holding its plan, and TCP from node1 reaches cluster2 with its
//     pod address through vx-submariner and the active gateway (rp_filter strict,
//     FORWARD DROP and a CNI masquerade notwithstanding);
//   - syncing the same scenario again, and reaching the scenarios in random order,
//     leave `ip -d link`, `ip route show table all`, `ip rule`, `bridge fdb` and
//     `iptables-save` exactly as the first time (but for the interface index of a
//     device a failover replaced);
//   - a failover re-points node1 and new connections go through the new gateway;
//     node1's MSS annotation clamps the MSS cluster2 sees;
//   - rules and routes removed behind an agent's back are repaired by its periodic
//     sync;
//   - restarting every agent changes no kernel state at all and an established TCP
//     connection across vx-submariner keeps working;
//   - the cleanup mode leaves the namespaces as they were before the agents ran,
//     the stand-in cable driver's table 100 and rule included.
func TestPrivilegedAgent(t *testing.T) {
	netnstest.RequirePrivileged(t)
	for _, p := range []string{"iptables-restore", "iptables-save", "bridge", "sysctl"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("skipped: %s is not installed: run `make deps`", p)
		}
	}
	w := newWorld(t)
	before := w.snapshots(t)
	server := w.remoteServer(t)
	node1 := w.node("node1")

	cluster3Subnets := []string{"10.3.0.0/16", "100.3.0.0/16"}
	scenarios := []scenario{
		{name: "gw1 active, cluster2", active: "gw1", remotes: []submv1.Endpoint{cluster2}},
		{name: "gw1 active, cluster2 and cluster3", active: "gw1", remotes: []submv1.Endpoint{cluster2, endpoint("cluster3-gw", "cluster3", "c3-gw1", "203.0.113.21", 0, cluster3Subnets...)}},
		{name: "gw2 active, cluster2", active: "gw2", remotes: []submv1.Endpoint{cluster2}},
		{name: "gw2 active, cluster2, node1 clamps MSS to 1300", active: "gw2", remotes: []submv1.Endpoint{cluster2}, mss: "1300"},
		{name: "no gateway, cluster2", remotes: []submv1.Endpoint{cluster2}},
	}

	agents := map[string]*agentProc{}
	for _, n := range w.nodes {
		agents[n.name] = w.startAgent(t, n)
	}
	for _, a := range agents {
		a.waitReady(t)
	}

	first := map[string]map[string]string{} // scenario -> node -> snapshot
	for _, sc := range scenarios {
		w.apply(t, sc)
		w.converge(t, sc)
		snap := w.snapshots(t)
		first[sc.name] = snap
		if sc.active != "" {
			_, _, greeting := dial(t, node1, server)
			mss := checkGreeting(t, greeting)
			if sc.mss == "" && mss <= 1300 || sc.mss == "1300" && mss > 1300 {
				t.Errorf("scenario %q: cluster2 got MSS %d from node1 (annotation %q)", sc.name, mss, sc.mss)
			}
		}

		// The same inputs once more: nothing changes.
		syncs := map[string]float64{}
		for name, a := range agents {
			syncs[name] = a.metric(t, "submariner_routeagent_syncs_total")
		}
		w.touch(t)
		for name, a := range agents {
			if err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, convergeTimeout, true, func(context.Context) (bool, error) {
				return a.metric(t, "submariner_routeagent_syncs_total") > syncs[name], nil
			}); err != nil {
				t.Fatalf("agent of %s did not sync again", name)
			}
		}
		again := w.snapshots(t)
		for _, n := range w.nodes {
			if d := cmp.Diff(snap[n.name], again[n.name]); d != "" {
				t.Errorf("scenario %q synced again: %s changed (-first +again):\n%s", sc.name, n.name, d)
			}
		}
	}

	rng := rand.New(rand.NewPCG(7, 11))
	for step := range 12 {
		sc := scenarios[rng.IntN(len(scenarios))]
		w.apply(t, sc)
		w.converge(t, sc)
		got := w.snapshots(t)
		for _, n := range w.nodes {
			if d := cmp.Diff(ifindexless(first[sc.name][n.name]), ifindexless(got[n.name])); d != "" {
				t.Fatalf("step %d, scenario %q reached in random order: %s differs (-first time +now):\n%s", step, sc.name, n.name, d)
			}
		}
	}

	t.Run("failover", func(t *testing.T) {
		w.apply(t, scenarios[0])
		w.converge(t, scenarios[0])
		vx := vxlan.New(node1.ns.Netlink, route.ProtocolRouteAgent)
		start := time.Now()
		w.apply(t, scenarios[2])
		var repointed time.Duration
		if err := wait.PollUntilContextTimeout(context.Background(), time.Millisecond, convergeTimeout, true, func(ctx context.Context) (bool, error) {
			st, err := vx.State(ctx, vxlan.DeviceName)
			repointed = time.Since(start)
			return err == nil && st.Device.Remote == netip.MustParseAddr("192.0.2.22") && len(st.Routes) == 2 && st.Routes[0].Gw == netip.MustParseAddr("240.0.2.22"), nil
		}); err != nil {
			t.Fatal("node1 was not re-pointed at gw2")
		}
		t.Logf("node1 re-pointed at gw2 %v after the API calls of the failover began (figure, not a threshold)", repointed.Round(time.Millisecond))
		w.converge(t, scenarios[2])
		sent := txPackets(t, w.node("gw2"), cableLink)
		_, _, greeting := dial(t, node1, server)
		checkGreeting(t, greeting)
		if txPackets(t, w.node("gw2"), cableLink) == sent {
			t.Errorf("gw2's %s sent nothing for the connection made after the failover: it did not go through gw2", cableLink)
		}
	})

	t.Run("repair", func(t *testing.T) {
		// Rules and routes removed behind the agents' backs come back with the
		// next periodic sync (--resync-period=1s here), exactly as they were.
		sc := scenarios[0]
		w.apply(t, sc)
		w.converge(t, sc)
		want := snapshot(t, node1.ns)
		run(t, node1.ns, "iptables", "-t", "nat", "-D", "POSTROUTING", "-j", "SUBMARINER-POSTROUTING")
		run(t, node1.ns, "iptables", "-t", "filter", "-F", "SUBMARINER-FORWARD")
		run(t, node1.ns, "iptables", "-t", "filter", "-I", "INPUT", "1", "-p", "udp", "-j", "SUBMARINER-INPUT")
		run(t, node1.ns, "ip", "route", "del", "10.2.0.0/16")
		var got string
		if err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, convergeTimeout, true, func(context.Context) (bool, error) {
			got = snapshot(t, node1.ns)
			return got == want, nil
		}); err != nil {
			t.Fatalf("node1 was not repaired (-want +got):\n%s", cmp.Diff(want, got))
		}
	})

	t.Run("restart", func(t *testing.T) {
		sc := scenarios[0]
		w.apply(t, sc)
		w.converge(t, sc)
		conn, r, greeting := dial(t, node1, server)
		checkGreeting(t, greeting)
		if err := echo(conn, r, "before restart"); err != nil {
			t.Fatal(err)
		}
		snap := w.snapshots(t)

		// Keep the connection busy while the agents restart.
		stop := make(chan struct{})
		flowErr := make(chan error, 1)
		go func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					flowErr <- nil
					return
				default:
				}
				if err := echo(conn, r, fmt.Sprintf("line %d", i)); err != nil {
					flowErr <- fmt.Errorf("line %d: %w", i, err)
					return
				}
			}
		}()
		for _, n := range w.nodes {
			agents[n.name].stop(t)
			agents[n.name] = w.startAgent(t, n)
		}
		for _, a := range agents {
			a.waitReady(t)
		}
		// Let each new agent run a periodic full sync too (resync 1s).
		for name, a := range agents {
			if err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, convergeTimeout, true, func(context.Context) (bool, error) {
				return a.metric(t, "submariner_routeagent_syncs_total") >= 2, nil
			}); err != nil {
				t.Fatalf("agent of %s did not sync twice", name)
			}
		}
		close(stop)
		if err := <-flowErr; err != nil {
			t.Errorf("the established connection broke while the agents restarted: %v", err)
		}
		if err := echo(conn, r, "after restart"); err != nil {
			t.Errorf("the established connection does not work after the restart: %v", err)
		}
		after := w.snapshots(t)
		for _, n := range w.nodes {
			if d := cmp.Diff(snap[n.name], after[n.name]); d != "" {
				t.Errorf("restarting the agents changed %s (-before +after):\n%s", n.name, d)
			}
			if got := agents[n.name].metric(t, "submariner_routeagent_iptables_restores_total"); got != 0 {
				t.Errorf("the restarted agent of %s ran iptables-restore %v times, want never", n.name, got)
			}
		}
	})

	t.Run("cleanup", func(t *testing.T) {
		for _, n := range w.nodes {
			agents[n.name].stop(t)
		}
		for _, n := range w.nodes {
			a := w.startAgent(t, n, "--uninstall")
			a.waitReady(t)
			if code, body, err := a.get("/readyz"); code != http.StatusOK || err != nil {
				t.Errorf("cleanup agent of %s: /readyz = %d %q %v", n.name, code, body, err)
			}
			if a.cmd.ProcessState != nil {
				t.Errorf("cleanup agent of %s exited: it must idle until stopped", n.name)
			}
		}
		after := w.snapshots(t)
		for _, n := range w.nodes {
			if d := cmp.Diff(withoutEmptyTables(before[n.name]), withoutEmptyTables(after[n.name])); d != "" {
				t.Errorf("cleanup left %s different (-before the agents +after cleanup):\n%s", n.name, d)
			}
		}
	})
}

// TestPrivilegedInterfaceChanges: the real System reports addresses and interfaces
// appearing in the namespace it watches, which need not be the process's own.
//
//	+-----------------------------------------------------+
//	| fresh netns: lo, cni0 (bridge, made before watching) |
//	|  then 10.1.11.1/24 on cni0, then a bridge br1        |
//	+-----------------------------------------------------+
func TestPrivilegedInterfaceChanges(t *testing.T) {
	netnstest.RequirePrivileged(t)
	ns := netnstest.New(t)
	run(t, ns, "ip", "link", "add", "cni0", "type", "bridge")
	sys := &netlinkSystem{h: ns.Netlink, do: ns.Do}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := make(chan struct{}, 1024)
	if err := sys.Subscribe(ctx, func() { changes <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	waitChange := func(what string) {
		t.Helper()
		select {
		case <-changes:
		case <-time.After(convergeTimeout):
			t.Fatalf("no change reported after %s", what)
		}
	}
	// Nothing changes between subscribing and adding the address, so the change
	// reported is the address's.
	run(t, ns, "ip", "addr", "add", "10.1.11.1/24", "dev", "cni0")
	waitChange("adding an address to cni0")
	run(t, ns, "ip", "link", "add", "br1", "type", "bridge")
	waitChange("adding br1")

	links, err := sys.Links(ctx)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(links, func(l Link) bool { return l.Name == "cni0" })
	if i < 0 || !slices.Equal(links[i].Addrs, []netip.Prefix{netip.MustParsePrefix("10.1.11.1/24")}) {
		t.Errorf("Links() = %+v, want cni0 with 10.1.11.1/24", links)
	}
}
