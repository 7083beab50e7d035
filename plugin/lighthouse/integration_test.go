package lighthouse

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	_ "github.com/coredns/coredns/plugin/bind"  // the Corefiles bind to loopback
	_ "github.com/coredns/coredns/plugin/ready" // and report readiness
	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// corefile is a caddy.Input for a Corefile given as a string.
type corefile string

func (c corefile) Body() []byte       { return []byte(c) }
func (c corefile) Path() string       { return "Corefile" }
func (c corefile) ServerType() string { return "dns" }

var directivesOnce sync.Once

// useLighthouseDirective puts lighthouse into CoreDNS's plugin chain right after
// kubernetes, where coredns-build puts it.
func useLighthouseDirective() {
	directivesOnce.Do(func() {
		if !slices.Contains(dnsserver.Directives, pluginName) {
			i := slices.Index(dnsserver.Directives, "kubernetes")
			dnsserver.Directives = slices.Insert(slices.Clone(dnsserver.Directives), i+1, pluginName)
		}
		caddy.Quiet = true
		dnsserver.Quiet = true
	})
}

// startCoreDNS starts CoreDNS in-process from a Corefile and stops it when the
// test ends. It returns the UDP and TCP addresses of the first server.
func startCoreDNS(t testing.TB, input string) (udp, tcp string) {
	t.Helper()
	useLighthouseDirective()
	inst, err := caddy.Start(corefile(input))
	if err != nil {
		t.Fatalf("starting CoreDNS: %v", err)
	}
	t.Cleanup(func() {
		// Stop does not run the OnShutdown hooks, which stop our informers.
		for _, err := range inst.ShutdownCallbacks() {
			t.Errorf("CoreDNS shutdown: %v", err)
		}
		if err := inst.Stop(); err != nil {
			t.Errorf("stopping CoreDNS: %v", err)
		}
		inst.Wait()
	})
	srv := inst.Servers()[0]
	return srv.LocalAddr().String(), srv.Addr().String()
}

// freeLoopbackPort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

var serialRE = regexp.MustCompile(`(SOA\s+\S+\s+\S+\s+)\d+`)

// exchange asks addr over network ("udp" or "tcp") and returns the response as
// text: the rcode, the flags that matter and the sorted sections, with the SOA
// serial (a timestamp) replaced by SERIAL.
func exchange(t testing.TB, network, addr, qname string, qtype uint16) string {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(qname, qtype)
	c := &dns.Client{Net: network, Timeout: 10 * time.Second}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, qname, dns.TypeToString[qtype], err)
	}
	return responseText(resp)
}

func responseText(resp *dns.Msg) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s aa=%t tc=%t\n", dns.RcodeToString[resp.Rcode], resp.Authoritative, resp.Truncated)
	for _, sec := range []struct {
		name string
		rrs  []dns.RR
	}{{"answer", resp.Answer}, {"authority", resp.Ns}, {"additional", resp.Extra}} {
		for _, line := range rrText(sec.rrs) {
			fmt.Fprintf(&b, "%s: %s\n", sec.name, serialRE.ReplaceAllString(strings.ReplaceAll(line, "\t", " "), "${1}SERIAL"))
		}
	}
	return b.String()
}

