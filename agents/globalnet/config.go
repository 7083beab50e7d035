package globalnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime/debug"
	"slices"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	"github.com/vishvananda/netlink"
	"k8s.io/client-go/tools/leaderelection"

	"github.com/submariner-go/submariner/agents/component"
	"github.com/submariner-go/submariner/agents/netkit/iptables"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Config is what Globalnet needs to know, validated.
type Config struct {
	ClusterID string
	// Namespace holds the Endpoints, Gateways and the Lease.
	Namespace string
	// NodeName is this node: Globalnet works while the local Endpoint names it.
	NodeName     string
	ClusterCIDRs []netip.Prefix
	ServiceCIDRs []netip.Prefix
	// GlobalCIDR is the cluster's global CIDR: the pool.
	GlobalCIDR netip.Prefix
	// ClusterEgressIPs is the size the ClusterGlobalEgressIP is created with.
	ClusterEgressIPs int
	// Resync is how often the rules are checked against the kernel without a
	// change; 0 never.
	Resync time.Duration
	// Leader election timings.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// KubeQPS and KubeBurst limit the requests to the API server (0: the
	// defaults, DefaultKubeQPS and DefaultKubeBurst).
	KubeQPS   float32
	KubeBurst int
}

// Validate reports every problem with c, naming the flag and the fix.
func (c Config) Validate() error {
	var errs []error
	if err := submv1.ValidateClusterID(c.ClusterID); err != nil {
		errs = append(errs, fmt.Errorf("--cluster-id: %w", err))
	}
	if c.Namespace == "" {
		errs = append(errs, errors.New("--namespace is empty: give the namespace the components run in, normally submariner-operator"))
	}
	if c.NodeName == "" {
		errs = append(errs, errors.New("--node-name is empty: pass it from the downward API (spec.nodeName) as NODE_NAME"))
	}
	if len(c.ClusterCIDRs) == 0 {
		errs = append(errs, errors.New("--cluster-cidr is empty: give the cluster's Pod CIDRs (SUBMARINER_CLUSTERCIDR), whose traffic Globalnet gives global egress IPs"))
	}
	for _, p := range c.ClusterCIDRs {
		if !p.Addr().Is4() {
			errs = append(errs, fmt.Errorf("--cluster-cidr %s is not IPv4: Globalnet works with IPv4 only", p))
		}
	}
	switch {
	case !c.GlobalCIDR.IsValid():
		errs = append(errs, errors.New("--global-cidr is empty: Globalnet needs the cluster's global CIDR (SUBMARINER_GLOBALCIDR), allocated by subctl join, for example 242.0.0.0/16"))
	case !c.GlobalCIDR.Addr().Is4() || c.GlobalCIDR.Bits() > 30:
		errs = append(errs, fmt.Errorf("--global-cidr %s must be an IPv4 CIDR of at least 4 addresses, normally a /16 such as 242.0.0.0/16", c.GlobalCIDR))
	default:
		for _, p := range slices.Concat(c.ClusterCIDRs, c.ServiceCIDRs) {
			if p.Overlaps(c.GlobalCIDR) {
				errs = append(errs, fmt.Errorf("--global-cidr %s overlaps the cluster's %s: give a global CIDR outside the Pod and Service CIDRs", c.GlobalCIDR, p))
			}
		}
	}
	if c.ClusterEgressIPs < 0 || c.ClusterEgressIPs > submv1.MaxGlobalEgressIPs {
		errs = append(errs, fmt.Errorf("--cluster-egress-ips %d is out of range: give 0 to %d", c.ClusterEgressIPs, submv1.MaxGlobalEgressIPs))
	}
	if c.KubeQPS < 0 || c.KubeBurst < 0 {
		errs = append(errs, fmt.Errorf("--kube-api-qps %v and --kube-api-burst %d must not be negative", c.KubeQPS, c.KubeBurst))
	}
	if c.Resync < 0 {
		errs = append(errs, fmt.Errorf("--resync-period %s is negative: give a period such as 1m, or 0 to turn periodic checks off", c.Resync))
	}
	if c.RetryPeriod <= 0 || c.RenewDeadline <= time.Duration(float64(c.RetryPeriod)*leaderelection.JitterFactor) || c.LeaseDuration <= c.RenewDeadline {
		errs = append(errs, fmt.Errorf("leader election timings --leader-lease-duration %s, --leader-renew-deadline %s, --leader-retry-period %s: the lease duration must exceed the renew deadline, which must exceed %.1f times the retry period",
			c.LeaseDuration, c.RenewDeadline, c.RetryPeriod, leaderelection.JitterFactor))
	}
	return errors.Join(errs...)
}

// Options are Globalnet's flags.
type Options struct {
	component.Options
	Network          component.NetworkOptions
	ClusterEgressIPs int
	Resync           time.Duration
	LeaseDuration    time.Duration
	RenewDeadline    time.Duration
	RetryPeriod      time.Duration
	KubeQPS          float32
	KubeBurst        int
	MemoryLimitMiB   int
}

