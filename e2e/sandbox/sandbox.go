// Package sandbox runs a real multi-cluster Kubernetes on one machine: a broker
// control plane and N clusters, each with a real kube-apiserver,
// kube-controller-manager and kube-scheduler (one shared etcd), whose nodes are
// network namespaces on a per-cluster network inside a fabric namespace. Every node
// runs real kube-proxy (iptables mode) and our node agent (the kubelet's stand-in,
// package nodeagent), and every cluster runs CoreDNS as its cluster DNS. The fabric
// forwards between clusters only gateway-to-gateway traffic, and nothing the sandbox
// sends can leave the machine. See README.md for the topology, the process model
// and the leak guard.
//
// Up brings a sandbox up in the calling process (tests do that through package
// sandboxtest); the `sandbox` CLI runs Up in a detached supervisor (UpDetached,
// Supervise). Down removes a sandbox from what its state dir and the fixed names
// tell, also after a crash.
package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/vishvananda/netlink"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/submariner-go/submariner/e2e/controlplane"
	"github.com/submariner-go/submariner/e2e/sandbox/nodeagent"
)

// DefaultStateDir is where the CLI keeps a sandbox's state unless told otherwise.
const DefaultStateDir = "/var/tmp/submariner-sandbox"

// supervisorLog is the log of the CLI's detached supervisor, opened by `sandbox up`
// before the supervisor runs Up; Up keeps it when it clears the state dir.
const supervisorLog = "supervisor"

// Options configure a sandbox. Start from DefaultOptions.
type Options struct {
	// Clusters is the number of workload clusters, cluster1...clusterN.
	Clusters int
	// WorkersPerCluster is the number of worker nodes per cluster, besides the two
	// gateway nodes.
	WorkersPerCluster int
	// OverlappingCIDRs gives every cluster the same pod and service ranges.
	OverlappingCIDRs bool
	// StateDir holds the sandbox's certificates, kubeconfigs, logs and process
	// records. It must be absolute, and new, empty or an earlier sandbox's.
	StateDir string
	// BinDir holds our binaries (`make build`): coredns, nettest, the components.
	// Empty: the directory of the running executable when it is `make build`'s
	// output, else _output/bin of the repository.
	BinDir string
	// K8sBinDir holds etcd and the Kubernetes binaries (`make k8s-bins`). Empty:
	// ../k8s next to BinDir when there, else KUBEBUILDER_ASSETS or _output/k8s.
	K8sBinDir string

	// Lock is the machine-wide lock when the caller already holds it (the CLI's
	// supervisor inherits it); nil makes Up take it.
	Lock *Lock
	// WaitForLock makes Up wait while another sandbox holds the lock, instead of
	// failing (test packages queue this way).
	WaitForLock bool
	// Progress receives a line per step of Up; nil discards them.
	Progress func(step string)
	// Log receives the supervisor's logs (restarts); node agents log to files.
	Log logr.Logger
}

// DefaultOptions are two clusters with one worker each, state in DefaultStateDir.
func DefaultOptions() Options {
	return Options{Clusters: 2, WorkersPerCluster: 1, StateDir: DefaultStateDir}
}

// Validate checks the options without changing anything: the counts, the state
// dir, and that the binaries are where they are looked for. Each error names the
// value, what is wrong with it and how to fix it.
func (o *Options) Validate() error {
	if _, err := Plan(o.Clusters, o.WorkersPerCluster, o.OverlappingCIDRs); err != nil {
		return err
	}
	if err := checkStateDir(o.StateDir); err != nil {
		return err
	}
	if err := o.resolveBinDirs(); err != nil {
		return err
	}
	for _, b := range k8sBinaries {
		if err := checkExecutable(filepath.Join(o.K8sBinDir, b)); err != nil {
			return fmt.Errorf("%w: run `make k8s-bins` (or point --k8s-bin-dir at etcd and the Kubernetes binaries)", err)
		}
	}
	if err := checkExecutable(filepath.Join(o.BinDir, "coredns")); err != nil {
		return fmt.Errorf("%w: run `make build` (or point --bin-dir at our binaries)", err)
	}
	return nil
}

