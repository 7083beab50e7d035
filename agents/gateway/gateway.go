package gateway

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/submariner-go/submariner/agents/component"
	"github.com/submariner-go/submariner/agents/gateway/cable"
	"github.com/submariner-go/submariner/agents/syncer"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Config is what a gateway is configured with (the flags).
type Config struct {
	// ClusterID is this cluster's ID.
	ClusterID string
	// Namespace holds the Lease, the Endpoints (local and remote copies), the
	// Clusters and the Gateways.
	Namespace string
	// NodeName is the node the gateway runs on; it names the Gateway object.
	NodeName string
	// PodName and PodNamespace name the gateway's pod, labelled active or passive;
	// empty skips the label.
	PodName, PodNamespace string
	// Networks are the cluster's CIDRs.
	Networks component.Networks
	// Backend is the cable driver.
	Backend submv1.Backend
	// NATEnabled says the other clusters reach this one through NAT.
	NATEnabled bool
	// Port is the tunnel port (udp-port); NATTDiscoveryPort is published for peers.
	Port, NATTDiscoveryPort uint16
	// PublicIP lists the methods that find the public IP; the Node's annotation
	// gateway.submariner.io/public-ip replaces them.
	PublicIP []PublicIPMethod
	// PreferredServer makes this gateway prefer to be the IPsec server.
	PreferredServer bool
	// HealthCheck enables the health checker, probing every HealthCheckInterval
	// and declaring an error after more than MaxPacketLoss unanswered probes.
	HealthCheck         bool
	HealthCheckInterval time.Duration
	MaxPacketLoss       int
	// PSKFile holds the clusterset's pre-shared key.
	PSKFile string
	// Leader election timings.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// StatusPeriod is how often the Gateway object is refreshed without a change.
	StatusPeriod time.Duration
	// Resync is how often the tunnels are checked without an event.
	Resync time.Duration
}

// Validate checks the configuration; errors name the flag.
func (c Config) Validate() error {
	var errs []error
	if err := submv1.ValidateClusterID(c.ClusterID); err != nil {
		errs = append(errs, fmt.Errorf("--cluster-id: %w", err))
	}
	if c.Namespace == "" {
		errs = append(errs, errors.New("--namespace is empty"))
	}
	if c.NodeName == "" {
		errs = append(errs, errors.New("--node-name is empty: pass NODE_NAME from the downward API (spec.nodeName)"))
	}
	if _, err := submv1.ParseBackend(string(c.Backend)); err != nil {
		errs = append(errs, fmt.Errorf("--cable-driver: %w", err))
	}
	if c.Port == 0 {
		errs = append(errs, errors.New("--nat-t-port is 0: use the tunnel port, normally 4500"))
	}
	if c.HealthCheck && (c.HealthCheckInterval <= 0 || c.MaxPacketLoss < 1) {
		errs = append(errs, fmt.Errorf("--health-check-interval %s and --health-check-max-packet-loss %d must be positive", c.HealthCheckInterval, c.MaxPacketLoss))
	}
	if c.RetryPeriod <= 0 || c.RenewDeadline <= time.Duration(float64(c.RetryPeriod)*leaderelection.JitterFactor) || c.LeaseDuration <= c.RenewDeadline {
		errs = append(errs, fmt.Errorf("leader election timings --leader-lease-duration %s, --leader-renew-deadline %s, --leader-retry-period %s: the lease duration must exceed the renew deadline, which must exceed %.1f times the retry period",
			c.LeaseDuration, c.RenewDeadline, c.RetryPeriod, leaderelection.JitterFactor))
	}
	if c.StatusPeriod <= 0 || c.Resync <= 0 {
		errs = append(errs, errors.New("the status period and the resync period must be positive"))
	}
	return errors.Join(errs...)
}

// Deps are the gateway's ways to the world.
type Deps struct {
	// Local reaches the local cluster.
	Local *rest.Config
	// Broker reaches the broker; nil runs no syncer (tests).
	Broker *rest.Config
	// BrokerNamespace holds the clusterset's objects on the broker.
	BrokerNamespace string
	// Host is the gateway's network namespace.
	Host *cable.Host
	// Links lists the host's interfaces; nil reads them through Host.
	Links func() ([]Link, error)
	// Driver is the drivers' configuration; the gateway fills in LocalIP,
	// RouteSrc, PSK and Port.
	Driver cable.Config
	// NewDriver creates the driver; nil uses cable.New with Config.Backend.
	NewDriver func(cable.Config) (cable.Driver, error)
	// Resolver finds the public IP.
	Resolver PublicIPResolver
	// Log receives the gateway's logs.
	Log logr.Logger
	// Metrics and SyncerMetrics receive the metrics; nil keeps private ones.
	Metrics       *Metrics
	SyncerMetrics *syncer.Metrics
	// Ready is told why the gateway is not ready, and nil once it is.
	Ready func(error)
}

