//go:build linux

package globalnet

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/submariner-go/submariner/agents/netkit/iptables"
	"github.com/submariner-go/submariner/agents/netkit/netns"
	"github.com/submariner-go/submariner/agents/netkit/netns/netnstest"
	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/controlplane"
)

// TestPrivilegedGlobalnet runs the real agent against a real API server with its
// rules in the kernel of a namespace that plays the active gateway node, and sends
// real traffic through them. The "remote" namespace stands for everything behind the
// tunnel: the remote cluster (global CIDR 242.1.0.0/16) with a client/server at
// 242.1.0.10. Real kube-proxy (iptables mode) runs in the gateway's namespace for
// the exported ClusterIP Service.
//
//	+-----------------------+  veth  +------------------------------------+  veth  +------------------------+
//	| pod "web/client"      |--------| gw: the active gateway node        |--------| remote cluster         |
//	|  eth0 10.241.1.5/24   | gw-pod |  gw-pod 10.241.1.1/24              | gw-rem |  eth0 192.168.99.2/24  |
//	|  TCP client           |        |  gw-hl  10.241.2.1/24              |        |  lo 242.1.0.10/32      |
//	+-----------------------+        |  gw-rem 192.168.99.1/24            |        |  242.0.0.0/24 via .1   |
//	+-----------------------+  veth  |  242.1.0.0/16 via 192.168.99.2     |        |  TCP server and client |
//	| pod "db/db-0"         |--------|  iptables: Globalnet, kube-proxy   |        |  ICMP echo (health)    |
//	|  eth0 10.241.2.7/24   | gw-hl  |  global CIDR 242.0.0.0/24          |        +------------------------+
//	|  TCP server :8080     |        +------------------------------------+
//	+-----------------------+
//
// It proves, in order: the cluster's egress IPs on Pod traffic; the gateway answers
// ICMP to its global IP; namespace and pod-selector egress IPs; a headless Pod
// reached through its global IP, keeping the client's global IP, and leaving with
// its own; an exported ClusterIP Service reached through its global IP by
// kube-proxy's external-IP rules, keeping the client's global IP; a jump deleted
// behind the agent's back comes back; a restart leaves iptables-save -c byte for
// byte as it was and runs no iptables-restore; unexport removes the rules; the
// cleanup mode removes every rule and jump of ours.
func TestPrivilegedGlobalnet(t *testing.T) {
	netnstest.RequirePrivileged(t)
	for _, p := range []string{"iptables-restore", "iptables-save"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("skipped: %s is not installed: run `make deps`", p)
		}
	}
	plane := controlplane.Start(t, "globalnet-kernel")[0]
	c := plane.Client
	top := t // agents started in subtests run on until the test ends
	ctx := context.Background()

	gw, pod, db, remote := netnstest.New(t), netnstest.New(t), netnstest.New(t), netnstest.New(t)
	link(t, gw, "gw-pod", "10.241.1.1/24", pod, "eth0", "10.241.1.5/24")
	link(t, gw, "gw-hl", "10.241.2.1/24", db, "eth0", "10.241.2.7/24")
	link(t, gw, "gw-rem", "192.168.99.1/24", remote, "eth0", "192.168.99.2/24")
	sh(t, pod, "ip", "route", "add", "default", "via", "10.241.1.1")
	sh(t, db, "ip", "route", "add", "default", "via", "10.241.2.1")
	sh(t, remote, "ip", "addr", "add", "242.1.0.10/32", "dev", "lo")
	sh(t, remote, "ip", "route", "add", "242.0.0.0/24", "via", "192.168.99.1")
	sh(t, gw, "ip", "route", "add", "242.1.0.0/16", "via", "192.168.99.2")
	sh(t, gw, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	before := saveTables(t, gw, false)

	remoteSrv := serveWho(t, remote, "242.1.0.10:7000")
	serveWho(t, db, "10.241.2.7:8080")

	mustCreate(t, c, namespace(submv1.ComponentNamespace), namespace("web"), namespace("db"),
		endpoint("cluster1-gw", "cluster1", "gw", "242.0.0.0/24"), endpoint("cluster2-gw", "cluster2", "c2-gw", "242.1.0.0/16"),
		gatewayObj("gw"))
	runningPod(t, c, "web", "client", "10.241.1.5", map[string]string{"app": "web"})
	runningPod(t, c, "db", "db-0", "10.241.2.7", map[string]string{"app": "db"})

	cfg := testConfig("gw")
	cfg.GlobalCIDR = prefix("242.0.0.0/24")
	cfg.Resync = 300 * time.Millisecond
	kernel := iptables.New(iptables.ExecRunner{Netns: gw.Name}, iptables.IPv4)
	host := NetlinkHost{Handle: gw.Netlink}
	a := startAgent(t, plane.Config, cfg, kernel, host)

	var gwIP string
	t.Run("cluster egress", func(t *testing.T) {
		ips := waitEgress(t, c, &submv1.ClusterGlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Name: submv1.ClusterGlobalEgressIPName}}, submv1.ReasonSuccess)
		waitWho(t, "the Pod's traffic to leave with a cluster egress IP", pod, "", remoteSrv, func(client string) bool {
			return contains(ips, client)
		})
	})

	t.Run("the gateway answers ICMP to its global IP", func(t *testing.T) {
		waitFor(t, "the gateway's global IP", func() (bool, string) {
			g := gatewayObj("gw")
			if err := c.Get(ctx, client.ObjectKeyFromObject(g), g); err != nil {
				return false, err.Error()
			}
			gwIP = g.Annotations[submv1.AnnotationGlobalIP]
			return gwIP != "", "no annotation yet"
		})
		waitFor(t, "an echo reply from "+gwIP, func() (bool, string) {
			err := echo(remote, "242.1.0.10", gwIP)
			return err == nil, fmt.Sprint(err)
		})
	})

	t.Run("namespace and pod-selector egress IPs", func(t *testing.T) {
		ns := &submv1.GlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "web"}}
		mustCreate(t, c, ns)
		nsIPs := waitEgress(t, c, ns, submv1.ReasonSuccess)
		waitWho(t, "the Pod's traffic to leave with its namespace's IP", pod, "", remoteSrv, func(client string) bool {
			return contains(nsIPs, client)
		})
		sel := &submv1.GlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Name: "clients", Namespace: "web"},
			Spec: submv1.GlobalEgressIPSpec{NumberOfIPs: ptr.To(2), PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}
		mustCreate(t, c, sel)
		selIPs := waitEgress(t, c, sel, submv1.ReasonSuccess)
		waitWho(t, "the Pod's traffic to leave with its selector's IPs", pod, "", remoteSrv, func(client string) bool {
			return contains(selIPs, client)
		})
	})

	var dbIP string
	t.Run("headless Pod through its global IP", func(t *testing.T) {
		mustCreate(t, c, headlessService("db", "db", map[string]string{"app": "db"}), export("db", "db"),
			headlessSlice("db", "db", "db-x", map[string]string{"db-0": "10.241.2.7"}))
		dbIP = allocatedIngress(t, c, "db", "pod.db-0").String()
		waitWho(t, "the remote client to reach db-0 through "+dbIP+", keeping its global IP", remote, "242.1.0.10", dbIP+":8080",
			func(client string) bool { return client == "242.1.0.10" })
		waitWho(t, "db-0's traffic to leave with its own global IP", db, "", remoteSrv, func(client string) bool {
			return client == dbIP
		})
	})

	t.Run("exported ClusterIP Service through kube-proxy", func(t *testing.T) {
		stopProxy := startKubeProxy(t, gw, plane)
		defer stopProxy()
		mustCreate(t, c, clusterIPService("web", "web", map[string]string{"app": "web"}), export("web", "web"))
		webIP := allocatedIngress(t, c, "web", "web").String()
		// The endpoint slice controller is not running: write the internal Service's
		// slice as it would, with db-0's server as the endpoint.
		iname := submv1.InternalServiceName("web")
		mustCreate(t, c, &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: iname + "-x", Namespace: "web", Labels: map[string]string{
				discoveryv1.LabelServiceName: iname, discoveryv1.LabelManagedBy: "test"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.241.2.7"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
		})
		waitWho(t, "the remote client to reach the Service through "+webIP+":80, keeping its global IP", remote, "242.1.0.10", webIP+":80",
			func(client string) bool { return client == "242.1.0.10" })
		waitWho(t, "a local Pod to reach the Service through its global IP too", pod, "", webIP+":80",
			func(client string) bool { return client != "" })
	})

	t.Run("a jump deleted behind the agent's back comes back", func(t *testing.T) {
		sh(t, gw, "iptables", "-t", "nat", "-D", "POSTROUTING", "-j", string(iptables.GlobalnetEgress))
		waitFor(t, "the jump to return", func() (bool, string) {
			rules := ourRules(saveTables(t, gw, false))
			return containsLine(rules, "-A POSTROUTING -j SUBMARINER-GN-EGRESS"), strings.Join(rules, "\n")
		})
		waitWho(t, "traffic to work again", db, "", remoteSrv, func(client string) bool { return client == dbIP })
	})

	t.Run("a restart changes nothing in the kernel", func(t *testing.T) {
		waitFor(t, "the agent to be ready", func() (bool, string) { ok, err := a.ready.ready(); return ok, fmt.Sprint(err) })
		// iptables-save byte for byte, and the counters of our rules: a chain
		// written again would have them reset. (Other rules' counters move with the
		// loopback traffic of the test itself.)
		tables, counters := saveTables(t, gw, false), ourRules(saveTables(t, gw, true))
		a.stop()
		a = startAgent(top, plane.Config, cfg, kernel, host)
		waitFor(t, "the restarted agent's first sync", func() (bool, string) { ok, err := a.ready.ready(); return ok, fmt.Sprint(err) })
		if diff := cmp.Diff(tables, saveTables(t, gw, false)); diff != "" {
			t.Errorf("iptables-save after a restart (-before +after):\n%s", diff)
		}
		if diff := cmp.Diff(counters, ourRules(saveTables(t, gw, true))); diff != "" {
			t.Errorf("our rules with their counters after a restart (-before +after):\n%s", diff)
		}
		if n := counter(t, a.metrics.restores); n != 0 {
			t.Errorf("the restarted agent ran iptables-restore %d times, want 0", n)
		}
	})

	t.Run("unexport removes the rules", func(t *testing.T) {
		mustDelete(t, c, export("db", "db"))
		waitFor(t, "db-0's rules to go", func() (bool, string) {
			for _, l := range ourRules(saveTables(t, gw, false)) {
				if strings.Contains(l, "10.241.2.7") || strings.Contains(l, dbIP+"/32") {
					return false, l
				}
			}
			return true, ""
		})
	})

	t.Run("uninstall removes every rule of ours", func(t *testing.T) {
		a.stop()
		ready := &readiness{}
		uctx, cancel := context.WithCancel(logr.NewContext(context.Background(), testr.New(t)))
		done := make(chan error, 1)
		go func() { done <- Uninstall(uctx, cfg, plane.Config, kernel, ready.set_) }()
		waitFor(t, "the cleanup", func() (bool, string) { ok, err := ready.ready(); return ok, fmt.Sprint(err) })
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		after := saveTables(t, gw, false)
		if rules := ourRules(after); len(rules) != 0 {
			t.Errorf("left after uninstall:\n%s", strings.Join(rules, "\n"))
		}
		// Only kube-proxy's own rules may differ from the state before.
		if diff := cmp.Diff(nonEmpty(withoutKube(before)), nonEmpty(withoutKube(after))); diff != "" {
			t.Errorf("iptables-save after uninstall, kube-proxy's rules aside (-before +after):\n%s", diff)
		}
	})
}

