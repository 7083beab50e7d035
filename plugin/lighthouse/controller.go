package lighthouse

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

const (
	// byServiceIndex indexes the EndpointSlices by "namespace/service".
	byServiceIndex = "ServiceNamespaceName"
	// gatewaysResource is the Gateway resource of submariner.io/v1.
	gatewaysResource = "gateways"
	// defaultGatewayRecheck is how often the controller checks whether the Gateway
	// API has appeared or disappeared.
	defaultGatewayRecheck = 30 * time.Second
	// discoveryTimeout bounds one look for the Gateway API.
	discoveryTimeout = 30 * time.Second
	userAgent        = "coredns-lighthouse"
)

// sliceSelector selects the EndpointSlices the lighthouse agent publishes.
var sliceSelector = fmt.Sprintf("%s=%s,%s,%s", discoveryv1.LabelManagedBy, submv1.LighthouseManagedBy,
	mcsv1beta1.LabelServiceName, mcsv1beta1.LabelSourceCluster)

// controllerOptions tune the controller; the zero value is the production setting.
type controllerOptions struct {
	// gatewayRecheck is how often to check whether the Gateway API exists.
	gatewayRecheck time.Duration
}

// controller keeps the index up to date from client-go informers on ServiceImports,
// lighthouse EndpointSlices and, when the API exists, Gateways. start and stop are
// CoreDNS's OnStartup and OnShutdown hooks.
type controller struct {
	*index
	opts controllerOptions

	discovery discovery.DiscoveryInterface
	submV1    rest.Interface

	imports, slices       cache.SharedIndexInformer
	importsReg, slicesReg cache.ResourceEventHandlerRegistration

	// rebuildMu serializes rebuilds, so the last one to publish a service has read
	// the newest objects.
	rebuildMu sync.Mutex

	gwMu sync.Mutex
	// gwSynced reports whether the Gateways are known; nil until the first look
	// for the Gateway API.
	gwSynced func() bool
	// synced latches HasSynced: once the initial lists are in, the plugin keeps
	// answering, also while a Gateway informer started later is listing.
	synced atomic.Bool

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ dnsController = (*controller)(nil)

// newController makes the controller for the cluster behind cfg, whose own ID is
// local. It does not contact the API server; start does.
func newController(cfg *rest.Config, local string, opts controllerOptions) (*controller, error) {
	if opts.gatewayRecheck <= 0 {
		opts.gatewayRecheck = defaultGatewayRecheck
	}
	base := rest.CopyConfig(cfg)
	base.UserAgent = userAgent

	// Built-in types travel as protobuf: cheaper to decode than JSON.
	kcfg := rest.CopyConfig(base)
	kcfg.ContentType = runtime.ContentTypeProtobuf
	kcfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	kube, err := kubernetes.NewForConfig(kcfg)
	if err != nil {
		return nil, fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	dcfg := rest.CopyConfig(base)
	dcfg.Timeout = discoveryTimeout
	disc, err := discovery.NewDiscoveryClientForConfig(dcfg)
	if err != nil {
		return nil, fmt.Errorf("creating the discovery client: %w", err)
	}
	mcs, err := crdClient(base, mcsv1beta1.SchemeGroupVersion, mcsv1beta1.AddToScheme)
	if err != nil {
		return nil, err
	}
	subm, err := crdClient(base, submv1.SchemeGroupVersion, submv1.AddToScheme)
	if err != nil {
		return nil, err
	}

	c := &controller{index: newIndex(local), opts: opts, discovery: disc, submV1: subm}

	c.imports = cache.NewSharedIndexInformerWithOptions(
		cache.NewListWatchFromClient(mcs, "serviceimports", metav1.NamespaceAll, fields.Everything()),
		&mcsv1beta1.ServiceImport{}, cache.SharedIndexInformerOptions{ObjectDescription: "ServiceImports"})
	c.slices = cache.NewSharedIndexInformerWithOptions(
		cache.NewFilteredListWatchFromClient(kube.DiscoveryV1().RESTClient(), "endpointslices", metav1.NamespaceAll,
			func(o *metav1.ListOptions) { o.LabelSelector = sliceSelector }),
		&discoveryv1.EndpointSlice{}, cache.SharedIndexInformerOptions{
			ObjectDescription: "lighthouse EndpointSlices",
			Indexers:          cache.Indexers{byServiceIndex: sliceServiceKey},
		})
	if err := c.imports.SetTransform(toServiceImport); err != nil {
		return nil, fmt.Errorf("setting the ServiceImport transform: %w", err)
	}
	if err := c.slices.SetTransform(toEndpointSlice); err != nil {
		return nil, fmt.Errorf("setting the EndpointSlice transform: %w", err)
	}
	if c.importsReg, err = c.imports.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.importChanged(obj) },
		UpdateFunc: func(_, obj any) { c.importChanged(obj) },
		DeleteFunc: func(obj any) { c.importChanged(obj) },
	}); err != nil {
		return nil, fmt.Errorf("adding the ServiceImport handler: %w", err)
	}
	if c.slicesReg, err = c.slices.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { c.sliceChanged(obj) },
		UpdateFunc: func(old, obj any) {
			o, okOld := old.(*endpointSlice)
			n, okNew := obj.(*endpointSlice)
			if !okOld || !okNew || o.service != n.service {
				c.sliceChanged(old) // the service-name label changed: the old service loses the slice
			}
			c.sliceChanged(obj)
		},
		DeleteFunc: func(obj any) { c.sliceChanged(obj) },
	}); err != nil {
		return nil, fmt.Errorf("adding the EndpointSlice handler: %w", err)
	}
	return c, nil
}