// Gateway is one gateway instance.
type Gateway struct {
	cfg  Config
	deps Deps
	log  logr.Logger

	client client.Client
	cache  cache.Cache
	kube   kubernetes.Interface

	kick       chan struct{} // wakes the reconcile loop
	kickStatus chan struct{} // wakes the status loop

	mu         sync.Mutex
	active     bool
	elector    *leaderelection.LeaderElector // the current term's
	activeCtx  context.Context
	failure    string
	local      *cable.Endpoint
	cniIP      netip.Addr // the health probes' source
	methods    []PublicIPMethod
	driver     cable.Driver
	engine     *Engine
	health     *HealthChecker
	podLabel   string // the label value last written
	lastPrune  time.Time
	clusterSet bool // the local Cluster is known to exist (this term)
}

// New checks cfg and connects to the local cluster; it changes nothing.
func New(cfg Config, deps Deps) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Local == nil || deps.Host == nil {
		return nil, errors.New("the gateway needs the local cluster's configuration and a host")
	}
	deps.Local = withRate(deps.Local)
	if deps.Broker != nil {
		deps.Broker = withRate(deps.Broker)
	}
	if deps.Metrics == nil {
		deps.Metrics = NewMetrics()
	}
	if deps.SyncerMetrics == nil {
		deps.SyncerMetrics = syncer.NewMetrics()
	}
	if deps.Ready == nil {
		deps.Ready = func(error) {}
	}
	if deps.NewDriver == nil {
		deps.NewDriver = func(c cable.Config) (cable.Driver, error) { return cable.New(cfg.Backend, c) }
	}
	if deps.Links == nil {
		h := deps.Host
		deps.Links = func() ([]Link, error) { return links(h.Netlink) }
	}
	c, err := newClient(deps.Local)
	if err != nil {
		return nil, err
	}
	ca, err := cache.New(deps.Local, cache.Options{
		Scheme:            c.Scheme(),
		DefaultNamespaces: map[string]cache.Config{cfg.Namespace: {}},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the local cluster's cache: %w", err)
	}
	kube, err := kubernetes.NewForConfig(deps.Local)
	if err != nil {
		return nil, fmt.Errorf("creating a clientset of the local cluster: %w", err)
	}
	return &Gateway{
		cfg: cfg, deps: deps, log: deps.Log,
		client: c, cache: ca, kube: kube,
		kick:       make(chan struct{}, 1),
		kickStatus: make(chan struct{}, 1),
	}, nil
}

// Client-side rate limits of the gateway's API clients, unless the configuration
// sets its own. client-go's defaults (5 per second, bursts of 10) would let the
// Lease renewals and the status updates delay a takeover's writes by seconds.
const (
	clientQPS   = 50
	clientBurst = 100
)

// withRate returns a copy of cfg with the gateway's rate limits where cfg has none.
func withRate(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 && cfg.RateLimiter == nil {
		cfg.QPS, cfg.Burst = clientQPS, clientBurst
	}
	return cfg
}

// newClient returns a client of the local cluster that knows our types.
func newClient(cfg *rest.Config) (client.Client, error) {
	scheme := runtime.NewScheme()
	utilruntime.Must(corev1.AddToScheme(scheme))
	utilruntime.Must(submv1.AddToScheme(scheme))
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("creating a client of the local cluster: %w", err)
	}
	return c, nil
}

