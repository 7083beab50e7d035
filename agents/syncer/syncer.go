package syncer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// FieldManager is the field manager of every write the syncer makes.
const FieldManager = "submariner-syncer"

// brokerNameIndex indexes local copies by the broker object they copy.
const brokerNameIndex = "brokerName"

// item is one unit of work. To the broker (down false): the local source
// namespace/name, whose broker object is synced. From the broker (down true): the
// broker object name, whose local copies are synced.
type item struct {
	down      bool
	namespace string
	name      string
}

func (it item) direction() string {
	if it.down {
		return dirFromBroker
	}
	return dirToBroker
}

func (it item) String() string {
	if it.down {
		return "broker object " + it.name
	}
	return "local object " + objectKeyOf(it.namespace, it.name)
}

// resource is what discovery says about the synced kind.
type resource struct {
	gvr               schema.GroupVersionResource
	statusSubresource bool
}

// Syncer keeps one kind of object in sync between the local cluster and the
// broker. Create it with New and call Run.
type Syncer struct {
	settings
	local, broker dynamic.Interface
	// discover finds the resource of the kind in the local cluster.
	discover func(context.Context) (resource, error)
	reach    *reachability

	running atomic.Bool
	synced  atomic.Bool

	// Set up by Run.
	res        resource
	queue      workqueue.TypedRateLimitingInterface[item]
	sources    cache.SharedIndexInformer // local objects to push to the broker
	copies     cache.SharedIndexInformer // local copies of broker objects
	brokerObjs cache.SharedIndexInformer // the broker namespace
	namespaces cache.SharedIndexInformer // local namespaces, when copies go to computed namespaces

	mu sync.Mutex
	// initial holds the items of the first full reconcile not yet done.
	initial map[item]struct{}
	// written remembers the last write to each object, by side and key.
	written map[memoKey]writeMemo
	// pending holds the items waiting for a namespace to be created, by namespace.
	pending map[string]map[item]struct{}
}

type memoKey struct {
	broker bool
	key    types.NamespacedName
}

// New returns a syncer for the kind T, or an error that names what is wrong with
// cfg and how to fix it. It does not reach either cluster; Run does.
func New[T Object](cfg Config[T]) (*Syncer, error) {
	s, err := cfg.settings()
	if err != nil {
		name := s.name
		if name == "" {
			name = "object"
		}
		return nil, fmt.Errorf("configuring the %s syncer: %w", name, err)
	}
	local, err := dynamic.NewForConfig(cfg.Local)
	if err != nil {
		return nil, fmt.Errorf("creating the local client of the %s syncer: %w", s.name, err)
	}
	broker, err := dynamic.NewForConfig(cfg.Broker)
	if err != nil {
		return nil, fmt.Errorf("creating the broker client of the %s syncer: %w", s.name, err)
	}
	localDiscovery, err := discovery.NewDiscoveryClientForConfig(cfg.Local)
	if err != nil {
		return nil, fmt.Errorf("creating the local discovery client of the %s syncer: %w", s.name, err)
	}
	brokerDiscovery, err := discovery.NewDiscoveryClientForConfig(cfg.Broker)
	if err != nil {
		return nil, fmt.Errorf("creating the broker discovery client of the %s syncer: %w", s.name, err)
	}
	discover := func(context.Context) (resource, error) { return discoverResource(localDiscovery, s.gvk) }
	probe := func(ctx context.Context) error {
		return brokerDiscovery.RESTClient().Get().AbsPath("/readyz").Do(ctx).Error()
	}
	return newSyncer(s, local, broker, discover, probe), nil
}

func newSyncer(s settings, local, broker dynamic.Interface, discover func(context.Context) (resource, error),
	probe func(context.Context) error) *Syncer {
	s.log = s.log.WithValues("type", s.name)
	sy := &Syncer{
		settings: s,
		local:    local,
		broker:   broker,
		discover: discover,
		written:  map[memoKey]writeMemo{},
		pending:  map[string]map[item]struct{}{},
	}
	sy.reach = newReachability(probe, s.backoff, s.log)
	sy.reach.onChange = func(up bool) {
		v := 0.0
		if up {
			v = 1
		}
		sy.metrics.BrokerReachable.WithLabelValues(s.name).Set(v)
	}
	sy.reach.onRecover = func() { sy.enqueueAll() }
	sy.metrics.BrokerReachable.WithLabelValues(s.name).Set(1)
	return sy
}

