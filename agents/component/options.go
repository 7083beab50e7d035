// Package component is what every agent binary shares (DESIGN.md section 6): the
// common flags, each defaulting to the environment variable Submariner users know
// (SUBMARINER_CLUSTERID and so on), the broker credentials that `subctl join` mounts
// from its Secret, and the process scaffolding: Prometheus metrics, /healthz and
// /readyz on one HTTP listener, structured logs with a verbosity flag, --version,
// and graceful shutdown on SIGTERM.
package component

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Version is the product version, set at build time with
// -ldflags "-X github.com/submariner-go/submariner/agents/component.Version=...".
var Version = "dev"

// Env maps flag names to the environment variables that supply their defaults.
type Env map[string]string

// Options are the flags every component has.
type Options struct {
	// ClusterID is this cluster's ID in the clusterset.
	ClusterID string
	// Namespace holds the components and the local copies of remote objects.
	Namespace string
	// Kubeconfig reaches the local cluster; empty means the in-cluster config.
	Kubeconfig string
	// MetricsAddr serves /metrics, /healthz and /readyz; empty disables it.
	MetricsAddr string
	// NodeName is the node the component runs on (from the downward API).
	NodeName string
	// Verbosity is the log verbosity; higher logs more.
	Verbosity int
	// Uninstall runs the cleanup mode: remove what the component made, then report
	// ready and idle until stopped (subctl uninstall waits for that).
	Uninstall bool
	// ShowVersion prints the version and exits.
	ShowVersion bool
}

// AddFlags registers the common flags with defaultMetricsAddr as the metrics
// listener's default, and returns the environment variables behind them.
func (o *Options) AddFlags(fs *pflag.FlagSet, defaultMetricsAddr string) Env {
	hostname, _ := os.Hostname()
	fs.StringVar(&o.ClusterID, "cluster-id", "", "this cluster's ID in the clusterset, an RFC 1123 label (env SUBMARINER_CLUSTERID)")
	fs.StringVar(&o.Namespace, "namespace", submv1.ComponentNamespace, "namespace of the components and of the copies of remote objects (env SUBMARINER_NAMESPACE)")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig of the local cluster; empty uses the in-cluster ServiceAccount (env KUBECONFIG)")
	fs.StringVar(&o.MetricsAddr, "metrics-addr", defaultMetricsAddr, "address serving /metrics, /healthz and /readyz; empty disables it")
	fs.StringVar(&o.NodeName, "node-name", hostname, "name of the node this runs on (env NODE_NAME)")
	fs.IntVarP(&o.Verbosity, "v", "v", 0, "log verbosity: 0 logs changes, 2 adds decisions, 4 and more add per-object detail (env SUBMARINER_VERBOSITY)")
	fs.BoolVar(&o.Uninstall, "uninstall", false, "cleanup mode: remove everything this component made in the cluster and on the node, then report ready on /readyz and idle until stopped (env SUBMARINER_UNINSTALL)")
	fs.BoolVar(&o.ShowVersion, "version", false, "print the version and exit")
	return Env{
		"cluster-id": "SUBMARINER_CLUSTERID",
		"namespace":  "SUBMARINER_NAMESPACE",
		"kubeconfig": "KUBECONFIG",
		"node-name":  "NODE_NAME",
		"v":          "SUBMARINER_VERBOSITY",
		"uninstall":  "SUBMARINER_UNINSTALL",
	}
}

// Validate checks the common flags.
func (o *Options) Validate() error {
	var errs []error
	if err := submv1.ValidateClusterID(o.ClusterID); err != nil {
		errs = append(errs, fmt.Errorf("--cluster-id: %w", err))
	}
	if o.Namespace == "" {
		errs = append(errs, errors.New("--namespace is empty: give the namespace the components run in, normally submariner-operator"))
	}
	if o.NodeName == "" {
		errs = append(errs, errors.New("--node-name is empty: pass it from the downward API (spec.nodeName) as NODE_NAME"))
	}
	if o.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(o.MetricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("--metrics-addr %q is not host:port, for example :32780", o.MetricsAddr))
		}
	}
	if o.Verbosity < 0 {
		errs = append(errs, fmt.Errorf("--v %d is negative", o.Verbosity))
	}
	return errors.Join(errs...)
}

// Parse parses args into fs. A flag the arguments do not set takes its value from
// its environment variable in env, when that is set; a bad value names both.
func Parse(fs *pflag.FlagSet, args []string, env ...Env) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	merged := Env{}
	for _, e := range env {
		for flag, name := range e {
			merged[flag] = name
		}
	}
	flags := make([]string, 0, len(merged))
	for flag := range merged {
		flags = append(flags, flag)
	}
	sort.Strings(flags)
	for _, flag := range flags {
		name := merged[flag]
		value, ok := os.LookupEnv(name)
		if !ok || fs.Changed(flag) {
			continue
		}
		f := fs.Lookup(flag)
		if f == nil {
			return fmt.Errorf("environment variable %s is bound to an unknown flag --%s", name, flag)
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			if err := sv.Replace(splitList(value)); err != nil {
				return fmt.Errorf("environment variable %s=%q for --%s: %w", name, value, flag, err)
			}
			continue
		}
		if err := f.Value.Set(value); err != nil {
			return fmt.Errorf("environment variable %s=%q for --%s: %w", name, value, flag, err)
		}
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
