package globalnet

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/submariner-go/submariner/agents/globalnet/ipam"
	"github.com/submariner-go/submariner/agents/netkit/iptables"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// kind is what a work item reconciles.
type kind int

const (
	kindIngress       kind = iota // a GlobalIngressIP (namespace/name)
	kindEgress                    // a GlobalEgressIP (namespace/name)
	kindClusterEgress             // a ClusterGlobalEgressIP (name)
	kindExport                    // an exported ClusterIP Service's GlobalIngressIP (namespace/name)
	kindHeadless                  // the headless GlobalIngressIPs of a namespace
	kindNamespace                 // the egress IPs of a namespace's Pods
	kindInternal                  // an internal Service (namespace/name): deleted when orphaned
	kindGateway                   // the active gateway's global IP
	kindRules                     // the iptables sync
)

var kindNames = [...]string{"giip", "geip", "cgeip", "export", "headless", "namespace", "internal", "gateway", "rules"}

func (k kind) String() string { return kindNames[k] }

// owner names an allocation in the pool: "<kind>/<namespace>/<name>", or
// "<kind>/<name>" for cluster-scoped objects.
func owner(k kind, ns, name string) string {
	if ns == "" {
		return k.String() + "/" + name
	}
	return k.String() + "/" + ns + "/" + name
}

// item is one unit of work.
type item struct {
	kind     kind
	ns, name string
}

func (i item) String() string {
	if i.ns == "" && i.name == "" {
		return i.kind.String()
	}
	return owner(i.kind, i.ns, i.name)
}

var rulesItem = item{kind: kindRules}

// workers is how many items the engine works on at once. Decisions are made one
// at a time (under Engine.mu); the API requests around them overlap, which is what
// makes the first start of a cluster with thousands of exports take minutes, not
// hours.
const workers = 8

// Engine is one term of the active Globalnet: it watches the cluster through its
// tables, allocates from one pool, writes the objects' status and the internal
// Services, and keeps the iptables rules in line, all from one worker, so that no
// two decisions about addresses ever race.
type Engine struct {
	cfg     Config
	log     logr.Logger
	kube    client.Client
	core    kubernetes.Interface
	rest    *restClients
	writer  *iptables.Writer
	host    Host
	metrics *Metrics
	ready   func(error)
	now     func() time.Time

	queue workqueue.TypedRateLimitingInterface[item]
	t     tables

	// bootstrapping is true until the first sync of the rules is due.
	bootstrapping atomic.Bool
	// synced is true after the first successful sync (rules item only, which
	// never runs concurrently with itself).
	synced   bool
	notes    []string        // notes of the last plan (rules item only)
	lastSync iptables.Result // what the last sync wrote (rules item only)

	// mu guards everything below: every decision about addresses and rules is
	// made holding it, API requests are made without it. Workers process
	// different items concurrently; the work queue never hands one item to two.
	mu      sync.Mutex
	pool    *ipam.Pool
	uids    map[string]types.UID // allocation owner -> UID of the object holding it
	counts  map[kind]int         // addresses held per kind
	starved map[item]bool        // items waiting for room in the pool

	clusterEgress []netip.Addr
	health        HealthCheck
	ingress       map[string]Ingress                 // owner -> DNAT of a headless global IP
	headless      map[string]map[string]HeadlessAddr // namespace -> GlobalIngressIP -> address
	egress        map[string][]Egress                // namespace -> SNAT of its sources
	rules         *Rules                             // the per-address rules of ingress and egress
}

// tables are the engine's views of the cluster.
type tables struct {
	ingress   *table[ingressRec]
	egress    *table[egressRec]
	cluster   *table[egressRec]
	exports   *table[exportRec]
	services  *table[serviceRec]
	internal  *table[serviceRec]
	pods      *table[podRec]
	slices    *table[sliceRec]
	gateways  *table[gatewayRec]
	endpoints *table[endpointRec] // shared with the Agent, which runs it
}

// EngineDeps are what an Engine works with.
type EngineDeps struct {
	Kube    *rest.Config
	Writer  *iptables.Writer
	Host    Host
	Metrics *Metrics
	// Endpoints is the Agent's table of submariner.io Endpoints (running).
	Endpoints *table[endpointRec]
	// Ready is told why the engine is not ready, and nil after its first sync.
	Ready func(error)
}

