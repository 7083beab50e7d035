package globalnet

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/submariner-go/submariner/agents/globalnet/ipam"
	"github.com/submariner-go/submariner/agents/netkit/iptables"
)

// Metrics are Globalnet's Prometheus metrics. The allocation gauges keep
// Submariner's names, so that dashboards carry over.
type Metrics struct {
	availability, allocated                       *prometheus.GaugeVec
	egressAllocated, clusterEgress, ingress, gwIP *prometheus.GaugeVec
	syncs, syncErrors, restores                   prometheus.Counter
	lastSync, lastSyncBytes, active               prometheus.Gauge
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"cidr"})
	}
	m := &Metrics{
		availability:    gauge("submariner_global_IP_availability", "Global IPs of the cluster's global CIDR not allocated"),
		allocated:       gauge("submariner_global_IP_allocated", "Global IPs allocated"),
		egressAllocated: gauge("submariner_global_egress_IP_allocated", "Global IPs allocated to GlobalEgressIPs"),
		clusterEgress:   gauge("submariner_cluster_global_egress_IP_allocated", "Global IPs allocated to the ClusterGlobalEgressIP"),
		ingress:         gauge("submariner_global_ingress_IP_allocated", "Global IPs allocated to GlobalIngressIPs"),
		gwIP:            gauge("submariner_globalnet_gateway_IP_allocated", "Global IPs allocated to the gateway's health check"),
		syncs:           prometheus.NewCounter(prometheus.CounterOpts{Name: "submariner_globalnet_syncs_total", Help: "iptables syncs, successful or not"}),
		syncErrors:      prometheus.NewCounter(prometheus.CounterOpts{Name: "submariner_globalnet_sync_errors_total", Help: "Failed iptables syncs (retried)"}),
		restores:        prometheus.NewCounter(prometheus.CounterOpts{Name: "submariner_globalnet_iptables_restores_total", Help: "Syncs that ran iptables-restore"}),
		lastSync:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "submariner_globalnet_last_sync_duration_seconds", Help: "Duration of the last iptables sync"}),
		lastSyncBytes:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "submariner_globalnet_last_sync_payload_bytes", Help: "Size of the last iptables-restore payload (0: nothing written)"}),
		active:          prometheus.NewGauge(prometheus.GaugeOpts{Name: "submariner_globalnet_active", Help: "1 while this instance is the active Globalnet"}),
	}
	for _, c := range []prometheus.Collector{m.availability, m.allocated, m.egressAllocated, m.clusterEgress, m.ingress, m.gwIP,
		m.syncs, m.syncErrors, m.restores, m.lastSync, m.lastSyncBytes, m.active} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering Globalnet metrics: %w", err)
		}
	}
	return m, nil
}

func (m *Metrics) setPool(p *ipam.Pool, counts map[kind]int) {
	cidr := p.Prefix().String()
	m.availability.WithLabelValues(cidr).Set(float64(p.Free()))
	m.allocated.WithLabelValues(cidr).Set(float64(p.Allocated()))
	m.egressAllocated.WithLabelValues(cidr).Set(float64(counts[kindEgress]))
	m.clusterEgress.WithLabelValues(cidr).Set(float64(counts[kindClusterEgress]))
	m.ingress.WithLabelValues(cidr).Set(float64(counts[kindIngress]))
	m.gwIP.WithLabelValues(cidr).Set(float64(counts[kindGateway]))
}

func (m *Metrics) observeSync(res iptables.Result, err error, d time.Duration) {
	m.syncs.Inc()
	if err != nil {
		m.syncErrors.Inc()
		return
	}
	if res.Bytes > 0 {
		m.restores.Inc()
	}
	m.lastSync.Set(d.Seconds())
	m.lastSyncBytes.Set(float64(res.Bytes))
}