// TestCoreDNS starts a real CoreDNS server with the lighthouse plugin from a
// Corefile, against a real API server, and asks it over UDP and TCP on loopback.
func TestCoreDNS(t *testing.T) {
	p := sharedPlane(t)
	createNamespaces(t, p, "integ", submv1.ComponentNamespace)
	ready := freeLoopbackPort(t)
	udp, tcp := startCoreDNS(t, fmt.Sprintf(`clusterset.local:0 {
		bind 127.0.0.1
		ready %s
		lighthouse {
			kubeconfig %s
			cluster-id cluster1
			ttl 7
		}
	}`, ready, p.Kubeconfig))

	web := []discoveryv1.EndpointPort{slicePort("http", corev1.ProtocolTCP, 80)}
	local := epSlice("integ", "nginx", "cluster1", "nginx-c1", false, web, ep{addrs: []string{"10.1.0.10"}})
	// big has more endpoints than fit a 512-octet UDP answer.
	var many []ep
	for i := range 60 {
		many = append(many, ep{hostname: fmt.Sprintf("big-%d", i), addrs: []string{fmt.Sprintf("10.2.3.%d", i+1)}})
	}
	for _, o := range []client.Object{
		gatewayObj("gw", true, map[string]submv1.ConnectionStatus{"cluster2": submv1.Connected}),
		clusterSetIPImport("integ", "nginx", nil, importPort("http", corev1.ProtocolTCP, 80)),
		local,
		epSlice("integ", "nginx", "cluster2", "nginx-c2", false, web, ep{addrs: []string{"10.2.0.10"}}),
		headlessImport("integ", "db", importPort("mysql", corev1.ProtocolTCP, 3306)),
		epSlice("integ", "db", "cluster2", "db-c2", true, []discoveryv1.EndpointPort{slicePort("mysql", corev1.ProtocolTCP, 3306)},
			ep{hostname: "db-0", addrs: []string{"10.2.1.1"}}),
		headlessImport("integ", "big"),
		epSlice("integ", "big", "cluster2", "big-c2", true, nil, many...),
	} {
		apply(t, p, o)
	}

	// SERVFAIL until the informers have synced, then the answers.
	eventually(t, "the first answer", "NOERROR aa=true tc=false\nanswer: nginx.integ.svc.clusterset.local. 7 IN A 10.1.0.10\n",
		func() string { return exchange(t, "udp", udp, "nginx.integ.svc.clusterset.local.", dns.TypeA) })
	// The informers sync once and then watch, so objects applied after their list
	// arrive later; big's import and slice were applied last of their kinds.
	eventually(t, "big's answer", fmt.Sprintf("%d records", len(many)), func() string {
		return fmt.Sprintf("%d records", strings.Count(exchange(t, "tcp", tcp, "big.integ.svc.clusterset.local.", dns.TypeA), "answer: "))
	})
	resp, err := http.Get("http://" + ready + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("ready: %s %s, want 200", resp.Status, body)
	}

	soa := "authority: clusterset.local. 7 IN SOA ns.dns.clusterset.local. hostmaster.clusterset.local. SERIAL 7200 1800 86400 7\n"
	for _, tt := range []struct {
		name  string
		qname string
		qtype uint16
		want  string
	}{
		{"A", "nginx.integ.svc.clusterset.local.", dns.TypeA,
			"NOERROR aa=true tc=false\nanswer: nginx.integ.svc.clusterset.local. 7 IN A 10.1.0.10\n"},
		{"SRV", "_http._tcp.nginx.integ.svc.clusterset.local.", dns.TypeSRV,
			"NOERROR aa=true tc=false\n" +
				"answer: _http._tcp.nginx.integ.svc.clusterset.local. 7 IN SRV 0 50 80 nginx.integ.svc.clusterset.local.\n" +
				"additional: nginx.integ.svc.clusterset.local. 7 IN A 10.1.0.10\n"},
		{"headless A", "db.integ.svc.clusterset.local.", dns.TypeA,
			"NOERROR aa=true tc=false\nanswer: db.integ.svc.clusterset.local. 7 IN A 10.2.1.1\n"},
		{"per-endpoint A", "db-0.cluster2.db.integ.svc.clusterset.local.", dns.TypeA,
			"NOERROR aa=true tc=false\nanswer: db-0.cluster2.db.integ.svc.clusterset.local. 7 IN A 10.2.1.1\n"},
		{"headless SRV", "_mysql._tcp.db.integ.svc.clusterset.local.", dns.TypeSRV,
			"NOERROR aa=true tc=false\n" +
				"answer: _mysql._tcp.db.integ.svc.clusterset.local. 7 IN SRV 0 50 3306 db-0.cluster2.db.integ.svc.clusterset.local.\n" +
				"additional: db-0.cluster2.db.integ.svc.clusterset.local. 7 IN A 10.2.1.1\n"},
		{"dns-version", "dns-version.clusterset.local.", dns.TypeTXT,
			"NOERROR aa=true tc=false\nanswer: dns-version.clusterset.local. 28800 IN TXT \"1.0.0\"\n"},
		{"NODATA", "nginx.integ.svc.clusterset.local.", dns.TypeAAAA, "NOERROR aa=true tc=false\n" + soa},
		{"NXDOMAIN", "nope.integ.svc.clusterset.local.", dns.TypeA, "NXDOMAIN aa=true tc=false\n" + soa},
		{"reserved CLUSTER.NAME", "cluster1.nginx.integ.svc.clusterset.local.", dns.TypeA, "NXDOMAIN aa=true tc=false\n" + soa},
	} {
		for _, network := range []string{"udp", "tcp"} {
			addr := udp
			if network == "tcp" {
				addr = tcp
			}
			t.Run(tt.name+" over "+network, func(t *testing.T) {
				if diff := cmp.Diff(tt.want, exchange(t, network, addr, tt.qname, tt.qtype)); diff != "" {
					t.Errorf("response (-want +got):\n%s", diff)
				}
			})
		}
	}

	// A large answer is truncated over UDP (no EDNS: 512 octets) and whole over TCP.
	m := new(dns.Msg)
	m.SetQuestion("big.integ.svc.clusterset.local.", dns.TypeA)
	u, _, err := (&dns.Client{Net: "udp", Timeout: 10 * time.Second}).Exchange(m, udp)
	if err != nil {
		t.Fatal(err)
	}
	if !u.Truncated || len(u.Answer) >= len(many) {
		t.Errorf("UDP answer: truncated=%t with %d records, want truncated with fewer than %d", u.Truncated, len(u.Answer), len(many))
	}
	full, _, err := (&dns.Client{Net: "tcp", Timeout: 10 * time.Second}).Exchange(m, tcp)
	if err != nil {
		t.Fatal(err)
	}
	if full.Truncated || len(full.Answer) != len(many) {
		t.Errorf("TCP answer: truncated=%t with %d records, want %d", full.Truncated, len(full.Answer), len(many))
	}

	// The local cluster stops exporting: the answer moves to cluster2.
	remove(t, p, local)
	eventually(t, "the answer after the local slice left", "NOERROR aa=true tc=false\nanswer: nginx.integ.svc.clusterset.local. 7 IN A 10.2.0.10\n",
		func() string { return exchange(t, "tcp", tcp, "nginx.integ.svc.clusterset.local.", dns.TypeA) })
	// cluster2's tunnel goes down: nothing is left to answer with.
	apply(t, p, gatewayObj("gw", true, map[string]submv1.ConnectionStatus{"cluster2": submv1.ConnError}))
	eventually(t, "the answer after cluster2 disconnected", "NOERROR aa=true tc=false\n"+soa,
		func() string { return exchange(t, "udp", udp, "nginx.integ.svc.clusterset.local.", dns.TypeA) })
}

