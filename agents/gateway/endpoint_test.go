package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/submariner-go/submariner/agents/component"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestLocalEndpoint(t *testing.T) {
	nets := component.Networks{Cluster: prefixes("10.1.0.0/16"), Service: prefixes("100.1.0.0/16")}
	base := LocalInfo{
		ClusterID: "cluster1", NodeName: "c1-gw1",
		PrivateIP:     netip.MustParseAddr("198.51.100.1"),
		HealthCheckIP: netip.MustParseAddr("10.1.1.1"),
		Networks:      nets, Backend: submv1.BackendWireGuard,
		Port: 4500, NATTDiscoveryPort: 4490,
		DriverConfig: map[string]string{"publicKey": "k3y=", "interface-name": "submariner"},
	}
	for _, tc := range []struct {
		name string
		edit func(*LocalInfo)
		want submv1.EndpointSpec
		err  string
	}{
		{
			name: "service and pod CIDRs, the driver's config and the ports",
			want: submv1.EndpointSpec{
				ClusterID: "cluster1", CableName: "submariner-cable-cluster1-198-51-100-1", Hostname: "c1-gw1",
				HealthCheckIP: "10.1.1.1", PrivateIP: "198.51.100.1",
				Subnets: []string{"100.1.0.0/16", "10.1.0.0/16"}, Backend: submv1.BackendWireGuard,
				BackendConfig: map[string]string{
					"publicKey": "k3y=", "interface-name": "submariner",
					"udp-port": "4500", "natt-discovery-port": "4490", "preferred-server": "false",
				},
			},
		},
		{
			name: "globalnet publishes the global CIDR only; NAT, public IP and preferred server",
			edit: func(i *LocalInfo) {
				i.Networks.Global = prefixes("242.1.0.0/16")
				i.NATEnabled, i.PreferredServer = true, true
				i.PublicIP = netip.MustParseAddr("203.0.113.1")
				i.DriverConfig = nil
				i.Backend = submv1.BackendLibreswan
			},
			want: submv1.EndpointSpec{
				ClusterID: "cluster1", CableName: "submariner-cable-cluster1-198-51-100-1", Hostname: "c1-gw1",
				HealthCheckIP: "10.1.1.1", PrivateIP: "198.51.100.1", PublicIP: "203.0.113.1", NATEnabled: true,
				Subnets: []string{"242.1.0.0/16"}, Backend: submv1.BackendLibreswan,
				BackendConfig: map[string]string{"udp-port": "4500", "natt-discovery-port": "4490", "preferred-server": "true"},
			},
		},
		{
			name: "bad input is named",
			edit: func(i *LocalInfo) {
				i.ClusterID, i.NodeName, i.PrivateIP = "Cluster_1", "", netip.Addr{}
				i.Networks = component.Networks{}
			},
			err: `building the local Endpoint: cluster ID "Cluster_1" is not an RFC 1123 label: use lower-case letters, digits and '-', starting and ending with a letter or digit, for example cluster-1
the node name is empty: pass NODE_NAME from the downward API
private IP invalid IP is not an IPv4 address
no subnets to publish: give the cluster's CIDRs with --cluster-cidr and --service-cidr (SUBMARINER_CLUSTERCIDR, SUBMARINER_SERVICECIDR)`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info := base
			info.Networks = component.Networks{Cluster: nets.Cluster, Service: nets.Service}
			if tc.edit != nil {
				tc.edit(&info)
			}
			ep, err := LocalEndpoint(info)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error:\n%v\nwant:\n%s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, ep.Spec()); diff != "" {
				t.Errorf("spec (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEndpointName(t *testing.T) {
	for _, tc := range []struct{ cluster, cable, want string }{
		{"cluster1", "submariner-cable-cluster1-198-51-100-1", "cluster1-submariner-cable-cluster1-198-51-100-1"},
		{"c1", "Odd_Cable name", "c1-odd-cable-name"},
		{"c1", strings.Repeat("x", 300), "c1-" + strings.Repeat("x", 250)},
	} {
		if got := EndpointName(tc.cluster, tc.cable); got != tc.want {
			t.Errorf("EndpointName(%q, %q) = %q, want %q", tc.cluster, tc.cable, got, tc.want)
		}
	}
}

func TestCNIAddress(t *testing.T) {
	ls := []Link{
		{Name: "lo", Addrs: prefixes("127.0.0.1/8")},
		{Name: "eth0", Addrs: prefixes("198.51.100.1/24")},
		{Name: "vx-submariner", Addrs: prefixes("240.51.100.1/8")},
		{Name: "cni0", Addrs: prefixes("169.254.1.1/16", "10.1.1.1/24")},
	}
	name, ip, ok := CNIAddress(ls, prefixes("10.1.0.0/16"))
	if diff := cmp.Diff([]any{"cni0", "10.1.1.1", true}, []any{name, ip.String(), ok}); diff != "" {
		t.Errorf("CNI interface (-want +got):\n%s", diff)
	}
	if _, _, ok := CNIAddress(ls, prefixes("10.9.0.0/16")); ok {
		t.Error("found a CNI interface outside the cluster CIDRs")
	}
	if !hasAddress(ls, netip.MustParseAddr("198.51.100.1")) || hasAddress(ls, netip.MustParseAddr("198.51.100.2")) {
		t.Error("hasAddress is wrong")
	}
}

func TestNodeIP(t *testing.T) {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "c1-gw1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
		{Type: corev1.NodeHostName, Address: "c1-gw1"},
		{Type: corev1.NodeInternalIP, Address: "2001:db8::1"},
		{Type: corev1.NodeInternalIP, Address: "198.51.100.1"},
	}}}
	ip, err := NodeIP(n)
	if err != nil || ip.String() != "198.51.100.1" {
		t.Errorf("NodeIP = %v, %v; want 198.51.100.1", ip, err)
	}
	n.Status.Addresses = n.Status.Addresses[:2]
	if _, err := NodeIP(n); err == nil || !strings.Contains(err.Error(), "node c1-gw1 has no IPv4 InternalIP") {
		t.Errorf("NodeIP without IPv4 = %v", err)
	}
}