// NewEngine returns an engine for cfg; Run starts it.
func NewEngine(cfg Config, log logr.Logger, deps EngineDeps) (*Engine, error) {
	pool, err := ipam.New(cfg.GlobalCIDR)
	if err != nil {
		return nil, err
	}
	kube, err := client.New(deps.Kube, client.Options{Scheme: clientScheme()})
	if err != nil {
		return nil, fmt.Errorf("creating the API client: %w", err)
	}
	core, err := kubernetes.NewForConfig(deps.Kube)
	if err != nil {
		return nil, fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	rc, err := newRESTClients(deps.Kube)
	if err != nil {
		return nil, err
	}
	ready := deps.Ready
	if ready == nil {
		ready = func(error) {}
	}
	e := &Engine{
		cfg: cfg, log: log, kube: kube, core: core, rest: rc, writer: deps.Writer, host: deps.Host,
		metrics: deps.Metrics, ready: ready, now: time.Now,
		// No queue metrics: they keep a map entry per queued item, and Go maps
		// never shrink after the first start's backlog of thousands of items.
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[item](retryBase, retryMax),
			workqueue.TypedRateLimitingQueueConfig[item]{}),
		pool: pool, uids: map[string]types.UID{}, counts: map[kind]int{}, starved: map[item]bool{},
		ingress: map[string]Ingress{}, headless: map[string]map[string]HeadlessAddr{}, egress: map[string][]Egress{},
		rules: NewRules(),
	}
	e.t = e.newTables(deps.Endpoints)
	return e, nil
}

func (e *Engine) add(k kind, ns, name string) { e.queue.Add(item{kind: k, ns: ns, name: name}) }

// newTables creates the tables, each notifying the items its changes concern.
func (e *Engine) newTables(endpoints *table[endpointRec]) tables {
	return tables{
		ingress: newTable("globalingressips", compactIngress, func(k types.NamespacedName, old, cur *ingressRec) {
			e.add(kindIngress, k.Namespace, k.Name)
			// Who creates GlobalIngressIPs looks again when one appears, goes or is
			// edited, not for the status Globalnet writes. (A ClusterIP Service's
			// that appears needs no look: its own reconcile removes it when no
			// export wants it.)
			for _, r := range []*ingressRec{old, cur} {
				if r == nil || old != nil && cur != nil && old.TargetIP == cur.TargetIP && old.ServiceRef == cur.ServiceRef && old.PodRef == cur.PodRef {
					continue
				}
				if old == nil && r.Target == submv1.ClusterIPService {
					continue
				}
				if r.Target == submv1.ClusterIPService {
					e.add(kindExport, k.Namespace, k.Name)
				} else {
					e.add(kindHeadless, k.Namespace, "")
				}
			}
		}),
		egress: newTable("globalegressips", compactEgress, func(k types.NamespacedName, _, _ *egressRec) {
			e.add(kindEgress, k.Namespace, k.Name)
		}),
		cluster: newTable("clusterglobalegressips", compactEgress, func(k types.NamespacedName, _, _ *egressRec) {
			e.add(kindClusterEgress, "", k.Name)
		}),
		exports: newTable("serviceexports", compactExport, func(k types.NamespacedName, _, _ *exportRec) {
			e.add(kindExport, k.Namespace, k.Name)
			if svc, ok := e.t.services.Get(k); ok && svc.Headless {
				e.add(kindHeadless, k.Namespace, "")
			}
		}),
		services: newTable("services", compactUserService, func(k types.NamespacedName, old, cur *serviceRec) {
			_, exported := e.t.exports.Get(k)
			_, hasIngress := e.t.ingress.Get(types.NamespacedName{Namespace: k.Namespace, Name: submv1.ServiceGlobalIngressIPName(k.Name)})
			if exported || hasIngress {
				e.add(kindExport, k.Namespace, k.Name)
			}
			if hasIngress {
				e.add(kindIngress, k.Namespace, submv1.ServiceGlobalIngressIPName(k.Name))
			}
			if exported && (old != nil && old.Headless || cur != nil && cur.Headless) {
				e.add(kindHeadless, k.Namespace, "")
			}
		}),
		internal: newTable("internal-services", compactInternalService, func(k types.NamespacedName, old, cur *serviceRec) {
			// The GlobalIngressIP's reconcile repairs its internal Service, or
			// deletes it when the GlobalIngressIP is gone.
			for _, r := range []*serviceRec{old, cur} {
				if r != nil && r.ExportedRef != "" {
					e.add(kindIngress, k.Namespace, r.ExportedRef)
				}
			}
		}),
		pods: newTable("pods", compactPod, func(k types.NamespacedName, _, _ *podRec) {
			e.add(kindNamespace, k.Namespace, "")
		}),
		slices: newTable("endpointslices", compactSlice, func(k types.NamespacedName, _, _ *sliceRec) {
			e.add(kindHeadless, k.Namespace, "")
		}),
		gateways: newTable("gateways", compactGateway, func(types.NamespacedName, *gatewayRec, *gatewayRec) {
			e.add(kindGateway, "", "")
		}),
		endpoints: endpoints,
	}
}

