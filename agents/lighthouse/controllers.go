package lighthouse

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/submariner-go/submariner/agents/syncer"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Field indexes of the caches: "namespace/service" of the slices of a Service.
const (
	// indexSourceSlices indexes a Service's own EndpointSlices (local cache).
	indexSourceSlices = "lighthouse.submariner.io/source-slices"
	// indexOwnSlices indexes this cluster's lighthouse EndpointSlices (local cache).
	indexOwnSlices = "lighthouse.submariner.io/own-slices"
	// indexBrokerSlices indexes this cluster's EndpointSlices on the broker.
	indexBrokerSlices = "lighthouse.submariner.io/broker-slices"
)

// conflictAttempts bounds the optimistic-concurrency retries of one write of an
// aggregated ServiceImport before the reconcile is retried with backoff.
const conflictAttempts = 5

// setupControllers adds the two controllers to mgr, watching the broker through
// brokerCluster, and returns what kicks them when liveness changes.
func (a *Agent) setupControllers(ctx context.Context, mgr ctrl.Manager, brokerCluster cluster.Cluster) ([]*kicker, error) {
	me := a.cfg.ClusterID
	local := mgr.GetFieldIndexer()
	if err := local.IndexField(ctx, &discoveryv1.EndpointSlice{}, indexSourceSlices, func(obj client.Object) []string {
		es := obj.(*discoveryv1.EndpointSlice)
		if !isSourceSlice(es) {
			return nil
		}
		return []string{es.Namespace + "/" + es.Labels[LabelKubeServiceName]}
	}); err != nil {
		return nil, fmt.Errorf("indexing the EndpointSlices of Services: %w", err)
	}
	if err := local.IndexField(ctx, &discoveryv1.EndpointSlice{}, indexOwnSlices, func(obj client.Object) []string {
		if req, ok := ownServiceOf(obj.(*discoveryv1.EndpointSlice), me); ok && req.Namespace == obj.GetNamespace() {
			return []string{req.String()}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("indexing the lighthouse EndpointSlices: %w", err)
	}
	if err := brokerCluster.GetFieldIndexer().IndexField(ctx, &discoveryv1.EndpointSlice{}, indexBrokerSlices, func(obj client.Object) []string {
		l := obj.GetLabels()
		if l[submv1.ClusterIDLabel] != me || l[submv1.LabelSourceNamespace] == "" || l[mcsv1beta1.LabelServiceName] == "" {
			return nil
		}
		return []string{l[submv1.LabelSourceNamespace] + "/" + l[mcsv1beta1.LabelServiceName]}
	}); err != nil {
		return nil, fmt.Errorf("indexing this cluster's EndpointSlices on the broker: %w", err)
	}

	v := newView(a, mgr.GetClient(), mgr.GetAPIReader(), brokerCluster.GetClient(), brokerCluster.GetAPIReader())
	keys := func(ctx context.Context) []reconcile.Request { return v.allKeys(ctx) }
	exportKick, sliceKick := &kicker{keys: keys}, &kicker{keys: keys}

	// Each Service is keyed by namespace/name, whatever the event's object.
	sliceToService := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, obj client.Object) []reconcile.Request {
		es := obj.(*discoveryv1.EndpointSlice)
		if isSourceSlice(es) {
			return []reconcile.Request{serviceKey(es.Namespace, es.Labels[LabelKubeServiceName])}
		}
		if req, ok := ownServiceOf(es, me); ok {
			return []reconcile.Request{req}
		}
		return nil
	})
	aggregateToService := handler.TypedEnqueueRequestsFromMapFunc(func(_ context.Context, si *mcsv1beta1.ServiceImport) []reconcile.Request {
		if ns, name, ok := aggregateOf(si); ok {
			return []reconcile.Request{serviceKey(ns, name)}
		}
		return nil
	})
	brokerSliceToService := handler.TypedEnqueueRequestsFromMapFunc(func(_ context.Context, es *discoveryv1.EndpointSlice) []reconcile.Request {
		ns, name := es.Labels[submv1.LabelSourceNamespace], es.Labels[mcsv1beta1.LabelServiceName]
		if ns == "" || name == "" {
			return nil
		}
		return []reconcile.Request{serviceKey(ns, name)}
	})
	opts := controller.Options{MaxConcurrentReconciles: a.cfg.Workers, SkipNameValidation: new(true)}

	// With Globalnet, a Service's GlobalIngressIP (named like it) holds the
	// address the cluster publishes; a headless Pod's or endpoint's holds the
	// address of one endpoint of any exported headless Service of its
	// namespace, so it concerns every export there.
	globalIPToServices := handler.TypedEnqueueRequestsFromMapFunc(func(ctx context.Context, g *submv1.GlobalIngressIP) []reconcile.Request {
		if g.Spec.Target == submv1.ClusterIPService {
			return []reconcile.Request{serviceKey(g.Namespace, g.Name)}
		}
		var exports mcsv1beta1.ServiceExportList
		if err := mgr.GetCache().List(ctx, &exports, client.InNamespace(g.Namespace)); err != nil {
			return nil
		}
		var out []reconcile.Request
		for _, se := range exports.Items {
			out = append(out, serviceKey(se.Namespace, se.Name))
		}
		return out
	})
	globalIPs := func(b *builder.Builder) *builder.Builder {
		if a.cfg.Globalnet {
			b = b.WatchesRawSource(source.Kind(mgr.GetCache(), &submv1.GlobalIngressIP{}, globalIPToServices))
		}
		return b
	}
	if err := globalIPs(ctrl.NewControllerManagedBy(mgr).
		Named("serviceexport").
		For(&mcsv1beta1.ServiceExport{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Service{}, &handler.EnqueueRequestForObject{}).
		Watches(&discoveryv1.EndpointSlice{}, sliceToService).
		WatchesRawSource(source.Kind(brokerCluster.GetCache(), &mcsv1beta1.ServiceImport{}, aggregateToService)).
		WatchesRawSource(source.Kind(brokerCluster.GetCache(), &discoveryv1.EndpointSlice{}, brokerSliceToService)).
		WatchesRawSource(exportKick)).
		WithOptions(opts).
		Complete(&exportReconciler{view: v, kick: exportKick, sliceQueue: sliceKick}); err != nil {
		return nil, fmt.Errorf("creating the ServiceExport controller: %w", err)
	}
	if err := globalIPs(ctrl.NewControllerManagedBy(mgr).
		Named("endpointslice-mirror").
		Watches(&mcsv1beta1.ServiceExport{}, &handler.EnqueueRequestForObject{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Service{}, &handler.EnqueueRequestForObject{}).
		Watches(&discoveryv1.EndpointSlice{}, sliceToService).
		WatchesRawSource(source.Kind(brokerCluster.GetCache(), &mcsv1beta1.ServiceImport{}, aggregateToService)).
		WatchesRawSource(sliceKick)).
		WithOptions(opts).
		Complete(&sliceReconciler{view: v, kick: sliceKick}); err != nil {
		return nil, fmt.Errorf("creating the EndpointSlice controller: %w", err)
	}
	return []*kicker{exportKick, sliceKick}, nil
}

// kicker is a controller source that queues every key at once when kicked:
// when the broker has synced, and whenever the liveness of the clusters changed,
// which changes the outcome of every export. It also tracks the keys of the
// first kick until each has been reconciled once, for readiness.
type kicker struct {
	keys   func(context.Context) []reconcile.Request
	mu     sync.Mutex
	queues []workqueue.TypedRateLimitingInterface[reconcile.Request]
	// initial holds the keys of the first kick not reconciled yet; nil before it.
	initial map[reconcile.Request]bool
}

// add queues req in the controllers the kicker feeds.
func (k *kicker) add(req reconcile.Request) {
	k.mu.Lock()
	queues := slices.Clone(k.queues)
	k.mu.Unlock()
	for _, q := range queues {
		q.Add(req)
	}
}

// done records that req has been reconciled (whatever the outcome).
func (k *kicker) done(req reconcile.Request) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.initial, req)
}

