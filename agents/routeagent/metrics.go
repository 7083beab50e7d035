package routeagent

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the agent's Prometheus metrics (README.md lists them).
type metrics struct {
	syncs         prometheus.Counter
	syncErrors    prometheus.Counter
	lastDuration  prometheus.Gauge
	restores      prometheus.Counter
	gateway       prometheus.Gauge
	remoteSubnets prometheus.Gauge
	ignored       prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		syncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "submariner_routeagent_syncs_total",
			Help: "Syncs of the node's kernel state with the plan, successful or not.",
		}),
		syncErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "submariner_routeagent_sync_errors_total",
			Help: "Syncs that failed (they are retried with backoff).",
		}),
		lastDuration: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "submariner_routeagent_last_sync_duration_seconds",
			Help: "How long the last sync took, planning and converging the overlay, sysctls and iptables.",
		}),
		restores: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "submariner_routeagent_iptables_restores_total",
			Help: "iptables-restore runs: syncs that found the agent's chains or jumps not as wanted.",
		}),
		gateway: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "submariner_routeagent_gateway",
			Help: "1 while this node is the cluster's active gateway, else 0.",
		}),
		remoteSubnets: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "submariner_routeagent_remote_subnets",
			Help: "Remote clusters' subnets the node routes.",
		}),
		ignored: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "submariner_routeagent_ignored_inputs",
			Help: "Inputs the last plan left out (overlapping remote subnets, bad annotations, stale Endpoints); the log says why.",
		}),
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.syncs, m.syncErrors, m.lastDuration, m.restores, m.gateway, m.remoteSubnets, m.ignored} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *metrics) observe(st State) {
	if st.Gateway {
		m.gateway.Set(1)
	} else {
		m.gateway.Set(0)
	}
	m.remoteSubnets.Set(float64(len(st.RemoteSubnets)))
	m.ignored.Set(float64(len(st.Notes)))
}