// discoverResource returns the resource that serves gvk and whether it has a
// status subresource.
func discoverResource(d discovery.DiscoveryInterface, gvk schema.GroupVersionKind) (resource, error) {
	list, err := d.ServerResourcesForGroupVersion(gvk.GroupVersion().String())
	if err != nil {
		return resource{}, fmt.Errorf("discovering the resources of %s: %w", gvk.GroupVersion(), err)
	}
	res := resource{gvr: gvk.GroupVersion().WithResource("")}
	for _, r := range list.APIResources {
		if r.Kind == gvk.Kind && !strings.Contains(r.Name, "/") {
			if !r.Namespaced {
				return resource{}, reject(reasonInvalid, "%s is cluster-scoped: the syncer syncs namespaced objects only", gvk)
			}
			res.gvr.Resource = r.Name
		}
	}
	if res.gvr.Resource == "" {
		return resource{}, fmt.Errorf("the local cluster does not serve %s: install its CRD", gvk)
	}
	for _, r := range list.APIResources {
		if r.Name == res.gvr.Resource+"/status" {
			res.statusSubresource = true
		}
	}
	return res, nil
}

// HasSynced reports whether the syncer has done its first full reconcile: both
// sides listed, and every object there was then synced (or found unsyncable: a
// name conflict, an invalid object). It stays false while the broker has not
// been reached once.
func (s *Syncer) HasSynced() bool { return s.synced.Load() }

// Run syncs until ctx is done, then returns nil. It returns an error only when it
// cannot start at all: it is already running, or the kind is cluster-scoped.
// While the local cluster does not serve the kind yet, or the broker does not
// answer, it waits and retries with backoff; it never deletes local copies because
// the broker cannot be reached.
func (s *Syncer) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("the syncer is already running")
	}
	res, err := s.resolve(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	s.res = res
	s.log.Info("Starting", "resource", res.gvr.String(), "statusSubresource", res.statusSubresource,
		"toBroker", s.up.enabled, "fromBroker", s.down.enabled)

	s.queue = workqueue.NewTypedRateLimitingQueue(newRateLimiter(s.backoff))
	s.reach.start(ctx)
	s.buildInformers()
	var wg sync.WaitGroup
	var synced []cache.InformerSynced
	for _, inf := range []cache.SharedIndexInformer{s.sources, s.copies, s.brokerObjs, s.namespaces} {
		if inf == nil {
			continue
		}
		synced = append(synced, inf.HasSynced)
		wg.Go(func() { inf.RunWithContext(ctx) })
	}
	defer s.reach.probers.Wait()
	defer wg.Wait()
	defer s.queue.ShutDown()

	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return nil
	}
	s.log.Info("Caches synced, reconciling everything")
	s.mu.Lock()
	s.initial = s.enqueueAll()
	if len(s.initial) == 0 {
		s.initial = nil
		s.synced.Store(true)
		s.log.Info("Initial sync done")
	}
	s.mu.Unlock()
	for range s.workers {
		wg.Go(func() {
			for s.processNext(ctx) {
			}
		})
	}
	<-ctx.Done()
	s.log.Info("Stopping")
	return nil
}

// resolve discovers the resource, retrying with backoff until it succeeds, ctx is
// done, or the error cannot go away by waiting.
func (s *Syncer) resolve(ctx context.Context) (resource, error) {
	for failures := 0; ; failures++ {
		res, err := s.discover(ctx)
		if err == nil {
			return res, nil
		}
		var rej *rejection
		if errors.As(err, &rej) {
			return resource{}, err
		}
		s.log.Error(err, "Cannot start yet, retrying")
		if err := sleep(ctx, s.backoff.delay(failures, 0.5)); err != nil {
			return resource{}, err
		}
	}
}