// Run runs the gateway until ctx is done: it prepares the cable driver (on every
// gateway, so that a passive one is warm), reports itself in its Gateway object,
// and takes part in the leader election; while active it publishes the local
// Endpoint, syncs Endpoints and Clusters with the broker, keeps a tunnel to every
// remote cluster and health-checks them. When ctx ends it releases the Lease first,
// then closes the driver (removing its tunnels and routes).
func (g *Gateway) Run(ctx context.Context) error {
	g.deps.Ready(errors.New("starting"))
	inf, err := g.cache.GetInformer(ctx, &submv1.Endpoint{})
	if err != nil {
		return fmt.Errorf("watching Endpoints: %w", err)
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { g.wake() },
		UpdateFunc: func(any, any) { g.wake() },
		DeleteFunc: func(any) { g.wake() },
	}); err != nil {
		return fmt.Errorf("watching Endpoints: %w", err)
	}
	cacheCtx, stopCache := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCache()
	cacheDone := make(chan error, 1)
	go func() { cacheDone <- g.cache.Start(cacheCtx) }()
	if !g.cache.WaitForCacheSync(ctx) {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return errors.New("the Endpoints cache did not sync")
	}

	var wg sync.WaitGroup
	statusCtx, stopStatus := context.WithCancel(context.WithoutCancel(ctx))
	defer stopStatus()
	wg.Go(func() { g.statusLoop(statusCtx) })

	if !g.prepare(ctx) {
		stopStatus()
		wg.Wait()
		g.mu.Lock()
		d := g.driver
		g.mu.Unlock()
		if d != nil {
			closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if err := d.Close(closeCtx); err != nil {
				return fmt.Errorf("closing the cable driver: %w", err)
			}
		}
		return nil
	}
	g.deps.Ready(nil)
	loopCtx, stopLoop := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLoop()
	loopDone := make(chan struct{})
	go func() { defer close(loopDone); g.reconcileLoop(loopCtx) }()

	g.elect(ctx) // returns once the Lease is released

	stopLoop()
	<-loopDone
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	g.mu.Lock()
	h, d := g.health, g.driver
	g.mu.Unlock()
	if h != nil {
		h.Stop()
	}
	var errs []error
	if err := d.Close(closeCtx); err != nil {
		errs = append(errs, fmt.Errorf("closing the cable driver: %w", err))
	}
	stopStatus()
	wg.Wait()
	stopCache()
	if err := <-cacheDone; err != nil {
		errs = append(errs, fmt.Errorf("running the cache: %w", err))
	}
	return errors.Join(errs...)
}

func (g *Gateway) wake() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

func (g *Gateway) wakeStatus() {
	select {
	case g.kickStatus <- struct{}{}:
	default:
	}
}

// backoff doubles from retryMin to retryMax.
type backoff struct{ next time.Duration }

func (b *backoff) delay() time.Duration {
	if b.next == 0 {
		b.next = retryMin
	}
	d := b.next
	b.next = min(2*b.next, retryMax)
	return d
}

func (b *backoff) reset() { b.next = 0 }

// prepare retries until the driver is initialised and the local Endpoint is built,
// reporting each failure in the Gateway status. It returns false when ctx ends
// first.
func (g *Gateway) prepare(ctx context.Context) bool {
	var b backoff
	for {
		err := g.tryPrepare(ctx)
		if err == nil {
			g.setFailure("")
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		g.setFailure(err.Error())
		g.deps.Ready(err)
		d := b.delay()
		g.log.Error(err, "The gateway cannot start; retrying", "after", d.String())
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
		}
	}
}

func (g *Gateway) setFailure(msg string) {
	g.mu.Lock()
	changed := g.failure != msg
	g.failure = msg
	g.mu.Unlock()
	if changed {
		g.wakeStatus()
	}
}

