package lighthouse

import (
	"context"
	"strings"
	"testing"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

func TestParseName(t *testing.T) {
	const z = testZone
	tests := []struct {
		qname, zone string
		want        name
		ok          bool
	}{
		{"clusterset.local.", z, name{kind: kindApex}, true},
		{"dns-version.clusterset.local.", z, name{kind: kindDNSVersion}, true},
		{"svc.clusterset.local.", z, name{kind: kindSvc}, true},
		{"demo.svc.clusterset.local.", z, name{kind: kindNamespace, namespace: "demo"}, true},
		{"nginx.demo.svc.clusterset.local.", z,
			name{kind: kindService, namespace: "demo", service: "nginx", key: "nginx.demo"}, true},
		{"_http._tcp.nginx.demo.svc.clusterset.local.", z,
			name{kind: kindService, namespace: "demo", service: "nginx", key: "nginx.demo", target: 11, port: "http", proto: "tcp"}, true},
		{"_tcp.nginx.demo.svc.clusterset.local.", z,
			name{kind: kindService, namespace: "demo", service: "nginx", key: "nginx.demo", target: 5, proto: "tcp"}, true},
		{"web-0.cluster1.db.demo.svc.clusterset.local.", z,
			name{kind: kindService, namespace: "demo", service: "db", key: "db.demo", target: 15, hostname: "web-0", cluster: "cluster1", clusterAt: 6}, true},
		{"cluster1.db.demo.svc.clusterset.local.", z,
			name{kind: kindService, namespace: "demo", service: "db", key: "db.demo", target: 9, cluster: "cluster1"}, true},
		{"_mysql._tcp.cluster1.db.demo.svc.clusterset.local.", z,
			name{kind: kindService, namespace: "demo", service: "db", key: "db.demo", target: 21, port: "mysql", proto: "tcp", cluster: "cluster1", clusterAt: 12}, true},
		{"_tcp.cluster1.db.demo.svc.clusterset.local.", z,
			name{kind: kindService, namespace: "demo", service: "db", key: "db.demo", target: 14, proto: "tcp", cluster: "cluster1", clusterAt: 5}, true},
		{"nginx.demo.svc.", ".", name{kind: kindService, namespace: "demo", service: "nginx", key: "nginx.demo"}, true},
		{".", ".", name{kind: kindApex}, true},
		{"dns-version.", ".", name{kind: kindDNSVersion}, true},

		{"foo.clusterset.local.", z, name{}, false},
		{"nginx.demo.pod.clusterset.local.", z, name{}, false},
		{"dns-version.demo.clusterset.local.", z, name{}, false},
		{"a.b.c.d.nginx.demo.svc.clusterset.local.", z, name{}, false},
		{"x._tcp.nginx.demo.svc.clusterset.local.", z, name{}, false},
		{"_http.cluster1.nginx.demo.svc.clusterset.local.", z, // form 7 with an unknown protocol "http"
			name{kind: kindService, namespace: "demo", service: "nginx", key: "nginx.demo", target: 15, proto: "http", cluster: "cluster1", clusterAt: 6}, true},
		{"cluster1._tcp.nginx.demo.svc.clusterset.local.", z, name{}, false},
		{"_a._b._c.nginx.demo.svc.clusterset.local.", z, name{}, false},
		{"a.b.c.nginx.demo.svc.clusterset.local.", z, name{}, false},
		{"_.nginx.demo.svc.clusterset.local.", z, name{kind: kindService, namespace: "demo", service: "nginx", key: "nginx.demo", target: 2, cluster: "_", clusterAt: 0}, true},
		{"nginx..svc.clusterset.local.", z, name{}, false},
		{".svc.clusterset.local.", z, name{}, false},
		{strings.Repeat("a", 64) + ".svc.clusterset.local.", z, name{}, false},
		{`a\.b.svc.clusterset.local.`, z, name{}, false},
		{"xclusterset.local.", z, name{}, false},
		{"example.org.", z, name{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.qname, func(t *testing.T) {
			got, ok := parseName(tt.qname, tt.zone)
			if ok != tt.ok {
				t.Fatalf("parseName(%q, %q) ok = %t, want %t (%+v)", tt.qname, tt.zone, ok, tt.ok, got)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(name{})); diff != "" {
				t.Errorf("parseName(%q, %q) (-want +got):\n%s", tt.qname, tt.zone, diff)
			}
		})
	}
}

func TestLowerASCII(t *testing.T) {
	for in, want := range map[string]string{
		"":                  "",
		"nginx.demo.":       "nginx.demo.",
		"NGINX.Demo.":       "nginx.demo.",
		"İ.A.":              "İ.a.", // non-ASCII bytes stay, so offsets stay
		`A\065.`:            `a\065.`,
		"_HTTP._TCP.X.svc.": "_http._tcp.x.svc.",
	} {
		if got := lowerASCII(in); got != want || len(got) != len(in) {
			t.Errorf("lowerASCII(%q) = %q, want %q", in, got, want)
		}
	}
}

// joinLabels puts labels in front of a fully qualified zone.
func joinLabels(zone string, labels ...string) string {
	s := strings.Join(labels, ".")
	if s == "" {
		return zone
	}
	if zone == "." {
		return s + "."
	}
	return s + "." + zone
}

// FuzzParseName checks that parseName never panics and that what it returns for a
// name it accepts puts the same name back together.
func FuzzParseName(f *testing.F) {
	for _, s := range []string{
		"clusterset.local.", "dns-version.clusterset.local.", "svc.clusterset.local.", "demo.svc.clusterset.local.",
		"nginx.demo.svc.clusterset.local.", "_http._tcp.nginx.demo.svc.clusterset.local.",
		"_tcp.nginx.demo.svc.clusterset.local.", "web-0.cluster1.db.demo.svc.clusterset.local.",
		"cluster1.db.demo.svc.clusterset.local.", "_mysql._tcp.cluster1.db.demo.svc.clusterset.local.",
		"_tcp.cluster1.db.demo.svc.clusterset.local.", "a..svc.clusterset.local.", `a\.b.svc.clusterset.local.`,
		"NGINX.Demo.SVC.clusterset.local.", "nginx.demo.svc.", ".", "..", "_._.svc.clusterset.local.",
		strings.Repeat("a.", 127) + "clusterset.local.",
	} {
		f.Add(s, uint8(0))
		f.Add(s, uint8(1))
	}
	zones := []string{testZone, "."}
	f.Fuzz(func(t *testing.T, qname string, zi uint8) {
		zone := zones[int(zi)%len(zones)]
		lower := lowerASCII(qname)
		if len(lower) != len(qname) {
			t.Fatalf("lowerASCII changed the length of %q", qname)
		}
		if !strings.HasSuffix(lower, ".") || !inZone(lower, zone) {
			return // the handler passes such names on
		}
		q, ok := parseName(lower, zone)
		if !ok {
			return
		}
		var got string
		switch q.kind {
		case kindApex:
			got = zone
		case kindDNSVersion:
			got = joinLabels(zone, dnsVersionLabel)
		case kindSvc:
			got = joinLabels(zone, "svc")
		case kindNamespace:
			got = joinLabels(zone, q.namespace, "svc")
		case kindService:
			var labels []string
			if q.hostname != "" {
				labels = append(labels, q.hostname)
			}
			if q.port != "" {
				labels = append(labels, "_"+q.port)
			}
			if q.proto != "" {
				labels = append(labels, "_"+q.proto)
			}
			if q.cluster != "" {
				labels = append(labels, q.cluster)
			}
			got = joinLabels(zone, append(labels, q.service, q.namespace, "svc")...)
			if q.key != q.service+"."+q.namespace {
				t.Errorf("key %q, want %q", q.key, q.service+"."+q.namespace)
			}
			if want := joinLabels(zone, q.service, q.namespace, "svc"); lower[q.target:] != want {
				t.Errorf("name[target:] = %q, want %q", lower[q.target:], want)
			}
			if q.cluster != "" && !strings.HasPrefix(lower[q.clusterAt:], q.cluster+"."+q.service+".") {
				t.Errorf("name[clusterAt:] = %q, want it to start with %q", lower[q.clusterAt:], q.cluster+"."+q.service)
			}
			for _, l := range []string{q.hostname, q.port, q.proto, q.cluster, q.service, q.namespace} {
				if strings.ContainsAny(l, `.\`) || len(l) > 63 {
					t.Errorf("part %q of %q is not one label", l, lower)
				}
			}
		}
		if got != lower {
			t.Errorf("parseName(%q, %q) = %+v, which puts together %q", lower, zone, q, got)
		}
	})
}

// FuzzServeDNS sends any name and type to the plugin: it must not panic, must
// answer NOERROR or NXDOMAIN with the SOA on empty answers, and every answer record
// must be owned by the name asked.
func FuzzServeDNS(f *testing.F) {
	for _, tc := range append(append([]dnsCase{}, specCases...), clusterSpecificCases...) {
		f.Add(tc.Qname, tc.Qtype, false)
		f.Add(tc.Qname, tc.Qtype, true)
	}
	ctrl := newFakeController(f, localCluster, testObjects()...)
	plain := newTestLighthouse(ctrl)
	specific := newTestLighthouse(ctrl, func(c *config) { c.clusterSpecificNames = true })
	f.Fuzz(func(t *testing.T, qname string, qtype uint16, clusterSpecific bool) {
		lh := plain
		if clusterSpecific {
			lh = specific
		}
		if qtype == dns.TypeAXFR || qtype == dns.TypeIXFR {
			return
		}
		m := new(dns.Msg)
		m.SetQuestion(qname, qtype)
		rec := dnstest.NewRecorder(&test.ResponseWriter{})
		rcode, err := lh.ServeDNS(context.Background(), rec, m)
		if rec.Msg == nil {
			// Only names outside the zone are passed on (to no next plugin here).
			if inZone(lowerASCII(dns.Fqdn(qname)), testZone) {
				t.Fatalf("%q %d: nothing written (rcode %d, err %v)", qname, qtype, rcode, err)
			}
			return
		}
		resp := rec.Msg
		if resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError {
			t.Errorf("%q %d: rcode %s", qname, qtype, dns.RcodeToString[resp.Rcode])
		}
		if len(resp.Answer) == 0 && (len(resp.Ns) != 1 || resp.Ns[0].Header().Rrtype != dns.TypeSOA) {
			t.Errorf("%q %d: empty answer without the SOA: %v", qname, qtype, resp.Ns)
		}
		for _, rr := range resp.Answer {
			if rr.Header().Name != dns.Fqdn(qname) {
				t.Errorf("%q %d: answer %v owned by another name", qname, qtype, rr)
			}
			if rt := rr.Header().Rrtype; rt != qtype {
				t.Errorf("%q %d: answer of type %s", qname, qtype, dns.TypeToString[rt])
			}
		}
	})
}
