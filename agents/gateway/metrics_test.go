package gateway

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// gather renders every sample of reg as `name{label="value",...} value`, sorted.
func gather(t *testing.T, reg *prometheus.Registry) []string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			out = append(out, fmt.Sprintf("%s{%s} %g", mf.GetName(), strings.Join(labels, ","), v))
		}
	}
	slices.Sort(out)
	return out
}

func TestMetrics(t *testing.T) {
	m := NewMetrics()
	reg := prometheus.NewPedanticRegistry()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	local := &submv1.EndpointSpec{ClusterID: "cluster1", Hostname: "c1-gw1", Backend: submv1.BackendWireGuard}
	st := submv1.GatewayStatus{
		HAStatus: submv1.HAStatusActive,
		Connections: []submv1.Connection{
			{Status: submv1.Connected, Endpoint: submv1.EndpointSpec{ClusterID: "cluster2", Hostname: "c2-gw1", CableName: "c2"},
				LatencyRTT: &submv1.LatencyRTT{Last: "1.5ms"}},
			{Status: submv1.ConnError, Endpoint: submv1.EndpointSpec{ClusterID: "cluster3", Hostname: "c3-gw1", CableName: "c3"}},
		},
	}
	m.observe(local, st, map[string][2]uint64{"c2": {100, 200}})
	m.SyncIterations.Inc()
	const to2 = `cable_driver="wireguard",local_cluster="cluster1",local_hostname="c1-gw1",remote_cluster="cluster2",remote_hostname="c2-gw1"`
	const to3 = `cable_driver="wireguard",local_cluster="cluster1",local_hostname="c1-gw1",remote_cluster="cluster3",remote_hostname="c3-gw1"`
	want := []string{
		"submariner_connection_latency_seconds{" + to2 + "} 0.0015",
		"submariner_connections{" + to2 + `,status="connected"} 1`,
		"submariner_connections{" + to3 + `,status="error"} 1`,
		"submariner_gateway_active{} 1",
		"submariner_gateway_rx_bytes{" + to2 + "} 100",
		"submariner_gateway_sync_iterations{} 1",
		"submariner_gateway_tx_bytes{" + to2 + "} 200",
	}
	if diff := cmp.Diff(want, gather(t, reg)); diff != "" {
		t.Errorf("metrics while active (-want +got):\n%s", diff)
	}

	// Passive: no connections any more, not active.
	m.observe(nil, submv1.GatewayStatus{HAStatus: submv1.HAStatusPassive}, nil)
	want = []string{"submariner_gateway_active{} 0", "submariner_gateway_sync_iterations{} 1"}
	if diff := cmp.Diff(want, gather(t, reg)); diff != "" {
		t.Errorf("metrics while passive (-want +got):\n%s", diff)
	}
}