// EndpointsChanged tells the engine that the Endpoints changed (the remote subnets).
func (e *Engine) EndpointsChanged() { e.queue.Add(rulesItem) }

// Run watches, bootstraps and works until ctx is done. It returns an error only when
// it cannot start.
func (e *Engine) Run(ctx context.Context) error {
	defer e.queue.ShutDown()
	if e.metrics != nil {
		e.metrics.active.Set(1)
		defer e.metrics.active.Set(0)
	}
	ctx, cancel := context.WithCancel(logr.NewContext(ctx, e.log))
	defer cancel()
	done := make(chan struct{})
	defer func() { cancel(); <-done }()
	go func() {
		defer close(done)
		e.runTables(ctx)
	}()
	for _, w := range e.syncedChans() {
		e.ready(fmt.Errorf("starting: waiting for the list of %s from the API server", w.name))
		select {
		case <-w.synced:
		case <-ctx.Done():
			return nil
		}
	}
	e.ready(errors.New("starting: reconciling everything once before the first sync of the rules"))
	e.bootstrap(ctx)
	if e.cfg.Resync > 0 {
		go e.repairEvery(ctx, e.cfg.Resync)
	}
	go func() {
		<-ctx.Done()
		e.queue.ShutDown()
	}()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for e.processNext(ctx) {
			}
		})
	}
	wg.Wait()
	return nil
}

// runTables runs every table's reflector until ctx is done.
func (e *Engine) runTables(ctx context.Context) {
	rc := e.rest
	ns := e.cfg.Namespace
	runs := []func(){
		func() {
			e.t.ingress.run(ctx, listWatch(rc.submariner, "globalingressips", "", ""), &submv1.GlobalIngressIP{})
		},
		func() {
			e.t.egress.run(ctx, listWatch(rc.submariner, "globalegressips", "", ""), &submv1.GlobalEgressIP{})
		},
		func() {
			e.t.cluster.run(ctx, listWatch(rc.submariner, "clusterglobalegressips", "", ""), &submv1.ClusterGlobalEgressIP{})
		},
		func() { e.t.gateways.run(ctx, listWatch(rc.submariner, "gateways", ns, ""), &submv1.Gateway{}) },
		func() { e.t.exports.run(ctx, listWatch(rc.mcs, "serviceexports", "", ""), &mcsv1beta1.ServiceExport{}) },
		func() {
			e.t.services.run(ctx, listWatch(rc.core, "services", "", "!"+submv1.LabelExportedServiceRef), &corev1.Service{})
		},
		func() {
			e.t.internal.run(ctx, listWatch(rc.core, "services", "", submv1.LabelExportedServiceRef), &corev1.Service{})
		},
		func() { e.t.pods.run(ctx, listWatch(rc.core, "pods", "", ""), &corev1.Pod{}) },
		func() {
			e.t.slices.run(ctx, listWatch(rc.discovery, "endpointslices", "", corev1.IsHeadlessService), &discoveryv1.EndpointSlice{})
		},
	}
	done := make(chan struct{}, len(runs))
	for _, run := range runs {
		go func() {
			defer func() { done <- struct{}{} }()
			run()
		}()
	}
	for range runs {
		<-done
	}
}

// waiting is a table the engine waits for.
type waiting struct {
	name   string
	synced <-chan struct{}
}

func (e *Engine) syncedChans() []waiting {
	return []waiting{
		{e.t.ingress.name, e.t.ingress.Synced()}, {e.t.egress.name, e.t.egress.Synced()},
		{e.t.cluster.name, e.t.cluster.Synced()}, {e.t.gateways.name, e.t.gateways.Synced()},
		{e.t.exports.name, e.t.exports.Synced()}, {e.t.services.name, e.t.services.Synced()},
		{e.t.internal.name, e.t.internal.Synced()}, {e.t.pods.name, e.t.pods.Synced()},
		{e.t.slices.name, e.t.slices.Synced()}, {e.t.endpoints.name, e.t.endpoints.Synced()},
	}
}

