package cable_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/submariner-go/submariner/agents/gateway/cable"
	"github.com/submariner-go/submariner/agents/gateway/cable/fake"
	"github.com/submariner-go/submariner/agents/netkit/route"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Test address plan (keep in sync across the gateway's packages):
//   cluster1 pods 10.1.0.0/16, services 100.1.0.0/16; cluster2 pods 10.2.0.0/16,
//   services 100.2.0.0/16; gateway underlay 198.51.100.0/24, public 203.0.113.0/24

func spec() submv1.EndpointSpec {
	return submv1.EndpointSpec{
		ClusterID: "cluster2", CableName: "submariner-cable-cluster2-198-51-100-2", Hostname: "c2-gw1",
		HealthCheckIP: "10.2.2.1", PrivateIP: "198.51.100.2", PublicIP: "203.0.113.2",
		Subnets: []string{"100.2.0.0/16", "10.2.0.0/16"}, Backend: submv1.BackendWireGuard,
		BackendConfig: map[string]string{"udp-port": "4501", "preferred-server": "true", "publicKey": "k"},
	}
}

func TestParseEndpoint(t *testing.T) {
	t.Run("valid", func(t *testing.T) {
		e, err := cable.ParseEndpoint(spec())
		if err != nil {
			t.Fatal(err)
		}
		want := cable.Endpoint{
			ClusterID: "cluster2", CableName: "submariner-cable-cluster2-198-51-100-2", Hostname: "c2-gw1",
			PrivateIP: netip.MustParseAddr("198.51.100.2"), PublicIP: netip.MustParseAddr("203.0.113.2"),
			HealthCheckIP: netip.MustParseAddr("10.2.2.1"),
			Subnets:       []netip.Prefix{netip.MustParsePrefix("100.2.0.0/16"), netip.MustParsePrefix("10.2.0.0/16")},
			Backend:       submv1.BackendWireGuard, Port: 4501,
			BackendConfig: map[string]string{"udp-port": "4501", "preferred-server": "true", "publicKey": "k"},
		}
		if diff := cmp.Diff(want, e, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
			t.Errorf("endpoint (-want +got):\n%s", diff)
		}
		if p, known := e.PreferredServer(); !p || !known {
			t.Errorf("PreferredServer = %t, %t; want true, true", p, known)
		}
		if diff := cmp.Diff(spec(), e.Spec()); diff != "" {
			t.Errorf("round trip to the spec (-want +got):\n%s", diff)
		}
		if !e.Equal(e) {
			t.Error("an endpoint differs from itself")
		}
	})
	for _, tc := range []struct {
		name string
		edit func(*submv1.EndpointSpec)
		err  string
	}{
		{name: "no port: the default", edit: func(s *submv1.EndpointSpec) { delete(s.BackendConfig, "udp-port") }},
		{
			name: "addresses",
			edit: func(s *submv1.EndpointSpec) {
				s.PrivateIP, s.PublicIP, s.HealthCheckIP = "", "203.0.113", "2001:db8::1"
			},
			err: "private_ip is empty\npublic_ip \"203.0.113\" is not an IP address\nhealthCheckIP \"2001:db8::1\" is not IPv4: the tunnels are IPv4 only",
		},
		{
			name: "unusable addresses",
			edit: func(s *submv1.EndpointSpec) { s.PrivateIP, s.PublicIP = "127.0.0.1", "0.0.0.0" },
			err:  "private_ip \"127.0.0.1\" is not a unicast address a gateway can have\npublic_ip \"0.0.0.0\" is not a unicast address a gateway can have",
		},
		{
			name: "subnets",
			edit: func(s *submv1.EndpointSpec) { s.Subnets = []string{"10.2.0.0", "10.2.0.1/16", "2001:db8::/64"} },
			err:  "subnet \"10.2.0.0\" is not a CIDR: write it as address/prefix, for example 10.0.0.0/16\nsubnet \"10.2.0.1/16\" has host bits set: did you mean 10.2.0.0/16?\nsubnet \"2001:db8::/64\" is not IPv4: only IPv4 is routed between clusters",
		},
		{
			name: "cluster, cable, backend, port",
			edit: func(s *submv1.EndpointSpec) {
				s.ClusterID, s.CableName, s.Backend, s.Subnets = "", "", "ipsec", nil
				s.BackendConfig["udp-port"] = "0"
			},
			err: "cluster_id: the cluster ID is empty: give one with --clusterid, for example cluster1\ncable_name is empty\nsubnets is empty: the gateway publishes nothing to route to\nbackend: unknown cable driver \"ipsec\": use one of libreswan, wireguard, vxlan\nbackend_config udp-port \"0\" is not a UDP port (1-65535)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := spec()
			tc.edit(&s)
			_, err := cable.ParseEndpoint(s)
			if got := errString(err); got != tc.err {
				t.Errorf("error:\n%s\nwant:\n%s", got, tc.err)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestRegistry(t *testing.T) {
	const a, b submv1.Backend = "test-a", "test-b"
	var cleaned []string
	for _, name := range []submv1.Backend{b, a} {
		t.Cleanup(func() { cable.Unregister(name) })
		cable.Register(name, cable.Factory{
			New: func(cfg cable.Config) (cable.Driver, error) {
				if cfg.Port == 0 {
					return nil, errors.New("no port")
				}
				return fake.New(name), nil
			},
			Cleanup: func(context.Context, *cable.Host) error {
				cleaned = append(cleaned, string(name))
				if name == b {
					return errors.New("device busy")
				}
				return nil
			},
		})
	}
	if diff := cmp.Diff([]submv1.Backend{a, b}, cable.Registered()); diff != "" {
		t.Errorf("registered (-want +got):\n%s", diff)
	}
	host := &cable.Host{}
	d, err := cable.New(a, cable.Config{Host: host, Port: 4500})
	if err != nil || d.Backend() != a {
		t.Errorf("New(%s) = %v, %v", a, d, err)
	}
	if _, err := cable.New(a, cable.Config{Host: host}); errString(err) != "creating cable driver test-a: no port" {
		t.Errorf("New with a bad config: %v", err)
	}
	if _, err := cable.New("nope", cable.Config{Host: host}); errString(err) != `unknown cable driver "nope": use one of test-a, test-b` {
		t.Errorf("New of an unknown driver: %v", err)
	}
	if _, err := cable.ParseBackend("nope"); errString(err) != `unknown cable driver "nope": use one of test-a, test-b` {
		t.Errorf("ParseBackend of an unknown driver: %v", err)
	}
	if got, err := cable.ParseBackend("test-b"); got != b || err != nil {
		t.Errorf("ParseBackend(test-b) = %v, %v", got, err)
	}
	err = cable.Cleanup(context.Background(), host)
	if diff := cmp.Diff([]string{"test-a", "test-b"}, cleaned); diff != "" {
		t.Errorf("cleanups run (-want +got):\n%s", diff)
	}
	if errString(err) != "cleaning up the cable drivers: test-b: device busy" {
		t.Errorf("Cleanup error: %v", err)
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "registered twice") {
			t.Errorf("registering twice: %v", r)
		}
	}()
	cable.Register(a, cable.Factory{New: func(cable.Config) (cable.Driver, error) { return nil, nil }, Cleanup: func(context.Context, *cable.Host) error { return nil }})
}

func TestTunnelRoutes(t *testing.T) {
	e, err := cable.ParseEndpoint(spec())
	if err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddr("10.1.1.1")
	st := cable.TunnelRoutes([]cable.Tunnel{{Remote: e, UseIP: e.PrivateIP}}, func(cable.Tunnel, netip.Prefix) route.Route {
		return route.Route{Dev: "submariner", Src: src}
	})
	want := "route 10.2.0.0/16 dev submariner table 100 src 10.1.1.1\nroute 100.2.0.0/16 dev submariner table 100 src 10.1.1.1\nrule 100: from all lookup 100\n"
	if diff := cmp.Diff(want, st.String()); diff != "" {
		t.Errorf("routes (-want +got):\n%s", diff)
	}
	if got := cable.TunnelRoutes(nil, nil).String(); got != "" {
		t.Errorf("routes of no tunnels: %q, want none (and no rule)", got)
	}
}
