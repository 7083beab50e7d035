package crds_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/submariner-go/submariner/crds"
	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/controlplane"
)

// Test address plan: cluster1 pods 10.1.0.0/16, services 100.1.0.0/16;
// gateway underlay 192.0.2.0/24 (RFC 5737); globalnet 242.0.0.0/8.

// TestAPIServer installs the CRDs into a real API server (Start installs them once)
// and checks what the API server accepts and refuses.
func TestAPIServer(t *testing.T) {
	plane := controlplane.Start(t, "crds")[0]
	ctx := context.Background()
	c := plane.Client

	t.Run("install again twice", func(t *testing.T) {
		for i := range 2 {
			if err := crds.Install(ctx, plane.Config); err != nil {
				t.Fatalf("install %d: %v", i+2, err)
			}
		}
		all, err := crds.All()
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range all {
			got := &apiextensionsv1.CustomResourceDefinition{}
			if err := c.Get(ctx, client.ObjectKey{Name: want.Name}, got); err != nil {
				t.Errorf("reading %s: %v", want.Name, err)
			}
		}
	})

	t.Run("valid objects round-trip", func(t *testing.T) {
		cluster := &submv1.Cluster{
			ObjectMeta: metav1.ObjectMeta{Name: "cluster1", Namespace: "default"},
			Spec: submv1.ClusterSpec{
				ClusterID:   "cluster1",
				ServiceCIDR: []string{"100.1.0.0/16"},
				ClusterCIDR: []string{"10.1.0.0/16", "fd00:1::/64"},
				GlobalCIDR:  []string{"242.0.0.0/16"},
			},
		}
		endpoint := &submv1.Endpoint{
			ObjectMeta: metav1.ObjectMeta{Name: "cluster1-submariner-cable-cluster1-192-0-2-21", Namespace: "default"},
			Spec:       validEndpoint(),
		}
		for _, obj := range []client.Object{cluster, endpoint} {
			if err := c.Create(ctx, obj); err != nil {
				t.Fatalf("creating %T: %v", obj, err)
			}
		}
		gotCluster := &submv1.Cluster{}
		gotEndpoint := &submv1.Endpoint{}
		mustGet(t, c, cluster, gotCluster)
		mustGet(t, c, endpoint, gotEndpoint)
		if diff := cmp.Diff(cluster.Spec, gotCluster.Spec); diff != "" {
			t.Errorf("Cluster spec after a round trip (-sent +read):\n%s", diff)
		}
		if diff := cmp.Diff(endpoint.Spec, gotEndpoint.Spec); diff != "" {
			t.Errorf("Endpoint spec after a round trip (-sent +read):\n%s", diff)
		}

		gw := &submv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "c1-gw1", Namespace: "default"}}
		if err := c.Create(ctx, gw); err != nil {
			t.Fatalf("creating Gateway: %v", err)
		}
		local := validEndpoint()
		remote := validEndpoint()
		remote.ClusterID, remote.PrivateIP, remote.CableName = "cluster2", "192.0.2.31", "submariner-cable-cluster2-192-0-2-31"
		gw.Status = submv1.GatewayStatus{
			Version:       "v0.1.0",
			HAStatus:      submv1.HAStatusActive,
			LocalEndpoint: &local,
			Connections: []submv1.Connection{{
				Status:     submv1.Connected,
				Endpoint:   remote,
				UsingIP:    "192.0.2.31",
				LatencyRTT: &submv1.LatencyRTT{Last: "489.822µs", Min: "400µs", Average: "450µs", Max: "1ms", StdDev: "12µs"},
			}},
		}
		want := gw.Status
		if err := c.Status().Update(ctx, gw); err != nil {
			t.Fatalf("updating Gateway status: %v", err)
		}
		gotGW := &submv1.Gateway{}
		mustGet(t, c, gw, gotGW)
		if diff := cmp.Diff(want, gotGW.Status); diff != "" {
			t.Errorf("Gateway status after a round trip (-sent +read):\n%s", diff)
		}
	})

	t.Run("invalid objects are refused", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			obj    client.Object
			fields []string // what the API server's message must name
		}{{
			name:   "cluster CIDR with a 33-bit prefix",
			obj:    clusterWith(func(s *submv1.ClusterSpec) { s.ClusterCIDR = []string{"10.1.0.0/33"} }),
			fields: []string{"spec.cluster_cidr[0]", "must be a CIDR"},
		}, {
			name:   "service CIDR that is an address",
			obj:    clusterWith(func(s *submv1.ClusterSpec) { s.ServiceCIDR = []string{"100.1.0.1"} }),
			fields: []string{"spec.service_cidr[0]", "must be a CIDR"},
		}, {
			name:   "global CIDR that is not an address",
			obj:    clusterWith(func(s *submv1.ClusterSpec) { s.GlobalCIDR = []string{"242.0.0.0/16", "global"} }),
			fields: []string{"spec.global_cidr[1]", "must be a CIDR"},
		}, {
			name:   "cluster ID with upper case",
			obj:    clusterWith(func(s *submv1.ClusterSpec) { s.ClusterID = "Cluster1" }),
			fields: []string{"spec.cluster_id", "RFC 1123 label"},
		}, {
			name:   "cluster ID of 64 characters",
			obj:    clusterWith(func(s *submv1.ClusterSpec) { s.ClusterID = strings.Repeat("c", 64) }),
			fields: []string{"spec.cluster_id", "63"},
		}, {
			name:   "empty cluster ID",
			obj:    clusterWith(func(s *submv1.ClusterSpec) { s.ClusterID = "" }),
			fields: []string{"spec.cluster_id"},
		}, {
			name:   "endpoint cluster ID ending in a dash",
			obj:    endpointWith(func(s *submv1.EndpointSpec) { s.ClusterID = "cluster-" }),
			fields: []string{"spec.cluster_id", "RFC 1123 label"},
		}, {
			name:   "private IP out of range",
			obj:    endpointWith(func(s *submv1.EndpointSpec) { s.PrivateIP = "192.0.2.256" }),
			fields: []string{"spec.private_ip", "must be an IP address"},
		}, {
			name:   "public IP with a prefix",
			obj:    endpointWith(func(s *submv1.EndpointSpec) { s.PublicIP = "203.0.113.7/32" }),
			fields: []string{"spec.public_ip", "must be an IP address"},
		}, {
			name:   "health check IP that is a name",
			obj:    endpointWith(func(s *submv1.EndpointSpec) { s.HealthCheckIP = "gateway" }),
			fields: []string{"spec.healthCheckIP", "must be an IP address"},
		}, {
			name:   "subnet that is not a CIDR",
			obj:    endpointWith(func(s *submv1.EndpointSpec) { s.Subnets = []string{"10.1.0.0/16", "10.1.0.0/16/8"} }),
			fields: []string{"spec.subnets[1]", "must be a CIDR"},
		}, {
			name:   "unknown backend",
			obj:    endpointWith(func(s *submv1.EndpointSpec) { s.Backend = "strongswan" }),
			fields: []string{"spec.backend", `"strongswan"`, "libreswan", "wireguard", "vxlan"},
		}} {
			t.Run(tc.name, func(t *testing.T) {
				err := c.Create(ctx, tc.obj)
				if !apierrors.IsInvalid(err) {
					t.Fatalf("creating %T: got %v, want the API server to refuse it as invalid", tc.obj, err)
				}
				for _, f := range tc.fields {
					if !strings.Contains(err.Error(), f) {
						t.Errorf("refusal %q does not mention %q", err, f)
					}
				}
			})
		}
	})
}

