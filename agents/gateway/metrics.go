package gateway

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Metrics are the gateway's Prometheus metrics (Submariner's names).
type Metrics struct {
	// Connections is 1 for every remote cluster's connection, labelled with its
	// status.
	Connections *prometheus.GaugeVec
	// Latency is the last round-trip time to each remote gateway, in seconds.
	Latency *prometheus.GaugeVec
	// RxBytes and TxBytes count each tunnel's traffic, where the driver knows it.
	RxBytes, TxBytes *prometheus.GaugeVec
	// SyncIterations counts the tunnel syncs.
	SyncIterations prometheus.Counter
	// Active is 1 while this gateway is the active one.
	Active prometheus.Gauge
}

var connLabels = []string{"local_cluster", "local_hostname", "remote_cluster", "remote_hostname", "cable_driver"}

// NewMetrics returns unregistered metrics.
func NewMetrics() *Metrics {
	return &Metrics{
		Connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "submariner_connections",
			Help: "Connections to remote clusters, by status (1 per connection).",
		}, append(connLabels, "status")),
		Latency: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "submariner_connection_latency_seconds",
			Help: "Last round-trip time of the health probe to each remote gateway.",
		}, connLabels),
		RxBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "submariner_gateway_rx_bytes",
			Help: "Bytes received through each tunnel.",
		}, connLabels),
		TxBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "submariner_gateway_tx_bytes",
			Help: "Bytes sent through each tunnel.",
		}, connLabels),
		SyncIterations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "submariner_gateway_sync_iterations",
			Help: "Syncs of the tunnels with the remote Endpoints.",
		}),
		Active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "submariner_gateway_active",
			Help: "1 while this gateway is its cluster's active gateway, else 0.",
		}),
	}
}

// Register registers the metrics with reg.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	var errs []error
	for _, c := range []prometheus.Collector{m.Connections, m.Latency, m.RxBytes, m.TxBytes, m.SyncIterations, m.Active} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// observe replaces the per-connection metrics with those of st.
func (m *Metrics) observe(local *submv1.EndpointSpec, st submv1.GatewayStatus, traffic map[string][2]uint64) {
	m.Connections.Reset()
	m.Latency.Reset()
	m.RxBytes.Reset()
	m.TxBytes.Reset()
	if st.HAStatus == submv1.HAStatusActive {
		m.Active.Set(1)
	} else {
		m.Active.Set(0)
	}
	if local == nil {
		return
	}
	for _, c := range st.Connections {
		l := prometheus.Labels{
			"local_cluster": local.ClusterID, "local_hostname": local.Hostname,
			"remote_cluster": c.Endpoint.ClusterID, "remote_hostname": c.Endpoint.Hostname,
			"cable_driver": string(local.Backend),
		}
		if t, ok := traffic[c.Endpoint.CableName]; ok {
			m.RxBytes.With(l).Set(float64(t[0]))
			m.TxBytes.With(l).Set(float64(t[1]))
		}
		if c.LatencyRTT != nil {
			if d, err := time.ParseDuration(c.LatencyRTT.Last); err == nil {
				m.Latency.With(l).Set(d.Seconds())
			}
		}
		l["status"] = string(c.Status)
		m.Connections.With(l).Set(1)
	}
}
