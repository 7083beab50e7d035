package routeagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/submariner-go/submariner/agents/component"
)

// DefaultResync is how often the agent re-reads the iptables tables without a
// change, to repair rules others removed (kube-proxy does the same every minute).
const DefaultResync = time.Minute

// Options are the route agent's flags.
type Options struct {
	component.Options
	Network component.NetworkOptions
	// Resync is the period of full syncs without a change.
	Resync time.Duration
}

// AddFlags registers the flags and returns the environment variables behind them.
func (o *Options) AddFlags(fs *pflag.FlagSet) []component.Env {
	env := []component.Env{o.Options.AddFlags(fs, DefaultMetricsAddr), o.Network.AddFlags(fs)}
	fs.DurationVar(&o.Resync, "resync-period", DefaultResync,
		"how often to sync without a change, reading the iptables tables again to repair rules others removed; 0 never does")
	return env
}

// Validate checks the flags and returns the cluster configuration. In the cleanup
// mode (--uninstall) the network flags are not needed.
func (o *Options) Validate() (Config, error) {
	var errs []error
	if err := o.Options.Validate(); err != nil {
		errs = append(errs, err)
	}
	if o.Resync < 0 {
		errs = append(errs, fmt.Errorf("--resync-period %s is negative: give a period such as 1m, or 0 to turn periodic syncs off", o.Resync))
	}
	cfg := Config{ClusterID: o.ClusterID}
	if !o.Uninstall {
		nets, err := o.Network.Parse()
		if err != nil {
			errs = append(errs, err)
		} else {
			cfg.ClusterCIDRs, cfg.ServiceCIDRs, cfg.GlobalCIDRs = nets.Cluster, nets.Service, nets.Global
			if err := cfg.validateNetworks(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return cfg, errors.Join(errs...)
}

const usage = `The route agent runs on every node of a cluster joined to a Submariner clusterset
(a DaemonSet with hostNetwork). It watches the submariner.io/v1 Endpoints in its
namespace and the Nodes, and converges the node: the VXLAN device vx-submariner
to the active gateway, routes for the remote clusters' subnets, iptables rules in
its own chains and the sysctls cross-cluster traffic needs. With --uninstall it
removes all of that, reports ready, and waits to be stopped.

Every flag defaults to the environment variable named in its description.

Flags:
`

// Main is the route agent's main: it parses args (flags, with defaults from the
// environment), validates them and runs the agent until SIGTERM. stdout receives
// --help and --version.
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
	return component.Run(ComponentName, &o.Options, stdout, func(ctx context.Context, rt *component.Runtime) error {
		kernel, err := HostKernel()
		if err != nil {
			return err
		}
		agent, err := NewAgent(cfg, kernel, component.Registry)
		if err != nil {
			return err
		}
		ctx = logr.NewContext(ctx, rt.Log)
		if o.Uninstall {
			return Uninstall(ctx, agent, rt.SetReady)
		}
		rt.SetReady(errors.New("waiting for the first sync"))
		return RunController(ctx, rt.Kube, agent, ControllerConfig{
			NodeName:  o.NodeName,
			Namespace: o.Namespace,
			Resync:    o.Resync,
			Ready:     rt.SetReady,
		})
	})
}

// Uninstall is the cleanup mode: it removes everything the agent made, retrying
// with backoff until that succeeds, then reports ready and waits until ctx is done
// (the contract `subctl uninstall` relies on: a ready cleanup pod has finished).
func Uninstall(ctx context.Context, agent *Agent, ready func(error)) error {
	log := logr.FromContextOrDiscard(ctx)
	ready(errors.New("removing the route agent's state"))
	backoff := wait.Backoff{Duration: retryBase, Factor: 2, Jitter: 0.1, Steps: 1 << 30, Cap: retryMax}
	err := wait.ExponentialBackoffWithContext(ctx, backoff, func(ctx context.Context) (bool, error) {
		if err := agent.Cleanup(ctx); err != nil {
			log.Error(err, "Cleanup failed, retrying")
			ready(fmt.Errorf("cleanup failed, retrying: %w", err))
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		// Stopped before the cleanup succeeded: what remains is in the log.
		return fmt.Errorf("cleanup did not finish: %w", err)
	}
	ready(nil)
	log.Info("Cleanup done; waiting to be stopped")
	<-ctx.Done()
	return nil
}