// crdClient returns a REST client for the custom resources of group version gv.
func crdClient(base *rest.Config, gv schema.GroupVersion, add func(*runtime.Scheme) error) (rest.Interface, error) {
	s := runtime.NewScheme()
	if err := add(s); err != nil {
		return nil, fmt.Errorf("registering %s: %w", gv, err)
	}
	cfg := rest.CopyConfig(base)
	cfg.GroupVersion = &gv
	cfg.APIPath = "/apis"
	cfg.ContentType = runtime.ContentTypeJSON
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(s).WithoutConversion()
	rc, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the %s client: %w", gv, err)
	}
	return rc, nil
}

func sliceServiceKey(obj any) ([]string, error) {
	es, ok := obj.(*endpointSlice)
	if !ok || es.service == "" {
		return nil, nil
	}
	return []string{es.namespace + "/" + es.service}, nil
}

// start starts the informers; it returns at once.
func (c *controller) start() {
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.wg.Go(func() { c.imports.RunWithContext(ctx) })
	c.wg.Go(func() { c.slices.RunWithContext(ctx) })
	c.wg.Go(func() { c.runGateways(ctx) })
}

// stop stops the informers and waits for them.
func (c *controller) stop() {
	if c.cancel != nil {
		c.cancel()
		c.wg.Wait()
	}
}

// HasSynced reports whether the initial lists of ServiceImports, EndpointSlices
// and Gateways (when the API exists) have been processed.
func (c *controller) HasSynced() bool {
	if c.synced.Load() {
		return true
	}
	if !c.importsReg.HasSynced() || !c.slicesReg.HasSynced() {
		return false
	}
	c.gwMu.Lock()
	gw := c.gwSynced
	c.gwMu.Unlock()
	if gw == nil || !gw() {
		return false
	}
	c.synced.Store(true)
	return true
}

func (c *controller) setGatewaysSynced(f func() bool) {
	c.gwMu.Lock()
	c.gwSynced = f
	c.gwMu.Unlock()
}

func (c *controller) importChanged(obj any) {
	if si, ok := unwrap(obj).(*serviceImport); ok {
		c.rebuild(si.namespace, si.name)
	}
}

func (c *controller) sliceChanged(obj any) {
	if es, ok := unwrap(obj).(*endpointSlice); ok && es.service != "" {
		c.rebuild(es.namespace, es.service)
	}
}

// unwrap returns the object of a deletion tombstone, or obj.
func unwrap(obj any) any {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return obj
}

