package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/controlplane"
)

// TestLighthouseDeployments runs the two deployments README.md documents against a
// real API server holding a Service and its export (ServiceImport and
// EndpointSlice as the lighthouse agent writes them):
//
//   - a lighthouse CoreDNS serving clusterset.local, and a cluster CoreDNS that
//     answers cluster.local itself and forwards clusterset.local to it;
//   - one cluster CoreDNS with lighthouse right after kubernetes in its chain.
//
// Each is asked for both zones over UDP and TCP.
func TestLighthouseDeployments(t *testing.T) {
	plane := controlplane.Start(t, "cluster1")[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const clusterID = "cluster1"
	t.Setenv("SUBMARINER_CLUSTERID", clusterID)
	clusterIP := exportService(ctx, t, plane, clusterID, "demo", "web")

	tests := []struct {
		name string
		// corefiles are started in order; the last one is the cluster DNS that is
		// asked. {kubeconfig}, {port} (a port free for UDP and TCP),
		// {lighthouse} (127.0.0.1:{port}) and {ready} (a free address per
		// Corefile) are filled in.
		corefiles []string
	}{
		{
			name: "cluster DNS forwards to a lighthouse DNS",
			corefiles: []string{`
clusterset.local:{port} {
	bind 127.0.0.1
	errors
	ready {ready}
	lighthouse {
		kubeconfig {kubeconfig}
	}
}
`, `
clusterset.local:0 {
	bind 127.0.0.1
	forward . {lighthouse}
}
.:0 {
	bind 127.0.0.1
	errors
	ready {ready}
	kubernetes cluster.local in-addr.arpa ip6.arpa {
		kubeconfig {kubeconfig}
		fallthrough in-addr.arpa ip6.arpa
	}
	cache 30
	loop
	loadbalance
}
`},
		},
		{
			name: "lighthouse inside the cluster DNS",
			corefiles: []string{`
.:0 {
	bind 127.0.0.1
	errors
	ready {ready}
	kubernetes cluster.local in-addr.arpa ip6.arpa {
		kubeconfig {kubeconfig}
		fallthrough in-addr.arpa ip6.arpa
	}
	lighthouse clusterset.local {
		kubeconfig {kubeconfig}
	}
	cache 30
	loop
	loadbalance
}
`},
		},
	}
	queries := []struct {
		qname      string
		wantRcode  int
		wantAnswer []string
	}{
		{qname: "web.demo.svc.clusterset.local.", wantAnswer: []string{"web.demo.svc.clusterset.local. 5 IN A " + clusterIP}},
		{qname: "web.demo.svc.cluster.local.", wantAnswer: []string{"web.demo.svc.cluster.local. 5 IN A " + clusterIP}},
		{qname: "nothere.demo.svc.clusterset.local.", wantRcode: dns.RcodeNameError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var srv *server
			lighthouse := freePort(t)
			for _, cf := range tc.corefiles {
				ready := freePort(t)
				srv = start(t, strings.NewReplacer("{kubeconfig}", plane.Kubeconfig,
					"{port}", port(lighthouse), "{lighthouse}", lighthouse, "{ready}", ready).Replace(cf))
				// The plugins answer SERVFAIL until their informers have synced,
				// and the ready plugin says so; no query is sent before.
				waitFor(ctx, t, "the ready plugin to report every plugin ready", func() (bool, string) {
					code, body := get(t, "http://"+ready+"/ready")
					return code == http.StatusOK, fmt.Sprintf("%d %s", code, body)
				})
			}
			if len(tc.corefiles) > 1 {
				// The lighthouse DNS serves its zone and nothing else.
				resp, _ := exchange(t, "udp", lighthouse, new(dns.Msg).SetQuestion("example.org.", dns.TypeA))
				if resp.Rcode != dns.RcodeRefused {
					t.Errorf("lighthouse DNS asked for example.org.: rcode %s, want REFUSED", dns.RcodeToString[resp.Rcode])
				}
			}
			for _, q := range queries {
				for _, transport := range []string{"udp", "tcp"} {
					resp, _ := exchange(t, transport, srv.addr(transport), new(dns.Msg).SetQuestion(q.qname, dns.TypeA))
					if resp.Rcode != q.wantRcode {
						t.Errorf("%s over %s: rcode %s, want %s", q.qname, transport, dns.RcodeToString[resp.Rcode], dns.RcodeToString[q.wantRcode])
					}
					// The cache plugin counts TTLs down: any TTL up to the plugin's is right.
					for _, rr := range resp.Answer {
						if rr.Header().Ttl <= 5 {
							rr.Header().Ttl = 5
						}
					}
					if got, want := rrStrings(resp.Answer), canonical(t, q.wantAnswer); strings.Join(got, "\n") != strings.Join(want, "\n") {
						t.Errorf("%s over %s: answer %q, want %q", q.qname, transport, got, want)
					}
				}
			}
		})
	}
}

// exportService creates Service ns/name and what the lighthouse agent of cluster
// makes of its export: a ServiceImport without a clusterset IP and the cluster's
// EndpointSlice carrying the Service's ClusterIP. It returns the ClusterIP.
func exportService(ctx context.Context, t *testing.T, plane *controlplane.Plane, cluster, ns, name string) string {
	t.Helper()
	if _, err := plane.Kube.CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc, err := plane.Kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	si := &mcsv1beta1.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: mcsv1beta1.ServiceImportSpec{
			Type:  mcsv1beta1.ClusterSetIP,
			Ports: []mcsv1beta1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}},
		},
	}
	if err := plane.Client.Create(ctx, si); err != nil {
		t.Fatal(err)
	}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-" + cluster, Namespace: ns, Labels: map[string]string{
			discoveryv1.LabelManagedBy:    submv1.LighthouseManagedBy,
			mcsv1beta1.LabelServiceName:   name,
			mcsv1beta1.LabelSourceCluster: cluster,
			submv1.LabelSourceNamespace:   ns,
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{svc.Spec.ClusterIP},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](80)}},
	}
	if _, err := plane.Kube.DiscoveryV1().EndpointSlices(ns).Create(ctx, es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return svc.Spec.ClusterIP
}
