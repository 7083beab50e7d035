package gateway

import (
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/submariner-go/submariner/agents/component"
	"github.com/submariner-go/submariner/agents/gateway/cable"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

func TestMergeHealth(t *testing.T) {
	rtt := &submv1.LatencyRTT{Last: "1ms", Min: "1ms", Average: "1ms", Max: "1ms", StdDev: "0s"}
	pingErr := HealthResult{Status: submv1.ConnError, Message: "Failed to successfully ping", RTT: rtt}
	pingOK := HealthResult{Status: submv1.Connected, RTT: rtt}
	for _, tc := range []struct {
		name    string
		driver  cable.Status
		health  HealthResult
		probed  bool
		status  submv1.ConnectionStatus
		message string
		rtt     *submv1.LatencyRTT
	}{
		{name: "not probed: the driver's view", driver: cable.Status{Status: submv1.Connected}, status: submv1.Connected},
		{name: "probed, no answer yet: the driver's view", driver: cable.Status{Status: submv1.Connected}, probed: true, status: submv1.Connected},
		{name: "driver connected, probes answered", driver: cable.Status{Status: submv1.Connected}, health: pingOK, probed: true, status: submv1.Connected, rtt: rtt},
		{name: "driver connected, probes lost: error", driver: cable.Status{Status: submv1.Connected}, health: pingErr, probed: true, status: submv1.ConnError, message: "Failed to successfully ping", rtt: rtt},
		{name: "driver error, probes answered: connected", driver: cable.Status{Status: submv1.ConnError, Message: "no handshake"}, health: pingOK, probed: true, status: submv1.Connected, rtt: rtt},
		{name: "driver connecting, probes lost: still connecting with the driver's reason", driver: cable.Status{Status: submv1.Connecting, Message: "IKE SA established"}, health: pingErr, probed: true, status: submv1.Connecting, message: "IKE SA established", rtt: rtt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, message, rtt := MergeHealth(tc.driver, tc.health, tc.probed)
			if diff := cmp.Diff([]any{tc.status, tc.message, tc.rtt}, []any{status, message, rtt}); diff != "" {
				t.Errorf("merged (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildStatus(t *testing.T) {
	local := localEP(t)
	c2 := remoteEP("2", "2", 10)
	tun := mustTunnel(t, local, c2)
	spec := local.Spec()
	rtt := &submv1.LatencyRTT{Last: "2ms", Min: "1ms", Average: "1.5ms", Max: "2ms", StdDev: "500µs"}
	in := StatusInput{
		Version:       "v1.2.3",
		HAStatus:      submv1.HAStatusActive,
		LocalEndpoint: &spec,
		Connections: []DriverConnection{
			{ClusterID: "cluster2", Spec: c2.Spec, Tunnel: &tun, Status: cable.Status{Status: submv1.Connected, UsingIP: netip.MustParseAddr("198.51.100.2")}},
			{ClusterID: "cluster4", Spec: submv1.EndpointSpec{ClusterID: "cluster4", CableName: "c4"}, Status: cable.Status{Status: submv1.ConnError, Message: "invalid Endpoint"}},
		},
		Health: func(cableName string) (HealthResult, bool) {
			if cableName == c2.Spec.CableName {
				return HealthResult{Status: submv1.ConnError, Message: "lost", RTT: rtt}, true
			}
			return HealthResult{}, false
		},
	}
	want := submv1.GatewayStatus{
		Version: "v1.2.3", HAStatus: submv1.HAStatusActive, LocalEndpoint: &spec,
		Connections: []submv1.Connection{
			{Status: submv1.ConnError, StatusMessage: "lost", Endpoint: c2.Spec, UsingIP: "198.51.100.2", LatencyRTT: rtt},
			{Status: submv1.ConnError, StatusMessage: "invalid Endpoint", Endpoint: submv1.EndpointSpec{ClusterID: "cluster4", CableName: "c4"}},
		},
	}
	if diff := cmp.Diff(want, BuildStatus(in)); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}

	passive := BuildStatus(StatusInput{Version: "v1.2.3", HAStatus: submv1.HAStatusPassive, Failure: "no pre-shared key"})
	if diff := cmp.Diff(submv1.GatewayStatus{Version: "v1.2.3", HAStatus: submv1.HAStatusPassive, StatusFailure: "no pre-shared key"}, passive); diff != "" {
		t.Errorf("passive status (-want +got):\n%s", diff)
	}
}

func TestStaleGateways(t *testing.T) {
	now := t0.Add(time.Hour)
	gw := func(name string, ts string, created time.Time) submv1.Gateway {
		g := submv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(created)}}
		if ts != "" {
			g.Annotations = map[string]string{AnnotationUpdateTimestamp: ts}
		}
		return g
	}
	unix := func(d time.Duration) string { return strconv.FormatInt(now.Add(-d).Unix(), 10) }
	gws := []submv1.Gateway{
		gw("self", unix(time.Hour), t0),                    // our own: never
		gw("fresh", unix(5*time.Second), t0),               // refreshed 5 s ago
		gw("edge", unix(15*time.Second), t0),               // exactly 15 s: not yet
		gw("old", unix(16*time.Second), t0),                // stale
		gw("never-updated-new", "", now.Add(-time.Second)), // no timestamp, just created
		gw("never-updated-old", "", now.Add(-time.Minute)), // no timestamp, old
		gw("garbage", "yesterday", now.Add(-time.Minute)),  // unreadable: by creation time
	}
	var got []string
	for _, g := range StaleGateways(gws, "self", now, 15*time.Second) {
		got = append(got, g.Name)
	}
	if diff := cmp.Diff([]string{"garbage", "never-updated-old", "old"}, got); diff != "" {
		t.Errorf("stale (-want +got):\n%s", diff)
	}
}

func TestObserveGlobalIP(t *testing.T) {
	local := localEP(t)
	local.HealthCheckIP = netip.Addr{}
	g := &Gateway{
		cfg:  Config{HealthCheck: true, Networks: component.Networks{Global: []netip.Prefix{netip.MustParsePrefix("242.1.0.0/16")}}},
		log:  logr.Discard(),
		kick: make(chan struct{}, 1),
	}
	g.local = &local
	for _, tc := range []struct{ annotation, want string }{
		{"242.1.255.254", "242.1.255.254"},
		{"242.2.0.1", "invalid IP"}, // outside the cluster's global CIDR
		{"nonsense", "invalid IP"},
		{"242.1.0.9", "242.1.0.9"},
		{"", "invalid IP"}, // Globalnet took it away (not the active gateway)
	} {
		g.observeGlobalIP(tc.annotation)
		if got := g.local.HealthCheckIP.String(); got != tc.want {
			t.Errorf("annotation %q: healthCheckIP %s, want %s", tc.annotation, got, tc.want)
		}
	}
	if len(g.kick) != 1 {
		t.Error("a changed health-check IP did not wake the reconcile loop to publish it")
	}
	g.cfg.Networks.Global = nil
	g.observeGlobalIP("242.1.0.7")
	if got := g.local.HealthCheckIP.String(); got != "invalid IP" {
		t.Errorf("without Globalnet the annotation changed the health-check IP to %s", got)
	}
}