func (g *Gateway) tryPrepare(ctx context.Context) error {
	var node corev1.Node
	if err := g.client.Get(ctx, types.NamespacedName{Name: g.cfg.NodeName}, &node); err != nil {
		return fmt.Errorf("reading node %s: %w", g.cfg.NodeName, err)
	}
	privateIP, err := NodeIP(&node)
	if err != nil {
		return err
	}
	ls, err := g.deps.Links()
	if err != nil {
		return err
	}
	if !hasAddress(ls, privateIP) {
		return fmt.Errorf("node %s's InternalIP %s is on none of this host's interfaces: check that NODE_NAME is this node's name and that the gateway runs with hostNetwork", node.Name, privateIP)
	}
	_, cniIP, ok := CNIAddress(ls, g.cfg.Networks.Cluster)
	if !ok && g.cfg.HealthCheck {
		return fmt.Errorf("no interface of this host holds an address in the cluster CIDRs %v: the health checker probes from it (the CNI interface, such as cni0); fix --cluster-cidr or disable the health checker with --health-check=false", g.cfg.Networks.Cluster)
	}
	methods := g.cfg.PublicIP
	if v, ok := nodeSetting(&node, AnnotationPublicIP); ok {
		if methods, err = ParsePublicIPMethods(v); err != nil {
			return fmt.Errorf("node %s's %s: %w", node.Name, AnnotationPublicIP, err)
		}
	}
	preferred := g.cfg.PreferredServer
	if v, ok := nodeSetting(&node, AnnotationPreferredServer); ok {
		if preferred, err = strconv.ParseBool(v); err != nil {
			return fmt.Errorf("node %s's %s %q is not true or false", node.Name, AnnotationPreferredServer, v)
		}
	}
	publicIP, err := g.deps.Resolver.Resolve(ctx, methods)
	if err != nil {
		return err
	}
	psk, err := readPSK(g.cfg.PSKFile)
	if err != nil {
		return err
	}

	g.mu.Lock()
	d := g.driver
	g.mu.Unlock()
	if d == nil {
		dc := g.deps.Driver
		dc.Host, dc.Port, dc.PSK, dc.LocalIP = g.deps.Host, g.cfg.Port, psk, privateIP
		if ok {
			dc.RouteSrc = cniIP
		}
		if dc.Log.GetSink() == nil {
			dc.Log = g.log.WithName(string(g.cfg.Backend))
		}
		if d, err = g.deps.NewDriver(dc); err != nil {
			return err
		}
		if err := d.Init(ctx); err != nil {
			_ = d.Close(ctx)
			return fmt.Errorf("initialising cable driver %s: %w", g.cfg.Backend, err)
		}
		// Kept from now on: a later retry must not start a second driver.
		g.mu.Lock()
		g.driver = d
		g.mu.Unlock()
	}
	info := LocalInfo{
		ClusterID: g.cfg.ClusterID, NodeName: g.cfg.NodeName, PrivateIP: privateIP, PublicIP: publicIP,
		Networks: g.cfg.Networks, NATEnabled: g.cfg.NATEnabled, Backend: g.cfg.Backend,
		Port: g.cfg.Port, NATTDiscoveryPort: g.cfg.NATTDiscoveryPort, PreferredServer: preferred,
		DriverConfig: d.BackendConfig(),
	}
	if ok && g.cfg.HealthCheck && !g.cfg.Networks.Globalnet() {
		// With Globalnet the CNI address may overlap remote clusters': the
		// health-check IP is the gateway's global IP, which Globalnet records on the
		// Gateway object (observeGlobalIP).
		info.HealthCheckIP = cniIP
	}
	local, err := LocalEndpoint(info)
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.local != nil && g.cfg.Networks.Globalnet() {
		local.HealthCheckIP = g.local.HealthCheckIP
	}
	g.driver, g.local, g.methods, g.cniIP = d, &local, methods, cniIP
	if g.engine == nil {
		g.engine = NewEngine(d, g.log.WithName("engine"))
	}
	if g.cfg.HealthCheck && g.health == nil {
		g.health = NewHealthChecker(g.deps.Host, g.cfg.HealthCheckInterval, g.cfg.MaxPacketLoss, g.log.WithName("health"))
	}
	g.log.Info("Gateway prepared", "backend", g.cfg.Backend, "privateIP", privateIP.String(), "publicIP", orNone(publicIP), "healthCheckIP", orNone(info.HealthCheckIP), "cable", local.CableName)
	return nil
}

// orNone renders a for the logs: "none" when it is unset.
func orNone(a netip.Addr) string {
	if !a.IsValid() {
		return "none"
	}
	return a.String()
}

// readPSK reads the pre-shared key; a missing or empty file gives nil, for the
// drivers that need none.
func readPSK(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the pre-shared key from %s: %w", path, err)
	}
	if len(b) == 0 {
		return nil, nil
	}
	return b, nil
}

// elect takes part in the leader election until ctx ends, then releases the Lease
// once the term has stopped. A term that ends because the Lease could not be
// renewed leaves it alone: by then another gateway may hold it.
func (g *Gateway) elect(ctx context.Context) {
	identity := g.cfg.NodeName + LeaderIdentitySuffix
	for ctx.Err() == nil {
		termDone := make(chan struct{})
		lock := &trackingLock{LeaseLock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Name: submv1.GatewayLeaseName, Namespace: g.cfg.Namespace},
			Client:     g.kube.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
		}}
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:          lock,
			LeaseDuration: g.cfg.LeaseDuration,
			RenewDeadline: g.cfg.RenewDeadline,
			RetryPeriod:   g.cfg.RetryPeriod,
			Name:          submv1.GatewayLeaseName,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(lctx context.Context) {
					defer close(termDone)
					g.lead(lctx)
				},
				OnStoppedLeading: func() {},
			},
		})
		if err != nil {
			// The timings were validated; nothing else can fail here.
			g.log.Error(err, "Creating the leader elector")
			return
		}
		g.mu.Lock()
		g.elector = le
		g.mu.Unlock()
		le.Run(ctx)
		// Run starts the term in a goroutine once the Lease is acquired; wait for
		// the term to end before competing again, or before shutting down.
		if !lock.acquired.Load() {
			continue
		}
		<-termDone
		if ctx.Err() != nil {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.RenewDeadline)
			if err := component.ReleaseLease(rctx, g.kube.CoordinationV1(), g.cfg.Namespace, submv1.GatewayLeaseName, identity); err != nil {
				g.log.Error(err, "The next gateway takes over when the Lease expires")
			}
			cancel()
		}
	}
}