func TestPublicIP(t *testing.T) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ip":
			fmt.Fprintln(w, "your address: 203.0.113.77 (ok)")
		case "/none":
			fmt.Fprintln(w, "no address here")
		default:
			http.NotFound(w, r)
		}
	}))
	defer api.Close()
	r := PublicIPResolver{HTTP: api.Client()}
	ctx := context.Background()
	for _, tc := range []struct {
		name, methods, want, err string
	}{
		{name: "none configured: none published", methods: ""},
		{name: "literal", methods: "ipv4:203.0.113.10", want: "203.0.113.10"},
		{name: "dns: the lowest address of a name (from /etc/hosts)", methods: "dns:localhost", want: "127.0.0.1"},
		{name: "api: the first IPv4 address in the body", methods: "api:" + api.URL + "/ip", want: "203.0.113.77"},
		{name: "the first method that works wins", methods: "api:" + api.URL + "/missing,ipv4:203.0.113.10", want: "203.0.113.10"},
		{
			name: "every method failing is an error naming each", methods: "api:" + api.URL + "/none,api:" + api.URL + "/missing",
			err: "resolving the public IP: api:" + api.URL + "/none: " + api.URL + "/none answered no IPv4 address\napi:" + api.URL + "/missing: " + api.URL + "/missing answered 404 Not Found",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms, err := ParsePublicIPMethods(tc.methods)
			if err != nil {
				t.Fatal(err)
			}
			ip, err := r.Resolve(ctx, ms)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error:\n%v\nwant:\n%s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if ip.IsValid() {
				got = ip.String()
			}
			if got != tc.want {
				t.Errorf("public IP %q, want %q", got, tc.want)
			}
		})
	}

	for _, tc := range []struct{ in, err string }{
		{"ipv4:2001:db8::1", `public IP method "ipv4:2001:db8::1": "2001:db8::1" is not an IPv4 address`},
		{"lb:submariner-gateway", `public IP method "lb:submariner-gateway": unknown method "lb": use ipv4:ADDRESS, dns:NAME or api:URL`},
		{"203.0.113.1", `public IP method "203.0.113.1" is not method:value: use ipv4:ADDRESS, dns:NAME or api:URL`},
	} {
		if _, err := ParsePublicIPMethods(tc.in); err == nil || err.Error() != tc.err {
			t.Errorf("ParsePublicIPMethods(%q) = %v, want %s", tc.in, err, tc.err)
		}
	}
	if ms, _ := ParsePublicIPMethods("ipv4:203.0.113.1"); Dynamic(ms) {
		t.Error("a literal address is not dynamic")
	}
	if ms, _ := ParsePublicIPMethods("ipv4:203.0.113.1,dns:gw.example.org"); !Dynamic(ms) {
		t.Error("a DNS name is dynamic")
	}
}
