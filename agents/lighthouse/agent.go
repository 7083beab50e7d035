package lighthouse

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	coordinationv1 "k8s.io/api/coordination/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/submariner-go/submariner/agents/syncer"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Config configures an Agent.
type Config struct {
	// ClusterID is this cluster's ID in the clusterset.
	ClusterID string
	// Globalnet publishes the exported Services' global IPs (GlobalIngressIPs)
	// instead of their ClusterIPs.
	Globalnet bool
	// Local reaches this cluster; Broker reaches the broker with this cluster's
	// identity. A zero QPS becomes DefaultKubeQPS and DefaultKubeBurst.
	Local, Broker *rest.Config
	// BrokerNamespace holds the clusterset's objects on the broker; default
	// submv1.BrokerNamespace.
	BrokerNamespace string
	// LeaseDuration is how long the other clusters keep this cluster's services
	// after its last Lease renewal; default DefaultLeaseDuration.
	LeaseDuration time.Duration
	// Workers is the number of objects each controller and syncer handles in
	// parallel; default DefaultWorkers.
	Workers int
	// Log receives the agent's logs; default logr.Discard().
	Log logr.Logger
	// Registry receives the agent's and its syncers' metrics; nil registers none.
	Registry prometheus.Registerer
	// Clock is the agent's clock (liveness deadlines, Lease renewals); default
	// the real one.
	Clock clock.Clock
}

// Agent is the lighthouse agent of one cluster. Create it with New and call Run.
type Agent struct {
	cfg           Config
	local, broker *rest.Config
	log           logr.Logger
	metrics       *metrics
	syncMetrics   *syncer.Metrics
	live          *liveness

	running atomic.Bool
	// Set by Run, read by Ready.
	mu        sync.Mutex
	readiness []readyCheck
	leaseOnce atomic.Bool
	everReady atomic.Bool
}

// readyCheck is one condition of readiness and what to say while it does not hold.
type readyCheck struct {
	ok     func() bool
	reason string
}

// New validates cfg and returns an agent; it does not reach either cluster. The
// error names each field that is wrong and how to fix it.
func New(cfg Config) (*Agent, error) {
	var errs []error
	if err := submv1.ValidateClusterID(cfg.ClusterID); err != nil {
		errs = append(errs, fmt.Errorf("cluster ID: %w", err))
	}
	if cfg.Local == nil {
		errs = append(errs, errors.New("no local cluster configuration (Config.Local): pass the rest.Config of the cluster the agent runs in"))
	}
	if cfg.Broker == nil {
		errs = append(errs, errors.New("no broker configuration (Config.Broker): pass the rest.Config built from the broker secret"))
	}
	if cfg.BrokerNamespace == "" {
		cfg.BrokerNamespace = submv1.BrokerNamespace
	}
	if e := validation.IsDNS1123Label(cfg.BrokerNamespace); len(e) > 0 {
		errs = append(errs, fmt.Errorf("broker namespace %q is not a namespace name (%s): leave it empty for %s",
			cfg.BrokerNamespace, strings.Join(e, "; "), submv1.BrokerNamespace))
	}
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = DefaultLeaseDuration
	}
	if cfg.LeaseDuration < MinLeaseDuration || cfg.LeaseDuration > MaxLeaseDuration {
		errs = append(errs, fmt.Errorf("lease duration %s is out of range: give a duration from %s to %s",
			cfg.LeaseDuration, MinLeaseDuration, MaxLeaseDuration))
	}
	if cfg.Workers == 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Workers < 1 || cfg.Workers > 64 {
		errs = append(errs, fmt.Errorf("worker count %d is out of range: give 1 to 64", cfg.Workers))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configuring the lighthouse agent: %w", err)
	}
	if cfg.Log.GetSink() == nil {
		cfg.Log = logr.Discard()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	a := &Agent{cfg: cfg, local: withRate(cfg.Local), broker: withRate(cfg.Broker), log: cfg.Log,
		metrics: newMetrics(), syncMetrics: syncer.NewMetrics()}
	if err := a.metrics.register(cfg.Registry); err != nil {
		return nil, err
	}
	if cfg.Registry != nil {
		if err := a.syncMetrics.Register(cfg.Registry); err != nil {
			return nil, fmt.Errorf("registering the syncer metrics: %w", err)
		}
	}
	return a, nil
}

// withRate returns a copy of cfg with the agent's default rate limits when it has
// none.
func withRate(cfg *rest.Config) *rest.Config {
	if cfg == nil {
		return nil
	}
	c := rest.CopyConfig(cfg)
	if c.QPS == 0 {
		c.QPS, c.Burst = DefaultKubeQPS, DefaultKubeBurst
	}
	return c
}