// trackingLock is a Lease lock that notes when it held the Lease, so that elect
// knows whether a term was started.
type trackingLock struct {
	*resourcelock.LeaseLock
	acquired atomic.Bool
}

// Create implements resourcelock.Interface.
func (l *trackingLock) Create(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	err := l.LeaseLock.Create(ctx, r)
	if err == nil && r.HolderIdentity == l.Identity() {
		l.acquired.Store(true)
	}
	return err
}

// Update implements resourcelock.Interface.
func (l *trackingLock) Update(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	err := l.LeaseLock.Update(ctx, r)
	if err == nil && r.HolderIdentity == l.Identity() {
		l.acquired.Store(true)
	}
	return err
}

// termStopWarning is how long the end of a term may take before the gateway
// says what it waits for.
const termStopWarning = 10 * time.Second

// lead is the active term: it lasts until lctx ends (leadership lost or the
// gateway stopping).
func (g *Gateway) lead(lctx context.Context) {
	g.log.Info("Became the active gateway")
	g.mu.Lock()
	g.active, g.activeCtx, g.clusterSet = true, lctx, false
	g.mu.Unlock()
	g.deps.Metrics.Active.Set(1)
	g.wake()
	g.wakeStatus()

	var wg sync.WaitGroup
	if g.deps.Broker != nil {
		g.startSyncers(lctx, &wg)
	}
	<-lctx.Done()

	// The term is over: the gateway is passive from now on (its pod label and
	// status say so at once), whatever the syncers and the health checker take
	// to stop.
	g.mu.Lock()
	g.active, g.activeCtx = false, nil
	h := g.health
	g.mu.Unlock()
	g.deps.Metrics.Active.Set(0)
	g.log.Info("No longer the active gateway; the tunnels stay until another gateway takes over")
	g.wake()
	g.wakeStatus()

	stopped := make(chan struct{})
	go func() { wg.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(termStopWarning):
		g.log.Info("The term's syncers are still stopping; waiting for them before competing for the Lease again", "after", termStopWarning.String())
		<-stopped
	}
	if h != nil {
		h.Stop()
	}
}

// startSyncers runs the Endpoint and Cluster syncers for the term.
func (g *Gateway) startSyncers(ctx context.Context, wg *sync.WaitGroup) {
	log := g.log.WithName("syncer")
	eps, err := syncer.New(syncer.Config[*submv1.Endpoint]{
		ClusterID: g.cfg.ClusterID, Local: g.deps.Local, Broker: g.deps.Broker,
		BrokerNamespace: g.deps.BrokerNamespace, Log: log, Metrics: g.deps.SyncerMetrics,
		ToBroker: syncer.ToBroker[*submv1.Endpoint]{
			Namespace: g.cfg.Namespace,
			// Only this cluster's own Endpoints go up.
			Filter: func(e *submv1.Endpoint) bool { return e.Spec.ClusterID == g.cfg.ClusterID },
		},
		FromBroker: syncer.FromBroker[*submv1.Endpoint]{
			Into: g.cfg.Namespace,
		},
	})
	if err != nil {
		g.log.Error(err, "Creating the Endpoint syncer")
		return
	}
	clusters, err := syncer.New(syncer.Config[*submv1.Cluster]{
		ClusterID: g.cfg.ClusterID, Local: g.deps.Local, Broker: g.deps.Broker,
		BrokerNamespace: g.deps.BrokerNamespace, Log: log, Metrics: g.deps.SyncerMetrics,
		ToBroker: syncer.ToBroker[*submv1.Cluster]{
			Namespace: g.cfg.Namespace,
			Filter:    func(c *submv1.Cluster) bool { return c.Spec.ClusterID == g.cfg.ClusterID },
		},
		FromBroker: syncer.FromBroker[*submv1.Cluster]{
			Into: g.cfg.Namespace,
		},
	})
	if err != nil {
		g.log.Error(err, "Creating the Cluster syncer")
		return
	}
	for _, s := range []*syncer.Syncer{eps, clusters} {
		wg.Go(func() {
			if err := s.Run(ctx); err != nil {
				g.log.Error(err, "Running a syncer")
			}
		})
	}
}

