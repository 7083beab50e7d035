package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/submariner-go/submariner/agents/component"
	"github.com/submariner-go/submariner/agents/gateway/cable"
	"github.com/submariner-go/submariner/agents/syncer"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Options are the gateway's flags.
type Options struct {
	component.Options
	Broker  component.BrokerOptions
	Network component.NetworkOptions

	CableDriver       string
	NATEnabled        bool
	NATTPort          int
	NATTDiscoveryPort int
	PublicIP          string
	PreferredServer   bool

	HealthCheck         bool
	HealthCheckInterval Seconds
	MaxPacketLoss       int

	LeaseDuration, RenewDeadline, RetryPeriod Seconds

	PSKFile            string
	PlutoDir           string
	IPsecDebug         bool
	WireGuardMode      string
	WireGuardSocketDir string

	PodName, PodNamespace string
}

// Seconds is a duration flag that also takes a plain number of seconds, as
// Submariner's environment variables give them ("15" or "500ms").
type Seconds time.Duration

// String implements pflag.Value.
func (s *Seconds) String() string { return time.Duration(*s).String() }

// Set implements pflag.Value.
func (s *Seconds) Set(v string) error {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		*s = Seconds(time.Duration(f * float64(time.Second)))
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%q is neither a number of seconds nor a duration such as 500ms", v)
	}
	*s = Seconds(d)
	return nil
}

// Type implements pflag.Value.
func (s *Seconds) Type() string { return "duration" }

