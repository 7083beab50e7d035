package lighthouse

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

var cmpObjects = []cmp.Option{
	cmp.AllowUnexported(meta{}, serviceImport{}, endpointSlice{}, endpoint{}, port{}, gateway{}),
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
}

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

func TestToServiceImport(t *testing.T) {
	si := clusterSetIPImport("demo", "nginx", []string{"243.0.0.1", "not-an-ip", "::ffff:243.0.0.2", "fd00::1"},
		importPort("HTTP", "", 80), importPort("dns", corev1.ProtocolUDP, 53), importPort("bad", corev1.ProtocolTCP, 0))
	si.ResourceVersion = "42"
	si.Labels = map[string]string{"a": "b"}
	got, err := toServiceImport(si)
	if err != nil {
		t.Fatal(err)
	}
	want := &serviceImport{
		meta:  meta{name: "nginx", namespace: "demo", resourceVersion: "42"},
		ips:   addrs("243.0.0.1", "243.0.0.2", "fd00::1"),
		ports: []port{{"dns", "udp", 53}, {"http", "tcp", 80}},
	}
	if diff := cmp.Diff(want, got, cmpObjects...); diff != "" {
		t.Errorf("toServiceImport (-want +got):\n%s", diff)
	}
	// The transform is idempotent, as informers need for tombstones and resyncs.
	if again, _ := toServiceImport(got); again != got {
		t.Error("a stripped object is not passed through")
	}
	tomb := cache.DeletedFinalStateUnknown{Key: "demo/nginx", Obj: got}
	if again, _ := toServiceImport(tomb); again != tomb {
		t.Error("a tombstone is not passed through")
	}
	if h, _ := toServiceImport(headlessImport("demo", "db")); !h.(*serviceImport).headless {
		t.Error("headless import not marked headless")
	}
}

func TestToEndpointSlice(t *testing.T) {
	notReady := false
	withNilReady := epSlice("demo", "db", "Cluster2", "db-abc", true, []discoveryv1.EndpointPort{
		slicePort("mysql", corev1.ProtocolTCP, 3306),
		{Name: new("all-ports")}, // no port number: not usable in SRV
		slicePort("UI", "", 8080),
	},
		ep{hostname: "DB-0", addrs: []string{"10.2.1.1"}},
		ep{addrs: []string{"10.2.1.2", "10.2.1.22"}},
		ep{hostname: "db-2", addrs: []string{"10.2.1.3"}, notReady: true},
		ep{hostname: "db-3", addrs: []string{"garbage"}},
	)
	withNilReady.Endpoints = append(withNilReady.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.2.1.4"}})
	tests := []struct {
		name string
		in   *discoveryv1.EndpointSlice
		want *endpointSlice
	}{
		{
			name: "ready endpoints, nil ready counts as ready",
			in:   withNilReady,
			want: &endpointSlice{
				meta: meta{name: "db-abc", namespace: "demo"}, service: "db", cluster: "cluster2",
				ports: []port{{"mysql", "tcp", 3306}, {"ui", "tcp", 8080}},
				endpoints: []endpoint{
					{hostname: "db-0", addrs: addrs("10.2.1.1")},
					{hostname: "10-2-1-2", addrs: addrs("10.2.1.2", "10.2.1.22")},
					{hostname: "10-2-1-4", addrs: addrs("10.2.1.4")},
				},
			},
		},
		{
			name: "publish-not-ready-addresses keeps not-ready endpoints",
			in:   publishNotReady(epSlice("demo", "db", "c2", "x", true, nil, ep{hostname: "db-2", addrs: []string{"fd00::1:3"}, notReady: true})),
			want: &endpointSlice{meta: meta{name: "x", namespace: "demo"}, service: "db", cluster: "c2",
				endpoints: []endpoint{{hostname: "db-2", addrs: addrs("fd00::1:3")}}},
		},
		{
			name: "dashed IPv6 host name",
			in:   epSlice("demo", "db", "c2", "x", true, nil, ep{addrs: []string{"fd00::1"}}),
			want: &endpointSlice{meta: meta{name: "x", namespace: "demo"}, service: "db", cluster: "c2",
				endpoints: []endpoint{{hostname: "fd00--1", addrs: addrs("fd00::1")}}},
		},
		{
			name: "FQDN slices have no addresses for DNS",
			in: func() *discoveryv1.EndpointSlice {
				es := epSlice("demo", "db", "c2", "x", false, nil, ep{addrs: []string{"10.0.0.1"}})
				es.AddressType = discoveryv1.AddressTypeFQDN
				return es
			}(),
			want: &endpointSlice{meta: meta{name: "x", namespace: "demo"}, service: "db", cluster: "c2"},
		},
		{
			name: "not ready ClusterSetIP endpoint",
			in: func() *discoveryv1.EndpointSlice {
				es := epSlice("demo", "nginx", "c2", "x", false, nil, ep{addrs: []string{"10.0.0.1"}})
				es.Endpoints[0].Conditions.Ready = &notReady
				return es
			}(),
			want: &endpointSlice{meta: meta{name: "x", namespace: "demo"}, service: "nginx", cluster: "c2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := toEndpointSlice(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmpObjects...); diff != "" {
				t.Errorf("toEndpointSlice (-want +got):\n%s", diff)
			}
		})
	}
}

func TestToGateway(t *testing.T) {
	gw := gatewayObj("gw1", true, map[string]submv1.ConnectionStatus{
		"c3": submv1.Connected, "c2": submv1.Connected, "c4": submv1.ConnError, "c5": submv1.Connecting, "C6": submv1.Connected,
	})
	got, err := toGateway(gw)
	if err != nil {
		t.Fatal(err)
	}
	want := &gateway{meta: meta{name: "gw1", namespace: submv1.ComponentNamespace}, active: true, connected: []string{"c2", "c3", "c6"}}
	if diff := cmp.Diff(want, got, cmpObjects...); diff != "" {
		t.Errorf("toGateway (-want +got):\n%s", diff)
	}
}