// AddFlags registers the flags and returns the environment variables behind them.
func (o *Options) AddFlags(fs *pflag.FlagSet) []component.Env {
	env := []component.Env{o.Options.AddFlags(fs, DefaultMetricsAddr), o.Network.AddFlags(fs)}
	fs.IntVar(&o.ClusterEgressIPs, "cluster-egress-ips", submv1.DefaultClusterGlobalEgressIPs,
		"how many global IPs the ClusterGlobalEgressIP "+submv1.ClusterGlobalEgressIPName+" is created with when it does not exist, 0 to 20 (env SUBMARINER_CLUSTEREGRESSIPS)")
	fs.DurationVar(&o.Resync, "resync-period", DefaultResync,
		"how often to read the iptables tables again without a change, to repair rules others removed; 0 never does")
	fs.DurationVar(&o.LeaseDuration, "leader-lease-duration", DefaultLeaseDuration, "how long the Lease "+submv1.GlobalnetLeaseName+" stays valid without renewal (a dead node's Globalnet is replaced after this)")
	fs.DurationVar(&o.RenewDeadline, "leader-renew-deadline", DefaultRenewDeadline, "how long the active Globalnet tries to renew the Lease before it stops")
	fs.DurationVar(&o.RetryPeriod, "leader-retry-period", DefaultRetryPeriod, "how often candidates try to take the Lease")
	fs.Float32Var(&o.KubeQPS, "kube-api-qps", DefaultKubeQPS, "requests per second to the API server, sustained (a cluster exporting thousands of Services needs a few per Service at start)")
	fs.IntVar(&o.KubeBurst, "kube-api-burst", DefaultKubeBurst, "requests to the API server in a burst")
	fs.IntVar(&o.MemoryLimitMiB, "memory-limit", DefaultMemoryLimitMiB,
		"soft limit of the Go runtime's memory in MiB: the garbage collector works harder as the process nears it (GOMEMLIMIT, when set, wins); 0 for none")
	return append(env, component.Env{"cluster-egress-ips": "SUBMARINER_CLUSTEREGRESSIPS"})
}

// Validate checks the flags and returns the configuration. In the cleanup mode
// (--uninstall) the network flags are not needed.
func (o *Options) Validate() (Config, error) {
	cfg := Config{
		ClusterID: o.ClusterID, Namespace: o.Namespace, NodeName: o.NodeName,
		ClusterEgressIPs: o.ClusterEgressIPs, Resync: o.Resync,
		LeaseDuration: o.LeaseDuration, RenewDeadline: o.RenewDeadline, RetryPeriod: o.RetryPeriod,
		KubeQPS: o.KubeQPS, KubeBurst: o.KubeBurst,
	}
	var errs []error
	if err := o.Options.Validate(); err != nil {
		errs = append(errs, err)
	}
	if o.Uninstall {
		return cfg, errors.Join(errs...)
	}
	nets, err := o.Network.Parse()
	if err != nil {
		return cfg, errors.Join(append(errs, err)...)
	}
	cfg.ClusterCIDRs, cfg.ServiceCIDRs = nets.Cluster, nets.Service
	switch len(nets.Global) {
	case 0:
	case 1:
		cfg.GlobalCIDR = nets.Global[0]
	default:
		cfg.GlobalCIDR = nets.Global[0]
		errs = append(errs, fmt.Errorf("--global-cidr lists %d CIDRs (%v): Globalnet allocates from one global CIDR per cluster", len(nets.Global), nets.Global))
	}
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if o.MemoryLimitMiB < 0 {
		errs = append(errs, fmt.Errorf("--memory-limit %d is negative: give MiB, or 0 for no limit", o.MemoryLimitMiB))
	}
	return cfg, errors.Join(errs...)
}

const usage = `Globalnet runs on the gateway nodes of a cluster joined to a Submariner clusterset
with Globalnet (a DaemonSet with hostNetwork). The instance on the active gateway
node (the node the cluster's Endpoint names) that holds the Lease
submariner-globalnet-lock allocates global IPs from the cluster's global CIDR:
for every exported Service (GlobalIngressIP), for the cluster's egress
(ClusterGlobalEgressIP cluster-egress.submariner.io) and for chosen namespaces
and Pods (GlobalEgressIP); it records each allocation in the object's status and
writes the NAT rules on its node. With --uninstall it removes its rules, its
internal Services and the objects it created, reports ready and waits to be
stopped.

Every flag defaults to the environment variable named in its description.

Flags:
`

// Main is Globalnet's main: it parses args (flags, with defaults from the
// environment), validates them and runs until SIGTERM. stdout receives --help and
// --version.
func Main(args []string, stdout io.Writer) error {
	var o Options
	fs := pflag.NewFlagSet(ComponentName, pflag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Usage = func() {
		fmt.Fprintf(stdout, "Usage: %s [flags]\n\n%s", ComponentName, usage)
		fs.PrintDefaults()
	}
	env := o.AddFlags(fs)
	if err := component.Parse(fs, args, env...); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return err
	}
	if o.ShowVersion {
		return component.Run(ComponentName, &o.Options, stdout, nil)
	}
	cfg, err := o.Validate()
	if err != nil {
		return err
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set && o.MemoryLimitMiB > 0 {
		debug.SetMemoryLimit(int64(o.MemoryLimitMiB) << 20)
	}
	return component.Run(ComponentName, &o.Options, stdout, func(ctx context.Context, rt *component.Runtime) error {
		ctx = logr.NewContext(ctx, rt.Log)
		ipt := iptables.New(iptables.ExecRunner{}, iptables.IPv4)
		if o.Uninstall {
			return Uninstall(ctx, cfg, rt.Kube, ipt, rt.SetReady)
		}
		handle, err := netlink.NewHandle()
		if err != nil {
			return fmt.Errorf("opening netlink: %w", err)
		}
		defer handle.Close()
		metrics, err := NewMetrics(component.Registry)
		if err != nil {
			return err
		}
		agent := NewAgent(cfg, rt.Kube, ipt, NetlinkHost{Handle: handle}, metrics)
		return agent.Run(ctx, rt.SetReady)
	})
}
