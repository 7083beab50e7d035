package globalnet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/submariner-go/submariner/agents/component"
	"github.com/submariner-go/submariner/agents/netkit/iptables"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Agent is one Globalnet instance on a gateway node. It follows the cluster's local
// Endpoint: while the Endpoint names this node it campaigns for the Lease
// submariner-globalnet-lock and, holding it, runs an Engine. Losing the Lease stops
// the engine and leaves the kernel state for the next holder (often this node again)
// to converge; the Endpoint moving to another node also removes this node's rules,
// since the gateway's traffic no longer passes here.
type Agent struct {
	cfg     Config
	kube    *rest.Config
	ipt     iptables.Interface
	host    Host
	metrics *Metrics

	mu     sync.Mutex
	engine *Engine // the running term's, or nil
}

// NewAgent returns an agent; Run starts it.
func NewAgent(cfg Config, kube *rest.Config, ipt iptables.Interface, host Host, metrics *Metrics) *Agent {
	return &Agent{cfg: cfg, kube: withLimits(kube, cfg), ipt: ipt, host: host, metrics: metrics}
}

// withLimits returns a copy of kube with cfg's request limits.
func withLimits(kube *rest.Config, cfg Config) *rest.Config {
	c := rest.CopyConfig(kube)
	c.QPS, c.Burst = cfg.KubeQPS, cfg.KubeBurst
	if c.QPS == 0 {
		c.QPS = DefaultKubeQPS
	}
	if c.Burst == 0 {
		c.Burst = DefaultKubeBurst
	}
	return c
}

// Run works until ctx is done. ready is told whether the agent is ready (nil) or
// why not: it is ready standing by and, when active, once its rules are in place.
func (a *Agent) Run(ctx context.Context, ready func(error)) error {
	if err := a.cfg.Validate(); err != nil {
		return err
	}
	log := logr.FromContextOrDiscard(ctx)
	rc, err := newRESTClients(a.kube)
	if err != nil {
		return err
	}
	core, err := kubernetes.NewForConfig(a.kube)
	if err != nil {
		return fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	changed := make(chan struct{}, 1)
	endpoints := newTable("endpoints", compactEndpoint, func(types.NamespacedName, *endpointRec, *endpointRec) {
		select {
		case changed <- struct{}{}:
		default:
		}
		if e := a.currentEngine(); e != nil {
			e.EndpointsChanged()
		}
	})
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() {
		endpoints.run(ctx, listWatch(rc.submariner, "endpoints", a.cfg.Namespace, ""), &submv1.Endpoint{})
	})
	ready(errors.New("waiting for the Endpoints"))
	select {
	case <-endpoints.Synced():
	case <-ctx.Done():
		return nil
	}

	cleaned := false
	for ctx.Err() == nil {
		host := activeGateway(a.cfg, endpoints.List(a.cfg.Namespace))
		switch {
		case host == a.cfg.NodeName:
			log.Info("This node is the active gateway: campaigning for the Lease", "lease", submv1.GlobalnetLeaseName)
			ready(errors.New("campaigning for the Lease " + submv1.GlobalnetLeaseName))
			cleaned = false
			a.lead(ctx, core, endpoints, changed, ready)
			continue
		case host != "" && !cleaned:
			// The gateway is elsewhere: this node's rules would only misroute.
			if err := a.cleanupKernel(ctx); err != nil {
				log.Error(err, "Removing this node's Globalnet rules failed; retrying on the next change")
			} else {
				cleaned = true
				log.Info("Standing by", "activeGateway", host)
			}
		}
		ready(nil)
		select {
		case <-changed:
		case <-ctx.Done():
		}
	}
	return nil
}

func (a *Agent) currentEngine() *Engine {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.engine
}