// Scheme returns the scheme the agent uses: the Kubernetes built-in types and
// the MCS API v1beta1.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(mcsv1beta1.AddToScheme(s))
	utilruntime.Must(submv1.AddToScheme(s))
	return s
}

// Ready returns nil once the agent has done its first full sync: its caches
// of both clusters are filled, its Lease is on the broker and every syncer has
// reconciled everything once; else what it is waiting for. It stays ready after
// that, also while the broker is unreachable (the agent then keeps the last
// known state).
func (a *Agent) Ready() error {
	if a.everReady.Load() {
		return nil
	}
	a.mu.Lock()
	checks := a.readiness
	a.mu.Unlock()
	if checks == nil {
		return errors.New("not started")
	}
	for _, c := range checks {
		if !c.ok() {
			return errors.New(c.reason)
		}
	}
	a.everReady.Store(true)
	return nil
}

// Run runs the agent until ctx is done, then returns nil; it returns an error
// when it cannot start or a part of it fails for good. While the broker cannot
// be reached it waits, keeps every local copy as it is, and expires nobody.
func (a *Agent) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("the lighthouse agent is already running")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	log := a.log.WithValues("cluster", a.cfg.ClusterID)
	scheme := Scheme()

	mgr, err := ctrl.NewManager(a.local, manager.Options{
		Scheme:                 scheme,
		Logger:                 log.WithName("local"),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache: cache.Options{
			DefaultTransform: cache.TransformStripManagedFields(),
		},
		Controller: config.Controller{SkipNameValidation: new(true)},
	})
	if err != nil {
		return fmt.Errorf("creating the controller manager for the local cluster: %w", err)
	}
	brokerCluster, err := cluster.New(a.broker, func(o *cluster.Options) {
		o.Scheme = scheme
		o.Logger = log.WithName("broker")
		o.Cache.DefaultNamespaces = map[string]cache.Config{a.cfg.BrokerNamespace: {}}
		o.Cache.DefaultTransform = cache.TransformStripManagedFields()
		o.Cache.ByObject = map[client.Object]cache.ByObject{
			// Only this cluster's slices: the agent checks that they arrived.
			&discoveryv1.EndpointSlice{}: {Label: labels.SelectorFromSet(labels.Set{submv1.ClusterIDLabel: a.cfg.ClusterID})},
		}
	})
	if err != nil {
		return fmt.Errorf("creating the broker client: %w", err)
	}
	if err := mgr.Add(brokerCluster); err != nil {
		return fmt.Errorf("adding the broker to the controller manager: %w", err)
	}

	a.live = newLiveness(a.cfg.ClusterID, a.cfg.LeaseDuration, a.cfg.Clock,
		func(ctx context.Context, name string) (*coordinationv1.Lease, error) {
			var l coordinationv1.Lease
			err := brokerCluster.GetAPIReader().Get(ctx, client.ObjectKey{Namespace: a.cfg.BrokerNamespace, Name: name}, &l)
			return &l, err
		}, log.WithName("liveness"))
	a.live.onReachable = func(ok bool) {
		v := 0.0
		if ok {
			v = 1
		}
		a.metrics.brokerReachable.Set(v)
	}
	changes := make(chan struct{}, 1)
	a.live.onChange = func() {
		select {
		case changes <- struct{}{}:
		default:
		}
	}
	leaseInformer, err := brokerCluster.GetCache().GetInformer(ctx, &coordinationv1.Lease{})
	if err != nil {
		return fmt.Errorf("watching the Leases on the broker: %w", err)
	}
	leaseReg, err := leaseInformer.AddEventHandler(a.live.handler())
	if err != nil {
		return fmt.Errorf("watching the Leases on the broker: %w", err)
	}
	importInformer, err := brokerCluster.GetCache().GetInformer(ctx, &mcsv1beta1.ServiceImport{})
	if err != nil {
		return fmt.Errorf("watching the ServiceImports on the broker: %w", err)
	}
	if _, err := importInformer.AddEventHandler(a.importMetricHandler()); err != nil {
		return fmt.Errorf("watching the ServiceImports on the broker: %w", err)
	}

	kick, err := a.setupControllers(ctx, mgr, brokerCluster)
	if err != nil {
		return err
	}

	up := newRestartable(syncerSlicesUp, func() (*syncer.Syncer, error) { return syncer.New(a.slicesUpConfig()) })
	down := newRestartable(syncerSlicesDown, func() (*syncer.Syncer, error) { return syncer.New(a.slicesDownConfig()) })
	imports := newRestartable(syncerImports, func() (*syncer.Syncer, error) { return syncer.New(a.importsConfig()) })
	var localSynced, brokerSynced atomic.Bool
	a.mu.Lock()
	a.readiness = []readyCheck{
		{localSynced.Load, "waiting for the caches of the local cluster"},
		{brokerSynced.Load, "waiting for the broker (its caches and the other clusters' Leases)"},
		{a.leaseOnce.Load, "waiting to write this cluster's Lease on the broker"},
		{up.HasSynced, "waiting for the first sync of this cluster's EndpointSlices to the broker"},
		{down.HasSynced, "waiting for the first sync of the other clusters' EndpointSlices from the broker"},
		{imports.HasSynced, "waiting for the first sync of the ServiceImports from the broker"},
		{kick[0].synced, "waiting for the first reconcile of every ServiceExport"},
		{kick[1].synced, "waiting for the first reconcile of every exported Service's EndpointSlices"},
	}
	a.mu.Unlock()

	// The first failure of a part stops the whole agent; Run returns it.
	var wg sync.WaitGroup
	var failOnce sync.Once
	var failure error
	fail := func(err error) {
		failOnce.Do(func() { failure = err })
		cancel()
	}
	finish := func() error {
		cancel()
		wg.Wait()
		return failure // every writer has returned: wg.Wait orders the read after the writes
	}
	wg.Go(func() {
		if err := mgr.Start(ctx); err != nil {
			fail(fmt.Errorf("running the controllers: %w", err))
		}
	})
	keeper := &leaseKeeper{cluster: a.cfg.ClusterID, namespace: a.cfg.BrokerNamespace, duration: a.cfg.LeaseDuration,
		broker: brokerCluster.GetClient(), reader: brokerCluster.GetAPIReader(), clock: a.cfg.Clock,
		log: log.WithName("lease"), renewed: func() { a.leaseOnce.Store(true) }, reachable: a.live.setReachable}
	wg.Go(func() { keeper.run(ctx) })
	wg.Go(func() { a.live.run(ctx) })
	runSyncers := func(r *restartable) {
		wg.Go(func() {
			if err := r.run(ctx); err != nil {
				fail(err)
			}
		})
	}
	runSyncers(up)
	wg.Go(func() {
		if mgr.GetCache().WaitForCacheSync(ctx) {
			localSynced.Store(true)
		}
	})

	// The copies depend on which clusters are alive: they start once the Leases
	// are known, and never before (an unknown cluster counts as gone).
	log.Info("Waiting for the broker")
	if !brokerCluster.GetCache().WaitForCacheSync(ctx) || !toolscache.WaitForCacheSync(ctx.Done(), leaseReg.HasSynced) {
		return finish()
	}
	a.live.setSynced()
	brokerSynced.Store(true)
	a.clusterMetrics()
	log.Info("Broker synced; starting the copies from the broker")
	for _, k := range kick {
		k.kick(ctx)
	}
	runSyncers(down)
	runSyncers(imports)
	for {
		select {
		case <-ctx.Done():
			return finish()
		case <-changes:
			a.clusterMetrics()
			down.Restart()
			imports.Restart()
			for _, k := range kick {
				k.kick(ctx)
			}
		}
	}
}