// synced reports whether every key of the first kick has been reconciled once.
func (k *kicker) synced() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.initial != nil && len(k.initial) == 0
}

var _ source.Source = (*kicker)(nil)

// Start implements source.Source.
func (k *kicker) Start(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.queues = append(k.queues, q)
	return nil
}

func (k *kicker) kick(ctx context.Context) {
	keys := k.keys(ctx)
	k.mu.Lock()
	if k.initial == nil {
		k.initial = make(map[reconcile.Request]bool, len(keys))
		for _, key := range keys {
			k.initial[key] = true
		}
	}
	queues := slices.Clone(k.queues)
	k.mu.Unlock()
	// Before the controller started, its sources' initial lists queue every key.
	for _, key := range keys {
		for _, q := range queues {
			q.Add(key)
		}
	}
}

// view is what both controllers read: the local cluster and the broker, through
// the caches.
type view struct {
	a *Agent
	// local and broker read from the caches and write to the API servers;
	// localAPI and brokerAPI read from the API servers.
	local, broker       client.Client
	localAPI, brokerAPI client.Reader
	// aggregates and slices remember the agent's own writes until the caches
	// show them.
	aggregates *ownWrites[*mcsv1beta1.ServiceImport]
	slices     *ownWrites[*discoveryv1.EndpointSlice]
	exports    *ownWrites[*mcsv1beta1.ServiceExport]
}