// Args renders the options as the flags of `sandbox up` and `sandbox supervise`.
func (o Options) Args() []string {
	args := []string{
		fmt.Sprintf("--clusters=%d", o.Clusters),
		fmt.Sprintf("--workers-per-cluster=%d", o.WorkersPerCluster),
		fmt.Sprintf("--overlapping-cidrs=%t", o.OverlappingCIDRs),
		"--state-dir=" + o.StateDir,
	}
	if o.BinDir != "" {
		args = append(args, "--bin-dir="+o.BinDir)
	}
	if o.K8sBinDir != "" {
		args = append(args, "--k8s-bin-dir="+o.K8sBinDir)
	}
	return args
}

func checkStateDir(dir string) error {
	if dir == "" || !filepath.IsAbs(dir) || filepath.Clean(dir) == "/" {
		return fmt.Errorf("state dir %q: must be an absolute path below /, such as %s", dir, DefaultStateDir)
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("state dir %s: %w", dir, err)
	}
	if len(entries) == 0 {
		return nil
	}
	if _, err := os.Stat(Layout{Dir: dir}.Marker()); err != nil {
		return fmt.Errorf("state dir %s: holds files but is not a sandbox's (no %s), and `sandbox down` removes the state dir: pick a new or empty directory",
			dir, filepath.Base(Layout{Dir: dir}.Marker()))
	}
	return nil
}

func checkExecutable(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s is missing", path)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

// resolveBinDirs fills BinDir and K8sBinDir when empty.
func (o *Options) resolveBinDirs() error {
	if o.BinDir == "" {
		if exe, err := os.Executable(); err == nil {
			dir := filepath.Dir(exe)
			if _, err := os.Stat(filepath.Join(dir, "coredns")); err == nil {
				o.BinDir = dir
			}
		}
	}
	if o.BinDir == "" {
		root, err := controlplane.RepoRoot()
		if err != nil {
			return fmt.Errorf("finding our binaries: %w: run from the repository or give --bin-dir", err)
		}
		o.BinDir = filepath.Join(root, "_output", "bin")
	}
	if o.K8sBinDir == "" {
		sibling := filepath.Join(filepath.Dir(o.BinDir), "k8s")
		if _, err := os.Stat(filepath.Join(sibling, binAPIServer)); err == nil {
			o.K8sBinDir = sibling
		} else if dir, err := controlplane.Assets(); err == nil {
			o.K8sBinDir = dir
		} else {
			return fmt.Errorf("finding the Kubernetes binaries: %w", err)
		}
	}
	var err error
	if o.BinDir, err = filepath.Abs(o.BinDir); err != nil {
		return err
	}
	o.K8sBinDir, err = filepath.Abs(o.K8sBinDir)
	return err
}

// RequireRoot fails, saying why, unless the process runs as root.
func RequireRoot() error {
	if os.Geteuid() != 0 {
		return errors.New("the sandbox needs root: it creates network namespaces, links, routes and iptables rules; run it as root (e.g. with sudo)")
	}
	return nil
}

// requiredTools are the host programs the sandbox runs.
var requiredTools = []string{"ip", "iptables-restore", "iptables-save", "ip6tables-restore", "ip6tables-save"}

func checkTools() error {
	for _, t := range requiredTools {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("%s is not on PATH: run `make deps` (the sandbox needs iproute2 and iptables)", t)
		}
	}
	return nil
}

// Sandbox is a running sandbox owned by this process.
type Sandbox struct {
	// Topology is the address plan.
	Topology Topology
	// Layout names the files in the state dir.
	Layout Layout
	// Took is how long Up took.
	Took time.Duration

	opts     Options
	lock     *Lock
	ownsLock bool
	sup      *supervisor
	creds    map[string]*planeCredentials

	mu      sync.Mutex
	logs    []*os.File
	closed  bool
	configs map[string]*rest.Config
}

// state is sandbox.json.
type state struct {
	Options struct {
		Clusters          int    `json:"clusters"`
		WorkersPerCluster int    `json:"workersPerCluster"`
		OverlappingCIDRs  bool   `json:"overlappingCIDRs"`
		BinDir            string `json:"binDir"`
		K8sBinDir         string `json:"k8sBinDir"`
	} `json:"options"`
	Topology Topology   `json:"topology"`
	Owner    procRecord `json:"owner"`
	// Ready is set once Up has returned the sandbox.
	Ready bool `json:"ready"`
}

