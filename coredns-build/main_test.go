package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
	"k8s.io/apimachinery/pkg/util/wait"
)

// stockDirectives is CoreDNS's own plugin.cfg order (the generated default of
// dnsserver.Directives), captured before TestMain installs ours.
var stockDirectives = slices.Clone(dnsserver.Directives)

func TestMain(m *testing.M) {
	if err := dnsserver.SetDirectives(directives); err != nil {
		fmt.Fprintf(os.Stderr, "setting the plugin chain: %v\n", err)
		os.Exit(1)
	}
	caddy.Quiet = true
	dnsserver.Quiet = true
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// TestDirectives checks the plugin chain against what the binary links and against
// CoreDNS's own order.
func TestDirectives(t *testing.T) {
	t.Run("every directive is a linked plugin and every linked plugin a directive", func(t *testing.T) {
		var registered []string
		for _, p := range caddy.ListPlugins()["others"] {
			if name, ok := strings.CutPrefix(p, "dns."); ok {
				registered = append(registered, name)
			}
		}
		sort.Strings(registered)
		want := slices.Sorted(slices.Values(directives))
		if diff := cmp.Diff(want, registered); diff != "" {
			t.Errorf("directives and registered plugins differ (-directives +registered):\n%s\n"+
				"blank-import the plugin of every directive, and list every imported plugin", diff)
		}
	})
	t.Run("order follows CoreDNS plugin.cfg", func(t *testing.T) {
		var stock []string // our directives in CoreDNS's order
		for _, d := range stockDirectives {
			if slices.Contains(directives, d) {
				stock = append(stock, d)
			}
		}
		ours := slices.DeleteFunc(slices.Clone(directives), func(d string) bool { return d == lighthouse })
		if diff := cmp.Diff(stock, ours); diff != "" {
			t.Errorf("directives are not in plugin.cfg order (-plugin.cfg +ours):\n%s", diff)
		}
		if len(ours) != len(stock) {
			t.Errorf("directives that CoreDNS v1.15.0 does not ship: %v", slices.DeleteFunc(slices.Clone(ours),
				func(d string) bool { return slices.Contains(stock, d) }))
		}
	})
	t.Run("lighthouse follows kubernetes", func(t *testing.T) {
		k, l := slices.Index(directives, "kubernetes"), slices.Index(directives, lighthouse)
		if k < 0 || l < 0 {
			t.Fatalf("kubernetes is directive %d and lighthouse %d: want both in the chain", k, l)
		}
		if l != k+1 {
			t.Errorf("lighthouse is directive %d, want %d (right after kubernetes)", l, k+1)
		}
	})
}

// lighthouse is our plugin's directive.
const lighthouse = "lighthouse"

// TestStockPlugins starts a server with several stock plugins and checks their
// answers over UDP and TCP.
func TestStockPlugins(t *testing.T) {
	srv := start(t, `
.:0 {
	bind 127.0.0.1
	chaos CoreDNS-test-build ops@example.test
	any
	template IN A tmpl.test {
		answer "{{ .Name }} 60 IN A 10.9.8.7"
	}
	hosts {
		10.1.2.3 db.example.test
		fallthrough
	}
	whoami
}
`)
	tests := []struct {
		name      string
		qname     string
		qtype     uint16
		qclass    uint16
		wantRcode int
		// Records in zone-file text; {port} and {proto} stand for the client's
		// source port and transport.
		wantAnswer, wantExtra []string
	}{
		{
			name:  "hosts answers its name",
			qname: "db.example.test.", qtype: dns.TypeA,
			wantAnswer: []string{"db.example.test. 3600 IN A 10.1.2.3"},
		},
		{
			name:  "template synthesizes an answer in its zone",
			qname: "anything.tmpl.test.", qtype: dns.TypeA,
			wantAnswer: []string{"anything.tmpl.test. 60 IN A 10.9.8.7"},
		},
		{
			name:  "chaos answers version.bind",
			qname: "version.bind.", qtype: dns.TypeTXT, qclass: dns.ClassCHAOS,
			wantAnswer: []string{`version.bind. 0 CH TXT "CoreDNS-test-build"`},
		},
		{
			name:  "any answers ANY with HINFO",
			qname: "db.example.test.", qtype: dns.TypeANY,
			wantAnswer: []string{`db.example.test. 8482 IN HINFO "ANY obsoleted" "See RFC 8482"`},
		},
		{
			name:  "whoami answers what hosts passes on",
			qname: "other.test.", qtype: dns.TypeA,
			wantExtra: []string{"other.test. 0 IN A 127.0.0.1", "_{proto}.other.test. 0 IN SRV 0 0 {port} ."},
		},
	}
	for _, tc := range tests {
		for _, transport := range []string{"udp", "tcp"} {
			t.Run(tc.name+"/"+transport, func(t *testing.T) {
				m := new(dns.Msg).SetQuestion(tc.qname, tc.qtype)
				if tc.qclass != 0 {
					m.Question[0].Qclass = tc.qclass
				}
				resp, local := exchange(t, transport, srv.addr(transport), m)
				if resp.Rcode != tc.wantRcode {
					t.Errorf("rcode = %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.wantRcode])
				}
				expand := func(rrs []string) []string {
					r := strings.NewReplacer("{port}", strconv.Itoa(int(local.Port())), "{proto}", transport)
					out := make([]string, len(rrs))
					for i, s := range rrs {
						out[i] = r.Replace(s)
					}
					return out
				}
				if diff := cmp.Diff(canonical(t, expand(tc.wantAnswer)), rrStrings(resp.Answer)); diff != "" {
					t.Errorf("answer section (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(canonical(t, expand(tc.wantExtra)), rrStrings(resp.Extra)); diff != "" {
					t.Errorf("additional section (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// TestHTTPEndpoints checks the health, ready and prometheus endpoints of a running
// server.
func TestHTTPEndpoints(t *testing.T) {
	health, ready, metrics := freePort(t), freePort(t), freePort(t)
	srv := start(t, fmt.Sprintf(`
.:0 {
	bind 127.0.0.1
	health %s
	ready %s
	prometheus %s
	whoami
}
`, health, ready, metrics))

	for _, ep := range []struct{ name, url string }{
		{"health", "http://" + health + "/health"},
		{"ready", "http://" + ready + "/ready"},
	} {
		code, body := get(t, ep.url)
		if code != http.StatusOK || body != "OK" {
			t.Errorf("GET %s = %d %q, want 200 \"OK\"", ep.url, code, body)
		}
	}

	// The responses counter of whoami grows by one per query. The metrics plugin
	// counts after the answer is written, so the client can read the answer before
	// the counter moves: wait for it to move, then check by how much.
	series := `coredns_dns_responses_total{plugin="whoami",rcode="NOERROR",server="dns://127.0.0.1:0",view="",zone="."}`
	url := "http://" + metrics + "/metrics"
	before := metricValue(t, url, series)
	exchange(t, "udp", srv.udp, new(dns.Msg).SetQuestion("counted.test.", dns.TypeA))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var after float64
	waitFor(ctx, t, "the responses counter to count the query", func() (bool, string) {
		after = metricValue(t, url, series)
		return after != before, fmt.Sprintf("%s = %v", series, after)
	})
	if after != before+1 {
		t.Errorf("%s went from %v to %v after one query, want %v", series, before, after, before+1)
	}
}

// TestNotReady checks that the ready plugin reports a kubernetes plugin that cannot
// reach its API server, and that the plugin answers SERVFAIL meanwhile rather
// than a wrong NXDOMAIN.
func TestNotReady(t *testing.T) {
	// A kubeconfig for an API server that is not there: the port was free a moment ago.
	kubeconfig := writeFile(t, "kubeconfig", fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster:
    server: https://%s
    insecure-skip-tls-verify: true
users:
- name: nobody
  user:
    token: not-a-token
contexts:
- name: nowhere
  context: {cluster: nowhere, user: nobody}
current-context: nowhere
`, freePort(t)))
	ready := freePort(t)
	srv := start(t, fmt.Sprintf(`
.:0 {
	bind 127.0.0.1
	ready %s
	kubernetes cluster.local {
		kubeconfig %s
		startup_timeout 100ms
	}
}
`, ready, kubeconfig))

	code, body := get(t, "http://"+ready+"/ready")
	if code != http.StatusServiceUnavailable || body != "kubernetes" {
		t.Errorf("GET /ready = %d %q, want 503 \"kubernetes\"", code, body)
	}
	resp, _ := exchange(t, "udp", srv.udp, new(dns.Msg).SetQuestion("web.demo.svc.cluster.local.", dns.TypeA))
	if resp.Rcode != dns.RcodeServerFailure {
		t.Errorf("rcode = %s, want SERVFAIL while the API is unreachable", dns.RcodeToString[resp.Rcode])
	}
}

// TestMalformedCorefile checks that a bad Corefile stops startup with an error that
// names the problem.
func TestMalformedCorefile(t *testing.T) {
	tests := []struct {
		name, corefile string
		wantErr        []string // substrings of the error
	}{
		{
			name:     "plugin not in this build",
			corefile: ".:0 {\n\tetcd\n}\n",
			wantErr:  []string{"Unknown directive 'etcd'"},
		},
		{
			name:     "missing argument",
			corefile: ".:0 {\n\tforward\n}\n",
			wantErr:  []string{"plugin/forward", "Wrong argument count"},
		},
		{
			name:     "unknown option",
			corefile: ".:0 {\n\tkubernetes cluster.local {\n\t\tmulticlustr clusterset.local\n\t}\n}\n",
			wantErr:  []string{"plugin/kubernetes", "unknown property 'multiclustr'"},
		},
		{
			name:     "bad value",
			corefile: ".:0 {\n\tkubernetes cluster.local {\n\t\tttl 99999\n\t}\n}\n",
			wantErr:  []string{"plugin/kubernetes", "ttl must be in range [0, 3600]: 99999"},
		},
		{
			name:     "unclosed block",
			corefile: ".:0 {\n\twhoami\n",
			wantErr:  []string{"Corefile:2", "expecting '}'"},
		},
		{
			name:     "same zone twice on one port",
			corefile: ".:0 {\n\twhoami\n}\n.:0 {\n\twhoami\n}\n",
			wantErr:  []string{"cannot serve dns://.:0 - it is already defined"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inst, err := startCorefile(tc.corefile)
			if err == nil {
				stop(t, inst)
				t.Fatalf("Corefile\n%s\nstarted; want an error containing %q", tc.corefile, tc.wantErr)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

// server is a CoreDNS instance started in-process from a Corefile.
type server struct {
	udp, tcp string // listening addresses of the first server block
}

func (s *server) addr(transport string) string {
	if transport == "tcp" {
		return s.tcp
	}
	return s.udp
}

// startMu serializes starts: caddy's directive table and plugin state are
// process-wide.
var startMu sync.Mutex

func startCorefile(corefile string) (*caddy.Instance, error) {
	startMu.Lock()
	defer startMu.Unlock()
	return caddy.Start(caddy.CaddyfileInput{Contents: []byte(corefile), Filepath: "Corefile", ServerTypeName: "dns"})
}

// start starts a server from corefile and stops it, shutdown hooks included, when
// the test ends.
func start(t *testing.T, corefile string) *server {
	t.Helper()
	inst, err := startCorefile(corefile)
	if err != nil {
		t.Fatalf("starting CoreDNS from\n%s\n%v", corefile, err)
	}
	t.Cleanup(func() { stop(t, inst) })
	srvs := inst.Servers()
	if len(srvs) == 0 {
		t.Fatal("CoreDNS started no servers")
	}
	s := &server{}
	if a := srvs[0].LocalAddr(); a != nil {
		s.udp = a.String()
	}
	if a := srvs[0].Addr(); a != nil {
		s.tcp = a.String()
	}
	if s.udp == "" || s.tcp == "" {
		t.Fatalf("server listens on udp %q and tcp %q, want both", s.udp, s.tcp)
	}
	return s
}

func stop(t *testing.T, inst *caddy.Instance) {
	t.Helper()
	for _, err := range inst.ShutdownCallbacks() {
		t.Errorf("CoreDNS shutdown: %v", err)
	}
	if err := inst.Stop(); err != nil {
		t.Errorf("stopping CoreDNS: %v", err)
	}
}

// exchange sends m to addr over transport and returns the reply and the local
// address it was sent from.
func exchange(t *testing.T, transport, addr string, m *dns.Msg) (*dns.Msg, netip.AddrPort) {
	t.Helper()
	c := &dns.Client{Net: transport, Timeout: 10 * time.Second}
	conn, err := c.Dial(addr)
	if err != nil {
		t.Fatalf("dialing %s %s: %v", transport, addr, err)
	}
	defer conn.Close()
	resp, _, err := c.ExchangeWithConn(m, conn)
	if err != nil {
		t.Fatalf("querying %s over %s at %s: %v", m.Question[0].Name, transport, addr, err)
	}
	local, err := netip.ParseAddrPort(conn.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	return resp, local
}

// canonical parses zone-file records and renders them the way miekg/dns does.
func canonical(t *testing.T, rrs []string) []string {
	t.Helper()
	out := []string{}
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("bad expected record %q: %v", s, err)
		}
		out = append(out, rr.String())
	}
	sort.Strings(out)
	return out
}

func rrStrings(rrs []dns.RR) []string {
	out := []string{}
	for _, rr := range rrs {
		if _, ok := rr.(*dns.OPT); ok {
			continue
		}
		out = append(out, rr.String())
	}
	sort.Strings(out)
	return out
}

// freePort returns a loopback address whose TCP and UDP port was free a moment
// ago, for listeners whose address cannot be read back from CoreDNS (health,
// ready, prometheus) and for the binary's DNS port.
func freePort(t *testing.T) string {
	t.Helper()
	for range 10 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err != nil {
			continue // the UDP port is taken; try another
		}
		u.Close()
		return addr
	}
	t.Fatal("found no port free for both TCP and UDP on 127.0.0.1")
	return ""
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// metricValue returns the value of one series in a Prometheus text exposition;
// a series that is not there yet counts as 0.
func metricValue(t *testing.T, url, series string) float64 {
	t.Helper()
	code, body := get(t, url)
	if code != http.StatusOK {
		t.Fatalf("GET %s = %d", url, code)
	}
	for line := range strings.Lines(body) {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("series %s has value %q: %v", series, rest, err)
			}
			return v
		}
	}
	return 0
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := t.TempDir() + "/" + name
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitFor polls cond until it returns true, failing the test with what cond last
// reported when ctx ends.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	var last string
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
		ok, state := cond()
		last = state
		return ok, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v; last seen: %s", what, err, last)
	}
}