func newView(a *Agent, local client.Client, localAPI client.Reader, broker client.Client, brokerAPI client.Reader) *view {
	return &view{a: a, local: local, localAPI: localAPI, broker: broker, brokerAPI: brokerAPI,
		aggregates: newOwnWrites[*mcsv1beta1.ServiceImport](), slices: newOwnWrites[*discoveryv1.EndpointSlice](),
		exports: newOwnWrites[*mcsv1beta1.ServiceExport]()}
}

// allKeys returns the key of every Service the agent may have to act on: those
// exported here, those with slices of this cluster, those whose aggregated
// ServiceImport holds a record of this cluster.
func (v *view) allKeys(ctx context.Context) []reconcile.Request {
	seen := map[reconcile.Request]bool{}
	var exports mcsv1beta1.ServiceExportList
	if err := v.local.List(ctx, &exports); err == nil {
		for _, se := range exports.Items {
			seen[serviceKey(se.Namespace, se.Name)] = true
		}
	}
	var own discoveryv1.EndpointSliceList
	if err := v.local.List(ctx, &own, client.MatchingLabels(ownSliceLabels(v.a.cfg.ClusterID))); err == nil {
		for i := range own.Items {
			if req, ok := ownServiceOf(&own.Items[i], v.a.cfg.ClusterID); ok {
				seen[req] = true
			}
		}
	}
	var imports mcsv1beta1.ServiceImportList
	if err := v.broker.List(ctx, &imports, client.InNamespace(v.a.cfg.BrokerNamespace)); err == nil {
		for _, si := range imports.Items {
			if ns, name, ok := aggregateOf(&si); ok && si.Annotations[AnnotationExportPrefix+v.a.cfg.ClusterID] != "" {
				seen[serviceKey(ns, name)] = true
			}
		}
	}
	out := make([]reconcile.Request, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b reconcile.Request) int {
		if a.String() < b.String() {
			return -1
		}
		if a.String() > b.String() {
			return 1
		}
		return 0
	})
	return out
}

// export is what the local cluster says about the export of one Service.
type export struct {
	se      *mcsv1beta1.ServiceExport // nil: not exported (or being unexported)
	svc     *corev1.Service           // nil: no such Service
	rec     Record
	invalid *Invalid
}

// readExport reads the ServiceExport and Service namespace/name from the cache.
func (v *view) readExport(ctx context.Context, key client.ObjectKey) (export, error) {
	var e export
	var se mcsv1beta1.ServiceExport
	switch err := v.local.Get(ctx, key, &se); {
	case apierrors.IsNotFound(err):
		return e, nil
	case err != nil:
		return e, fmt.Errorf("reading ServiceExport %s: %w", key, err)
	}
	if se.DeletionTimestamp != nil {
		return e, nil
	}
	e.se = &se
	var svc corev1.Service
	switch err := v.local.Get(ctx, key, &svc); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return e, fmt.Errorf("reading Service %s: %w", key, err)
	default:
		e.svc = &svc
	}
	e.rec, e.invalid = RecordFor(v.a.cfg.ClusterID, e.svc, se.CreationTimestamp, key.Namespace, key.Name)
	return e, nil
}

