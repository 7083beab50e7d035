package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/submariner-go/submariner/agents/netkit/netns"
)

// agent is one running node agent.
type agent struct {
	cfg         Config
	log         logr.Logger
	kube        kubernetes.Interface
	nodeNS      *netns.NS
	exe         string
	port        int
	cni         *cni
	ipam        *ipam
	reg         registry
	objects     *objectWatches
	services    cache.Indexer
	recorder    record.EventRecorder
	self        procID
	dns         dnsSettings
	allocatable corev1.ResourceList

	routesMu sync.Mutex

	mu       sync.Mutex
	workers  map[types.UID]*podWorker
	stopping bool
	wg       sync.WaitGroup
}

// nodeRecord is what the state directory keeps of the node, so that Cleanup can
// undo the CNI setup in the node's network namespace.
type nodeRecord struct {
	NodeName string `json:"nodeName"`
	NetNS    string `json:"netns"`
}

const (
	nodeRecordFile = "node.json"
	podsDir        = "pods"
	ipamDir        = "ipam"
)

// validate checks the configuration before anything changes and fills in
// defaults.
func (cfg *Config) validate() error {
	if errs := validation.IsDNS1123Subdomain(cfg.NodeName); len(errs) > 0 {
		return fmt.Errorf("node name %q is invalid: %s", cfg.NodeName, strings.Join(errs, "; "))
	}
	if !cfg.NodeIP.IsValid() {
		return fmt.Errorf("node %s: NodeIP is not set: give the node's IPv4 address on eth0 of its namespace", cfg.NodeName)
	}
	if !cfg.NodeIP.Is4() {
		return fmt.Errorf("node %s: NodeIP %v is not an IPv4 address: the sandbox is IPv4-only", cfg.NodeName, cfg.NodeIP)
	}
	if !cfg.PodCIDR.IsValid() || !cfg.PodCIDR.Addr().Is4() || cfg.PodCIDR.Bits() > 30 {
		return fmt.Errorf("node %s: PodCIDR %v must be an IPv4 prefix of /30 or shorter, such as 10.241.21.0/24", cfg.NodeName, cfg.PodCIDR)
	}
	if cfg.PodCIDR.Masked() != cfg.PodCIDR {
		return fmt.Errorf("node %s: PodCIDR %s has host bits set: use %s", cfg.NodeName, cfg.PodCIDR, cfg.PodCIDR.Masked())
	}
	if !cfg.ClusterCIDR.IsValid() || cfg.ClusterCIDR.Bits() > cfg.PodCIDR.Bits() || !cfg.ClusterCIDR.Contains(cfg.PodCIDR.Addr()) {
		return fmt.Errorf("node %s: ClusterCIDR %v must contain PodCIDR %s", cfg.NodeName, cfg.ClusterCIDR, cfg.PodCIDR)
	}
	if cfg.PodCIDR.Contains(cfg.NodeIP) {
		return fmt.Errorf("node %s: NodeIP %s lies in PodCIDR %s: pick addresses from different ranges", cfg.NodeName, cfg.NodeIP, cfg.PodCIDR)
	}
	for k := range cfg.Labels {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return fmt.Errorf("node %s: label key %q is invalid: %s", cfg.NodeName, k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(cfg.Labels[k]); len(errs) > 0 {
			return fmt.Errorf("node %s: value %q of label %s is invalid: %s", cfg.NodeName, cfg.Labels[k], k, strings.Join(errs, "; "))
		}
		if err := checkNodeLabel(k); err != nil {
			return err
		}
	}
	if cfg.NetNS == "" {
		return fmt.Errorf("node %s: NetNS is empty: name the node's network namespace", cfg.NodeName)
	}
	if cfg.Kube == nil {
		return fmt.Errorf("node %s: Kube is nil: give the node's client configuration (user system:node:%s)", cfg.NodeName, cfg.NodeName)
	}
	if len(cfg.ServingCert.Certificate) == 0 || cfg.ClientCAs == nil {
		return fmt.Errorf("node %s: the kubelet API needs ServingCert and ClientCAs", cfg.NodeName)
	}
	if cfg.KubeletPort == 0 {
		cfg.KubeletPort = DefaultKubeletPort
	}
	if cfg.KubeletPort < 1 || cfg.KubeletPort > 65535 {
		return fmt.Errorf("node %s: KubeletPort %d is not a port number", cfg.NodeName, cfg.KubeletPort)
	}
	if cfg.ClusterDomain == "" {
		cfg.ClusterDomain = "cluster.local"
	}
	if cfg.ClusterDNS.IsValid() && !cfg.ClusterDNS.Is4() {
		return fmt.Errorf("node %s: ClusterDNS %s is not an IPv4 address", cfg.NodeName, cfg.ClusterDNS)
	}
	if !filepath.IsAbs(cfg.StateDir) {
		return fmt.Errorf("node %s: StateDir %q is not an absolute path", cfg.NodeName, cfg.StateDir)
	}
	if len(cfg.Catalog.Images) == 0 {
		return fmt.Errorf("node %s: the catalog is empty: use DefaultCatalog(binDir)", cfg.NodeName)
	}
	return cfg.Catalog.Validate()
}

// Run registers the node, keeps it and its Lease fresh, and runs the pods bound
// to it until ctx is done; then it stops every pod (SIGTERM, SIGKILL after the
// grace period) and removes their namespaces, mounts and the mount-point
// directories it created, and undoes its CNI setup in the node's namespace.
// Container logs stay in StateDir until Cleanup. Run blocks. Init must have been
// called first in main (or TestMain).
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	log := cfg.Log.WithValues("node", cfg.NodeName)
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding our own executable for the container shim: %w", err)
	}
	// Leftovers of an agent that crashed with this state directory.
	if err := Cleanup(ctx, cfg.StateDir); err != nil {
		return fmt.Errorf("cleaning up after an earlier run: %w", err)
	}
	nodeNS, err := netns.Open(cfg.NetNS)
	if err != nil {
		return fmt.Errorf("node %s: %w", cfg.NodeName, err)
	}
	defer nodeNS.Close()
	kube, err := kubernetes.NewForConfig(cfg.Kube)
	if err != nil {
		return fmt.Errorf("creating the node's client: %w", err)
	}
	self, err := identify(os.Getpid())
	if err != nil {
		return err
	}
	a := &agent{
		cfg:         cfg,
		log:         log,
		kube:        kube,
		nodeNS:      nodeNS,
		exe:         exe,
		port:        cfg.KubeletPort,
		cni:         &cni{ns: nodeNS, podCIDR: cfg.PodCIDR, clusterCIDR: cfg.ClusterCIDR},
		ipam:        &ipam{dir: filepath.Join(cfg.StateDir, ipamDir), prefix: cfg.PodCIDR},
		reg:         registry{path: MountPointRegistry},
		self:        self,
		allocatable: capacity(),
		workers:     map[types.UID]*podWorker{},
	}
	a.dns = dnsSettings{ClusterDNS: cfg.ClusterDNS, ClusterDomain: cfg.ClusterDomain}
	if data, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		a.dns.Host = parseResolvConf(string(data))
	}
	if err := os.MkdirAll(filepath.Join(cfg.StateDir, podsDir), 0o755); err != nil {
		return fmt.Errorf("creating the state directory: %w", err)
	}
	if err := writeJSON(filepath.Join(cfg.StateDir, nodeRecordFile), nodeRecord{NodeName: cfg.NodeName, NetNS: cfg.NetNS}); err != nil {
		return err
	}

	podCtx, stopPods := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPods()
	if err := a.cni.setupNode(ctx); err != nil {
		return errors.Join(err, a.teardown(context.WithoutCancel(ctx)))
	}
	broadcaster := record.NewBroadcaster(record.WithContext(podCtx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	a.recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: cfg.NodeName})
	a.objects = newObjectWatches(podCtx, kube, func(uid types.UID) {
		a.mu.Lock()
		w := a.workers[uid]
		a.mu.Unlock()
		if w != nil {
			w.kick()
		}
	})

	if err := a.registerNode(ctx); err != nil {
		return errors.Join(err, a.teardown(context.WithoutCancel(ctx)))
	}
	stopServer, err := a.serveKubeletAPI(podCtx)
	if err != nil {
		return errors.Join(err, a.teardown(context.WithoutCancel(ctx)))
	}
	defer stopServer()

	var loops sync.WaitGroup
	loops.Go(func() { a.heartbeat(ctx) })
	loops.Go(func() { a.renewLease(ctx, a.nodeOwner(ctx)) })

	svcFactory := informers.NewSharedInformerFactory(kube, 0)
	svcInformer := svcFactory.Core().V1().Services().Informer()
	a.services = svcInformer.GetIndexer()
	nodeFactory := informers.NewSharedInformerFactory(kube, 0)
	nodeInformer := nodeFactory.Core().V1().Nodes().Informer()
	_ = nodeInformer.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		if apierrors.IsForbidden(err) {
			log.Error(err, "cannot watch Nodes, so host-gw routes to other nodes' pods are missing: grant the group system:nodes list/watch on nodes (InstallRBAC)")
			return
		}
		log.V(1).Info("watching nodes", "error", err.Error())
	})
	_, _ = nodeInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { a.syncNodeRoutes(nodeInformer.GetStore()) },
		UpdateFunc: func(any, any) { a.syncNodeRoutes(nodeInformer.GetStore()) },
		DeleteFunc: func(any) { a.syncNodeRoutes(nodeInformer.GetStore()) },
	})
	podFactory := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName).String()
	}))
	podInformer := podFactory.Core().V1().Pods().Informer()
	_, _ = podInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { a.podChanged(podCtx, obj) },
		UpdateFunc: func(_, obj any) { a.podChanged(podCtx, obj) },
		DeleteFunc: func(obj any) { a.podDeleted(obj) },
	})
	svcFactory.Start(podCtx.Done())
	nodeFactory.Start(podCtx.Done())
	// Service variables must be known before the first container starts.
	cache.WaitForCacheSync(ctx.Done(), svcInformer.HasSynced)
	podFactory.Start(podCtx.Done())
	log.Info("node agent running")

	<-ctx.Done()
	log.Info("node agent stopping")
	cleanupCtx := context.WithoutCancel(ctx)
	a.stopWorkers()
	stopPods()
	podFactory.Shutdown()
	svcFactory.Shutdown()
	nodeFactory.Shutdown()
	loops.Wait()
	stopServer()
	err = a.teardown(cleanupCtx)
	log.Info("node agent stopped")
	return err
}