// lead campaigns for the Lease and runs an engine while it holds it, until this node
// stops being the active gateway or ctx is done. The engine stops before the Lease
// is released, so that two engines never overlap.
func (a *Agent) lead(ctx context.Context, core kubernetes.Interface, endpoints *table[endpointRec], changed <-chan struct{}, ready func(error)) {
	log := logr.FromContextOrDiscard(ctx)
	leadCtx, stopLeading := context.WithCancel(ctx)
	defer stopLeading()
	termCtx, stopTerm := context.WithCancel(leadCtx)
	defer stopTerm()
	leading := make(chan context.Context, 1)
	identity := a.cfg.NodeName + LeaderIdentitySuffix

	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Name: submv1.GlobalnetLeaseName, Namespace: a.cfg.Namespace},
			Client:     core.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
		},
		LeaseDuration: a.cfg.LeaseDuration,
		RenewDeadline: a.cfg.RenewDeadline,
		RetryPeriod:   a.cfg.RetryPeriod,
		Name:          submv1.GlobalnetLeaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) { leading <- lctx },
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		log.Error(err, "Cannot take part in the leader election")
		ready(err)
		<-ctx.Done()
		return
	}
	// When the gateway moves away, stop the term (or the campaign).
	go func() {
		for {
			select {
			case <-termCtx.Done():
				return
			case <-changed:
				if activeGateway(a.cfg, endpoints.List(a.cfg.Namespace)) != a.cfg.NodeName {
					log.Info("The active gateway moved to another node: stopping")
					stopTerm()
					return
				}
			}
		}
	}()
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		le.Run(leadCtx)
	}()
	held := false
	select {
	case lctx := <-leading:
		held = true
		tctx, cancel := context.WithCancel(lctx)
		stop := context.AfterFunc(termCtx, cancel)
		a.runTerm(tctx, endpoints, ready)
		stop()
		cancel()
	case <-runDone:
	case <-termCtx.Done():
	}
	// The term is over: stop campaigning, and release the Lease when the term was
	// stopped on purpose. A term that ended because the Lease could not be renewed
	// leaves it alone: by then another node may hold it.
	stopped := termCtx.Err() != nil // before stopLeading, which ends termCtx too
	stopLeading()
	<-runDone
	if held && stopped {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.RenewDeadline)
		defer cancel()
		if err := component.ReleaseLease(rctx, core.CoordinationV1(), a.cfg.Namespace, submv1.GlobalnetLeaseName, identity); err != nil {
			log.Error(err, "The next holder takes over when the Lease expires")
		}
	}
}

// runTerm runs one engine until ctx is done.
func (a *Agent) runTerm(ctx context.Context, endpoints *table[endpointRec], ready func(error)) {
	log := logr.FromContextOrDiscard(ctx)
	log.Info("Holding the Lease: starting", "globalCIDR", a.cfg.GlobalCIDR.String())
	writer, err := iptables.NewWriter(a.ipt, Owner)
	if err == nil {
		var e *Engine
		e, err = NewEngine(a.cfg, log.WithName("engine"), EngineDeps{
			Kube: a.kube, Writer: writer, Host: a.host, Metrics: a.metrics, Endpoints: endpoints, Ready: ready,
		})
		if err == nil {
			a.mu.Lock()
			a.engine = e
			a.mu.Unlock()
			err = e.Run(ctx)
			a.mu.Lock()
			a.engine = nil
			a.mu.Unlock()
		}
	}
	if err != nil {
		log.Error(err, "The engine could not start")
		ready(err)
		<-ctx.Done()
	}
	log.Info("Stopped working")
}

// cleanupKernel removes Globalnet's chains and jumps from this node.
func (a *Agent) cleanupKernel(ctx context.Context) error {
	w, err := iptables.NewWriter(a.ipt, Owner)
	if err != nil {
		return err
	}
	res, err := w.Cleanup(ctx)
	if err != nil {
		return fmt.Errorf("removing Globalnet's iptables chains: %w", err)
	}
	if len(res.Deleted) > 0 || res.JumpsDeleted > 0 {
		logr.FromContextOrDiscard(ctx).Info("Removed this node's Globalnet rules", "chains", len(res.Deleted), "jumps", res.JumpsDeleted)
	}
	return nil
}

// activeGateway returns the node the cluster's newest local Endpoint names, or "".
func activeGateway(cfg Config, endpoints []Named[endpointRec]) string {
	var best *Named[endpointRec]
	for i, ep := range endpoints {
		if ep.Rec.ClusterID != cfg.ClusterID || ep.Rec.Hostname == "" {
			continue
		}
		if best == nil || ep.Rec.Created.After(best.Rec.Created) || ep.Rec.Created.Equal(best.Rec.Created) && ep.Name > best.Name {
			best = &endpoints[i]
		}
	}
	if best == nil {
		return ""
	}
	return best.Rec.Hostname
}