// aggregate returns the aggregated ServiceImport of Service key from the broker
// cache, nil when there is none.
func (v *view) aggregate(ctx context.Context, key client.ObjectKey) (*mcsv1beta1.ServiceImport, error) {
	name := v.aggregateKey(key)
	si := &mcsv1beta1.ServiceImport{}
	err := v.broker.Get(ctx, name, si)
	exists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading the aggregated ServiceImport of %s from the broker cache: %w", key, err)
	}
	if si, exists = v.aggregates.view(name, si, exists); !exists {
		return nil, nil
	}
	return si.DeepCopy(), nil
}

// aggregateKey is the key of the aggregated ServiceImport of Service key.
func (v *view) aggregateKey(key client.ObjectKey) client.ObjectKey {
	return client.ObjectKey{Namespace: v.a.cfg.BrokerNamespace, Name: AggregateName(key.Name, key.Namespace)}
}

// liveMerge merges the records of si of the live clusters.
func (v *view) liveMerge(si *mcsv1beta1.ServiceImport) Merged {
	if si == nil {
		return Merged{}
	}
	records, _ := decodeRecords(si.Annotations)
	alive := slices.DeleteFunc(records, func(r Record) bool { return !v.a.live.Live(r.Cluster) })
	return Merge(alive)
}

// publishes reports whether the cluster publishes EndpointSlices for e, given
// the aggregated ServiceImport si: the export is valid, its record is on the
// broker as it is now, and among the live clusters its type is the winner's.
func (v *view) publishes(e export, si *mcsv1beta1.ServiceImport) bool {
	return e.se != nil && e.invalid == nil && hasRecord(si, e.rec) && v.liveMerge(si).Exported(v.a.cfg.ClusterID)
}

// desiredSlices returns the slices the cluster publishes for the valid export e.
func (v *view) desiredSlices(ctx context.Context, e export) ([]*discoveryv1.EndpointSlice, error) {
	var sources discoveryv1.EndpointSliceList
	key := e.svc.Namespace + "/" + e.svc.Name
	if err := v.local.List(ctx, &sources, client.InNamespace(e.svc.Namespace), client.MatchingFields{indexSourceSlices: key}); err != nil {
		return nil, fmt.Errorf("listing the EndpointSlices of Service %s: %w", key, err)
	}
	in := SliceInput{ClusterID: v.a.cfg.ClusterID, Service: e.svc, Globalnet: v.a.cfg.Globalnet}
	for i := range sources.Items {
		in.Sources = append(in.Sources, &sources.Items[i])
	}
	slices.SortFunc(in.Sources, func(a, b *discoveryv1.EndpointSlice) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	if e.svc.Spec.ClusterIP != corev1.ClusterIPNone {
		addr, ok, err := v.serviceAddress(ctx, e.svc)
		if err != nil || !ok {
			// Without its global IP yet, the Service is not published; the
			// GlobalIngressIP's update brings it back here.
			return nil, err
		}
		in.Address = addr
	} else if v.a.cfg.Globalnet {
		global, err := v.headlessGlobalIPs(ctx, e.svc.Namespace)
		if err != nil {
			return nil, err
		}
		in.GlobalIPs = global
	}
	return DesiredSlices(in), nil
}

// headlessGlobalIPs maps the addresses of the namespace's headless Pods and
// endpoints to the global IPs Globalnet allocated to them (their
// GlobalIngressIPs of target HeadlessServicePod or HeadlessServiceEndpoints,
// annotated with the address they lead to).
func (v *view) headlessGlobalIPs(ctx context.Context, ns string) (map[netip.Addr]netip.Addr, error) {
	var list submv1.GlobalIngressIPList
	if err := v.local.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("listing the GlobalIngressIPs of namespace %s: %w", ns, err)
	}
	out := map[netip.Addr]netip.Addr{}
	for _, g := range list.Items {
		var target string
		switch g.Spec.Target {
		case submv1.HeadlessServicePod:
			target = g.Annotations[submv1.AnnotationHeadlessPodIP]
		case submv1.HeadlessServiceEndpoints:
			target = g.Annotations[submv1.AnnotationHeadlessEndpointsIP]
		default:
			continue
		}
		ip, err1 := netip.ParseAddr(target)
		global, err2 := netip.ParseAddr(g.Status.AllocatedIP)
		if err1 == nil && err2 == nil {
			out[ip.Unmap()] = global
		}
	}
	return out, nil
}