func readState(l Layout) (*state, error) {
	b, err := os.ReadFile(l.StateFile())
	if err != nil {
		return nil, fmt.Errorf("reading the sandbox state: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", l.StateFile(), err)
	}
	return &st, nil
}

func (s *Sandbox) writeState(ready bool) error {
	owner, err := recordSelf("owner")
	if err != nil {
		return err
	}
	var st state
	st.Options.Clusters = s.opts.Clusters
	st.Options.WorkersPerCluster = s.opts.WorkersPerCluster
	st.Options.OverlappingCIDRs = s.opts.OverlappingCIDRs
	st.Options.BinDir = s.opts.BinDir
	st.Options.K8sBinDir = s.opts.K8sBinDir
	st.Topology, st.Owner, st.Ready = s.Topology, owner, ready
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the sandbox state: %w", err)
	}
	return writeFile(s.Layout.StateFile(), b)
}

// Up brings a sandbox up, owned by the calling process, and returns once every
// node is Ready with kube-proxy synced and CoreDNS is available in every cluster
// (CoreDNS becomes ready only after its kubernetes plugin has synced through the
// `kubernetes` Service from its pod, so that Service works from pods too). Before
// it changes anything it checks the options, root, the lock and leftovers of an
// earlier sandbox; a failure after that takes down what was made and keeps the
// logs in the state dir. Close takes the sandbox down.
func Up(ctx context.Context, opts Options) (_ *Sandbox, err error) {
	began := time.Now()
	if err := RequireRoot(); err != nil {
		return nil, err
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := checkTools(); err != nil {
		return nil, err
	}
	progress := opts.Progress
	if progress == nil {
		progress = func(string) {}
	}
	s := &Sandbox{opts: opts, lock: opts.Lock, Layout: Layout{Dir: filepath.Clean(opts.StateDir)}, configs: map[string]*rest.Config{}}
	if s.lock == nil {
		if opts.WaitForLock {
			s.lock, err = WaitLock(ctx, func(reason error) { progress(fmt.Sprintf("waiting: %v", reason)) })
		} else {
			s.lock, err = TryLock()
		}
		if err != nil {
			return nil, err
		}
		s.ownsLock = true
	}
	defer func() {
		if err != nil && s.ownsLock {
			_ = s.lock.Release()
		}
	}()
	left, err := Leftovers()
	if err != nil {
		return nil, err
	}
	if len(left) > 0 {
		return nil, fmt.Errorf("leftovers of an earlier sandbox are in the way (%s): run `sandbox down --state-dir %s`",
			strings.Join(left, "; "), orDefault(LastStateDir(), DefaultStateDir))
	}
	if s.Topology, err = Plan(opts.Clusters, opts.WorkersPerCluster, opts.OverlappingCIDRs); err != nil {
		return nil, err
	}
	if err := prepareStateDir(s.Layout); err != nil {
		return nil, err
	}
	if err := s.lock.SetStateDir(s.Layout.Dir); err != nil {
		return nil, err
	}

	// From here on, a failure takes down what was made.
	s.sup = newSupervisor(s.Layout, opts.Log)
	defer func() {
		if err != nil {
			if terr := s.teardown(context.WithoutCancel(ctx), false); terr != nil {
				err = errors.Join(err, fmt.Errorf("taking down the failed sandbox: %w", terr))
			}
			err = fmt.Errorf("%w (logs are in %s)", err, s.Layout.Logs())
		}
	}()
	if err := s.writeState(false); err != nil {
		return nil, err
	}
	progress("issuing certificates")
	if err := s.issue(); err != nil {
		return nil, err
	}
	progress("building the network")
	root, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("opening a netlink handle: %w", err)
	}
	defer root.Close()
	if err := (&network{topo: s.Topology, root: root}).setUp(ctx); err != nil {
		return nil, err
	}
	if err := s.startControlPlanes(ctx, progress); err != nil {
		return nil, err
	}
	progress("starting nodes")
	for _, c := range s.Topology.Clusters {
		kube, err := s.Kube(c.Name)
		if err != nil {
			return nil, err
		}
		// Nodes may read only their own Node under the Node authorizer; the agents
		// watch all Nodes for their host-gw routes, as flannel does.
		if err := nodeagent.InstallRBAC(ctx, kube); err != nil {
			return nil, fmt.Errorf("granting %s's nodes read access to Nodes: %w", c.Name, err)
		}
		for _, n := range c.Nodes {
			if err := s.startNodeAgent(c, n); err != nil {
				return nil, err
			}
			if err := s.sup.Start(kubeProxySpec(s.Layout, opts.K8sBinDir, c, n)); err != nil {
				return nil, err
			}
		}
	}
	progress("deploying CoreDNS")
	for _, c := range s.Topology.Clusters {
		cl, err := s.Client(c.Name)
		if err != nil {
			return nil, err
		}
		if err := deployCoreDNS(ctx, cl, c); err != nil {
			return nil, err
		}
		if err := publishKubeadmConfig(ctx, cl, c); err != nil {
			return nil, err
		}
	}
	progress("waiting for nodes, kube-proxy and CoreDNS")
	if err := s.waitClusters(ctx); err != nil {
		return nil, err
	}
	if err := s.writeState(true); err != nil {
		return nil, err
	}
	s.Took = time.Since(began)
	return s, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// prepareStateDir makes the state dir, clearing an earlier sandbox's files (but
// the supervisor's log, which `sandbox up` opened for the supervisor running Up).
func prepareStateDir(l Layout) error {
	if _, err := os.Stat(l.Marker()); err == nil {
		entries, err := os.ReadDir(l.Dir)
		if err != nil {
			return fmt.Errorf("clearing state dir %s: %w", l.Dir, err)
		}
		for _, e := range entries {
			path := filepath.Join(l.Dir, e.Name())
			if path == l.Logs() {
				logs, _ := os.ReadDir(path)
				for _, lf := range logs {
					if filepath.Join(path, lf.Name()) != l.Log(supervisorLog) {
						_ = os.RemoveAll(filepath.Join(path, lf.Name()))
					}
				}
				continue
			}
			if err := os.RemoveAll(path); err != nil {
				return fmt.Errorf("clearing state dir %s: %w", l.Dir, err)
			}
		}
	}
	for _, d := range []string{l.Dir, l.Logs(), l.PIDs()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	return writeFile(l.Marker(), []byte("submariner sandbox state; `sandbox down` removes this directory\n"))
}

// issue makes and writes every control plane's credentials.
func (s *Sandbox) issue() error {
	now := time.Now()
	s.creds = map[string]*planeCredentials{}
	for _, cp := range s.Topology.ControlPlanes() {
		var nodes []Node
		if c, ok := s.Topology.Cluster(cp.Name); ok {
			nodes = c.Nodes
		}
		creds, err := issueCredentials(cp, nodes, now)
		if err != nil {
			return err
		}
		if err := creds.write(s.Layout, cp); err != nil {
			return err
		}
		s.creds[cp.Name] = creds
	}
	return nil
}

// startControlPlanes starts etcd, the API servers and then the controller managers
// and schedulers.
func (s *Sandbox) startControlPlanes(ctx context.Context, progress func(string)) error {
	progress("starting etcd")
	if err := s.sup.Start(etcdSpec(s.Layout, s.opts.K8sBinDir)); err != nil {
		return err
	}
	etcdHealth := fmt.Sprintf("http://127.0.0.1:%d/health", EtcdClientPort)
	if err := s.waitFor(ctx, "etcd to be healthy", 2*time.Minute, func(ctx context.Context) (bool, string) {
		return httpOK(ctx, http.DefaultClient, etcdHealth)
	}); err != nil {
		return err
	}
	progress("starting API servers")
	for _, cp := range s.Topology.ControlPlanes() {
		if err := s.sup.Start(apiServerSpec(s.Layout, s.opts.K8sBinDir, cp)); err != nil {
			return err
		}
	}
	for _, cp := range s.Topology.ControlPlanes() {
		kube, err := s.Kube(cp.Name)
		if err != nil {
			return err
		}
		if err := s.waitFor(ctx, cp.Name+"'s API server to be ready", 3*time.Minute, func(ctx context.Context) (bool, string) {
			body, err := kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
			if err != nil {
				return false, fmt.Sprintf("%v: %s", err, body)
			}
			return true, ""
		}); err != nil {
			return err
		}
	}
	progress("starting controller managers and schedulers")
	for _, cp := range s.Topology.ControlPlanes() {
		c, isCluster := s.Topology.Cluster(cp.Name)
		if err := s.sup.Start(controllerManagerSpec(s.Layout, s.opts.K8sBinDir, cp, c.PodCIDR)); err != nil {
			return err
		}
		if isCluster {
			if err := s.sup.Start(schedulerSpec(s.Layout, s.opts.K8sBinDir, cp)); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitClusters waits for every node to be Ready, every kube-proxy to report
// healthy and CoreDNS to be available in every cluster.
func (s *Sandbox) waitClusters(ctx context.Context) error {
	for _, c := range s.Topology.Clusters {
		kube, err := s.Kube(c.Name)
		if err != nil {
			return err
		}
		if err := s.waitFor(ctx, c.Name+"'s nodes to be Ready", 3*time.Minute, func(ctx context.Context) (bool, string) {
			return nodesReady(ctx, kube, c)
		}); err != nil {
			return err
		}
		for _, n := range c.Nodes {
			url := fmt.Sprintf("http://%s:%d/healthz", n.IP, KubeProxyHealthPort)
			if err := s.waitFor(ctx, "kube-proxy on "+n.Name+" to be healthy", 3*time.Minute, func(ctx context.Context) (bool, string) {
				return httpOK(ctx, http.DefaultClient, url)
			}); err != nil {
				return err
			}
		}
		if err := s.waitFor(ctx, c.Name+"'s CoreDNS to be available", 5*time.Minute, func(ctx context.Context) (bool, string) {
			return deploymentAvailable(ctx, kube, kubeSystem, CoreDNSName)
		}); err != nil {
			return err
		}
	}
	return nil
}

// waitFor polls cond until it holds; it fails at once when a supervised process
// has died, and after timeout with cond's last word on what is missing.
func (s *Sandbox) waitFor(ctx context.Context, what string, timeout time.Duration, cond func(ctx context.Context) (bool, string)) error {
	var last string
	var failed error
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if failed = s.sup.Failure(); failed != nil {
			return false, failed
		}
		var ok bool
		ok, last = cond(ctx)
		return ok, nil
	})
	switch {
	case err == nil:
		return nil
	case failed != nil:
		return fmt.Errorf("waiting for %s: %w", what, failed)
	default:
		return fmt.Errorf("waiting for %s: %w (last: %s)", what, err, last)
	}
}

func httpOK(ctx context.Context, c *http.Client, url string) (bool, string) {
	reqCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, url, nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := c.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Sprintf("%s answers %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return true, ""
}

// nodesReady reports whether every node of the cluster is registered and Ready.
func nodesReady(ctx context.Context, kube kubernetes.Interface, c Cluster) (bool, string) {
	var missing []string
	for _, n := range c.Nodes {
		node, err := kube.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			missing = append(missing, fmt.Sprintf("%s: %v", n.Name, err))
			continue
		}
		ready := false
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		if !ready {
			missing = append(missing, n.Name+" is not Ready")
		}
	}
	return len(missing) == 0, strings.Join(missing, "; ")
}

// deploymentAvailable reports whether all replicas of the Deployment are updated
// and available.
func deploymentAvailable(ctx context.Context, kube kubernetes.Interface, ns, name string) (bool, string) {
	d, err := kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, err.Error()
	}
	return DeploymentComplete(d)
}

// DeploymentComplete reports whether a Deployment's current generation is rolled
// out with every replica available, and if not, what is missing.
func DeploymentComplete(d *appsv1.Deployment) (bool, string) {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	if st.ObservedGeneration < d.Generation || st.UpdatedReplicas != want || st.AvailableReplicas != want || st.Replicas != want {
		return false, fmt.Sprintf("deployment %s/%s: %d replicas wanted, %d updated, %d available, %d total",
			d.Namespace, d.Name, want, st.UpdatedReplicas, st.AvailableReplicas, st.Replicas)
	}
	return true, ""
}

// StateDir is the sandbox's state dir.
func (s *Sandbox) StateDir() string { return s.Layout.Dir }

// Kubeconfig returns the path of the administrator's kubeconfig of the broker or
// a cluster.
func (s *Sandbox) Kubeconfig(name string) (string, error) {
	if _, err := s.Topology.ControlPlane(name); err != nil {
		return "", err
	}
	return s.Layout.Kubeconfig(name), nil
}

// RESTConfig returns an administrator's client configuration for the broker or a
// cluster.
func (s *Sandbox) RESTConfig(name string) (*rest.Config, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cfg, ok := s.configs[name]; ok {
		return rest.CopyConfig(cfg), nil
	}
	cp, err := s.Topology.ControlPlane(name)
	if err != nil {
		return nil, err
	}
	creds, ok := s.creds[name]
	if !ok {
		return nil, fmt.Errorf("no credentials for %s", name)
	}
	cfg := RESTConfig(cp.APIServer(), creds.CA.CertPEM, creds.Admin)
	cfg.QPS, cfg.Burst = 50, 100
	s.configs[name] = cfg
	return rest.CopyConfig(cfg), nil
}

// Kube returns an administrator's clientset for the broker or a cluster.
func (s *Sandbox) Kube(name string) (kubernetes.Interface, error) {
	cfg, err := s.RESTConfig(name)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// Client returns an administrator's controller-runtime client (scheme with the
// built-in types, ours and the MCS API) for the broker or a cluster.
func (s *Sandbox) Client(name string) (client.Client, error) {
	cfg, err := s.RESTConfig(name)
	if err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: controlplane.Scheme()})
}

// Close takes the sandbox down: it stops the node agents (which stop their pods)
// and every process, removes the network and the state dir, and releases the lock.
// Calling it again does nothing.
func (s *Sandbox) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	err := s.teardown(ctx, true)
	if err == nil {
		err = s.lock.SetStateDir("")
	}
	if s.ownsLock {
		err = errors.Join(err, s.lock.Release())
	}
	return err
}