// reconcileLoop reconciles on every event, on the resync period and after
// failures (with backoff), until ctx ends.
func (g *Gateway) reconcileLoop(ctx context.Context) {
	resync := time.NewTicker(g.cfg.Resync)
	defer resync.Stop()
	refresh := time.NewTicker(PublicIPRefresh)
	defer refresh.Stop()
	var b backoff
	var retry <-chan time.Time
	for {
		if err := g.reconcile(ctx); err != nil && ctx.Err() == nil {
			d := b.delay()
			g.log.Error(err, "Reconciling; retrying", "after", d.String())
			retry = time.After(d)
		} else {
			b.reset()
			retry = nil
		}
		select {
		case <-ctx.Done():
			return
		case <-g.kick:
		case <-resync.C:
		case <-retry:
		case <-refresh.C:
			g.refreshPublicIP(ctx)
		}
	}
}

// refreshPublicIP resolves the public IP again, when it can change, and updates
// the local Endpoint.
func (g *Gateway) refreshPublicIP(ctx context.Context) {
	g.mu.Lock()
	methods, local, active := g.methods, g.local, g.active
	g.mu.Unlock()
	if !active || !Dynamic(methods) || local == nil {
		return
	}
	ip, err := g.deps.Resolver.Resolve(ctx, methods)
	if err != nil {
		g.log.Error(err, "Resolving the public IP again; keeping the last one", "publicIP", orNone(local.PublicIP))
		return
	}
	if ip == local.PublicIP {
		return
	}
	g.log.Info("The public IP changed", "old", orNone(local.PublicIP), "new", ip.String())
	l := *local
	l.PublicIP = ip
	g.mu.Lock()
	g.local = &l
	g.mu.Unlock()
}

// leading reports whether the gateway is active and, as far as it last saw, still
// holds the Lease. A leader that saw another holder renews in vain until its renew
// deadline passes; meanwhile it must not act as the active gateway, or it would
// fight the new one over the cluster's Endpoint. The lock is held.
func (g *Gateway) leading() bool {
	return g.active && g.elector != nil && g.elector.IsLeader()
}

// reconcile makes the world match the gateway's role.
func (g *Gateway) reconcile(ctx context.Context) error {
	g.mu.Lock()
	active, actx, local, engine, health := g.leading(), g.activeCtx, g.local, g.engine, g.health
	g.mu.Unlock()
	var errs []error
	if err := g.labelPod(ctx, active); err != nil {
		errs = append(errs, err)
	}
	if local == nil || engine == nil {
		return errors.Join(errs...)
	}
	if active {
		// The Lease as the API server has it now: a leader that lost it has not
		// noticed yet if its last renewal attempt came before the takeover.
		holds, err := g.holdsLease(ctx)
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		active = holds
	}
	var eps submv1.EndpointList
	if err := g.cache.List(ctx, &eps, client.InNamespace(g.cfg.Namespace)); err != nil {
		return errors.Join(append(errs, fmt.Errorf("listing Endpoints: %w", err))...)
	}
	if !active {
		// Another gateway of the cluster took over: its Endpoint is the newest.
		// Only then do this gateway's tunnels (and their routes) go.
		if other := newestLocal(eps.Items, g.cfg.ClusterID); other != nil && other.Spec.Hostname != g.cfg.NodeName && len(engine.Tunnels()) > 0 {
			g.log.Info("Another gateway is active; removing this one's tunnels", "activeGateway", other.Spec.Hostname)
			if health != nil {
				health.Stop()
			}
			if err := engine.DisconnectAll(ctx); err != nil {
				errs = append(errs, err)
			}
			g.wakeStatus()
		}
		return errors.Join(errs...)
	}
	if err := g.publish(ctx, *local, eps.Items); err != nil {
		errs = append(errs, err)
	}
	g.deps.Metrics.SyncIterations.Inc()
	if err := engine.Sync(ctx, *local, eps.Items); err != nil {
		errs = append(errs, err)
	}
	if health != nil && actx != nil {
		g.mu.Lock()
		src := g.cniIP
		g.mu.Unlock()
		var targets []HealthTarget
		for _, t := range engine.Tunnels() {
			if src.IsValid() && t.Remote.HealthCheckIP.IsValid() {
				targets = append(targets, HealthTarget{CableName: t.Remote.CableName, Src: src, Dst: t.Remote.HealthCheckIP})
			}
		}
		health.Set(actx, targets)
	}
	g.wakeStatus()
	return errors.Join(errs...)
}