// serviceAddress is the address the cluster publishes for a Service with a
// ClusterIP: the ClusterIP, or with Globalnet the global IP that the Globalnet
// agent allocated to the Service (its GlobalIngressIP of the same name); false
// while Globalnet has not allocated one.
func (v *view) serviceAddress(ctx context.Context, svc *corev1.Service) (netip.Addr, bool, error) {
	ip, what := svc.Spec.ClusterIP, "ClusterIP"
	if v.a.cfg.Globalnet {
		var gip submv1.GlobalIngressIP
		err := v.local.Get(ctx, client.ObjectKeyFromObject(svc), &gip)
		if apierrors.IsNotFound(err) || (err == nil && gip.Status.AllocatedIP == "") {
			return netip.Addr{}, false, nil
		}
		if err != nil {
			return netip.Addr{}, false, fmt.Errorf("reading the GlobalIngressIP of Service %s/%s: %w", svc.Namespace, svc.Name, err)
		}
		ip, what = gip.Status.AllocatedIP, "global IP"
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return netip.Addr{}, false, fmt.Errorf("Service %s/%s has %s %q, which is not an IP address", svc.Namespace, svc.Name, what, ip)
	}
	return addr, true, nil
}

// ownSlices lists this cluster's lighthouse slices of Service key.
func (v *view) ownSlices(ctx context.Context, key client.ObjectKey) ([]*discoveryv1.EndpointSlice, error) {
	var list discoveryv1.EndpointSliceList
	if err := v.local.List(ctx, &list, client.InNamespace(key.Namespace), client.MatchingFields{indexOwnSlices: key.String()}); err != nil {
		return nil, fmt.Errorf("listing the lighthouse EndpointSlices of %s: %w", key, err)
	}
	out := make([]*discoveryv1.EndpointSlice, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out, nil
}

// exportReconciler keeps this cluster's record of each export in the aggregated
// ServiceImport on the broker, and the ServiceExport's conditions.
type exportReconciler struct {
	*view
	kick *kicker
	// sliceQueue feeds the slice controller, which publishes the EndpointSlices once
	// this cluster's record is in the aggregated ServiceImport.
	sliceQueue *kicker
}

// Reconcile implements reconcile.Reconciler for the Service req.
func (r *exportReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if !r.a.live.Synced() {
		return reconcile.Result{}, nil // the kick after the broker sync queues it again
	}
	defer r.kick.done(req)
	e, err := r.readExport(ctx, req.NamespacedName)
	if err != nil {
		return reconcile.Result{}, err
	}
	if e.se == nil {
		r.a.metrics.setExport(req.String(), "")
		_, err := r.syncAggregate(ctx, req.NamespacedName, nil)
		if errors.Is(err, errNameTaken) {
			return reconcile.Result{}, nil // not ours to remove
		}
		return reconcile.Result{}, err
	}

	st := exportState{cluster: r.a.cfg.ClusterID, invalid: e.invalid}
	var rec *Record
	if e.invalid == nil {
		rec = &e.rec
	}
	si, err := r.syncAggregate(ctx, req.NamespacedName, rec)
	if err == nil && rec != nil && r.sliceQueue != nil {
		// The slice controller would learn of the record from the broker's watch;
		// the memo already shows it, so tell it now.
		r.sliceQueue.add(req)
	}
	switch {
	case errors.Is(err, errNameTaken):
		st.failure = err
		err = nil
	case err != nil:
		st.brokerErr = err
		if si, err = r.aggregate(ctx, req.NamespacedName); err != nil {
			return reconcile.Result{}, err
		}
		err = st.brokerErr
	}
	if e.invalid == nil && st.failure == nil {
		st.published = hasRecord(si, e.rec)
		st.merged = r.liveMerge(si)
		if st.published && st.merged.Exported(r.a.cfg.ClusterID) {
			if st.slices, st.slicesPending, err = r.sliceProgress(ctx, e); err != nil {
				return reconcile.Result{}, err
			}
		}
	}
	conds, state := exportConditions(st)
	// Compare with the conditions last written: the cache may not show the
	// agent's own last patch yet, and a status change does not queue the export
	// again, so comparing with the cache could leave a stale condition for good.
	base, _ := r.exports.view(req.NamespacedName, e.se, true)
	se := base.DeepCopy()
	if setConditions(&se.Status.Conditions, conds, se.Generation, metav1.Now()) {
		// A merge patch of the conditions, without a resourceVersion: the agent is
		// their only writer.
		uerr := r.local.Status().Patch(ctx, se, client.MergeFrom(base), client.FieldOwner(FieldManager))
		r.a.metrics.write(objectServiceExport, opPatchStatus, uerr)
		if uerr != nil {
			r.exports.forget(req.NamespacedName)
			if !apierrors.IsNotFound(uerr) {
				return reconcile.Result{}, errors.Join(err, fmt.Errorf("updating the conditions of ServiceExport %s: %w", req, uerr))
			}
		} else {
			r.exports.wrote(req.NamespacedName, base, true, se.DeepCopy(), false)
		}
	}
	r.a.metrics.setExport(req.String(), state)
	return reconcile.Result{}, err
}

// sliceProgress returns how many slices the export has and how many of them are
// not yet on the broker as they are here.
func (r *exportReconciler) sliceProgress(ctx context.Context, e export) (total, pending int, err error) {
	desired, err := r.desiredSlices(ctx, e)
	if err != nil {
		return 0, 0, err
	}
	key := client.ObjectKeyFromObject(e.svc)
	var onBroker discoveryv1.EndpointSliceList
	if err := r.broker.List(ctx, &onBroker, client.InNamespace(r.a.cfg.BrokerNamespace),
		client.MatchingFields{indexBrokerSlices: key.String()}); err != nil {
		return 0, 0, fmt.Errorf("listing the EndpointSlices of %s on the broker: %w", key, err)
	}
	byName := map[string]*discoveryv1.EndpointSlice{}
	for i := range onBroker.Items {
		byName[onBroker.Items[i].Name] = &onBroker.Items[i]
	}
	for _, d := range desired {
		bs := byName[syncer.DefaultBrokerName(r.a.cfg.ClusterID, d.Namespace, d.Name)]
		delete(byName, syncer.DefaultBrokerName(r.a.cfg.ClusterID, d.Namespace, d.Name))
		var have discoveryv1.EndpointSlice
		err := r.local.Get(ctx, client.ObjectKeyFromObject(d), &have)
		switch {
		case apierrors.IsNotFound(err):
			pending++
		case err != nil:
			return 0, 0, fmt.Errorf("reading EndpointSlice %s/%s: %w", d.Namespace, d.Name, err)
		case sliceChanged(&have, d) || bs == nil || !sliceContentEqual(&have, bs):
			pending++
		}
	}
	// Slices on the broker that the cluster no longer has are on their way out.
	return len(desired), pending + len(byName), nil
}

// syncAggregate puts rec (nil: this cluster's record out) into the aggregated
// ServiceImport of Service key on the broker, and returns the ServiceImport as
// written (nil when there is none). It reads the broker cache first and, after
// a write conflict with another cluster, the broker itself.
func (r *exportReconciler) syncAggregate(ctx context.Context, key client.ObjectKey, rec *Record) (*mcsv1beta1.ServiceImport, error) {
	name := client.ObjectKey{Namespace: r.a.cfg.BrokerNamespace, Name: AggregateName(key.Name, key.Namespace)}
	for attempt := range conflictAttempts {
		var cur *mcsv1beta1.ServiceImport
		var err error
		if attempt == 0 {
			cur, err = r.aggregate(ctx, key)
		} else {
			r.aggregates.forget(name)
			var si mcsv1beta1.ServiceImport
			switch err = r.brokerAPI.Get(ctx, name, &si); {
			case apierrors.IsNotFound(err):
				err = nil
			case err == nil:
				cur = &si
			}
		}
		if err != nil {
			return nil, fmt.Errorf("reading ServiceImport %s on the broker: %w", name, err)
		}
		plan, err := planAggregate(cur, r.a.cfg.BrokerNamespace, key.Namespace, key.Name, r.a.cfg.ClusterID, rec)
		if err != nil {
			return cur, err
		}
		result, err := r.applyAggregate(ctx, cur, plan)
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			continue
		}
		if err != nil {
			return cur, fmt.Errorf("writing ServiceImport %s on the broker: %w", name, err)
		}
		return result, nil
	}
	return nil, fmt.Errorf("writing ServiceImport %s on the broker: other clusters kept changing it (%d attempts); retrying", name, conflictAttempts)
}