// AddFlags registers the flags and returns the environment variables behind them.
func (o *Options) AddFlags(fs *pflag.FlagSet) []component.Env {
	env := []component.Env{o.Options.AddFlags(fs, DefaultMetricsAddr), o.Broker.AddFlags(fs), o.Network.AddFlags(fs)}
	fs.StringVar(&o.CableDriver, "cable-driver", string(submv1.BackendLibreswan), "cable driver: libreswan, wireguard or vxlan (env SUBMARINER_CABLEDRIVER)")
	fs.BoolVar(&o.NATEnabled, "nat-enabled", false, "the other clusters reach this one through NAT: tunnels go to public IPs and IPsec encapsulates in UDP (env SUBMARINER_NATENABLED)")
	fs.IntVar(&o.NATTPort, "nat-t-port", submv1.CablePort, "UDP port of the tunnels: IKE and NAT-T, the WireGuard listen port, the VXLAN cable (env CE_IPSEC_NATTPORT)")
	fs.IntVar(&o.NATTDiscoveryPort, "natt-discovery-port", submv1.NATDiscoveryPort, "NAT discovery port published in the Endpoint (env SUBMARINER_NATTDISCOVERYPORT)")
	fs.StringVar(&o.PublicIP, "public-ip", "", "how to find the public IP: comma-separated ipv4:ADDRESS, dns:NAME, api:URL, tried in order; empty publishes none; the node's gateway.submariner.io/public-ip annotation wins (env SUBMARINER_PUBLICIP)")
	fs.BoolVar(&o.PreferredServer, "preferred-server", false, "prefer to be the IPsec server of the tunnels; the node's gateway.submariner.io/preferred-server annotation wins (env CE_IPSEC_PREFERREDSERVER)")
	fs.BoolVar(&o.HealthCheck, "health-check", true, "probe every remote gateway through its tunnel (env SUBMARINER_HEALTHCHECKENABLED)")
	o.HealthCheckInterval = Seconds(DefaultHealthCheckInterval)
	fs.Var(&o.HealthCheckInterval, "health-check-interval", "time between two probes of a remote gateway, seconds or a duration (env SUBMARINER_HEALTHCHECKINTERVAL)")
	fs.IntVar(&o.MaxPacketLoss, "health-check-max-packet-loss", DefaultMaxPacketLoss, "unanswered probes in a row after which a connection is in error (env SUBMARINER_HEALTHCHECKMAXPACKETLOSSCOUNT)")
	o.LeaseDuration, o.RenewDeadline, o.RetryPeriod = Seconds(DefaultLeaseDuration), Seconds(DefaultRenewDeadline), Seconds(DefaultRetryPeriod)
	fs.Var(&o.LeaseDuration, "leader-lease-duration", "how long a passive gateway waits for a silent leader before taking over (a dead node costs this much), seconds or a duration (env LEADERSHIP_LEASEDURATION)")
	fs.Var(&o.RenewDeadline, "leader-renew-deadline", "how long the active gateway keeps trying to renew the Lease before stepping down (env LEADERSHIP_RENEWDEADLINE)")
	fs.Var(&o.RetryPeriod, "leader-retry-period", "how often the Lease is renewed, and how often passive gateways try to take it (env LEADERSHIP_RETRYPERIOD)")
	fs.StringVar(&o.PSKFile, "psk-file", DefaultPSKFile, "file holding the clusterset's pre-shared key (the Secret submariner-ipsec-psk, key psk); libreswan and wireguard need it (env CE_IPSEC_PSK_FILE)")
	fs.StringVar(&o.PlutoDir, "pluto-dir", DefaultPlutoDir, "libreswan: pluto's own directory (control socket, NSS database, secrets)")
	fs.BoolVar(&o.IPsecDebug, "ipsec-debug", false, "libreswan: pluto's debug logging (env CE_IPSEC_DEBUG)")
	fs.StringVar(&o.WireGuardMode, "wireguard-mode", "auto", "wireguard: kernel, userspace (embedded wireguard-go on /dev/net/tun) or auto (kernel when available) (env SUBMARINER_WIREGUARDMODE)")
	fs.StringVar(&o.WireGuardSocketDir, "wireguard-socket-dir", "/var/run/wireguard", "wireguard userspace: directory of the device's UAPI socket, where wg(8) looks")
	fs.StringVar(&o.PodName, "pod-name", "", "the gateway's pod, labelled gateway.submariner.io/status=active|passive (env POD_NAME)")
	fs.StringVar(&o.PodNamespace, "pod-namespace", "", "the gateway pod's namespace (env POD_NAMESPACE)")
	env = append(env, component.Env{
		"cable-driver":                 "SUBMARINER_CABLEDRIVER",
		"nat-enabled":                  "SUBMARINER_NATENABLED",
		"nat-t-port":                   "CE_IPSEC_NATTPORT",
		"natt-discovery-port":          "SUBMARINER_NATTDISCOVERYPORT",
		"public-ip":                    "SUBMARINER_PUBLICIP",
		"preferred-server":             "CE_IPSEC_PREFERREDSERVER",
		"health-check":                 "SUBMARINER_HEALTHCHECKENABLED",
		"health-check-interval":        "SUBMARINER_HEALTHCHECKINTERVAL",
		"health-check-max-packet-loss": "SUBMARINER_HEALTHCHECKMAXPACKETLOSSCOUNT",
		"leader-lease-duration":        "LEADERSHIP_LEASEDURATION",
		"leader-renew-deadline":        "LEADERSHIP_RENEWDEADLINE",
		"leader-retry-period":          "LEADERSHIP_RETRYPERIOD",
		"psk-file":                     "CE_IPSEC_PSK_FILE",
		"ipsec-debug":                  "CE_IPSEC_DEBUG",
		"wireguard-mode":               "SUBMARINER_WIREGUARDMODE",
		"pod-name":                     "POD_NAME",
		"pod-namespace":                "POD_NAMESPACE",
	})
	return env
}