// repairEvery makes the next sync a full one every period, so that rules others
// removed or jumps they moved come back.
func (e *Engine) repairEvery(ctx context.Context, period time.Duration) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			e.writer.Invalidate()
			e.queue.Add(rulesItem)
		}
	}
}

func (e *Engine) processNext(ctx context.Context) bool {
	it, shutdown := e.queue.Get()
	if shutdown {
		return false
	}
	defer e.queue.Done(it)
	if err := e.process(ctx, it); err != nil {
		if ctx.Err() != nil {
			return false
		}
		e.log.Error(err, "Reconcile failed, retrying", "item", it.String())
		e.queue.AddRateLimited(it)
		return true
	}
	e.queue.Forget(it)
	return true
}

func (e *Engine) process(ctx context.Context, it item) error {
	defer e.updatePoolMetrics()
	switch it.kind {
	case kindIngress:
		return e.reconcileIngress(ctx, it.ns, it.name)
	case kindEgress:
		return e.reconcileEgress(ctx, it.ns, it.name)
	case kindClusterEgress:
		return e.reconcileClusterEgress(ctx, it.name)
	case kindExport:
		return e.reconcileExport(ctx, it.ns, it.name)
	case kindHeadless:
		return e.reconcileHeadless(ctx, it.ns)
	case kindNamespace:
		e.reconcileNamespace(it.ns)
		return nil
	case kindInternal:
		return e.reconcileInternal(ctx, it.ns, it.name)
	case kindGateway:
		return e.reconcileGateway(ctx)
	case kindRules:
		return e.syncRules(ctx)
	}
	return fmt.Errorf("unknown work item %v", it)
}

// bootstrap rebuilds the allocations from the objects' status, before anything new
// is allocated, then reconciles everything once, in dependency order, and writes the
// rules once: a restarted Globalnet keeps every address and, when the kernel holds
// the rules already, writes nothing.
func (e *Engine) bootstrap(ctx context.Context) {
	type claim struct {
		created time.Time
		owner   string
		uid     types.UID
		ips     []string
	}
	var claims []claim
	for _, r := range e.t.cluster.All() {
		if r.Key.Name == submv1.ClusterGlobalEgressIPName && len(r.Rec.AllocatedIPs) > 0 {
			claims = append(claims, claim{r.Rec.Created, owner(kindClusterEgress, "", r.Key.Name), r.Rec.UID, r.Rec.AllocatedIPs})
		}
	}
	for _, r := range e.t.egress.All() {
		if len(r.Rec.AllocatedIPs) > 0 {
			claims = append(claims, claim{r.Rec.Created, owner(kindEgress, r.Key.Namespace, r.Key.Name), r.Rec.UID, r.Rec.AllocatedIPs})
		}
	}
	for _, r := range e.t.ingress.All() {
		if r.Rec.AllocatedIP != "" {
			claims = append(claims, claim{time.Unix(0, r.Rec.Created), owner(kindIngress, r.Key.Namespace, r.Key.Name), r.Rec.UID, []string{r.Rec.AllocatedIP}})
		}
	}
	for _, r := range e.t.gateways.All() {
		if r.Rec.GlobalIP != "" {
			claims = append(claims, claim{owner: owner(kindGateway, "", r.Key.Name), uid: r.Rec.UID, ips: []string{r.Rec.GlobalIP}})
		}
	}
	// The oldest claim to an address keeps it.
	slices.SortStableFunc(claims, func(a, b claim) int {
		if c := a.created.Compare(b.created); c != 0 {
			return c
		}
		return strings.Compare(a.owner, b.owner)
	})
	kept := 0
	e.mu.Lock()
	for _, c := range claims {
		ips := parseAddrs(c.ips)
		var err error
		if len(ips) == 0 {
			err = fmt.Errorf("%v are not IPv4 addresses", c.ips)
		} else {
			err = e.pool.Reserve(c.owner, ips)
		}
		if err != nil {
			e.log.Info("Not keeping a recorded allocation; the object gets new addresses", "owner", c.owner, "reason", err.Error())
			continue
		}
		e.uids[c.owner] = c.uid
		e.counts[ownerKind(c.owner)] += len(ips)
		kept++
	}
	e.mu.Unlock()
	e.log.Info("Allocations read back", "kept", kept, "recorded", len(claims), "pool", e.pool.Prefix().String())

	// Reconcile everything once, phase by phase (allocations first, then what
	// creates or deletes objects, then the Pods' egress, which depends on the
	// allocations), each phase by the workers in parallel; then write the rules
	// once.
	e.bootstrapping.Store(true)
	gateway := []item{{kind: kindGateway}, {kind: kindClusterEgress, name: submv1.ClusterGlobalEgressIPName}}
	for _, r := range e.t.cluster.All() {
		gateway = append(gateway, item{kindClusterEgress, "", r.Key.Name})
	}
	var allocations, objects, headless, egress []item
	namespaces := map[string]bool{}
	for _, r := range e.t.egress.All() {
		allocations = append(allocations, item{kindEgress, r.Key.Namespace, r.Key.Name})
		namespaces[r.Key.Namespace] = true
	}
	for _, r := range e.t.ingress.All() {
		allocations = append(allocations, item{kindIngress, r.Key.Namespace, r.Key.Name})
		namespaces[r.Key.Namespace] = true
		if r.Rec.Target == submv1.ClusterIPService {
			objects = append(objects, item{kindExport, r.Key.Namespace, r.Key.Name})
		}
	}
	for _, r := range e.t.exports.All() {
		objects = append(objects, item{kindExport, r.Key.Namespace, r.Key.Name})
		namespaces[r.Key.Namespace] = true
	}
	for _, r := range e.t.internal.All() {
		objects = append(objects, item{kindInternal, r.Key.Namespace, r.Key.Name})
	}
	for _, ns := range slices.Sorted(maps.Keys(namespaces)) {
		headless = append(headless, item{kind: kindHeadless, ns: ns})
		egress = append(egress, item{kind: kindNamespace, ns: ns})
	}
	for _, phase := range [][]item{gateway, allocations, objects, headless, egress} {
		e.processAll(ctx, uniq(phase))
	}
	e.bootstrapping.Store(false)
	e.queue.Add(rulesItem)
}