// buildInformers creates the informers and their event handlers.
func (s *Syncer) buildInformers() {
	if s.up.enabled {
		s.sources = s.informer(s.local, s.res.gvr, s.up.namespace, s.up.selector, nil, false)
		s.addHandler(s.sources, s.sourceItems)
	}
	if s.down.enabled {
		namespace := s.down.into
		if s.down.namespace != nil {
			namespace = metav1.NamespaceAll
		}
		s.copies = s.informer(s.local, s.res.gvr, namespace, LabelCopy, cache.Indexers{brokerNameIndex: indexBrokerName}, false)
		s.addHandler(s.copies, s.copyItems)
		s.forgetDeleted(s.copies, false)
		if s.down.namespace != nil {
			s.namespaces = s.informer(s.local, schema.GroupVersionResource{Version: "v1", Resource: "namespaces"},
				metav1.NamespaceAll, "", nil, false)
			_, _ = s.namespaces.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: s.namespaceAdded})
		}
	}
	s.brokerObjs = s.informer(s.broker, s.res.gvr, s.brokerNamespace, "", nil, true)
	s.addHandler(s.brokerObjs, s.brokerItems)
	s.forgetDeleted(s.brokerObjs, true)
	_ = s.brokerObjs.SetWatchErrorHandlerWithContext(func(ctx context.Context, _ *cache.Reflector, err error) {
		// A watch that the server ends (EOF) is renewed; only failing to reach the
		// server says anything about the broker.
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || !s.reach.observe(err) {
			s.log.V(1).Info("Broker watch ended", "error", err.Error())
		}
	})
}

// informer returns an informer on gvr in namespace with labelSelector. On the
// broker every list and watch first waits while the broker is unreachable, and
// its outcome tells whether the broker answers: the reflector retries a refused
// watch on its own, without reporting it to a watch error handler.
func (s *Syncer) informer(client dynamic.Interface, gvr schema.GroupVersionResource, namespace, labelSelector string,
	indexers cache.Indexers, broker bool) cache.SharedIndexInformer {
	ri := client.Resource(gvr).Namespace(namespace)
	before := func(ctx context.Context) error {
		if broker {
			return s.reach.wait(ctx)
		}
		return nil
	}
	after := func(err error) {
		switch {
		case !broker:
		case err == nil:
			s.reach.succeeded()
		default:
			s.reach.observe(err)
		}
	}
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			if err := before(ctx); err != nil {
				return nil, err
			}
			opts.LabelSelector = labelSelector
			list, err := ri.List(ctx, opts)
			after(err)
			return list, err
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			if err := before(ctx); err != nil {
				return nil, err
			}
			opts.LabelSelector = labelSelector
			w, err := ri.Watch(ctx, opts)
			after(err)
			return w, err
		},
	}
	return cache.NewSharedIndexInformerWithOptions(cache.ToListWatcherWithWatchListSemantics(lw, client),
		&unstructured.Unstructured{}, cache.SharedIndexInformerOptions{
			ResyncPeriod:      s.resync,
			Indexers:          indexers,
			ObjectDescription: gvr.String(),
		})
}

func indexBrokerName(obj any) ([]string, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, nil
	}
	if name, ok := u.GetAnnotations()[AnnotationBrokerName]; ok {
		return []string{name}, nil
	}
	return nil, nil
}

// addHandler enqueues the items of every object the informer reports, old and new.
func (s *Syncer) addHandler(inf cache.SharedIndexInformer, items func(*unstructured.Unstructured) []item) {
	enqueue := func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		if u, ok := obj.(*unstructured.Unstructured); ok {
			for _, it := range items(u) {
				s.queue.Add(it)
			}
			s.metrics.QueueDepth.WithLabelValues(s.name).Set(float64(s.queue.Len()))
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(old, obj any) { enqueue(old); enqueue(obj) },
		DeleteFunc: enqueue,
	})
}

// forgetDeleted drops the write memo of every object the informer sees deleted.
func (s *Syncer) forgetDeleted(inf cache.SharedIndexInformer, broker bool) {
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		if u, ok := obj.(*unstructured.Unstructured); ok {
			s.remember(memoKey{broker: broker, key: types.NamespacedName{Namespace: u.GetNamespace(), Name: u.GetName()}}, writeMemo{})
		}
	}})
}

// sourceItems returns the item of a local object to push.
func (s *Syncer) sourceItems(u *unstructured.Unstructured) []item {
	if _, copied := u.GetLabels()[LabelCopy]; copied {
		return nil
	}
	return []item{{namespace: u.GetNamespace(), name: u.GetName()}}
}

// copyItems returns the item of the broker object that a local copy copies.
func (s *Syncer) copyItems(u *unstructured.Unstructured) []item {
	name, ok := u.GetAnnotations()[AnnotationBrokerName]
	if _, copied := u.GetLabels()[LabelCopy]; !copied || !ok {
		return nil
	}
	return []item{{down: true, name: name}}
}

