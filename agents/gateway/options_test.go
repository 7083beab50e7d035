package gateway

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"

	"github.com/submariner-go/submariner/agents/component"
	"github.com/submariner-go/submariner/agents/gateway/cable"
	"github.com/submariner-go/submariner/agents/gateway/cable/fake"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

func init() {
	// This test binary has no real drivers: the registry holds fakes under their
	// names, so that the flags and cable.New see the usual set.
	for _, b := range submv1.Backends {
		cable.Register(b, cable.Factory{
			New:     func(cable.Config) (cable.Driver, error) { return fake.New(b), nil },
			Cleanup: func(context.Context, *cable.Host) error { return nil },
		})
	}
}

func parseOptions(t *testing.T, args ...string) (Config, error) {
	t.Helper()
	var o Options
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	env := o.AddFlags(fs)
	if err := component.Parse(fs, args, env...); err != nil {
		t.Fatal(err)
	}
	return o.Config()
}

var goodArgs = []string{"--cluster-id=cluster1", "--node-name=c1-gw1", "--cluster-cidr=10.1.0.0/16", "--service-cidr=100.1.0.0/16"}

func TestOptions(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		cfg, err := parseOptions(t, goodArgs...)
		if err != nil {
			t.Fatal(err)
		}
		got := []any{cfg.Backend, cfg.Port, cfg.NATTDiscoveryPort, cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod,
			cfg.HealthCheck, cfg.HealthCheckInterval, cfg.MaxPacketLoss, cfg.PSKFile, cfg.Namespace, cfg.StatusPeriod}
		want := []any{submv1.BackendLibreswan, uint16(4500), uint16(4490), 5 * time.Second, 3 * time.Second, 500 * time.Millisecond,
			true, time.Second, 5, "/run/secrets/submariner.io/submariner-ipsec-psk/psk", "submariner-operator", 5 * time.Second}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("config (-want +got):\n%s", diff)
		}
	})
	t.Run("the environment Submariner users know", func(t *testing.T) {
		for k, v := range map[string]string{
			"SUBMARINER_CABLEDRIVER": "wireguard", "SUBMARINER_NATENABLED": "true", "CE_IPSEC_NATTPORT": "4501",
			"LEADERSHIP_LEASEDURATION": "15", "LEADERSHIP_RENEWDEADLINE": "10", "LEADERSHIP_RETRYPERIOD": "2",
			"SUBMARINER_HEALTHCHECKINTERVAL": "3", "SUBMARINER_HEALTHCHECKMAXPACKETLOSSCOUNT": "7",
			"SUBMARINER_PUBLICIP": "ipv4:203.0.113.1", "POD_NAME": "gw-abc", "POD_NAMESPACE": "submariner-operator",
		} {
			t.Setenv(k, v)
		}
		cfg, err := parseOptions(t, goodArgs...)
		if err != nil {
			t.Fatal(err)
		}
		got := []any{cfg.Backend, cfg.NATEnabled, cfg.Port, cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod,
			cfg.HealthCheckInterval, cfg.MaxPacketLoss, cfg.PublicIP, cfg.PodName, cfg.PodNamespace}
		want := []any{submv1.BackendWireGuard, true, uint16(4501), 15 * time.Second, 10 * time.Second, 2 * time.Second,
			3 * time.Second, 7, []PublicIPMethod{{Kind: "ipv4", Value: "203.0.113.1"}}, "gw-abc", "submariner-operator"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("config (-want +got):\n%s", diff)
		}
	})
	for _, tc := range []struct {
		name string
		base []string // goodArgs when nil
		args []string
		err  string
	}{
		{
			name: "an unknown cable driver names the drivers",
			args: []string{"--cable-driver=ipsec"},
			err:  `--cable-driver: unknown cable driver "ipsec": use one of libreswan, vxlan, wireguard`,
		},
		{
			name: "leader election timings that cannot work",
			args: []string{"--leader-lease-duration=2s", "--leader-renew-deadline=3s"},
			err:  "leader election timings --leader-lease-duration 2s, --leader-renew-deadline 3s, --leader-retry-period 500ms: the lease duration must exceed the renew deadline, which must exceed 1.2 times the retry period",
		},
		{
			name: "ports out of range and a bad public IP method",
			args: []string{"--nat-t-port=0", "--natt-discovery-port=70000", "--public-ip=lb:gw"},
			err:  "--nat-t-port 0 is not a UDP port (1-65535)\n--natt-discovery-port 70000 is not a UDP port (1-65535)\n--public-ip: public IP method \"lb:gw\": unknown method \"lb\": use ipv4:ADDRESS, dns:NAME or api:URL",
		},
		{
			name: "no cluster CIDR",
			args: []string{"--cluster-cidr="},
			base: []string{"--cluster-id=cluster1", "--node-name=c1-gw1"},
			err:  "--cluster-cidr is empty: give the cluster's Pod CIDRs (SUBMARINER_CLUSTERCIDR in the submariner-config ConfigMap)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := goodArgs
			if tc.base != nil {
				base = tc.base
			}
			_, err := parseOptions(t, append(append([]string{}, base...), tc.args...)...)
			if err == nil || err.Error() != tc.err {
				t.Errorf("error:\n%v\nwant:\n%s", err, tc.err)
			}
		})
	}
	t.Run("uninstall needs only the common flags", func(t *testing.T) {
		if _, err := parseOptions(t, "--cluster-id=cluster1", "--node-name=c1-gw1", "--uninstall", "--cable-driver=nonsense"); err != nil {
			t.Errorf("uninstall: %v", err)
		}
	})
	t.Run("a bad duration in the environment names both", func(t *testing.T) {
		t.Setenv("LEADERSHIP_RETRYPERIOD", "soon")
		var o Options
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		err := component.Parse(fs, goodArgs, o.AddFlags(fs)...)
		want := `environment variable LEADERSHIP_RETRYPERIOD="soon" for --leader-retry-period: "soon" is neither a number of seconds nor a duration such as 500ms`
		if err == nil || err.Error() != want {
			t.Errorf("error:\n%v\nwant:\n%s", err, want)
		}
	})
}

func TestMainHelpAndVersion(t *testing.T) {
	var out bytes.Buffer
	if err := Main([]string{"--help"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"--cable-driver", "--leader-lease-duration", "--health-check-interval", "--public-ip", "--psk-file", "--uninstall"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("--help does not mention %s", flag)
		}
	}
	out.Reset()
	if err := Main([]string{"--version"}, &out); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), ComponentName+" "+component.Version+"\n"; got != want {
		t.Errorf("--version printed %q, want %q", got, want)
	}
}