// observeGlobalIP takes, with Globalnet and health checks on, the gateway's global
// IP from its Gateway object's annotation as the local Endpoint's healthCheckIP.
func (g *Gateway) observeGlobalIP(v string) {
	if !g.cfg.Networks.Globalnet() || !g.cfg.HealthCheck {
		return
	}
	ip, err := netip.ParseAddr(v)
	if err != nil || !slices.ContainsFunc(g.cfg.Networks.Global, func(p netip.Prefix) bool { return p.Contains(ip) }) {
		ip = netip.Addr{}
	}
	g.mu.Lock()
	if g.local == nil || g.local.HealthCheckIP == ip {
		g.mu.Unlock()
		return
	}
	l := *g.local
	l.HealthCheckIP = ip
	g.local = &l
	g.mu.Unlock()
	g.log.Info("The gateway's global IP changed; it is the health-check IP now", "healthCheckIP", ip.String())
	g.wake()
}

// holdsLease reports whether the Lease names this gateway as its holder.
func (g *Gateway) holdsLease(ctx context.Context) (bool, error) {
	l, err := g.kube.CoordinationV1().Leases(g.cfg.Namespace).Get(ctx, submv1.GatewayLeaseName, metav1.GetOptions{})
	if err != nil {
		return false, fmt.Errorf("reading the Lease %s: %w", submv1.GatewayLeaseName, err)
	}
	return l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == g.cfg.NodeName+LeaderIdentitySuffix, nil
}

// newestLocal returns the newest Endpoint of the cluster published in the cluster
// itself (copies from the broker are not), nil when there is none.
func newestLocal(eps []submv1.Endpoint, clusterID string) *submv1.Endpoint {
	var newest *submv1.Endpoint
	for i := range eps {
		e := &eps[i]
		if e.Spec.ClusterID != clusterID || e.Labels[syncer.LabelCopy] == "true" || e.DeletionTimestamp != nil {
			continue
		}
		if newest == nil || endpointOrder(*newest, *e) < 0 {
			newest = e
		}
	}
	return newest
}

// publish makes the local Endpoint exist as local says, and deletes the cluster's
// other local Endpoints (a new active gateway evicts the old one's). It also
// creates the local Cluster if join's is missing.
func (g *Gateway) publish(ctx context.Context, local cable.Endpoint, eps []submv1.Endpoint) error {
	var errs []error
	name := EndpointName(local.ClusterID, local.CableName)
	spec := local.Spec()
	var have *submv1.Endpoint
	for i := range eps {
		if eps[i].Name == name {
			have = &eps[i]
		}
	}
	switch {
	case have == nil:
		ep := &submv1.Endpoint{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: g.cfg.Namespace, Labels: map[string]string{submv1.ClusterIDLabel: local.ClusterID}},
			Spec:       spec,
		}
		if err := g.client.Create(ctx, ep); err != nil && !apierrors.IsAlreadyExists(err) {
			errs = append(errs, fmt.Errorf("creating the local Endpoint %s: %w", name, err))
		} else if err == nil {
			g.log.Info("Published the local Endpoint", "endpoint", name)
		}
	case !endpointSpecEqual(have.Spec, spec):
		ep := have.DeepCopy()
		ep.Spec = spec
		if ep.Labels == nil {
			ep.Labels = map[string]string{}
		}
		ep.Labels[submv1.ClusterIDLabel] = local.ClusterID
		if err := g.client.Update(ctx, ep); err != nil {
			errs = append(errs, fmt.Errorf("updating the local Endpoint %s: %w", name, err))
		} else {
			g.log.Info("Updated the local Endpoint", "endpoint", name)
		}
	}
	for _, e := range eps {
		if e.Name == name || e.Spec.ClusterID != local.ClusterID || e.Labels[syncer.LabelCopy] == "true" || e.DeletionTimestamp != nil {
			continue
		}
		err := g.client.Delete(ctx, &e, client.Preconditions{UID: &e.UID})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, fmt.Errorf("deleting the old local Endpoint %s: %w", e.Name, err))
			continue
		}
		g.log.Info("Deleted another gateway's local Endpoint", "endpoint", e.Name, "hostname", e.Spec.Hostname)
	}
	// Last: the Endpoint is what a takeover waits for.
	if err := g.ensureCluster(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func endpointSpecEqual(a, b submv1.EndpointSpec) bool {
	norm := func(s submv1.EndpointSpec) submv1.EndpointSpec {
		if s.Subnets == nil {
			s.Subnets = []string{}
		}
		if len(s.BackendConfig) == 0 {
			s.BackendConfig = nil
		}
		return s
	}
	a, b = norm(a), norm(b)
	return a.ClusterID == b.ClusterID && a.CableName == b.CableName && a.HealthCheckIP == b.HealthCheckIP &&
		a.Hostname == b.Hostname && slices.Equal(a.Subnets, b.Subnets) && a.PrivateIP == b.PrivateIP &&
		a.PublicIP == b.PublicIP && a.NATEnabled == b.NATEnabled && a.Backend == b.Backend &&
		maps.Equal(a.BackendConfig, b.BackendConfig)
}

// ensureCluster creates the local Cluster when it is missing (join creates it).
func (g *Gateway) ensureCluster(ctx context.Context) error {
	g.mu.Lock()
	done := g.clusterSet
	g.mu.Unlock()
	if done {
		return nil
	}
	var c submv1.Cluster
	err := g.client.Get(ctx, types.NamespacedName{Namespace: g.cfg.Namespace, Name: g.cfg.ClusterID}, &c)
	if apierrors.IsNotFound(err) {
		c = submv1.Cluster{
			ObjectMeta: metav1.ObjectMeta{Name: g.cfg.ClusterID, Namespace: g.cfg.Namespace, Labels: map[string]string{submv1.ClusterIDLabel: g.cfg.ClusterID}},
			Spec: submv1.ClusterSpec{
				ClusterID:   g.cfg.ClusterID,
				ClusterCIDR: prefixStrings(g.cfg.Networks.Cluster),
				ServiceCIDR: prefixStrings(g.cfg.Networks.Service),
				GlobalCIDR:  prefixStrings(g.cfg.Networks.Global),
			},
		}
		err = g.client.Create(ctx, &c)
		if err == nil {
			g.log.Info("Created the local Cluster", "cluster", g.cfg.ClusterID)
		}
	}
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("making sure the local Cluster %s exists: %w", g.cfg.ClusterID, err)
	}
	g.mu.Lock()
	g.clusterSet = true
	g.mu.Unlock()
	return nil
}

