package lighthouse

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// endpoint returns an endpoint at addr; ready nil leaves readiness unknown.
func endpoint(addr string, ready *bool, hostname string, pod string) discoveryv1.Endpoint {
	ep := discoveryv1.Endpoint{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{Ready: ready}}
	if hostname != "" {
		ep.Hostname = new(hostname)
	}
	if pod != "" {
		ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: "demo", Name: pod}
	}
	return ep
}

func sourceSlice(name string, addrType discoveryv1.AddressType, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "demo", Name: name, Labels: map[string]string{LabelKubeServiceName: "web"}},
		AddressType: addrType,
		Endpoints:   eps,
		Ports:       []discoveryv1.EndpointPort{{Name: new("http"), Protocol: new(corev1.ProtocolTCP), Port: new(int32(8080))}},
	}
}

func headlessSvc(publishNotReady bool) *corev1.Service {
	return service(func(s *corev1.Service) {
		s.Spec.ClusterIP, s.Spec.PublishNotReadyAddresses = corev1.ClusterIPNone, publishNotReady
	})
}

// describeSlices renders slices as text, one line per slice and one per endpoint.
func describeSlices(ss []*discoveryv1.EndpointSlice) string {
	var b strings.Builder
	for _, s := range ss {
		var labels []string
		for _, k := range sortedKeys(s.Labels) {
			labels = append(labels, k+"="+s.Labels[k])
		}
		var ports []string
		for _, p := range s.Ports {
			ports = append(ports, fmt.Sprintf("%s/%s/%d", *p.Name, *p.Protocol, *p.Port))
		}
		fmt.Fprintf(&b, "%s/%s %s ports=%s publish-not-ready=%s\n  labels %s\n", s.Namespace, s.Name, s.AddressType,
			strings.Join(ports, ","), s.Annotations["lighthouse.submariner.io/publish-not-ready-addresses"], strings.Join(labels, " "))
		for _, ep := range s.Endpoints {
			ready := "unknown"
			if ep.Conditions.Ready != nil {
				ready = fmt.Sprint(*ep.Conditions.Ready)
			}
			host := "-"
			if ep.Hostname != nil {
				host = *ep.Hostname
			}
			fmt.Fprintf(&b, "  %s ready=%s hostname=%s\n", strings.Join(ep.Addresses, ","), ready, host)
		}
	}
	return b.String()
}

