package lighthouse

import (
	"context"
	"fmt"
	"maps"
	"sync/atomic"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/submariner-go/submariner/agents/syncer"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Names of the syncers (label "type" of the syncer metrics).
const (
	syncerSlicesUp   = "EndpointSlice-up"
	syncerSlicesDown = "EndpointSlice-down"
	syncerImports    = "ServiceImport-down"
)

// slicesUpConfig pushes this cluster's lighthouse EndpointSlices, from every
// namespace, to the broker.
func (a *Agent) slicesUpConfig() syncer.Config[*discoveryv1.EndpointSlice] {
	return syncer.Config[*discoveryv1.EndpointSlice]{
		Name: syncerSlicesUp, ClusterID: a.cfg.ClusterID, Local: a.local, Broker: a.broker,
		BrokerNamespace: a.cfg.BrokerNamespace, Log: a.log.WithName("syncer"), Metrics: a.syncMetrics,
		Workers: a.cfg.Workers,
		ToBroker: syncer.ToBroker[*discoveryv1.EndpointSlice]{
			Namespace: syncer.AllNamespaces,
			LabelSelector: discoveryv1.LabelManagedBy + "=" + submv1.LighthouseManagedBy + "," +
				mcsv1beta1.LabelSourceCluster + "=" + a.cfg.ClusterID,
		},
		FromBroker: syncer.FromBroker[*discoveryv1.EndpointSlice]{Disabled: true},
	}
}

// slicesDownConfig copies the other clusters' EndpointSlices from the broker into
// the namespace of their Service, for the clusters that are alive.
func (a *Agent) slicesDownConfig() syncer.Config[*discoveryv1.EndpointSlice] {
	return syncer.Config[*discoveryv1.EndpointSlice]{
		Name: syncerSlicesDown, ClusterID: a.cfg.ClusterID, Local: a.local, Broker: a.broker,
		BrokerNamespace: a.cfg.BrokerNamespace, Log: a.log.WithName("syncer"), Metrics: a.syncMetrics,
		Workers:  a.cfg.Workers,
		ToBroker: syncer.ToBroker[*discoveryv1.EndpointSlice]{Disabled: true},
		FromBroker: syncer.FromBroker[*discoveryv1.EndpointSlice]{
			Namespace: syncer.NamespaceFromLabel[*discoveryv1.EndpointSlice](submv1.LabelSourceNamespace),
			Filter: func(es *discoveryv1.EndpointSlice) bool {
				return es.Labels[discoveryv1.LabelManagedBy] == submv1.LighthouseManagedBy &&
					a.live.Live(es.Labels[mcsv1beta1.LabelSourceCluster])
			},
		},
	}
}

// importsConfig copies the aggregated ServiceImports from the broker into every
// cluster as <service> in <namespace>, as the live clusters make them.
func (a *Agent) importsConfig() syncer.Config[*mcsv1beta1.ServiceImport] {
	return syncer.Config[*mcsv1beta1.ServiceImport]{
		Name: syncerImports, ClusterID: a.cfg.ClusterID, Local: a.local, Broker: a.broker,
		BrokerNamespace: a.cfg.BrokerNamespace, Log: a.log.WithName("syncer"), Metrics: a.syncMetrics,
		Workers:    a.cfg.Workers,
		SyncStatus: true,
		ToBroker:   syncer.ToBroker[*mcsv1beta1.ServiceImport]{Disabled: true},
		FromBroker: syncer.FromBroker[*mcsv1beta1.ServiceImport]{
			Namespace: func(si *mcsv1beta1.ServiceImport) (string, error) {
				ns, _, ok := aggregateOf(si)
				if !ok {
					return "", fmt.Errorf("it is not an aggregated ServiceImport: it lacks the annotations %s and %s",
						mcsv1beta1.LabelServiceName, submv1.LabelSourceNamespace)
				}
				return ns, nil
			},
			Filter:    func(si *mcsv1beta1.ServiceImport) bool { return localImport(si, a.live.Live) },
			Transform: func(si *mcsv1beta1.ServiceImport) error { return toLocalImport(si, a.live.Live) },
		},
	}
}

// localImport reports whether the aggregated ServiceImport si has a copy in the
// clusters: when at least one live cluster exports its Service. A ServiceImport
// without export records (not written by this agent) comes down as it is.
func localImport(si *mcsv1beta1.ServiceImport, live func(string) bool) bool {
	records, _ := decodeRecords(si.Annotations)
	if len(records) == 0 {
		return !hasRecordAnnotations(si.Annotations)
	}
	for _, r := range records {
		if live(r.Cluster) {
			return true
		}
	}
	return false
}

func hasRecordAnnotations(annotations map[string]string) bool {
	for k := range annotations {
		if isBookkeeping(k) {
			return true
		}
	}
	return false
}

// toLocalImport turns the broker's aggregated ServiceImport si into its copy in a
// cluster: named after the Service, its spec and status merged from the records
// of the live clusters only (a cluster that stopped renewing its Lease drops out,
// and so do its ports and its vote on the type), without the bookkeeping
// annotations.
func toLocalImport(si *mcsv1beta1.ServiceImport, live func(string) bool) error {
	_, name, ok := aggregateOf(si)
	if !ok {
		return fmt.Errorf("it lacks the annotation %s naming the Service", mcsv1beta1.LabelServiceName)
	}
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return fmt.Errorf("annotation %s=%q is not a Service name: %v", mcsv1beta1.LabelServiceName, name, errs)
	}
	records, _ := decodeRecords(si.Annotations)
	var alive []Record
	for _, r := range records {
		if live(r.Cluster) {
			alive = append(alive, r)
		}
	}
	if len(alive) > 0 {
		m := Merge(alive)
		si.Spec = m.Spec(si.Spec.IPs)
		si.Status.Clusters = m.Status().Clusters
	}
	si.Name = name
	annotations := maps.Clone(si.Annotations)
	maps.DeleteFunc(annotations, func(k, _ string) bool { return isBookkeeping(k) })
	si.Annotations = annotations
	return nil
}