// link connects a and b with a veth pair and configures both ends.
func link(t *testing.T, a *netns.NS, aName, aCIDR string, b *netns.NS, bName, bCIDR string) {
	t.Helper()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: aName}, PeerName: bName, PeerNamespace: netlink.NsFd(b.Handle())}
	if err := a.Netlink.LinkAdd(veth); err != nil {
		t.Fatalf("adding veth %s-%s: %v", aName, bName, err)
	}
	for _, end := range []struct {
		ns        *netns.NS
		dev, cidr string
	}{{a, aName, aCIDR}, {b, bName, bCIDR}} {
		sh(t, end.ns, "ip", "addr", "add", end.cidr, "dev", end.dev)
		sh(t, end.ns, "ip", "link", "set", end.dev, "up")
	}
}

func sh(t *testing.T, ns *netns.NS, name string, args ...string) string {
	t.Helper()
	out, err := ns.Run(context.Background(), name, args...)
	if err != nil {
		t.Fatalf("%s %s in %s: %v: %s", name, strings.Join(args, " "), ns.Name, err, out)
	}
	return string(out)
}

var commentRE = regexp.MustCompile(`(?m)^#.*\n`)

// saveTables returns iptables-save's output in ns without its comment lines (which
// carry the time); with counters when asked.
func saveTables(t *testing.T, ns *netns.NS, counters bool) string {
	t.Helper()
	args := []string{}
	if counters {
		args = append(args, "-c")
	}
	return commentRE.ReplaceAllString(sh(t, ns, "iptables-save", args...), "")
}