// TestCoreDNSBadCorefile: a malformed lighthouse block stops CoreDNS from starting,
// with an error that names the option.
func TestCoreDNSBadCorefile(t *testing.T) {
	t.Setenv(envClusterID, "cluster1")
	for _, tt := range []struct{ block, want string }{
		{"lighthouse {\n ttl 4000\n}", `ttl "4000": want a whole number of seconds from 0 to 3600`},
		{"lighthouse {\n kubeconfig /nonexistent/kubeconfig\n}", "plugin/lighthouse: kubeconfig /nonexistent/kubeconfig"},
		{"lighthouse {\n upstream 8.8.8.8\n}", `unknown property "upstream"`},
		{"lighthouse {\n cluster-id UPPER\n}", `cluster-id: cluster ID "UPPER" is not a DNS label`},
	} {
		t.Run(tt.block, func(t *testing.T) {
			useLighthouseDirective()
			inst, err := caddy.Start(corefile("clusterset.local:0 {\nbind 127.0.0.1\n" + tt.block + "\n}"))
			if err == nil {
				inst.Stop()
				t.Fatal("CoreDNS started")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestCoreDNSNotSynced starts CoreDNS against an API server that does not answer:
// the plugin never syncs, so it answers SERVFAIL and the ready plugin reports it
// not ready.
func TestCoreDNSNotSynced(t *testing.T) {
	// A port that was free a moment ago: connections to it are refused.
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	unreachable := strings.Replace(testKubeconfig, "https://127.0.0.1:1", "https://"+freeLoopbackPort(t), 1)
	if err := os.WriteFile(kubeconfig, []byte(unreachable), 0o600); err != nil {
		t.Fatal(err)
	}
	ready := freeLoopbackPort(t)
	udp, tcp := startCoreDNS(t, fmt.Sprintf(`clusterset.local:0 {
		bind 127.0.0.1
		ready %s
		lighthouse {
			kubeconfig %s
			cluster-id cluster1
		}
	}`, ready, kubeconfig))

	for _, network := range []string{"udp", "tcp"} {
		addr := udp
		if network == "tcp" {
			addr = tcp
		}
		if got := exchange(t, network, addr, "dns-version.clusterset.local.", dns.TypeTXT); got != "SERVFAIL aa=false tc=false\n" {
			t.Errorf("over %s: got %q, want SERVFAIL", network, got)
		}
	}
	resp, err := http.Get("http://" + ready + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), pluginName) {
		t.Errorf("ready: %s %q, want 503 naming %s", resp.Status, body, pluginName)
	}
}