func TestDesiredSlices(t *testing.T) {
	yes, no := new(true), new(false)
	clusterIP := netip.MustParseAddr("100.2.0.10")
	labels := func(headless bool) string {
		return fmt.Sprintf("endpointslice.kubernetes.io/managed-by=lighthouse-agent.submariner.io lighthouse.submariner.io/is-headless=%v "+
			"lighthouse.submariner.io/sourceNamespace=demo multicluster.kubernetes.io/service-name=web multicluster.kubernetes.io/source-cluster=cluster2", headless)
	}
	hash1, hash2 := shortHash("web-abcde"), shortHash("web-fghij")
	if hash2 >= hash1 {
		t.Fatalf("the table assumes the slice of web-fghij (%s) sorts before that of web-abcde (%s)", hash2, hash1)
	}
	tests := []struct {
		name string
		in   SliceInput
		want string
	}{
		{
			name: "ClusterIP with a ready backend: one endpoint, the ClusterIP, ready, the Service's ports",
			in: SliceInput{Service: service(nil), Address: clusterIP, Sources: []*discoveryv1.EndpointSlice{
				sourceSlice("web-abcde", discoveryv1.AddressTypeIPv4, endpoint("10.2.1.5", no, "", "web-0"), endpoint("10.2.1.6", yes, "", "web-1")),
			}},
			want: "demo/web-cluster2 IPv4 ports=http/TCP/80 publish-not-ready=false\n  labels " + labels(false) + "\n" +
				"  100.2.0.10 ready=true hostname=-\n",
		},
		{
			name: "ClusterIP whose readiness is unknown counts as ready",
			in: SliceInput{Service: service(nil), Address: clusterIP, Sources: []*discoveryv1.EndpointSlice{
				sourceSlice("web-abcde", discoveryv1.AddressTypeIPv4, endpoint("10.2.1.5", nil, "", "")),
			}},
			want: "demo/web-cluster2 IPv4 ports=http/TCP/80 publish-not-ready=false\n  labels " + labels(false) + "\n" +
				"  100.2.0.10 ready=true hostname=-\n",
		},
		{
			name: "ClusterIP without a ready backend",
			in: SliceInput{Service: service(nil), Address: clusterIP, Sources: []*discoveryv1.EndpointSlice{
				sourceSlice("web-abcde", discoveryv1.AddressTypeIPv4, endpoint("10.2.1.5", no, "", "")),
				sourceSlice("web-fghij", discoveryv1.AddressTypeIPv4),
			}},
			want: "demo/web-cluster2 IPv4 ports=http/TCP/80 publish-not-ready=false\n  labels " + labels(false) + "\n" +
				"  100.2.0.10 ready=false hostname=-\n",
		},
		{
			name: "ClusterIP without any EndpointSlice, unnamed port with defaulted protocol",
			in:   SliceInput{Service: service(func(s *corev1.Service) { s.Spec.Ports = []corev1.ServicePort{{Port: 53}} }), Address: clusterIP},
			want: "demo/web-cluster2 IPv4 ports=/TCP/53 publish-not-ready=false\n  labels " + labels(false) + "\n" +
				"  100.2.0.10 ready=false hostname=-\n",
		},
		{
			name: "ClusterIP of IPv6",
			in:   SliceInput{Service: service(nil), Address: netip.MustParseAddr("fd00:2::10")},
			want: "demo/web-cluster2 IPv6 ports=http/TCP/80 publish-not-ready=false\n  labels " + labels(false) + "\n" +
				"  fd00:2::10 ready=false hostname=-\n",
		},
		{
			name: "headless: one slice per source, ready endpoints with their hostname or Pod name, the source's ports",
			in: SliceInput{Service: headlessSvc(false), Sources: []*discoveryv1.EndpointSlice{
				sourceSlice("web-fghij", discoveryv1.AddressTypeIPv4, endpoint("10.2.2.7", yes, "", "")),
				sourceSlice("web-abcde", discoveryv1.AddressTypeIPv4,
					endpoint("10.2.1.5", yes, "db-0", "web-0"),
					endpoint("10.2.1.6", nil, "", "web-1"),
					endpoint("10.2.1.7", no, "", "web-2"),
					endpoint("10.2.1.8", yes, "", "not.a.label"),
					discoveryv1.Endpoint{Conditions: discoveryv1.EndpointConditions{Ready: yes}}),
				sourceSlice("web-fqdn", discoveryv1.AddressTypeFQDN, endpoint("db.example.com", yes, "", "")),
			}},
			// Sorted by name: the slice of web-fghij comes first.
			want: "demo/web-cluster2-" + hash2 + " IPv4 ports=http/TCP/8080 publish-not-ready=false\n  labels " + labels(true) + "\n" +
				"  10.2.2.7 ready=true hostname=-\n" +
				"demo/web-cluster2-" + hash1 + " IPv4 ports=http/TCP/8080 publish-not-ready=false\n  labels " + labels(true) + "\n" +
				"  10.2.1.5 ready=true hostname=db-0\n" +
				"  10.2.1.6 ready=unknown hostname=web-1\n" +
				"  10.2.1.8 ready=true hostname=-\n",
		},
		{
			name: "headless publishing not-ready addresses keeps them, with their real readiness",
			in: SliceInput{Service: headlessSvc(true), Sources: []*discoveryv1.EndpointSlice{
				sourceSlice("web-abcde", discoveryv1.AddressTypeIPv4, endpoint("10.2.1.5", yes, "", "web-0"), endpoint("10.2.1.7", no, "", "web-2")),
			}},
			want: "demo/web-cluster2-" + hash1 + " IPv4 ports=http/TCP/8080 publish-not-ready=true\n  labels " + labels(true) + "\n" +
				"  10.2.1.5 ready=true hostname=web-0\n" +
				"  10.2.1.7 ready=false hostname=web-2\n",
		},
		{
			name: "headless with Globalnet: the endpoints' global IPs; one without a global IP yet is left out",
			in: SliceInput{Service: headlessSvc(false), Sources: []*discoveryv1.EndpointSlice{
				sourceSlice("web-abcde", discoveryv1.AddressTypeIPv4, endpoint("10.2.1.5", yes, "", "web-0"), endpoint("10.2.1.6", yes, "", "web-1")),
			}, GlobalIPs: map[netip.Addr]netip.Addr{netip.MustParseAddr("10.2.1.5"): netip.MustParseAddr("242.1.255.254")}},
			want: "demo/web-cluster2-" + hash1 + " IPv4 ports=http/TCP/8080 publish-not-ready=false\n  labels " + labels(true) + "\n" +
				"  242.1.255.254 ready=true hostname=web-0\n",
		},
		{
			name: "headless without endpoints yet publishes an empty slice per source",
			in: SliceInput{Service: headlessSvc(false), Sources: []*discoveryv1.EndpointSlice{
				sourceSlice("web-abcde", discoveryv1.AddressTypeIPv4),
			}},
			want: "demo/web-cluster2-" + hash1 + " IPv4 ports=http/TCP/8080 publish-not-ready=false\n  labels " + labels(true) + "\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.ClusterID = "cluster2"
			if diff := cmp.Diff(tt.want, describeSlices(DesiredSlices(tt.in))); diff != "" {
				t.Errorf("DesiredSlices (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSliceChanged(t *testing.T) {
	in := SliceInput{ClusterID: "cluster2", Service: service(nil), Address: netip.MustParseAddr("100.2.0.10")}
	want := DesiredSlices(in)[0]
	have := want.DeepCopy()
	have.Labels["team"] = "a" // labels of others are left alone
	have.ResourceVersion = "5"
	if sliceChanged(have, want) {
		t.Error("a slice with an extra label of someone else counts as changed")
	}
	have.Endpoints[0].Conditions.Ready = new(true)
	if !sliceChanged(have, want) {
		t.Error("a slice whose readiness differs counts as unchanged")
	}
	have = want.DeepCopy()
	have.Annotations = nil
	if !sliceChanged(have, want) {
		t.Error("a slice without the publish-not-ready annotation counts as unchanged")
	}
	in.Globalnet = true
	if !sliceChanged(want, DesiredSlices(in)[0]) {
		t.Error("a slice published before Globalnet counts as unchanged")
	}
}

// TestDesiredSlicesSayGlobalnet: the slices of a cluster with Globalnet, of
// either kind of Service, say their addresses are global; without, that they are not.
func TestDesiredSlicesSayGlobalnet(t *testing.T) {
	headless := SliceInput{ClusterID: "cluster2", Service: headlessSvc(false), Sources: []*discoveryv1.EndpointSlice{
		sourceSlice("web-abcde", discoveryv1.AddressTypeIPv4),
	}}
	withIP := SliceInput{ClusterID: "cluster2", Service: service(nil), Address: netip.MustParseAddr("100.2.0.10")}
	for _, in := range []SliceInput{headless, withIP} {
		for _, on := range []bool{false, true} {
			in.Globalnet = on
			s := DesiredSlices(in)
			if len(s) != 1 {
				t.Fatalf("%d slices for %s; want 1", len(s), in.Service.Name)
			}
			if got, want := s[0].Annotations["lighthouse.submariner.io/globalnet-enabled"], fmt.Sprint(on); got != want {
				t.Errorf("slice %s with Globalnet %v: globalnet-enabled=%q; want %q", s[0].Name, on, got, want)
			}
		}
	}
}
