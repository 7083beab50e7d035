package lighthouse

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/pkg/fall"
	"github.com/miekg/dns"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Configuration defaults and limits.
const (
	// defaultTTL is the TTL of the records, in seconds.
	defaultTTL = 5
	// maxTTL is the largest TTL the ttl option accepts.
	maxTTL = 3600
	// envClusterID names the environment variable with the local cluster's ID, as
	// Submariner's components read it.
	envClusterID = "SUBMARINER_CLUSTERID"
)

// The options of the lighthouse block.
const (
	optTTL                  = "ttl"
	optFallthrough          = "fallthrough"
	optKubeconfig           = "kubeconfig"
	optClusterID            = "cluster-id"
	optClusterSpecificNames = "cluster-specific-names"
)

func init() { plugin.Register(pluginName, setup) }

// config is a parsed lighthouse block.
type config struct {
	zones                []string
	ttl                  uint32
	fall                 fall.F
	kubeconfig, context  string
	clusterID            string
	clusterSpecificNames bool
}

func setup(c *caddy.Controller) error {
	cfg, err := parse(c, os.Getenv)
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	restCfg, err := cfg.restConfig()
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	ctrl, err := newController(restCfg, cfg.clusterID, controllerOptions{})
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	lh := newLighthouse(cfg, ctrl)
	c.OnStartup(func() error { ctrl.start(); return nil })
	c.OnShutdown(func() error { ctrl.stop(); return nil })
	dnsserver.GetConfig(c).AddPlugin(func(next plugin.Handler) plugin.Handler {
		lh.Next = next
		return lh
	})
	return nil
}

// parse reads the lighthouse block:
//
//	lighthouse [ZONES...] {
//	    ttl SECONDS
//	    fallthrough [ZONES...]
//	    kubeconfig PATH [CONTEXT]
//	    cluster-id ID
//	    cluster-specific-names
//	}
//
// getenv looks up SUBMARINER_CLUSTERID when there is no cluster-id option.
func parse(c *caddy.Controller, getenv func(string) string) (*config, error) {
	cfg := &config{ttl: defaultTTL}
	blocks := 0
	for c.Next() {
		if blocks++; blocks > 1 {
			return nil, plugin.ErrOnce
		}
		zones, err := parseZones(c.RemainingArgs(), c.ServerBlockKeys)
		if err != nil {
			return nil, c.Err(err.Error())
		}
		cfg.zones = zones
		seen := map[string]bool{}
		for c.NextBlock() {
			opt := c.Val()
			if seen[opt] {
				return nil, c.Errf("option %s is given twice: keep one", opt)
			}
			seen[opt] = true
			if err := parseOption(c, cfg, opt); err != nil {
				return nil, err
			}
		}
	}
	if cfg.clusterID == "" {
		id := getenv(envClusterID)
		if id == "" {
			return nil, fmt.Errorf("no cluster ID: set the %s environment variable or the %s option", envClusterID, optClusterID)
		}
		if err := validateClusterID(id); err != nil {
			return nil, fmt.Errorf("environment variable %s: %w", envClusterID, err)
		}
		cfg.clusterID = id
	}
	return cfg, nil
}

func parseOption(c *caddy.Controller, cfg *config, opt string) error {
	args := c.RemainingArgs()
	switch opt {
	case optTTL:
		if len(args) != 1 {
			return argCountErr(c, opt, "SECONDS", args)
		}
		ttl, err := strconv.Atoi(args[0])
		if err != nil || ttl < 0 || ttl > maxTTL {
			return c.Errf("%s %q: want a whole number of seconds from 0 to %d", optTTL, args[0], maxTTL)
		}
		cfg.ttl = uint32(ttl)
	case optFallthrough:
		for _, z := range args {
			if _, err := normalizeZone(z); err != nil {
				return c.Errf("%s: %v", optFallthrough, err)
			}
		}
		cfg.fall.SetZonesFromArgs(args)
	case optKubeconfig:
		if len(args) < 1 || len(args) > 2 {
			return argCountErr(c, opt, "KUBECONFIG [CONTEXT]", args)
		}
		cfg.kubeconfig = args[0]
		if len(args) == 2 {
			cfg.context = args[1]
		}
	case optClusterID:
		if len(args) != 1 {
			return argCountErr(c, opt, "ID", args)
		}
		if err := validateClusterID(args[0]); err != nil {
			return c.Errf("%s: %v", optClusterID, err)
		}
		cfg.clusterID = args[0]
	case optClusterSpecificNames:
		if len(args) != 0 {
			return c.Errf("%s takes no arguments, got %q", optClusterSpecificNames, strings.Join(args, " "))
		}
		cfg.clusterSpecificNames = true
	default:
		return c.Errf("unknown property %q: the options are %s", opt,
			strings.Join([]string{optTTL, optFallthrough, optKubeconfig, optClusterID, optClusterSpecificNames}, ", "))
	}
	return nil
}

// argCountErr is the error of an option with the wrong number of arguments.
func argCountErr(c *caddy.Controller, opt, syntax string, args []string) error {
	return c.Errf("%s takes %s, got %d arguments %q", opt, syntax, len(args), args)
}

// parseZones returns the zones given as arguments, or else the server block's keys,
// normalized (lower case, fully qualified, without port or scheme).
func parseZones(args, serverBlockKeys []string) ([]string, error) {
	from := args
	if len(from) == 0 {
		from = serverBlockKeys
	}
	var zones []string
	for _, z := range from {
		n, err := normalizeZone(z)
		if err != nil {
			return nil, err
		}
		zones = append(zones, n...)
	}
	return zones, nil
}

func normalizeZone(z string) ([]string, error) {
	n := plugin.Host(z).NormalizeExact()
	if len(n) == 0 {
		return nil, fmt.Errorf("zone %q is not a domain name", z)
	}
	for _, name := range n {
		if _, ok := dns.IsDomainName(name); !ok {
			return nil, fmt.Errorf("zone %q is not a domain name", z)
		}
	}
	return n, nil
}

// validateClusterID checks that id can be a label of a DNS name, as the per-endpoint
// names HOSTNAME.CLUSTERID.NAME.NS.svc.ZONE need.
func validateClusterID(id string) error {
	if errs := validation.IsDNS1123Label(id); len(errs) > 0 {
		return fmt.Errorf("cluster ID %q is not a DNS label: use at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit", id)
	}
	return nil
}

// restConfig returns the configuration to reach the API server: the in-cluster one
// (the pod's service account), or the kubeconfig option's file and context. It
// reads the kubeconfig file but does not contact the server.
func (cfg *config) restConfig() (*rest.Config, error) {
	if cfg.kubeconfig == "" {
		rc, err := rest.InClusterConfig()
		if err != nil {
			if errors.Is(err, rest.ErrNotInCluster) {
				return nil, fmt.Errorf("not running in a Kubernetes pod and no %s option: add `%s PATH [CONTEXT]` to the lighthouse block", optKubeconfig, optKubeconfig)
			}
			return nil, fmt.Errorf("in-cluster configuration: %w", err)
		}
		return rc, nil
	}
	rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: cfg.kubeconfig}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: cfg.context}
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	if err != nil {
		if cfg.context != "" {
			return nil, fmt.Errorf("%s %s %s: %w", optKubeconfig, cfg.kubeconfig, cfg.context, err)
		}
		return nil, fmt.Errorf("%s %s: %w", optKubeconfig, cfg.kubeconfig, err)
	}
	return rc, nil
}
