package lighthouse

import (
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// Label values of the metrics.
const (
	objectServiceImport = "ServiceImport"
	objectEndpointSlice = "EndpointSlice"
	objectServiceExport = "ServiceExport"
	opUpdateStatus      = "update_status"
	opPatchStatus       = "patch_status"
	resultSuccess       = "success"
	resultError         = "error"
)

// metrics are the agent's own Prometheus metrics; the syncers' are in
// syncer.Metrics.
type metrics struct {
	// exports counts this cluster's ServiceExports by state: exported, pending,
	// failed (conflicting type, name taken), invalid.
	exports *prometheus.GaugeVec
	// imports counts the aggregated ServiceImports on the broker by type.
	imports *prometheus.GaugeVec
	// writes counts the agent's writes by object kind, operation and result.
	writes *prometheus.CounterVec
	// clusters is 1 for each other cluster that is alive, 0 for one that expired.
	clusters *prometheus.GaugeVec
	// brokerReachable is 1 while the broker answers the agent.
	brokerReachable prometheus.Gauge

	mu           sync.Mutex
	exportStates map[string]string
	importTypes  map[string]mcsv1beta1.ServiceImportType
}

func newMetrics() *metrics {
	return &metrics{
		exports: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "submariner_service_export",
			Help: "This cluster's ServiceExports by state: exported, pending, failed, invalid.",
		}, []string{"state"}),
		imports: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "submariner_service_import",
			Help: "Aggregated ServiceImports of the clusterset on the broker, by type.",
		}, []string{"type"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "submariner_lighthouse_writes_total",
			Help: "Writes of the lighthouse agent by object kind, operation and result.",
		}, []string{"object", "operation", "result"}),
		clusters: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "submariner_lighthouse_cluster_alive",
			Help: "1 for each other cluster whose lighthouse Lease is current, 0 for one that expired.",
		}, []string{"cluster"}),
		brokerReachable: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "submariner_lighthouse_broker_reachable",
			Help: "1 while the broker answers the lighthouse agent, 0 while it does not (no cluster expires then).",
		}),
		exportStates: map[string]string{},
		importTypes:  map[string]mcsv1beta1.ServiceImportType{},
	}
}

// register registers the metrics with reg; nil registers nothing.
func (m *metrics) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.exports, m.imports, m.writes, m.clusters, m.brokerReachable} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("registering the lighthouse agent's metrics: %w", err)
	}
	return nil
}

// write counts one write.
func (m *metrics) write(object, op string, err error) {
	result := resultSuccess
	if err != nil {
		result = resultError
	}
	m.writes.WithLabelValues(object, op, result).Inc()
}

// setExport records the state of export key; "" forgets it.
func (m *metrics) setExport(key, state string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if state == "" {
		delete(m.exportStates, key)
	} else {
		m.exportStates[key] = state
	}
	counts := map[string]float64{stateExported: 0, statePending: 0, stateFailed: 0, stateInvalid: 0}
	for _, s := range m.exportStates {
		counts[s]++
	}
	for s, n := range counts {
		m.exports.WithLabelValues(s).Set(n)
	}
}

// setImport records the type of aggregated ServiceImport key; "" forgets it.
func (m *metrics) setImport(key string, t mcsv1beta1.ServiceImportType) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t == "" {
		delete(m.importTypes, key)
	} else {
		m.importTypes[key] = t
	}
	counts := map[mcsv1beta1.ServiceImportType]float64{mcsv1beta1.ClusterSetIP: 0, mcsv1beta1.Headless: 0}
	for _, t := range m.importTypes {
		counts[t]++
	}
	for t, n := range counts {
		m.imports.WithLabelValues(string(t)).Set(n)
	}
}

// setClusters records the other clusters' liveness.
func (m *metrics) setClusters(names []string, alive []bool) {
	m.clusters.Reset()
	for i, c := range names {
		v := 0.0
		if alive[i] {
			v = 1
		}
		m.clusters.WithLabelValues(c).Set(v)
	}
}