// applyAggregate makes the writes of plan.
func (r *exportReconciler) applyAggregate(ctx context.Context, cur *mcsv1beta1.ServiceImport, plan aggregatePlan) (*mcsv1beta1.ServiceImport, error) {
	owner := client.FieldOwner(FieldManager)
	if plan.op == opNone {
		return plan.obj, nil
	}
	key := client.ObjectKeyFromObject(plan.obj)
	if plan.op == opDelete {
		err := r.broker.Delete(ctx, cur, client.Preconditions{UID: &cur.UID, ResourceVersion: &cur.ResourceVersion})
		r.a.metrics.write(objectServiceImport, opDelete, err)
		if apierrors.IsNotFound(err) {
			err = nil
		}
		if err != nil {
			r.aggregates.forget(key)
			return nil, err
		}
		r.aggregates.wrote(key, cur, true, nil, true)
		return nil, nil
	}
	obj := plan.obj.DeepCopy()
	status := *obj.Status.DeepCopy()
	before, existed := cur, cur != nil
	var err error
	if plan.op == opCreate {
		err = r.broker.Create(ctx, obj, owner)
	} else if plan.specChanged {
		err = r.broker.Update(ctx, obj, owner)
	}
	if plan.op == opCreate || plan.specChanged {
		r.a.metrics.write(objectServiceImport, plan.op, err)
		if err != nil {
			r.aggregates.forget(key)
			return nil, err
		}
		r.aggregates.wrote(key, before, existed, obj.DeepCopy(), false)
		before, existed = obj.DeepCopy(), true
	}
	if plan.statusChanged {
		obj.Status = status
		err = r.broker.Status().Update(ctx, obj, owner)
		r.a.metrics.write(objectServiceImport, opUpdateStatus, err)
		if err != nil {
			r.aggregates.forget(key)
			return nil, err
		}
		r.aggregates.wrote(key, before, existed, obj.DeepCopy(), false)
	}
	return obj, nil
}