// teardown stops what this process runs and removes the rest; the state dir goes
// too when removeDir.
func (s *Sandbox) teardown(ctx context.Context, removeDir bool) error {
	var errs []error
	if s.sup != nil {
		if err := s.sup.Stop(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	s.mu.Lock()
	for _, f := range s.logs {
		f.Close()
	}
	s.logs = nil
	s.mu.Unlock()
	if err := cleanup(ctx, s.Layout, removeDir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Down takes down the sandbox whose state is in stateDir ("" means the last one
// brought up on this machine, else DefaultStateDir): it asks its owner (the CLI's
// supervisor, or a test process) to stop, waits, and then removes whatever is left
// from the process records and the fixed names: processes, the node agents' pods,
// mounts and namespaces, the network, our routes and iptables rules, and the state
// dir. It works after a crash and when nothing is there.
func Down(ctx context.Context, stateDir string) error {
	if err := RequireRoot(); err != nil {
		return err
	}
	if stateDir == "" {
		stateDir = orDefault(LastStateDir(), DefaultStateDir)
	}
	l := Layout{Dir: filepath.Clean(stateDir)}
	if st, err := readState(l); err == nil && st.Owner.PID != os.Getpid() && st.Owner.Alive() {
		// The owner takes its sandbox down itself on SIGTERM.
		if err := stopProcesses(ctx, []procRecord{st.Owner}, 3*time.Minute); err != nil {
			return fmt.Errorf("stopping the sandbox's owner (pid %d): %w", st.Owner.PID, err)
		}
	}
	lockCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	lock, err := WaitLock(lockCtx, nil)
	if err != nil {
		return fmt.Errorf("%w: a process that is not the owner recorded in %s holds it", err, l.StateFile())
	}
	defer lock.Release()
	if err := cleanup(ctx, l, true); err != nil {
		return err
	}
	if LastStateDir() == l.Dir {
		return lock.SetStateDir("")
	}
	return nil
}

// cleanup removes what a sandbox may have left, in order: recorded processes,
// the node agents' state (pods, mounts), any process still in a sandbox
// namespace, the network, and (when removeDir) the state dir.
func cleanup(ctx context.Context, l Layout, removeDir bool) error {
	var errs []error
	recs, err := readRecords(l.PIDs())
	if err != nil {
		errs = append(errs, err)
	}
	if err := stopProcesses(ctx, recs, 5*time.Second); err != nil {
		errs = append(errs, err)
	}
	agents, _ := filepath.Glob(filepath.Join(l.Dir, "*", "nodes", "*", "agent"))
	sort.Strings(agents)
	for _, dir := range agents {
		if err := cleanupNodeAgent(ctx, dir); err != nil {
			errs = append(errs, fmt.Errorf("cleaning up node agent state %s: %w", dir, err))
		}
	}
	inNS, err := netnsProcesses()
	if err != nil {
		errs = append(errs, err)
	}
	if err := stopProcesses(ctx, inNS, 5*time.Second); err != nil {
		errs = append(errs, err)
	}
	if err := tearDownNetwork(ctx); err != nil {
		errs = append(errs, err)
	}
	if removeDir && len(errs) == 0 {
		if _, err := os.Stat(l.Marker()); err == nil {
			if err := os.RemoveAll(l.Dir); err != nil {
				errs = append(errs, fmt.Errorf("removing state dir %s: %w", l.Dir, err))
			}
		}
	}
	return errors.Join(errs...)
}

// netnsProcesses returns every process whose network namespace is one of the
// sandbox's (named with Prefix under /run/netns).
func netnsProcesses() ([]procRecord, error) {
	names, err := sandboxNetNS()
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, nil
	}
	inodes := map[uint64]string{}
	for _, name := range names {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join("/run/netns", name), &st); err == nil {
			inodes[st.Ino] = name
		}
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing /proc: %w", err)
	}
	var recs []procRecord
	for _, e := range entries {
		pid := 0
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st); err != nil {
			continue
		}
		ns, ok := inodes[st.Ino]
		if !ok {
			continue
		}
		start, err := startTime(pid)
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		recs = append(recs, procRecord{Name: fmt.Sprintf("%s in %s", strings.TrimSpace(string(comm)), ns), PID: pid, StartTime: start})
	}
	return recs, nil
}

// Leftovers lists what an earlier sandbox left on the machine: namespaces, the
// root veth, routes, the root chain, and live processes recorded in the last
// state dir. Empty means the machine is clean.
func Leftovers() ([]string, error) {
	var left []string
	names, err := sandboxNetNS()
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	for _, n := range names {
		left = append(left, "network namespace "+n)
	}
	root, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("opening a netlink handle: %w", err)
	}
	defer root.Close()
	if _, err := root.LinkByName(RootVeth); err == nil {
		left = append(left, "link "+RootVeth)
	}
	routes, err := root.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return nil, fmt.Errorf("listing routes: %w", err)
	}
	for _, r := range routes {
		left = append(left, fmt.Sprintf("route %s (proto %d)", r.Dst, RouteProtocol))
	}
	for _, cmd := range iptablesFamilies {
		out, err := exec.Command(cmd+"-save", "-t", "filter").CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("running %s-save: %w: %s", cmd, err, out)
		}
		if strings.Contains(string(out), ":"+RootChain+" ") {
			left = append(left, cmd+" chain "+RootChain)
		}
	}
	if dir := LastStateDir(); dir != "" {
		recs, _ := readRecords(Layout{Dir: dir}.PIDs())
		for _, r := range recs {
			if r.Alive() {
				left = append(left, fmt.Sprintf("process %s (pid %d)", r.Name, r.PID))
			}
		}
		if st, err := readState(Layout{Dir: dir}); err == nil && st.Owner.Alive() && st.Owner.PID != os.Getpid() {
			left = append(left, fmt.Sprintf("sandbox owner (pid %d)", st.Owner.PID))
		}
	}
	return left, nil
}

// DNSName returns the cluster DNS name of a Service.
func DNSName(service, namespace string) string {
	return fmt.Sprintf("%s.%s.svc.%s", service, namespace, ClusterDomain)
}

// Options returns the options the sandbox runs with (binary directories resolved).
func (s *Sandbox) Options() Options { return s.opts }