// Config checks the flags and returns the gateway's configuration. Every error
// names the flag and the value. In the cleanup mode (--uninstall) only the common
// flags matter.
func (o *Options) Config() (Config, error) {
	var errs []error
	if err := o.Options.Validate(); err != nil {
		errs = append(errs, err)
	}
	cfg := Config{
		ClusterID: o.ClusterID, Namespace: o.Namespace, NodeName: o.NodeName,
		PodName: o.PodName, PodNamespace: o.PodNamespace,
		NATEnabled: o.NATEnabled, PreferredServer: o.PreferredServer,
		HealthCheck: o.HealthCheck, HealthCheckInterval: time.Duration(o.HealthCheckInterval), MaxPacketLoss: o.MaxPacketLoss,
		PSKFile:       o.PSKFile,
		LeaseDuration: time.Duration(o.LeaseDuration), RenewDeadline: time.Duration(o.RenewDeadline), RetryPeriod: time.Duration(o.RetryPeriod),
		StatusPeriod: DefaultStatusPeriod, Resync: DefaultResync,
	}
	if o.Uninstall {
		return cfg, errors.Join(errs...)
	}
	if err := o.Broker.Validate(); err != nil {
		errs = append(errs, err)
	}
	nets, err := o.Network.Parse()
	if err != nil {
		errs = append(errs, err)
	}
	cfg.Networks = nets
	if len(nets.Cluster) == 0 {
		errs = append(errs, errors.New("--cluster-cidr is empty: give the cluster's Pod CIDRs (SUBMARINER_CLUSTERCIDR in the submariner-config ConfigMap)"))
	}
	if b, err := cable.ParseBackend(o.CableDriver); err != nil {
		errs = append(errs, fmt.Errorf("--cable-driver: %w", err))
	} else {
		cfg.Backend = b
	}
	for _, p := range []struct {
		flag string
		v    int
		dst  *uint16
	}{{"--nat-t-port", o.NATTPort, &cfg.Port}, {"--natt-discovery-port", o.NATTDiscoveryPort, &cfg.NATTDiscoveryPort}} {
		if p.v < 1 || p.v > 65535 {
			errs = append(errs, fmt.Errorf("%s %d is not a UDP port (1-65535)", p.flag, p.v))
			continue
		}
		*p.dst = uint16(p.v)
	}
	if cfg.PublicIP, err = ParsePublicIPMethods(o.PublicIP); err != nil {
		errs = append(errs, fmt.Errorf("--public-ip: %w", err))
	}
	if o.HealthCheck && (o.HealthCheckInterval <= 0 || o.MaxPacketLoss < 1) {
		errs = append(errs, fmt.Errorf("--health-check-interval %s must be positive and --health-check-max-packet-loss %d at least 1", o.HealthCheckInterval.String(), o.MaxPacketLoss))
	}
	switch o.WireGuardMode {
	case "auto", "kernel", "userspace":
	default:
		errs = append(errs, fmt.Errorf("--wireguard-mode %q: use kernel, userspace or auto", o.WireGuardMode))
	}
	if !filepath.IsAbs(o.PlutoDir) {
		errs = append(errs, fmt.Errorf("--pluto-dir %q is not an absolute path", o.PlutoDir))
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

const usage = `The gateway runs on every node labelled submariner.io/gateway=true of a cluster
joined to a Submariner clusterset (a DaemonSet with hostNetwork). The gateways of a
cluster elect one active gateway through the Lease submariner-gateway-lock; it
publishes the cluster's Endpoint to the broker, keeps a tunnel (libreswan, wireguard
or vxlan) to every other cluster's active gateway, probes them, and reports all of
it in its Gateway object. Passive gateways keep their cable driver ready, so that a
takeover only has to connect. With --uninstall it removes the tunnels' devices,
routes and IPsec state and its Gateway and Endpoint objects, reports ready, and
waits to be stopped.

Every flag defaults to the environment variable named in its description.

Flags:
`

// Main is the gateway's main: it parses args (flags, with defaults from the
// environment), validates them and runs the gateway until SIGTERM. stdout
// receives --help and --version.
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
	cfg, err := o.Config()
	if err != nil {
		return err
	}
	return component.Run(ComponentName, &o.Options, stdout, func(ctx context.Context, rt *component.Runtime) error {
		host, err := cable.CurrentHost()
		if err != nil {
			return err
		}
		if o.Uninstall {
			return Uninstall(ctx, cfg, UninstallDeps{Local: rt.Kube, Host: host, Log: rt.Log, Ready: rt.SetReady})
		}
		broker, err := o.Broker.RESTConfig()
		if err != nil {
			return err
		}
		metrics, syncerMetrics := NewMetrics(), syncer.NewMetrics()
		if err := metrics.Register(component.Registry); err != nil {
			return fmt.Errorf("registering the gateway's metrics: %w", err)
		}
		if err := syncerMetrics.Register(component.Registry); err != nil {
			return fmt.Errorf("registering the syncer's metrics: %w", err)
		}
		g, err := New(cfg, Deps{
			Local: rt.Kube, Broker: broker, BrokerNamespace: o.Broker.Namespace, Host: host,
			Driver: cable.Config{
				Log: rt.Log.WithName(o.CableDriver), StateDir: o.PlutoDir, Debug: o.IPsecDebug,
				WireGuardMode: o.WireGuardMode, WireGuardSocketDir: o.WireGuardSocketDir,
			},
			Log: rt.Log, Metrics: metrics, SyncerMetrics: syncerMetrics, Ready: rt.SetReady,
		})
		if err != nil {
			return err
		}
		return g.Run(ctx)
	})
}