// sliceReconciler mirrors each exported Service's EndpointSlices into this
// cluster's lighthouse EndpointSlices, which the syncer takes to the broker.
type sliceReconciler struct {
	*view
	kick *kicker
}

// Reconcile implements reconcile.Reconciler for the Service req.
func (r *sliceReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if !r.a.live.Synced() {
		return reconcile.Result{}, nil
	}
	defer r.kick.done(req)
	e, err := r.readExport(ctx, req.NamespacedName)
	if err != nil {
		return reconcile.Result{}, err
	}
	var desired []*discoveryv1.EndpointSlice
	if e.se != nil && e.invalid == nil {
		si, err := r.aggregate(ctx, req.NamespacedName)
		if err != nil {
			return reconcile.Result{}, err
		}
		if r.publishes(e, si) {
			if desired, err = r.desiredSlices(ctx, e); err != nil {
				return reconcile.Result{}, err
			}
		}
	}
	cached, err := r.ownSlices(ctx, req.NamespacedName)
	if err != nil {
		return reconcile.Result{}, err
	}
	// What the cache shows, corrected by the agent's own writes it has not
	// shown yet.
	var existing []*discoveryv1.EndpointSlice
	seen := map[string]bool{}
	for _, es := range cached {
		seen[es.Name] = true
		if obj, ok := r.slices.view(client.ObjectKeyFromObject(es), es, true); ok {
			existing = append(existing, obj)
		}
	}
	for _, d := range desired {
		if !seen[d.Name] {
			if obj, ok := r.slices.view(client.ObjectKeyFromObject(d), nil, false); ok {
				existing = append(existing, obj)
			}
		}
	}
	return reconcile.Result{}, r.applySlices(ctx, desired, existing)
}