func TestObjectMeta(t *testing.T) {
	si := &serviceImport{meta: meta{name: "n", namespace: "ns", resourceVersion: "7"}}
	key, err := cache.MetaNamespaceKeyFunc(si)
	if err != nil || key != "ns/n" {
		t.Errorf("store key = %q, %v; want ns/n", key, err)
	}
	if rv := si.GetObjectMeta().GetResourceVersion(); rv != "7" {
		t.Errorf("resource version %q, want 7", rv)
	}
	if c, ok := si.DeepCopyObject().(*serviceImport); !ok || c == si || c.name != "n" {
		t.Errorf("DeepCopyObject = %v", c)
	}
}

func TestDashedHostname(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1":          "10-0-0-1",
		"fd00::1":           "fd00--1",
		"::1":               "0--1",
		"fd00::":            "fd00--0",
		"::ffff:10.0.0.1":   "10-0-0-1",
		"2001:db8:0:0:1::2": "2001-db8--1-0-0-2", // canonical form 2001:db8::1:0:0:2
		"not-an-ip":         "",
	} {
		if got, ok := dashedHostname(in); got != want || ok != (want != "") {
			t.Errorf("dashedHostname(%q) = %q, %t; want %q", in, got, ok, want)
		}
	}
}

// TestBuildService renders the view of the handler tests' data: the text is what
// the handler answers from.
func TestBuildService(t *testing.T) {
	ctrl := newFakeController(t, localCluster, testObjects()...)
	want := strings.TrimLeft(`
demo/db Headless ports=mysql/tcp/3306
  cluster cluster1 local ports=mysql/tcp/3306
    host 10-1-1-2 ips=10.1.1.2
    host db-0 ips=10.1.1.1
  cluster cluster2 connected ports=mysql/tcp/3307
    host db-0 ips=10.2.1.1,fd00:2::1:1
  cluster cluster3 disconnected ports=mysql/tcp/3306
    host db-0 ips=10.3.1.1
demo/down ClusterSetIP ports=http/tcp/80
  cluster cluster3 disconnected ips=10.3.0.70 ports=http/tcp/80
demo/dual ClusterSetIP ports=http/tcp/80
  cluster cluster2 connected ips=10.2.0.40,fd00:2::40 ports=http/tcp/80
demo/empty Headless ports=mysql/tcp/3306
  cluster cluster1 local ports=mysql/tcp/3306
demo/nginx ClusterSetIP ports=http/tcp/80,metrics/tcp/9090
  cluster cluster1 local ips=10.1.0.10 ports=http/tcp/80,metrics/tcp/9090
  cluster cluster2 connected ips=10.2.0.10 ports=http/tcp/80,metrics/tcp/9090
demo/only3 Headless
  cluster cluster3 disconnected
    host x ips=10.3.3.1
demo/pnr Headless
  cluster cluster2 connected
    host pnr-0 ips=10.2.2.1
demo/remote ClusterSetIP ports=http/tcp/80
  cluster cluster1 local ports=http/tcp/80
  cluster cluster2 connected ips=10.2.0.20 ports=http/tcp/80
  cluster cluster3 disconnected ips=10.3.0.20 ports=http/tcp/80
  cluster cluster4 connected ips=10.4.0.20 ports=http/tcp/80
demo/single ClusterSetIP ports=/tcp/8080
  cluster cluster2 connected ips=10.2.0.50 ports=/tcp/8080
demo/vip ClusterSetIP ips=243.0.0.1,fd00:243::1 ports=dns/udp/53,https/tcp/443
  cluster cluster2 connected ips=10.2.0.30 ports=dns/udp/53,https/tcp/443
demo/vip4 ClusterSetIP ips=243.0.0.2 ports=http/tcp/80
  cluster cluster2 connected ips=fd00:2::60 ports=http/tcp/80
`, "\n")
	if diff := cmp.Diff(want, ctrl.String()); diff != "" {
		t.Errorf("view (-want +got):\n%s", diff)
	}
	if !ctrl.HasNamespace("demo") || ctrl.HasNamespace("other") || !ctrl.HasServices() {
		t.Error("namespace index does not match the services")
	}
}

func TestBuildServiceSkipsNonLabelNames(t *testing.T) {
	x := newIndex("c1")
	si, _ := toServiceImport(&mcsv1beta1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "a.b"}})
	if s := buildService(si.(*serviceImport), nil, x.cluster); s != nil {
		t.Errorf("service a.b built: %v", s)
	}
}

// TestIndexSet checks the namespace counts and that the round-robin position
// survives a rebuild of the service.
func TestIndexSet(t *testing.T) {
	x := newIndex("c1")
	mk := func(ns, name string) *service {
		si, _ := toServiceImport(clusterSetIPImport(ns, name, nil))
		return buildService(si.(*serviceImport), nil, x.cluster)
	}
	a := mk("ns1", "a")
	x.set("a.ns1", a)
	a.next.Store(7)
	x.set("b.ns1", mk("ns1", "b"))
	x.set("a.ns1", mk("ns1", "a"))
	if got := x.Service("a.ns1").next.Load(); got != 7 {
		t.Errorf("round-robin position after a rebuild = %d, want 7", got)
	}
	x.set("a.ns1", nil)
	if !x.HasNamespace("ns1") {
		t.Error("ns1 gone while b is imported there")
	}
	x.set("b.ns1", nil)
	x.set("c.ns1", nil) // never there
	if x.HasNamespace("ns1") || x.HasServices() {
		t.Error("ns1 still there after its services were removed")
	}
}
