package lighthouse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/submariner-go/submariner/agents/component"
)

// Options are the lighthouse agent's flags.
type Options struct {
	component.Options
	Broker component.BrokerOptions
	// LeaseDuration is how long the other clusters keep this cluster's services
	// after its last Lease renewal.
	LeaseDuration time.Duration
	// KubeQPS and KubeBurst rate-limit the requests to each API server.
	KubeQPS   float32
	KubeBurst int
	// Workers is the number of objects handled in parallel per controller and syncer.
	Workers int
	// GlobalCIDR is the cluster's Globalnet CIDR; empty without Globalnet.
	GlobalCIDR string
}

// AddFlags registers the flags and returns the environment variables behind them.
func (o *Options) AddFlags(fs *pflag.FlagSet) []component.Env {
	env := []component.Env{o.Options.AddFlags(fs, DefaultMetricsAddr), o.Broker.AddFlags(fs)}
	fs.DurationVar(&o.LeaseDuration, "lease-duration", DefaultLeaseDuration,
		"how long the other clusters keep this cluster's exported services after its last liveness Lease renewal on the broker; renewed every third of it (env LIGHTHOUSE_LEASE_DURATION)")
	fs.Float32Var(&o.KubeQPS, "kube-api-qps", DefaultKubeQPS, "requests per second to each API server (local and broker)")
	fs.IntVar(&o.KubeBurst, "kube-api-burst", DefaultKubeBurst, "burst of requests to each API server above --kube-api-qps")
	fs.IntVar(&o.Workers, "workers", DefaultWorkers, "objects each controller and syncer handles in parallel")
	fs.StringVar(&o.GlobalCIDR, "global-cidr", "", "the cluster's Globalnet CIDR: when set, exported Services are published with their global IPs")
	return append(env, component.Env{"lease-duration": "LIGHTHOUSE_LEASE_DURATION", "global-cidr": "SUBMARINER_GLOBALCIDR"})
}

// Validate checks the flags, each error naming the flag, its value and how to fix it.
func (o *Options) Validate() error {
	var errs []error
	if err := o.Options.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := o.Broker.Validate(); err != nil {
		errs = append(errs, err)
	}
	if o.LeaseDuration < MinLeaseDuration || o.LeaseDuration > MaxLeaseDuration {
		errs = append(errs, fmt.Errorf("--lease-duration %s is out of range: give a duration from %s to %s, such as %s",
			o.LeaseDuration, MinLeaseDuration, MaxLeaseDuration, DefaultLeaseDuration))
	}
	if o.KubeQPS <= 0 {
		errs = append(errs, fmt.Errorf("--kube-api-qps %g is not positive: give requests per second, such as %d", o.KubeQPS, DefaultKubeQPS))
	}
	if o.KubeBurst < 1 {
		errs = append(errs, fmt.Errorf("--kube-api-burst %d is less than 1: give a burst such as %d", o.KubeBurst, DefaultKubeBurst))
	}
	if o.Workers < 1 || o.Workers > 64 {
		errs = append(errs, fmt.Errorf("--workers %d is out of range: give 1 to 64, such as %d", o.Workers, DefaultWorkers))
	}
	return errors.Join(errs...)
}

const usage = `The lighthouse agent (a Deployment in each cluster joined to a Submariner
clusterset) implements the Multi-Cluster Services API: every ServiceExport in the
cluster becomes this cluster's record in the aggregated ServiceImport on the broker,
and the Service's endpoints become EndpointSlices there; the ServiceImports and the
other clusters' EndpointSlices come down into every cluster that has the namespace,
where the lighthouse CoreDNS plugin answers clusterset.local from them. It writes
the ServiceExports' Valid, Ready and Conflict conditions. A cluster that stops
renewing its Lease on the broker drops out of the other clusters until it renews.
With --uninstall it removes this cluster's exports from the broker and what it
made in the cluster, reports ready, and waits to be stopped.

Every flag defaults to the environment variable named in its description.

Flags:
`

// Main is the lighthouse agent's main: it parses args (flags, with defaults
// from the environment), validates them and runs the agent until SIGTERM.
// stdout receives --help and --version.
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
	if err := o.Validate(); err != nil {
		return err
	}
	brokerCfg, err := o.Broker.RESTConfig()
	if err != nil {
		return err
	}
	return component.Run(ComponentName, &o.Options, stdout, func(ctx context.Context, rt *component.Runtime) error {
		local := rt.Kube
		local.QPS, local.Burst = o.KubeQPS, o.KubeBurst
		brokerCfg.QPS, brokerCfg.Burst = o.KubeQPS, o.KubeBurst
		agent, err := New(Config{
			ClusterID:       o.ClusterID,
			Globalnet:       o.GlobalCIDR != "",
			Local:           local,
			Broker:          brokerCfg,
			BrokerNamespace: o.Broker.Namespace,
			LeaseDuration:   o.LeaseDuration,
			Workers:         o.Workers,
			Log:             rt.Log,
			Registry:        component.Registry,
		})
		if err != nil {
			return err
		}
		if o.Uninstall {
			return uninstall(ctx, agent, rt.SetReady)
		}
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			// /readyz follows the agent until it is ready, then stays ready.
			_ = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(context.Context) (bool, error) {
				select {
				case <-stop:
					return true, nil
				default:
				}
				err := agent.Ready()
				rt.SetReady(err)
				return err == nil, nil
			})
		}()
		return agent.Run(ctx)
	})
}

// uninstall is the cleanup mode: it removes what the agent made, retrying with
// backoff until that succeeds, then reports ready and waits until ctx is done
// (a ready cleanup pod has finished).
func uninstall(ctx context.Context, agent *Agent, ready func(error)) error {
	log := agent.log
	ready(errors.New("removing the lighthouse agent's objects"))
	backoff := wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 1 << 30, Cap: 30 * time.Second}
	err := wait.ExponentialBackoffWithContext(ctx, backoff, func(ctx context.Context) (bool, error) {
		if err := agent.Cleanup(ctx); err != nil {
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