// withoutKube drops kube-proxy's chains and rules from iptables-save text.
func withoutKube(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.Contains(l, "KUBE-") && !strings.Contains(l, "kubernetes") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// nonEmpty drops the tables of iptables-save text that hold neither rules nor user
// chains: a table the kernel loaded but nothing uses.
func nonEmpty(s string) string {
	var out strings.Builder
	for _, block := range strings.SplitAfter(s, "COMMIT\n") {
		if strings.Contains(block, "\n-A ") || strings.Contains(block, " - [") {
			out.WriteString(block)
		}
	}
	return out.String()
}

// serveWho listens on addr inside ns and answers every TCP connection with the
// client's IP; it returns the listening address.
func serveWho(t *testing.T, ns *netns.NS, addr string) string {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatalf("listening on %s in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(conn.RemoteAddr().String())
			_, _ = fmt.Fprintln(conn, host)
			conn.Close()
		}
	}()
	return ln.Addr().String()
}

// who connects from ns (from src, when given) to dst and returns the client IP the
// server saw.
func who(ns *netns.NS, src, dst string) (string, error) {
	var line string
	err := ns.Do(func() error {
		d := net.Dialer{Timeout: time.Second}
		if src != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
		}
		conn, err := d.Dial("tcp", dst)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		line, err = bufio.NewReader(conn).ReadString('\n')
		return err
	})
	return strings.TrimSpace(line), err
}