func prefixStrings[P fmt.Stringer](ps []P) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

// labelPod labels the gateway's pod with its role, when it changed.
func (g *Gateway) labelPod(ctx context.Context, active bool) error {
	if g.cfg.PodName == "" || g.cfg.PodNamespace == "" {
		return nil
	}
	want := string(submv1.HAStatusPassive)
	if active {
		want = string(submv1.HAStatusActive)
	}
	g.mu.Lock()
	have := g.podLabel
	g.mu.Unlock()
	if have == want {
		return nil
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, LabelGatewayStatus, want)
	if _, err := g.kube.CoreV1().Pods(g.cfg.PodNamespace).Patch(ctx, g.cfg.PodName, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("labelling pod %s/%s %s=%s: %w", g.cfg.PodNamespace, g.cfg.PodName, LabelGatewayStatus, want, err)
	}
	g.mu.Lock()
	g.podLabel = want
	g.mu.Unlock()
	return nil
}

// pruneGateways deletes, at most once per status period, the Gateway objects of
// other nodes whose update-timestamp is older than StaleFactor status periods:
// their gateway is gone.
func (g *Gateway) pruneGateways(ctx context.Context) error {
	g.mu.Lock()
	due := time.Since(g.lastPrune) >= g.cfg.StatusPeriod
	if due {
		g.lastPrune = time.Now()
	}
	g.mu.Unlock()
	if !due {
		return nil
	}
	var list submv1.GatewayList
	if err := g.client.List(ctx, &list, client.InNamespace(g.cfg.Namespace)); err != nil {
		return fmt.Errorf("listing Gateways: %w", err)
	}
	var errs []error
	for _, gw := range StaleGateways(list.Items, g.cfg.NodeName, time.Now(), StaleFactor*g.cfg.StatusPeriod) {
		err := g.client.Delete(ctx, &gw, client.Preconditions{UID: &gw.UID, ResourceVersion: &gw.ResourceVersion})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, fmt.Errorf("deleting the stale Gateway %s: %w", gw.Name, err))
			continue
		}
		if err == nil {
			g.log.Info("Deleted a stale Gateway", "gateway", gw.Name, "updated", gw.Annotations[AnnotationUpdateTimestamp])
		}
	}
	return errors.Join(errs...)
}

// StaleGateways returns the Gateways other than self's whose update-timestamp (or,
// without one, creation time) is older than maxAge at now, sorted by name.
func StaleGateways(gws []submv1.Gateway, self string, now time.Time, maxAge time.Duration) []submv1.Gateway {
	var out []submv1.Gateway
	for _, gw := range gws {
		if gw.Name == self {
			continue
		}
		updated := gw.CreationTimestamp.Time
		if s, ok := gw.Annotations[AnnotationUpdateTimestamp]; ok {
			if sec, err := strconv.ParseInt(s, 10, 64); err == nil {
				updated = time.Unix(sec, 0)
			}
		}
		if now.Sub(updated) > maxAge {
			out = append(out, gw)
		}
	}
	slices.SortFunc(out, func(a, b submv1.Gateway) int { return strings.Compare(a.Name, b.Name) })
	return out
}
