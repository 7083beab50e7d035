package gateway

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/submariner-go/submariner/agents/gateway/cable"
	"github.com/submariner-go/submariner/agents/gateway/cable/fake"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Test address plan (keep in sync across the gateway's packages):
//   cluster1 pods 10.1.0.0/16, services 100.1.0.0/16; cluster2 pods 10.2.0.0/16,
//   services 100.2.0.0/16; cluster3 pods 10.3.0.0/16, services 100.3.0.0/16
//   gateway underlay 198.51.100.0/24 (RFC 5737), public IPs 203.0.113.0/24

// t0 is the creation time of the oldest test Endpoint.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// remoteEP returns cluster n's Endpoint for the gateway at 198.51.100.<host>,
// created age seconds after t0, edited by opts.
func remoteEP(n, host string, age int, opts ...func(*submv1.Endpoint)) submv1.Endpoint {
	ip := "198.51.100." + host
	cableName := "submariner-cable-cluster" + n + "-198-51-100-" + host
	ep := submv1.Endpoint{
		ObjectMeta: metav1.ObjectMeta{
			Name:              "cluster" + n + "-" + cableName,
			Namespace:         submv1.ComponentNamespace,
			CreationTimestamp: metav1.NewTime(t0.Add(time.Duration(age) * time.Second)),
		},
		Spec: submv1.EndpointSpec{
			ClusterID: "cluster" + n, CableName: cableName, Hostname: "c" + n + "-gw" + host,
			PrivateIP: ip, Subnets: []string{"100." + n + ".0.0/16", "10." + n + ".0.0/16"},
			Backend: submv1.BackendVXLAN, HealthCheckIP: "10." + n + "." + host + ".1",
			BackendConfig: map[string]string{cable.ConfigUDPPort: "4500"},
		},
	}
	for _, o := range opts {
		o(&ep)
	}
	return ep
}

// localEP is cluster1's gateway at 198.51.100.1.
func localEP(t *testing.T, opts ...func(*submv1.Endpoint)) cable.Endpoint {
	t.Helper()
	ep := remoteEP("1", "1", 0, opts...)
	e, err := cable.ParseEndpoint(ep.Spec)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func mustTunnel(t *testing.T, local cable.Endpoint, ep submv1.Endpoint) cable.Tunnel {
	t.Helper()
	tun, reason := tunnelTo(local, ep)
	if reason != "" {
		t.Fatal(reason)
	}
	return tun
}

func TestPlanTunnels(t *testing.T) {
	local := localEP(t)
	c2 := remoteEP("2", "2", 10)
	c3 := remoteEP("3", "3", 20)
	installedOf := func(eps ...submv1.Endpoint) map[string]cable.Tunnel {
		m := map[string]cable.Tunnel{}
		for _, ep := range eps {
			m[ep.Spec.ClusterID] = mustTunnel(t, local, ep)
		}
		return m
	}
	for _, tc := range []struct {
		name      string
		local     cable.Endpoint
		remotes   []submv1.Endpoint
		installed map[string]cable.Tunnel
		want      string
	}{
		{
			name:    "new remotes are connected, the local cluster's own Endpoint is not",
			remotes: []submv1.Endpoint{remoteEP("1", "9", 0), c3, c2},
			want: `connect submariner-cable-cluster1-198-51-100-1 -> submariner-cable-cluster2-198-51-100-2 at 198.51.100.2
connect submariner-cable-cluster1-198-51-100-1 -> submariner-cable-cluster3-198-51-100-3 at 198.51.100.3
`,
		},
		{
			name:      "unchanged tunnels are kept",
			remotes:   []submv1.Endpoint{c2, c3},
			installed: installedOf(c2, c3),
			want: `keep submariner-cable-cluster1-198-51-100-1 -> submariner-cable-cluster2-198-51-100-2 at 198.51.100.2
keep submariner-cable-cluster1-198-51-100-1 -> submariner-cable-cluster3-198-51-100-3 at 198.51.100.3
`,
		},
		{
			name:      "a cluster whose Endpoint is gone is disconnected",
			remotes:   []submv1.Endpoint{c2},
			installed: installedOf(c2, c3),
			want: `disconnect submariner-cable-cluster3-198-51-100-3 (cluster cluster3)
keep submariner-cable-cluster1-198-51-100-1 -> submariner-cable-cluster2-198-51-100-2 at 198.51.100.2
`,
		},
		{
			name: "the newer Endpoint of a cluster wins and replaces the older cable (failover)",
			remotes: []submv1.Endpoint{
				c2, remoteEP("2", "22", 30),
			},
			installed: installedOf(c2),
			want: `disconnect submariner-cable-cluster2-198-51-100-2 (cluster cluster2)
connect submariner-cable-cluster1-198-51-100-1 -> submariner-cable-cluster2-198-51-100-22 at 198.51.100.22
`,
		},
		{
			name: "an older Endpoint arriving late does not win",
			remotes: []submv1.Endpoint{
				remoteEP("2", "22", 30), c2,
			},
			installed: installedOf(remoteEP("2", "22", 30)),
			want: `keep submariner-cable-cluster1-198-51-100-1 -> submariner-cable-cluster2-198-51-100-22 at 198.51.100.22
`,
		},
		{
			name:      "changed parameters of the same cable update it in place",
			remotes:   []submv1.Endpoint{remoteEP("2", "2", 10, func(e *submv1.Endpoint) { e.Spec.Subnets = append(e.Spec.Subnets, "10.22.0.0/16") })},
			installed: installedOf(c2),
			want: `connect submariner-cable-cluster1-198-51-100-1 -> submariner-cable-cluster2-198-51-100-2 at 198.51.100.2
`,
		},
		{
			name: "an invalid remote is rejected with the reason and the others are untouched",
			remotes: []submv1.Endpoint{c2, remoteEP("3", "3", 20, func(e *submv1.Endpoint) {
				e.Spec.PrivateIP = "198.51.100.300"
				e.Spec.Subnets = []string{"10.3.0.1/16"}
			})},
			installed: installedOf(c2),
			want: `keep submariner-cable-cluster1-198-51-100-1 -> submariner-cable-cluster2-198-51-100-2 at 198.51.100.2
reject cluster3-submariner-cable-cluster3-198-51-100-3: invalid Endpoint cluster3-submariner-cable-cluster3-198-51-100-3 of cluster cluster3: private_ip "198.51.100.300" is not an IP address; subnet "10.3.0.1/16" has host bits set: did you mean 10.3.0.0/16?
`,
		},
		{
			name: "a remote that turns invalid loses its tunnel",
			remotes: []submv1.Endpoint{remoteEP("3", "3", 20, func(e *submv1.Endpoint) {
				e.Spec.BackendConfig[cable.ConfigUDPPort] = "70000"
			})},
			installed: installedOf(c3),
			want: `disconnect submariner-cable-cluster3-198-51-100-3 (cluster cluster3)
reject cluster3-submariner-cable-cluster3-198-51-100-3: invalid Endpoint cluster3-submariner-cable-cluster3-198-51-100-3 of cluster cluster3: backend_config udp-port "70000" is not a UDP port (1-65535)
`,
		},
		{
			name: "the local health-check or public IP changing keeps the tunnels",
			local: localEP(t, func(e *submv1.Endpoint) {
				e.Spec.HealthCheckIP = "242.1.255.254"
				e.Spec.PublicIP = "203.0.113.1"
			}),
			remotes:   []submv1.Endpoint{c2},
			installed: installedOf(c2),
			want: `keep submariner-cable-cluster1-198-51-100-1 -> submariner-cable-cluster2-198-51-100-2 at 198.51.100.2
`,
		},
		{
			name:      "the local subnets changing updates the tunnels",
			local:     localEP(t, func(e *submv1.Endpoint) { e.Spec.Subnets = append(e.Spec.Subnets, "10.11.0.0/16") }),
			remotes:   []submv1.Endpoint{c2},
			installed: installedOf(c2),
			want: `connect submariner-cable-cluster1-198-51-100-1 -> submariner-cable-cluster2-198-51-100-2 at 198.51.100.2
`,
		},
		{
			name:    "another cable driver is rejected",
			remotes: []submv1.Endpoint{remoteEP("2", "2", 10, func(e *submv1.Endpoint) { e.Spec.Backend = submv1.BackendWireGuard })},
			want: `reject cluster2-submariner-cable-cluster2-198-51-100-2: cluster cluster2 uses cable driver wireguard and this cluster vxlan: every cluster of the clusterset must use the same cable driver (subctl join --cable-driver)
`,
		},
		{
			name:    "subnets overlapping the local ones are rejected",
			remotes: []submv1.Endpoint{remoteEP("2", "2", 10, func(e *submv1.Endpoint) { e.Spec.Subnets = []string{"10.0.0.0/8"} })},
			want: `reject cluster2-submariner-cable-cluster2-198-51-100-2: cluster cluster2's subnet 10.0.0.0/8 overlaps this cluster's 10.1.0.0/16: clusters with overlapping CIDRs need Globalnet (subctl join --globalnet)
`,
		},
		{
			name: "of two remotes with overlapping subnets the older keeps its tunnel",
			remotes: []submv1.Endpoint{
				remoteEP("3", "3", 5, func(e *submv1.Endpoint) { e.Spec.Subnets = []string{"10.2.128.0/17"} }),
				remoteEP("2", "2", 10),
			},
			want: `connect submariner-cable-cluster1-198-51-100-1 -> submariner-cable-cluster3-198-51-100-3 at 198.51.100.3
reject cluster2-submariner-cable-cluster2-198-51-100-2: cluster cluster2's subnet 10.2.0.0/16 overlaps cluster cluster3's 10.2.128.0/17 (its Endpoint is older): clusters with overlapping CIDRs need Globalnet (subctl join --globalnet)
`,
		},
		{
			name: "NAT on the remote side: its public IP, encapsulated",
			remotes: []submv1.Endpoint{remoteEP("2", "2", 10, func(e *submv1.Endpoint) {
				e.Spec.NATEnabled = true
				e.Spec.PublicIP = "203.0.113.2"
			})},
			want: `connect submariner-cable-cluster1-198-51-100-1 -> submariner-cable-cluster2-198-51-100-2 at 203.0.113.2 (NAT)
`,
		},
		{
			name:    "NAT on the local side and no public IP on the remote: its private IP, encapsulated",
			local:   localEP(t, func(e *submv1.Endpoint) { e.Spec.NATEnabled = true }),
			remotes: []submv1.Endpoint{c2},
			want: `connect submariner-cable-cluster1-198-51-100-1 -> submariner-cable-cluster2-198-51-100-2 at 198.51.100.2 (NAT)
`,
		},
		{
			name: "a remote being deleted gets no tunnel",
			remotes: []submv1.Endpoint{remoteEP("2", "2", 10, func(e *submv1.Endpoint) {
				now := metav1.NewTime(t0)
				e.DeletionTimestamp = &now
			})},
			installed: installedOf(c2),
			want: `disconnect submariner-cable-cluster2-198-51-100-2 (cluster cluster2)
`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := local
			if tc.local.ClusterID != "" {
				l = tc.local
			}
			if tc.installed == nil {
				tc.installed = map[string]cable.Tunnel{}
			}
			got := PlanTunnels(l, tc.remotes, tc.installed).String()
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEngine(t *testing.T) {
	ctx := context.Background()
	local := localEP(t)
	d := fake.New(submv1.BackendVXLAN)
	if err := d.Init(ctx); err != nil {
		t.Fatal(err)
	}
	d.Events()
	e := NewEngine(d, logr.Discard())
	c2, c3 := remoteEP("2", "2", 10), remoteEP("3", "3", 20)

	type want struct {
		events  []string
		tunnels string
		conns   []string
		err     string
	}
	step := func(t *testing.T, remotes []submv1.Endpoint, w want) {
		t.Helper()
		err := e.Sync(ctx, local, remotes)
		if got := errString(err); !strings.Contains(got, w.err) || (w.err == "") != (err == nil) {
			t.Errorf("Sync error %q, want one containing %q", got, w.err)
		}
		if diff := cmp.Diff(w.events, d.Events()); diff != "" {
			t.Errorf("driver calls (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(w.tunnels, d.String()); diff != "" {
			t.Errorf("driver tunnels (-want +got):\n%s", diff)
		}
		var conns []string
		for _, c := range e.Connections(ctx) {
			conns = append(conns, c.ClusterID+" "+c.Spec.CableName+" "+string(c.Status.Status)+" "+c.Status.Message)
		}
		if diff := cmp.Diff(w.conns, conns); diff != "" {
			t.Errorf("connections (-want +got):\n%s", diff)
		}
	}

	t.Run("connect two clusters", func(t *testing.T) {
		step(t, []submv1.Endpoint{c2, c3}, want{
			events: []string{
				"connect submariner-cable-cluster2-198-51-100-2 cluster cluster2 via 198.51.100.2:4500 nat=false subnets 100.2.0.0/16,10.2.0.0/16",
				"connect submariner-cable-cluster3-198-51-100-3 cluster cluster3 via 198.51.100.3:4500 nat=false subnets 100.3.0.0/16,10.3.0.0/16",
			},
			tunnels: "submariner-cable-cluster2-198-51-100-2 cluster cluster2 via 198.51.100.2:4500 nat=false subnets 100.2.0.0/16,10.2.0.0/16\n" +
				"submariner-cable-cluster3-198-51-100-3 cluster cluster3 via 198.51.100.3:4500 nat=false subnets 100.3.0.0/16,10.3.0.0/16\n",
			conns: []string{
				"cluster2 submariner-cable-cluster2-198-51-100-2 connected ",
				"cluster3 submariner-cable-cluster3-198-51-100-3 connected ",
			},
		})
	})
	t.Run("the same state again changes nothing", func(t *testing.T) {
		step(t, []submv1.Endpoint{c3, c2}, want{
			tunnels: "submariner-cable-cluster2-198-51-100-2 cluster cluster2 via 198.51.100.2:4500 nat=false subnets 100.2.0.0/16,10.2.0.0/16\n" +
				"submariner-cable-cluster3-198-51-100-3 cluster cluster3 via 198.51.100.3:4500 nat=false subnets 100.3.0.0/16,10.3.0.0/16\n",
			conns: []string{
				"cluster2 submariner-cable-cluster2-198-51-100-2 connected ",
				"cluster3 submariner-cable-cluster3-198-51-100-3 connected ",
			},
		})
	})
	c2b := remoteEP("2", "22", 30)
	t.Run("cluster2 fails over: the newer Endpoint replaces the cable", func(t *testing.T) {
		d.SetState(c3.Spec.CableName, submv1.Connecting, "negotiating")
		step(t, []submv1.Endpoint{c2, c3, c2b}, want{
			events: []string{
				"disconnect submariner-cable-cluster2-198-51-100-2",
				"connect submariner-cable-cluster2-198-51-100-22 cluster cluster2 via 198.51.100.22:4500 nat=false subnets 100.2.0.0/16,10.2.0.0/16",
			},
			tunnels: "submariner-cable-cluster2-198-51-100-22 cluster cluster2 via 198.51.100.22:4500 nat=false subnets 100.2.0.0/16,10.2.0.0/16\n" +
				"submariner-cable-cluster3-198-51-100-3 cluster cluster3 via 198.51.100.3:4500 nat=false subnets 100.3.0.0/16,10.3.0.0/16\n",
			conns: []string{
				"cluster2 submariner-cable-cluster2-198-51-100-22 connected ",
				"cluster3 submariner-cable-cluster3-198-51-100-3 connecting negotiating",
			},
		})
	})
	bad := remoteEP("4", "4", 40, func(e *submv1.Endpoint) { e.Spec.HealthCheckIP = "not-an-ip" })
	c3b := remoteEP("3", "33", 50)
	t.Run("a failing connect and an invalid remote are isolated", func(t *testing.T) {
		d.FailConnect(c3b.Spec.CableName, errors.New("device busy"))
		step(t, []submv1.Endpoint{c2b, c3b, bad}, want{
			events: []string{
				"disconnect submariner-cable-cluster3-198-51-100-3",
				"connect submariner-cable-cluster3-198-51-100-33 failed: device busy",
			},
			tunnels: "submariner-cable-cluster2-198-51-100-22 cluster cluster2 via 198.51.100.22:4500 nat=false subnets 100.2.0.0/16,10.2.0.0/16\n",
			conns: []string{
				"cluster2 submariner-cable-cluster2-198-51-100-22 connected ",
				"cluster3 submariner-cable-cluster3-198-51-100-33 error connecting to submariner-cable-cluster3-198-51-100-33: device busy",
				`cluster4 submariner-cable-cluster4-198-51-100-4 error invalid Endpoint cluster4-submariner-cable-cluster4-198-51-100-4 of cluster cluster4: healthCheckIP "not-an-ip" is not an IP address`,
			},
			err: "connecting to submariner-cable-cluster3-198-51-100-33: device busy",
		})
	})
	t.Run("the failed connect is retried on the next sync", func(t *testing.T) {
		d.FailConnect(c3b.Spec.CableName, nil)
		step(t, []submv1.Endpoint{c2b, c3b}, want{
			events: []string{
				"connect submariner-cable-cluster3-198-51-100-33 cluster cluster3 via 198.51.100.33:4500 nat=false subnets 100.3.0.0/16,10.3.0.0/16",
			},
			tunnels: "submariner-cable-cluster2-198-51-100-22 cluster cluster2 via 198.51.100.22:4500 nat=false subnets 100.2.0.0/16,10.2.0.0/16\n" +
				"submariner-cable-cluster3-198-51-100-33 cluster cluster3 via 198.51.100.33:4500 nat=false subnets 100.3.0.0/16,10.3.0.0/16\n",
			conns: []string{
				"cluster2 submariner-cable-cluster2-198-51-100-22 connected ",
				"cluster3 submariner-cable-cluster3-198-51-100-33 connected ",
			},
		})
	})
	t.Run("another gateway took over: every tunnel goes", func(t *testing.T) {
		if err := e.DisconnectAll(ctx); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"disconnect submariner-cable-cluster2-198-51-100-22", "disconnect submariner-cable-cluster3-198-51-100-33"}, d.Events()); diff != "" {
			t.Errorf("driver calls (-want +got):\n%s", diff)
		}
		if len(e.Tunnels()) != 0 || d.String() != "" {
			t.Errorf("tunnels left: engine %v, driver %q", e.Tunnels(), d.String())
		}
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