// uniq returns items without repeats, in order.
func uniq(items []item) []item {
	seen := make(map[item]bool, len(items))
	out := items[:0]
	for _, it := range items {
		if !seen[it] {
			seen[it] = true
			out = append(out, it)
		}
	}
	return out
}

// processAll processes items with the workers in parallel and returns when each
// was processed once; failed ones are queued again with backoff.
func (e *Engine) processAll(ctx context.Context, items []item) {
	ch := make(chan item)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for it := range ch {
				if err := e.process(ctx, it); err != nil && ctx.Err() == nil {
					e.log.Error(err, "Reconcile failed, retrying", "item", it.String())
					e.queue.AddRateLimited(it)
				}
			}
		})
	}
	for _, it := range items {
		if ctx.Err() != nil {
			break
		}
		ch <- it
	}
	close(ch)
	wg.Wait()
}

// ownerKind returns the kind an owner string starts with.
func ownerKind(o string) kind {
	name, _, _ := strings.Cut(o, "/")
	for k, n := range kindNames {
		if n == name {
			return kind(k)
		}
	}
	return kindRules
}

// rulesChanged schedules a sync of the rules (after the bootstrap, which syncs once).
func (e *Engine) rulesChanged() {
	if !e.bootstrapping.Load() {
		e.queue.Add(rulesItem)
	}
}

// allocate gives the object holding owner (uid) n addresses (callers hold e.mu). When the object was
// replaced by a new one of the same name, the old one's addresses go back first.
func (e *Engine) allocate(it item, own string, uid types.UID, n int) ([]netip.Addr, error) {
	if prev, ok := e.uids[own]; ok && prev != uid {
		e.release(own)
	}
	before := len(e.pool.Owned(own))
	ips, err := e.pool.Allocate(own, n)
	e.counts[ownerKind(own)] += len(e.pool.Owned(own)) - before
	if err != nil {
		if errors.Is(err, ipam.ErrExhausted) {
			e.starved[it] = true
		}
		return nil, err
	}
	delete(e.starved, it)
	e.uids[own] = uid
	return ips, nil
}

// release frees owner's addresses; when some were freed, the items that waited
// for room try again. Callers hold e.mu.
func (e *Engine) release(own string) {
	freed := e.pool.Release(own)
	delete(e.uids, own)
	if len(freed) == 0 {
		return
	}
	e.counts[ownerKind(own)] -= len(freed)
	for it := range e.starved {
		e.queue.Add(it)
	}
}

// unstarve forgets that it waited for room (its object is gone or needs none).
// Callers hold e.mu.
func (e *Engine) unstarve(it item) { delete(e.starved, it) }

func (e *Engine) updatePoolMetrics() {
	if e.metrics == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.metrics.setPool(e.pool, e.counts)
}