func validEndpoint() submv1.EndpointSpec {
	return submv1.EndpointSpec{
		ClusterID:     "cluster1",
		CableName:     "submariner-cable-cluster1-192-0-2-21",
		HealthCheckIP: "10.1.21.1",
		Hostname:      "c1-gw1",
		Subnets:       []string{"100.1.0.0/16", "10.1.0.0/16"},
		PrivateIP:     "192.0.2.21",
		PublicIP:      "203.0.113.21",
		NATEnabled:    true,
		Backend:       submv1.BackendWireGuard,
		BackendConfig: map[string]string{"udp-port": "4500", "publicKey": "bm90IGEga2V5IGJ1dCBsb25nIGVub3VnaCB0byBsb29r"},
	}
}

func clusterWith(mutate func(*submv1.ClusterSpec)) *submv1.Cluster {
	spec := submv1.ClusterSpec{ClusterID: "cluster9", ServiceCIDR: []string{"100.9.0.0/16"}, ClusterCIDR: []string{"10.9.0.0/16"}}
	mutate(&spec)
	return &submv1.Cluster{ObjectMeta: metav1.ObjectMeta{GenerateName: "bad-", Namespace: "default"}, Spec: spec}
}

func endpointWith(mutate func(*submv1.EndpointSpec)) *submv1.Endpoint {
	spec := validEndpoint()
	mutate(&spec)
	return &submv1.Endpoint{ObjectMeta: metav1.ObjectMeta{GenerateName: "bad-", Namespace: "default"}, Spec: spec}
}

func mustGet(t *testing.T, c client.Client, key, into client.Object) {
	t.Helper()
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(key), into); err != nil {
		t.Fatalf("reading %T %s: %v", key, key.GetName(), err)
	}
}