// Uninstall is the cleanup mode: it removes Globalnet's rules from this node, the
// internal Services, the GlobalIngressIPs and the ClusterGlobalEgressIP it created
// and the gateways' global IP annotations, retrying with backoff until all of that
// succeeded, then reports ready and waits until ctx is done (the contract
// `subctl uninstall` relies on). Users' GlobalEgressIPs stay: they go with the CRDs.
func Uninstall(ctx context.Context, cfg Config, kube *rest.Config, ipt iptables.Interface, ready func(error)) error {
	log := logr.FromContextOrDiscard(ctx)
	c, err := client.New(withLimits(kube, cfg), client.Options{Scheme: clientScheme()})
	if err != nil {
		return fmt.Errorf("creating the API client: %w", err)
	}
	a := &Agent{cfg: cfg, ipt: ipt}
	ready(errors.New("removing Globalnet's rules and objects"))
	backoff := wait.Backoff{Duration: retryBase, Factor: 2, Jitter: 0.1, Steps: 1 << 30, Cap: retryMax}
	err = wait.ExponentialBackoffWithContext(ctx, backoff, func(ctx context.Context) (bool, error) {
		err := errors.Join(a.cleanupKernel(ctx), cleanupObjects(ctx, c, cfg.Namespace))
		if err != nil {
			log.Error(err, "Cleanup failed, retrying")
			ready(fmt.Errorf("cleanup failed, retrying: %w", err))
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("cleanup did not finish: %w", err)
	}
	ready(nil)
	log.Info("Cleanup done; waiting to be stopped")
	<-ctx.Done()
	return nil
}

// cleanupObjects deletes what Globalnet created in the cluster. What is already
// gone is success.
func cleanupObjects(ctx context.Context, c client.Client, namespace string) error {
	var errs []error
	ours := client.MatchingLabels{submv1.LabelManagedBy: submv1.GlobalnetManagedBy}
	del := func(obj client.Object) {
		if err := c.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting %s: %w", describe(obj), err))
		}
	}
	var svcs corev1.ServiceList
	if err := c.List(ctx, &svcs, ours, client.HasLabels{submv1.LabelExportedServiceRef}); err != nil {
		errs = append(errs, fmt.Errorf("listing internal Services: %w", err))
	}
	for i := range svcs.Items {
		del(&svcs.Items[i])
	}
	var giips submv1.GlobalIngressIPList
	if err := c.List(ctx, &giips, ours); err != nil && !isNoCRD(err) {
		errs = append(errs, fmt.Errorf("listing GlobalIngressIPs: %w", err))
	}
	for i := range giips.Items {
		del(&giips.Items[i])
	}
	var cgeips submv1.ClusterGlobalEgressIPList
	if err := c.List(ctx, &cgeips, ours); err != nil && !isNoCRD(err) {
		errs = append(errs, fmt.Errorf("listing ClusterGlobalEgressIPs: %w", err))
	}
	for i := range cgeips.Items {
		del(&cgeips.Items[i])
	}
	var gws submv1.GatewayList
	if err := c.List(ctx, &gws, client.InNamespace(namespace)); err != nil && !isNoCRD(err) {
		errs = append(errs, fmt.Errorf("listing Gateways: %w", err))
	}
	for i := range gws.Items {
		gw := &gws.Items[i]
		if _, ok := gw.Annotations[submv1.AnnotationGlobalIP]; !ok {
			continue
		}
		patch := []byte(`{"metadata":{"annotations":{"` + submv1.AnnotationGlobalIP + `":null}}}`)
		if err := c.Patch(ctx, gw, client.RawPatch("application/merge-patch+json", patch)); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("removing the global IP of Gateway %s: %w", gw.Name, err))
		}
	}
	return errors.Join(errs...)
}

// isNoCRD reports whether err says the API does not serve the kind (its CRD is gone
// already): then there is nothing of it to delete.
func isNoCRD(err error) bool {
	return apierrors.IsNotFound(err) || strings.Contains(err.Error(), "no matches for kind")
}

// clientScheme knows the core types, ours and the MCS API: what Globalnet writes
// (a scheme of every built-in group costs a few MiB).
func clientScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(corev1.AddToScheme(s))
	utilruntime.Must(submv1.AddToScheme(s))
	utilruntime.Must(mcsv1beta1.AddToScheme(s))
	return s
}