// rebuild recomputes the view of service namespace/name from the informers' stores
// and publishes it, or removes it when the ServiceImport is gone.
func (c *controller) rebuild(namespace, name string) {
	c.rebuildMu.Lock()
	defer c.rebuildMu.Unlock()
	key := namespace + "/" + name
	var s *service
	if obj, exists, err := c.imports.GetIndexer().GetByKey(key); err == nil && exists {
		objs, err := c.slices.GetIndexer().ByIndex(byServiceIndex, key)
		if err != nil {
			log.Errorf("listing the EndpointSlices of %s: %v", key, err) // only an unknown index fails
		}
		eps := make([]*endpointSlice, 0, len(objs))
		for _, o := range objs {
			eps = append(eps, o.(*endpointSlice))
		}
		s = buildService(obj.(*serviceImport), eps, c.cluster)
	}
	c.set(serviceKey(name, namespace), s)
}

// runGateways follows the Gateway API: while it exists, a Gateway informer decides
// which clusters are connected; while it does not (service discovery without
// Submariner's data plane), every cluster counts as connected. It looks again every
// gatewayRecheck, and returns when ctx is done.
func (c *controller) runGateways(ctx context.Context) {
	var (
		stopInformer context.CancelFunc
		stopped      chan struct{}
		absentLogged bool
	)
	defer func() {
		if stopInformer != nil {
			stopInformer()
			<-stopped
		}
	}()
	retry := wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Steps: math.MaxInt32, Cap: c.opts.gatewayRecheck}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		delay := c.opts.gatewayRecheck
		present, err := c.gatewayAPIPresent()
		switch {
		case err != nil:
			log.Warningf("looking for the Gateway API %s: %v", submv1.SchemeGroupVersion, err)
			delay = retry.Step()
		case present && stopInformer == nil:
			inf, reg, err := c.newGatewayInformer()
			if err != nil {
				log.Errorf("starting the Gateway informer: %v", err) // cannot happen before Run
				delay = retry.Step()
				break
			}
			log.Infof("the Gateway API exists: answering with the local cluster and the clusters whose tunnel is connected")
			c.setGatewaysSynced(reg.HasSynced)
			infCtx, cancel := context.WithCancel(ctx)
			stopInformer, stopped = cancel, make(chan struct{})
			go func(done chan struct{}) {
				defer close(done)
				inf.RunWithContext(infCtx)
			}(stopped)
			absentLogged = false
		case !present:
			if stopInformer != nil {
				stopInformer()
				<-stopped
				stopInformer, stopped = nil, nil
			}
			if !absentLogged {
				log.Infof("no Gateway API %s in the cluster (service discovery only): every cluster counts as connected", submv1.SchemeGroupVersion)
				absentLogged = true
			}
			c.setConnectivity(true, nil)
			c.setGatewaysSynced(func() bool { return true })
		}
		if err == nil {
			retry.Steps, retry.Duration = math.MaxInt32, time.Second
		}
		timer.Reset(delay)
	}
}

// gatewayAPIPresent reports whether the API server serves submariner.io/v1 Gateways.
func (c *controller) gatewayAPIPresent() (bool, error) {
	res, err := c.discovery.ServerResourcesForGroupVersion(submv1.SchemeGroupVersion.String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, r := range res.APIResources {
		if r.Name == gatewaysResource {
			return true, nil
		}
	}
	return false, nil
}

func (c *controller) newGatewayInformer() (cache.SharedIndexInformer, cache.ResourceEventHandlerRegistration, error) {
	inf := cache.NewSharedIndexInformerWithOptions(
		cache.NewListWatchFromClient(c.submV1, gatewaysResource, metav1.NamespaceAll, fields.Everything()),
		&submv1.Gateway{}, cache.SharedIndexInformerOptions{ObjectDescription: "Gateways"})
	if err := inf.SetTransform(toGateway); err != nil {
		return nil, nil, err
	}
	changed := func(any) { c.gatewaysChanged(inf.GetStore()) }
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    changed,
		UpdateFunc: func(_, obj any) { changed(obj) },
		DeleteFunc: changed,
	})
	if err != nil {
		return nil, nil, err
	}
	return inf, reg, nil
}

// gatewaysChanged recomputes the connected clusters from the active Gateways.
func (c *controller) gatewaysChanged(store cache.Store) {
	var ids []string
	for _, obj := range store.List() {
		if g, ok := obj.(*gateway); ok && g.active {
			ids = append(ids, g.connected...)
		}
	}
	c.setConnectivity(false, ids)
}
