package syncer

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Label values of the metrics.
const (
	// Directions.
	dirToBroker   = "to_broker"
	dirFromBroker = "from_broker"

	// Operations.
	opCreate       = "create"
	opUpdate       = "update"
	opUpdateStatus = "update_status"
	opDelete       = "delete"

	// Results.
	resultSuccess = "success"
	resultError   = "error"

	// Reasons an object is not synced.
	reasonConflict         = "conflict"
	reasonInvalid          = "invalid"
	reasonNamespaceMissing = "namespace_missing"
)

// Metrics are the syncers' Prometheus metrics. One Metrics serves any number of
// syncers; the label "type" tells them apart.
type Metrics struct {
	// Operations counts writes by type, direction, operation (create, update,
	// update_status, delete) and result (success, error).
	Operations *prometheus.CounterVec
	// Rejected counts objects left alone by type, direction and reason (conflict:
	// the name belongs to another object; invalid: a filter, transform or the API
	// server refused it; namespace_missing: the copy's namespace does not exist).
	Rejected *prometheus.CounterVec
	// QueueDepth is the number of objects waiting to be synced, by type.
	QueueDepth *prometheus.GaugeVec
	// BrokerReachable is 1 while the broker answers and 0 while it does not, by type.
	BrokerReachable *prometheus.GaugeVec
}

// NewMetrics returns an unregistered set of metrics; Register registers it.
func NewMetrics() *Metrics {
	return &Metrics{
		Operations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "submariner", Subsystem: "syncer", Name: "operations_total",
			Help: "Writes made by the syncer, by object type, direction, operation and result.",
		}, []string{"type", "direction", "operation", "result"}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "submariner", Subsystem: "syncer", Name: "rejected_total",
			Help: "Objects the syncer left alone, by object type, direction and reason.",
		}, []string{"type", "direction", "reason"}),
		QueueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "submariner", Subsystem: "syncer", Name: "queue_depth",
			Help: "Objects waiting to be synced, by object type.",
		}, []string{"type"}),
		BrokerReachable: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "submariner", Subsystem: "syncer", Name: "broker_reachable",
			Help: "1 while the broker API server answers, 0 while it does not, by object type.",
		}, []string{"type"}),
	}
}

// Register registers the metrics with reg.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	var errs []error
	for _, c := range []prometheus.Collector{m.Operations, m.Rejected, m.QueueDepth, m.BrokerReachable} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("registering the syncer metrics: %w", err)
	}
	return nil
}
