package routeagent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Retry backoff of failed syncs: quick at first (a failover must not wait), capped
// so that a lasting problem is retried often enough to notice its fix.
const (
	retryBase = 50 * time.Millisecond
	retryMax  = 30 * time.Second
	// syncTimeout bounds one sync, so that a hung iptables-restore (waiting for
	// the xtables lock, say) is killed and retried instead of blocking the agent.
	syncTimeout = time.Minute
)

// ControllerConfig says what the controller watches and how it reports.
type ControllerConfig struct {
	// NodeName is this node's name.
	NodeName string
	// Namespace holds the Endpoints (local and copies of remote ones).
	Namespace string
	// Resync is how often the agent syncs without a change, reading the iptables
	// tables again to repair what others changed; 0 never does.
	Resync time.Duration
	// Ready, when set, is told why the agent is not ready yet, and nil after the
	// first successful sync.
	Ready func(error)
}

// syncKey is the one work item: every change leads to a sync of the whole node.
var syncKey = reconcile.Request{NamespacedName: types.NamespacedName{Name: "node"}}

// RunController watches the Endpoints in cc.Namespace and the Nodes through kube,
// and calls agent.Sync with the whole Input on every change that matters (events
// arriving together are coalesced into one sync). Failed syncs are retried with
// backoff. It blocks until ctx is done. Logs go to ctx's logger.
func RunController(ctx context.Context, kube *rest.Config, agent *Agent, cc ControllerConfig) error {
	if cc.NodeName == "" || cc.Namespace == "" {
		return errors.New("route agent controller: the node name and the namespace are required")
	}
	log := logr.FromContextOrDiscard(ctx)
	scheme := runtime.NewScheme()
	utilruntime.Must(corev1.AddToScheme(scheme))
	utilruntime.Must(submv1.AddToScheme(scheme))
	mgr, err := ctrl.NewManager(kube, ctrl.Options{
		Scheme:                 scheme,
		Logger:                 log,
		Metrics:                metricsserver.Options{BindAddress: "0"}, // the component serves the registry
		HealthProbeBindAddress: "0",
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&submv1.Endpoint{}: {Namespaces: map[string]cache.Config{cc.Namespace: {}}},
			&corev1.Node{}:     {Transform: trimNode},
		}},
	})
	if err != nil {
		return fmt.Errorf("creating the controller manager: %w", err)
	}
	r := &reconciler{agent: agent, reader: mgr.GetCache(), cc: cc}
	toNode := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{syncKey}
	})
	err = ctrl.NewControllerManagedBy(mgr).
		Named("routeagent").
		Watches(&submv1.Endpoint{}, toNode).
		Watches(&corev1.Node{}, toNode, builder.WithPredicates(nodeChanged)).
		// One sync at start, even when nothing is there to watch (yet), and one
		// whenever the host's interfaces or addresses change (a CNI interface that
		// appears late, a new MTU).
		WatchesRawSource(source.Func(func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
			q.Add(syncKey)
			return agent.kernel.System.Subscribe(logr.NewContext(ctx, log), func() { q.Add(syncKey) })
		})).
		WithOptions(controller.Options{
			MaxConcurrentReconciles: 1,
			SkipNameValidation:      ptr.To(true), // tests run several agents in one process
			RateLimiter:             workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](retryBase, retryMax),
		}).
		Complete(r)
	if err != nil {
		return fmt.Errorf("creating the route agent controller: %w", err)
	}
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("running the route agent controller: %w", err)
	}
	return nil
}

// reconciler syncs the node from the informers' caches.
type reconciler struct {
	agent  *Agent
	reader client.Reader
	cc     ControllerConfig

	mu       sync.Mutex
	ready    bool
	lastFull time.Time
}

// Reconcile implements reconcile.Reconciler.
func (r *reconciler) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	in, err := r.input(ctx)
	if err == nil {
		r.repairPeriodically()
		_, err = r.agent.Sync(ctx, in)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		if !r.ready && r.cc.Ready != nil {
			r.cc.Ready(fmt.Errorf("the first sync failed, retrying: %w", err))
		}
		return reconcile.Result{}, err
	}
	if !r.ready {
		r.ready = true
		if r.cc.Ready != nil {
			r.cc.Ready(nil)
		}
	}
	return reconcile.Result{RequeueAfter: r.cc.Resync}, nil
}

// repairPeriodically makes a sync every Resync a full one.
func (r *reconciler) repairPeriodically() {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if r.lastFull.IsZero() {
		r.lastFull = now // the agent's first sync is full anyway
		return
	}
	if r.cc.Resync > 0 && now.Sub(r.lastFull) >= r.cc.Resync {
		r.agent.Invalidate()
		r.lastFull = now
	}
}

// input reads the caches and the host's interfaces.
func (r *reconciler) input(ctx context.Context) (Input, error) {
	in := Input{NodeName: r.cc.NodeName}
	var nodes corev1.NodeList
	if err := r.reader.List(ctx, &nodes); err != nil {
		return in, fmt.Errorf("listing Nodes: %w", err)
	}
	for _, n := range nodes.Items {
		in.Nodes = append(in.Nodes, nodeFrom(&n))
	}
	var eps submv1.EndpointList
	if err := r.reader.List(ctx, &eps, client.InNamespace(r.cc.Namespace)); err != nil {
		return in, fmt.Errorf("listing Endpoints in %s: %w", r.cc.Namespace, err)
	}
	in.Endpoints = eps.Items
	links, err := r.agent.Links(ctx)
	if err != nil {
		return in, err
	}
	in.Links = links
	return in, nil
}

// nodeFrom extracts what the plan needs from a Node: its first IPv4 InternalIP and
// its MSS annotation.
func nodeFrom(n *corev1.Node) Node {
	out := Node{Name: n.Name, TCPClampMSS: n.Annotations[TCPClampMSSAnnotation]}
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is4() {
			out.IP = ip
			break
		}
	}
	return out
}

// trimNode keeps only what the agent reads of a Node in the cache (its name, the
// MSS annotation and its InternalIPs), so that the agent's memory does not grow with
// the Nodes' images and conditions.
func trimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	out := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion, CreationTimestamp: n.CreationTimestamp,
	}}
	if v, ok := n.Annotations[TCPClampMSSAnnotation]; ok {
		out.Annotations = map[string]string{TCPClampMSSAnnotation: v}
	}
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			out.Status.Addresses = append(out.Status.Addresses, a)
		}
	}
	return out, nil
}

// nodeChanged lets through Node creations and deletions, and updates that change
// what the plan reads (kubelets update their Node's status all the time).
var nodeChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*corev1.Node)
		n, ok2 := e.ObjectNew.(*corev1.Node)
		if !ok1 || !ok2 {
			return true
		}
		return nodeFrom(o) != nodeFrom(n) || !slices.Equal(o.Status.Addresses, n.Status.Addresses)
	},
}