// restartable runs one syncer, and a fresh one in its place whenever it is told
// to: the syncer evaluates its filters and transforms when objects change, and a
// change of liveness changes what they say about objects that did not change.
// The fresh syncer lists both sides and converges everything, writing only what
// differs.
type restartable struct {
	name    string
	build   func() (*syncer.Syncer, error)
	restart chan struct{}
	current atomic.Pointer[syncer.Syncer]
	synced  atomic.Bool
}

func newRestartable(name string, build func() (*syncer.Syncer, error)) *restartable {
	return &restartable{name: name, build: build, restart: make(chan struct{}, 1)}
}

// Restart asks for a fresh syncer; requests made before it is done coalesce.
func (r *restartable) Restart() {
	select {
	case r.restart <- struct{}{}:
	default:
	}
}

// HasSynced reports whether a syncer has done its first full reconcile once.
func (r *restartable) HasSynced() bool {
	if r.synced.Load() {
		return true
	}
	if s := r.current.Load(); s != nil && s.HasSynced() {
		r.synced.Store(true)
		return true
	}
	return false
}

// run runs the syncers until ctx is done. It returns an error when a syncer
// cannot be built or cannot start at all.
func (r *restartable) run(ctx context.Context) error {
	for {
		s, err := r.build()
		if err != nil {
			return err
		}
		r.current.Store(s)
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.Run(runCtx) }()
		select {
		case <-ctx.Done():
			cancel()
			<-done
			return nil
		case <-r.restart:
			cancel()
			if err := <-done; err != nil {
				return fmt.Errorf("the %s syncer: %w", r.name, err)
			}
		case err := <-done:
			cancel()
			if err != nil {
				return fmt.Errorf("the %s syncer: %w", r.name, err)
			}
			return nil
		}
	}
}