// brokerItems returns the item of a broker object: the local source it was pushed
// from when it is this cluster's, else the broker object itself to copy down.
func (s *Syncer) brokerItems(u *unstructured.Unstructured) []item {
	if u.GetNamespace() != s.brokerNamespace {
		return nil
	}
	if u.GetLabels()[submv1.ClusterIDLabel] == s.clusterID {
		name, ok := u.GetAnnotations()[AnnotationOriginName]
		if !s.up.enabled || !ok {
			return nil
		}
		return []item{{namespace: u.GetLabels()[LabelOriginNamespace], name: name}}
	}
	if !s.down.enabled {
		return nil
	}
	return []item{{down: true, name: u.GetName()}}
}

// enqueueAll queues every object of both sides and returns the items queued.
func (s *Syncer) enqueueAll() map[item]struct{} {
	all := map[item]struct{}{}
	for _, src := range []struct {
		inf   cache.SharedIndexInformer
		items func(*unstructured.Unstructured) []item
	}{{s.sources, s.sourceItems}, {s.copies, s.copyItems}, {s.brokerObjs, s.brokerItems}} {
		if src.inf == nil {
			continue
		}
		for _, obj := range src.inf.GetStore().List() {
			if u, ok := obj.(*unstructured.Unstructured); ok {
				for _, it := range src.items(u) {
					all[it] = struct{}{}
				}
			}
		}
	}
	for it := range all {
		s.queue.Add(it)
	}
	s.metrics.QueueDepth.WithLabelValues(s.name).Set(float64(s.queue.Len()))
	return all
}

// namespaceAdded requeues the items that waited for the namespace.
func (s *Syncer) namespaceAdded(obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	s.mu.Lock()
	items := s.pending[u.GetName()]
	delete(s.pending, u.GetName())
	s.mu.Unlock()
	for it := range items {
		s.queue.Add(it)
	}
}

// processNext syncs one item; it returns false when the queue shuts down.
func (s *Syncer) processNext(ctx context.Context) bool {
	it, shutdown := s.queue.Get()
	if shutdown {
		return false
	}
	defer s.queue.Done(it)
	s.metrics.QueueDepth.WithLabelValues(s.name).Set(float64(s.queue.Len()))

	log := s.log.WithValues("direction", it.direction(), "item", it.String())
	var err error
	if it.down {
		err = s.syncFromBroker(ctx, it)
	} else {
		err = s.syncToBroker(ctx, it)
	}
	var rej *rejection
	switch {
	case err == nil:
		s.queue.Forget(it)
		s.initialDone(it)
	case errors.As(err, &rej):
		s.queue.Forget(it)
		s.initialDone(it)
		s.metrics.Rejected.WithLabelValues(s.name, it.direction(), rej.reason).Inc()
		if rej.reason == reasonNamespaceMissing {
			log.V(1).Info("Waiting for the namespace of the copy", "error", err.Error())
		} else {
			log.Error(err, "Not syncing until the object changes")
		}
	case errors.Is(err, errParked):
		// The broker's recovery queues everything again.
		s.queue.Forget(it)
		log.V(2).Info("Waiting for the broker")
	case ctx.Err() != nil:
	default:
		switch {
		case isUnreachable(err):
			log.V(2).Info("Broker or cluster unreachable, will retry", "error", err.Error())
		case apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err):
			log.V(1).Info("Cache behind the API server, will retry", "error", err.Error())
		default:
			log.Error(err, "Sync failed, will retry")
		}
		s.queue.AddRateLimited(it)
	}
	return true
}

func (s *Syncer) initialDone(it item) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.initial == nil {
		return
	}
	delete(s.initial, it)
	if len(s.initial) == 0 {
		s.initial = nil
		s.synced.Store(true)
		s.log.Info("Initial sync done")
	}
}

// errParked says that an item needs the broker, which does not answer; it is
// queued again when the broker is back.
var errParked = errors.New("waiting for the broker")