func (a *Agent) clusterMetrics() {
	names, alive := a.live.States()
	a.metrics.setClusters(names, alive)
}

// importMetricHandler counts the aggregated ServiceImports on the broker by type.
func (a *Agent) importMetricHandler() toolscache.ResourceEventHandler {
	set := func(obj any, gone bool) {
		if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		si, ok := obj.(*mcsv1beta1.ServiceImport)
		if !ok {
			return
		}
		t := si.Spec.Type
		if gone {
			t = ""
		}
		a.metrics.setImport(si.Name, t)
	}
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { set(obj, false) },
		UpdateFunc: func(_, obj any) { set(obj, false) },
		DeleteFunc: func(obj any) { set(obj, true) },
	}
}

// serviceKey returns the reconcile key of Service namespace/name.
func serviceKey(namespace, name string) ctrl.Request {
	return ctrl.Request{NamespacedName: client.ObjectKey{Namespace: namespace, Name: name}}
}

// ownServiceOf returns the Service of one of this cluster's lighthouse slices.
func ownServiceOf(es *discoveryv1.EndpointSlice, cluster string) (ctrl.Request, bool) {
	l := es.Labels
	if l[discoveryv1.LabelManagedBy] != submv1.LighthouseManagedBy || l[mcsv1beta1.LabelSourceCluster] != cluster {
		return ctrl.Request{}, false
	}
	if _, copied := l[syncer.LabelCopy]; copied {
		return ctrl.Request{}, false
	}
	ns, name := l[submv1.LabelSourceNamespace], l[mcsv1beta1.LabelServiceName]
	if ns == "" || name == "" {
		return ctrl.Request{}, false
	}
	return serviceKey(ns, name), true
}