// applySlices creates, updates and deletes slices so that existing becomes
// desired.
func (r *sliceReconciler) applySlices(ctx context.Context, desired, existing []*discoveryv1.EndpointSlice) error {
	have := map[string]*discoveryv1.EndpointSlice{}
	for _, es := range existing {
		have[es.Name] = es
	}
	var errs []error
	for _, d := range desired {
		cur, ok := have[d.Name]
		delete(have, d.Name)
		var err error
		switch {
		case !ok:
			err = r.createSlice(ctx, d)
		case cur.AddressType != d.AddressType:
			// The address type of a slice is immutable: replace it.
			if err = r.deleteSlice(ctx, cur); err == nil {
				err = r.createSlice(ctx, d)
			}
		case sliceChanged(cur, d):
			err = r.updateSlice(ctx, cur, d)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, name := range sortedSliceNames(have) {
		if err := r.deleteSlice(ctx, have[name]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (r *sliceReconciler) createSlice(ctx context.Context, d *discoveryv1.EndpointSlice) error {
	key := client.ObjectKeyFromObject(d)
	obj := d.DeepCopy()
	err := r.local.Create(ctx, obj, client.FieldOwner(FieldManager))
	r.a.metrics.write(objectEndpointSlice, opCreate, err)
	if apierrors.IsAlreadyExists(err) {
		// Either the cache has not shown the agent's own slice yet, or the name is
		// someone else's.
		var live discoveryv1.EndpointSlice
		if err := r.localAPI.Get(ctx, key, &live); err != nil {
			return fmt.Errorf("creating EndpointSlice %s: it exists, but cannot be read: %w", key, err)
		}
		if req, ok := ownServiceOf(&live, r.a.cfg.ClusterID); !ok || req.Name != d.Labels[mcsv1beta1.LabelServiceName] {
			return fmt.Errorf("creating EndpointSlice %s: it exists and is not this cluster's lighthouse slice of Service %s: rename or delete it",
				key, d.Labels[mcsv1beta1.LabelServiceName])
		}
		r.slices.wrote(key, nil, false, live.DeepCopy(), false)
		if sliceChanged(&live, d) {
			return r.updateSlice(ctx, &live, d)
		}
		return nil
	}
	if err != nil {
		r.slices.forget(key)
		return fmt.Errorf("creating EndpointSlice %s: %w", key, err)
	}
	r.slices.wrote(key, nil, false, obj, false)
	return nil
}

func (r *sliceReconciler) updateSlice(ctx context.Context, cur, d *discoveryv1.EndpointSlice) error {
	key := client.ObjectKeyFromObject(cur)
	upd := cur.DeepCopy()
	if upd.Labels == nil {
		upd.Labels = map[string]string{}
	}
	for k, v := range d.Labels {
		upd.Labels[k] = v
	}
	if upd.Annotations == nil {
		upd.Annotations = map[string]string{}
	}
	for k, v := range d.Annotations {
		upd.Annotations[k] = v
	}
	upd.Endpoints, upd.Ports = d.Endpoints, d.Ports
	err := r.local.Update(ctx, upd, client.FieldOwner(FieldManager))
	r.a.metrics.write(objectEndpointSlice, opUpdate, err)
	if err != nil {
		r.slices.forget(key)
		return fmt.Errorf("updating EndpointSlice %s: %w", key, err)
	}
	r.slices.wrote(key, cur, true, upd, false)
	return nil
}

func (r *sliceReconciler) deleteSlice(ctx context.Context, es *discoveryv1.EndpointSlice) error {
	key := client.ObjectKeyFromObject(es)
	err := r.local.Delete(ctx, es, client.Preconditions{UID: &es.UID})
	r.a.metrics.write(objectEndpointSlice, opDelete, err)
	if err != nil && !apierrors.IsNotFound(err) {
		r.slices.forget(key)
		return fmt.Errorf("deleting EndpointSlice %s: %w", key, err)
	}
	r.slices.wrote(key, es, true, nil, true)
	return nil
}

func sortedSliceNames(m map[string]*discoveryv1.EndpointSlice) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