// stopWorkers ends every pod worker (each stops its pod) and waits for them.
func (a *agent) stopWorkers() {
	a.mu.Lock()
	workers := a.workers
	a.workers = map[types.UID]*podWorker{}
	a.stopping = true
	a.mu.Unlock()
	for _, w := range workers {
		w.cancel()
	}
	a.wg.Wait()
}

// teardown removes what the agent made outside its pods: the CNI setup, stray
// pod namespaces and mount points, the state (except logs).
func (a *agent) teardown(ctx context.Context) error {
	var errs []error
	if err := teardownNode(ctx, a.nodeNS); err != nil {
		errs = append(errs, err)
	}
	if err := a.reg.gc(); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(filepath.Join(a.cfg.StateDir, ipamDir)); err != nil {
		errs = append(errs, err)
	}
	if err := os.Remove(filepath.Join(a.cfg.StateDir, nodeRecordFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// podChanged starts a worker for a new pod or hands the update to its worker.
func (a *agent) podChanged(ctx context.Context, obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName != a.cfg.NodeName {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopping {
		return
	}
	if w, ok := a.workers[pod.UID]; ok {
		w.update(pod)
		return
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		if pod.DeletionTimestamp == nil {
			return // finished before this agent started: nothing to run
		}
	}
	w := newPodWorker(a, pod)
	wctx, cancel := context.WithCancel(ctx)
	w.cancel = cancel
	a.workers[pod.UID] = w
	a.wg.Go(func() {
		w.run(wctx)
		a.mu.Lock()
		if a.workers[pod.UID] == w {
			delete(a.workers, pod.UID)
		}
		a.mu.Unlock()
	})
}

// podDeleted tells the pod's worker that the pod is gone.
func (a *agent) podDeleted(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	a.mu.Lock()
	w := a.workers[pod.UID]
	a.mu.Unlock()
	if w != nil {
		w.remove()
	}
}

// serviceVars returns the service link variables of a pod.
func (a *agent) serviceVars(pod *corev1.Pod) []envVar {
	var svcs []*corev1.Service
	for _, obj := range a.services.List() {
		if s, ok := obj.(*corev1.Service); ok {
			svcs = append(svcs, s)
		}
	}
	links := pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks
	return serviceEnv(svcs, pod.Namespace, links)
}

// syncNodeRoutes installs the host-gw routes to the other nodes' pod CIDRs.
func (a *agent) syncNodeRoutes(store cache.Store) {
	var nodes []nodeRoute
	for _, obj := range store.List() {
		n, ok := obj.(*corev1.Node)
		if !ok {
			continue
		}
		nr := nodeRoute{Name: n.Name}
		for _, c := range append([]string{n.Spec.PodCIDR}, n.Spec.PodCIDRs...) {
			if p, err := netip.ParsePrefix(c); err == nil && p.Addr().Is4() {
				nr.PodCIDRs = append(nr.PodCIDRs, p)
			}
		}
		nr.PodCIDRs = dedupePrefixes(nr.PodCIDRs)
		for _, addr := range n.Status.Addresses {
			if ip, err := netip.ParseAddr(addr.Address); err == nil && addr.Type == corev1.NodeInternalIP && ip.Is4() {
				nr.IP = ip
				break
			}
		}
		nodes = append(nodes, nr)
	}
	routes := planRoutes(a.cfg.NodeName, a.cfg.PodCIDR, nodes)
	a.routesMu.Lock()
	defer a.routesMu.Unlock()
	if err := syncRoutes(a.nodeNS, routes); err != nil {
		a.log.Error(err, "installing host-gw routes")
	}
}

func dedupePrefixes(ps []netip.Prefix) []netip.Prefix {
	seen := map[netip.Prefix]bool{}
	var out []netip.Prefix
	for _, p := range ps {
		if !seen[p.Masked()] {
			seen[p.Masked()] = true
			out = append(out, p.Masked())
		}
	}
	return out
}

// event records an event about a pod, as the kubelet does.
func (a *agent) event(pod *corev1.Pod, kind, reason, msg string) {
	if a.recorder != nil {
		a.recorder.Event(pod, kind, reason, msg)
	}
}

// RBACName names the ClusterRole and ClusterRoleBinding InstallRBAC makes.
const RBACName = "sandbox:node-agent"

// InstallRBAC grants the group system:nodes what the sandbox CNI needs beyond
// the Node authorizer: list and watch of all Nodes, for the host-gw routes (a
// real cluster's CNI has its own ServiceAccount for that). Call it with an
// administrator's client; existing objects are updated.
func InstallRBAC(ctx context.Context, admin kubernetes.Interface) error {
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: RBACName},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"},
		}},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: RBACName},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: RBACName},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: "system:nodes"}},
	}
	roles := admin.RbacV1().ClusterRoles()
	if _, err := roles.Create(ctx, role, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		existing, err := roles.Get(ctx, RBACName, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading ClusterRole %s: %w", RBACName, err)
		}
		existing.Rules = role.Rules
		if _, err := roles.Update(ctx, existing, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("updating ClusterRole %s: %w", RBACName, err)
		}
	} else if err != nil {
		return fmt.Errorf("creating ClusterRole %s: %w", RBACName, err)
	}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating ClusterRoleBinding %s: %w", RBACName, err)
	}
	return nil
}