// syncToBroker makes the broker object of local object it match it.
func (s *Syncer) syncToBroker(ctx context.Context, it item) error {
	src, err := cached(s.sources, it.namespace, it.name)
	if err != nil {
		return err
	}
	desired, err := s.desiredBroker(src)
	if err != nil {
		return err
	}
	brokerName := s.up.brokerName(s.clusterID, it.namespace, it.name)
	existing, err := cached(s.brokerObjs, s.brokerNamespace, brokerName)
	if err != nil {
		return err
	}
	key := memoKey{broker: true, key: types.NamespacedName{Namespace: s.brokerNamespace, Name: brokerName}}
	actions, err := s.planToBroker(s.shape(), desired, existing, it.namespace, it.name, s.memo(key))
	if err != nil || len(actions) == 0 {
		return err
	}
	if !s.reach.reachable() {
		return errParked
	}
	err = s.apply(ctx, it, s.broker, true, actions)
	if !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) {
		return err
	}
	// The cache is behind the broker, typically just after an outage while the
	// informer catches up: plan again, once, from the broker's own answer.
	live, getErr := s.broker.Resource(s.res.gvr).Namespace(s.brokerNamespace).Get(ctx, brokerName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(getErr):
		live = nil
	case getErr != nil:
		return err
	}
	if actions, err = s.planToBroker(s.shape(), desired, live, it.namespace, it.name, s.memo(key)); err != nil {
		return err
	}
	return s.apply(ctx, it, s.broker, true, actions)
}

// syncFromBroker makes the local copies of broker object it match it.
func (s *Syncer) syncFromBroker(ctx context.Context, it item) error {
	b, err := cached(s.brokerObjs, s.brokerNamespace, it.name)
	if err != nil {
		return err
	}
	desired, err := s.desiredCopy(b)
	if err != nil {
		return err
	}
	indexed, err := s.copies.GetIndexer().ByIndex(brokerNameIndex, it.name)
	if err != nil {
		return fmt.Errorf("looking up the copies of broker object %s: %w", it.name, err)
	}
	copies := make([]*unstructured.Unstructured, 0, len(indexed))
	for _, obj := range indexed {
		if u, ok := obj.(*unstructured.Unstructured); ok {
			copies = append(copies, u)
		}
	}
	slices.SortFunc(copies, func(a, b *unstructured.Unstructured) int { return strings.Compare(objectKey(a), objectKey(b)) })
	var atTarget *unstructured.Unstructured
	memo := writeMemo{}
	if desired != nil {
		if atTarget, err = cached(s.copies, desired.GetNamespace(), desired.GetName()); err != nil {
			return err
		}
		memo = s.memo(memoKey{key: types.NamespacedName{Namespace: desired.GetNamespace(), Name: desired.GetName()}})
	}
	actions, err := planFromBroker(s.shape(), it.name, desired, copies, atTarget, memo)
	if err != nil {
		return err
	}
	return s.apply(ctx, it, s.local, false, actions)
}

func (s *Syncer) shape() shape {
	return shape{syncStatus: s.syncStatus, statusSubresource: s.res.statusSubresource}
}

func (s *Syncer) memo(k memoKey) writeMemo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.written[k]
}

func (s *Syncer) remember(k memoKey, m writeMemo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.resourceVersion == "" {
		delete(s.written, k)
		return
	}
	s.written[k] = m
}

// cached returns the object namespace/name from the informer's cache, nil when
// it is not there.
func cached(inf cache.SharedIndexInformer, namespace, name string) (*unstructured.Unstructured, error) {
	obj, exists, err := inf.GetStore().GetByKey(cache.ObjectName{Namespace: namespace, Name: name}.String())
	if err != nil {
		return nil, fmt.Errorf("reading %s from the cache: %w", objectKeyOf(namespace, name), err)
	}
	if !exists {
		return nil, nil
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, fmt.Errorf("the cache holds a %T for %s", obj, objectKeyOf(namespace, name))
	}
	return u, nil
}