func waitWho(t *testing.T, what string, ns *netns.NS, src, dst string, ok func(client string) bool) {
	t.Helper()
	waitFor(t, what, func() (bool, string) {
		client, err := who(ns, src, dst)
		if err != nil {
			return false, err.Error()
		}
		return ok(client), "the server saw " + client
	})
}

// echo sends an ICMP echo request from src to dst inside ns and waits for the reply.
func echo(ns *netns.NS, src, dst string) error {
	return ns.Do(func() error {
		conn, err := icmp.ListenPacket("ip4:icmp", src)
		if err != nil {
			return err
		}
		defer conn.Close()
		id := os.Getpid() & 0xffff
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: 1, Data: []byte("globalnet health check")}}
		b, err := msg.Marshal(nil)
		if err != nil {
			return err
		}
		if _, err := conn.WriteTo(b, &net.IPAddr{IP: net.ParseIP(dst)}); err != nil {
			return err
		}
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 1500)
		for {
			n, peer, err := conn.ReadFrom(buf)
			if err != nil {
				return err
			}
			reply, err := icmp.ParseMessage(1, buf[:n])
			if err != nil || reply.Type != ipv4.ICMPTypeEchoReply || peer.String() != dst {
				continue
			}
			if e, ok := reply.Body.(*icmp.Echo); ok && e.ID == id && bytes.Equal(e.Data, []byte("globalnet health check")) {
				return nil
			}
		}
	})
}

// startKubeProxy runs the real kube-proxy (iptables mode) in ns against plane, for
// the node "gw"; the returned function stops it. Without the binary the test skips.
func startKubeProxy(t *testing.T, ns *netns.NS, plane *controlplane.Plane) func() {
	t.Helper()
	assets, err := controlplane.Assets()
	if err != nil {
		t.Skipf("skipped: %v", err)
	}
	bin := filepath.Join(assets, "kube-proxy")
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("skipped: no kube-proxy in %s: run `make k8s-bins`", assets)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "gw"}}
	mustCreate(t, plane.Client, node)
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.99.1"}}
	if err := plane.Client.Status().Update(context.Background(), node); err != nil {
		t.Fatal(err)
	}
	// The API server listens on the root namespace's loopback: forward a loopback
	// port inside ns to it, and point kube-proxy's kubeconfig there.
	apiURL, err := url.Parse(plane.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := os.ReadFile(plane.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	inside := forward(t, ns, apiURL.Host)
	kubeconfig = bytes.ReplaceAll(kubeconfig, []byte(apiURL.Host), []byte(inside))
	kcPath := filepath.Join(t.TempDir(), "kube-proxy.kubeconfig")
	if err := os.WriteFile(kcPath, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command("ip", "netns", "exec", ns.Name, bin,
		"--kubeconfig="+kcPath, "--hostname-override=gw", "--proxy-mode=iptables",
		"--cluster-cidr=10.241.0.0/16",
		// Leave the machine-wide conntrack settings alone.
		"--conntrack-max-per-core=0", "--conntrack-tcp-timeout-close-wait=0s", "--conntrack-tcp-timeout-established=0s",
		"--healthz-bind-address=127.0.0.1:10256", "--metrics-bind-address=127.0.0.1:10249")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting kube-proxy: %v", err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("kube-proxy's output:\n%s", out.String())
		}
	}
	t.Cleanup(stop)
	return stop
}

// forward listens on a loopback port inside ns and relays every connection to
// target in the test's own namespace; it returns the address inside ns.
func forward(t *testing.T, ns *netns.NS, target string) string {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", "127.0.0.1:0"); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go relay(ln, target)
	return ln.Addr().String()
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func counter(t *testing.T, c prometheus.Counter) int {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return int(m.GetCounter().GetValue())
}