// apply makes the writes of one item through client (to the broker when broker
// is set), in order, and stops at the first failure.
func (s *Syncer) apply(ctx context.Context, it item, client dynamic.Interface, broker bool, actions []action) error {
	sh := s.shape()
	for i := 0; i < len(actions); i++ {
		a := actions[i]
		ri := client.Resource(s.res.gvr).Namespace(a.obj.GetNamespace())
		key := memoKey{broker: broker, key: types.NamespacedName{Namespace: a.obj.GetNamespace(), Name: a.obj.GetName()}}
		var result *unstructured.Unstructured
		var err error
		switch a.op {
		case opCreate:
			result, err = ri.Create(ctx, a.obj, metav1.CreateOptions{FieldManager: FieldManager})
			if err == nil && sh.separateStatus() && normalize(a.desired.Object["status"]) != nil {
				// Create ignores the status; write it through the subresource next.
				actions = slices.Insert(actions, i+1, action{op: opUpdateStatus, obj: withStatus(result, a.desired), desired: a.desired})
			}
		case opUpdate:
			result, err = ri.Update(ctx, a.obj, metav1.UpdateOptions{FieldManager: FieldManager})
		case opUpdateStatus:
			result, err = ri.UpdateStatus(ctx, a.obj, metav1.UpdateOptions{FieldManager: FieldManager})
		case opDelete:
			uid := a.obj.GetUID()
			err = ri.Delete(ctx, a.obj.GetName(), metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
			if apierrors.IsNotFound(err) {
				err = nil
			}
		}
		outcome := resultSuccess
		if err != nil {
			outcome = resultError
		}
		s.metrics.Operations.WithLabelValues(s.name, it.direction(), a.op, outcome).Inc()
		if err != nil {
			s.remember(key, writeMemo{})
			if broker {
				s.reach.observe(err)
			}
			return s.writeError(ctx, it, a, broker, err)
		}
		if broker {
			s.reach.succeeded()
		}
		s.log.V(1).Info("Synced", "direction", it.direction(), "operation", a.op, "object", objectKey(a.obj), "broker", broker)
		next := i + 1
		switch {
		case a.op == opDelete:
			s.remember(key, writeMemo{})
		case next < len(actions) && actions[next].op == opUpdateStatus && actions[next].obj.GetName() == a.obj.GetName() &&
			actions[next].obj.GetNamespace() == a.obj.GetNamespace():
			// The status comes next, on the object as this write left it.
			actions[next].obj = actions[next].obj.DeepCopy()
			actions[next].obj.SetResourceVersion(result.GetResourceVersion())
		default:
			// The object's last write: remember what it was meant to be.
			s.remember(key, writeMemo{fingerprint: sh.fingerprint(a.desired), resourceVersion: result.GetResourceVersion()})
		}
	}
	return nil
}

// writeError classifies a failed write: a rejection when retrying cannot help,
// else an error to retry.
func (s *Syncer) writeError(ctx context.Context, it item, a action, broker bool, err error) error {
	side := "the local cluster"
	if broker {
		side = "the broker"
	}
	wrapped := fmt.Errorf("%s %s in %s: %w", verb(a.op), objectKey(a.obj), side, err)
	switch {
	case apierrors.IsInvalid(err) || apierrors.IsBadRequest(err):
		return &rejection{reason: reasonInvalid, err: wrapped}
	case a.op == opCreate && apierrors.IsNotFound(err) && !broker:
		return s.waitForNamespace(it, a.obj.GetNamespace(), wrapped)
	case a.op == opCreate && apierrors.IsAlreadyExists(err) && !broker:
		// Not in the cache of copies: either the cache lags, or it is not a copy.
		live, getErr := s.local.Resource(s.res.gvr).Namespace(a.obj.GetNamespace()).Get(ctx, a.obj.GetName(), metav1.GetOptions{})
		if getErr == nil {
			if _, copied := live.GetLabels()[LabelCopy]; !copied {
				return reject(reasonConflict, "%s exists in the local cluster and is not a copy: the copy of broker object %s cannot take its place; rename one of them",
					objectKey(a.obj), it.name)
			}
		}
	}
	return wrapped
}

// waitForNamespace parks it until namespace exists, when the syncer watches
// namespaces; else it is retried with backoff.
func (s *Syncer) waitForNamespace(it item, namespace string, err error) error {
	if s.namespaces == nil {
		return err
	}
	s.mu.Lock()
	if s.pending[namespace] == nil {
		s.pending[namespace] = map[item]struct{}{}
	}
	s.pending[namespace][it] = struct{}{}
	s.mu.Unlock()
	// The namespace may have appeared since the write failed.
	if _, exists, _ := s.namespaces.GetStore().GetByKey(namespace); exists {
		return err
	}
	return &rejection{reason: reasonNamespaceMissing, err: err}
}

func verb(op string) string {
	switch op {
	case opCreate:
		return "creating"
	case opUpdate:
		return "updating"
	case opUpdateStatus:
		return "updating the status of"
	case opDelete:
		return "deleting"
	}
	return op
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
