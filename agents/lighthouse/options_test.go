package lighthouse

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/submariner-go/submariner/agents/component"
)

func TestOptions(t *testing.T) {
	parse := func(t *testing.T, args ...string) (*Options, error) {
		t.Helper()
		var o Options
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		env := o.AddFlags(fs)
		if err := component.Parse(fs, args, env...); err != nil {
			return nil, err
		}
		return &o, o.Validate()
	}
	t.Run("defaults", func(t *testing.T) {
		t.Setenv("SUBMARINER_CLUSTERID", "cluster1")
		o, err := parse(t)
		if err != nil {
			t.Fatal(err)
		}
		if o.LeaseDuration != DefaultLeaseDuration || o.MetricsAddr != DefaultMetricsAddr || o.Workers != DefaultWorkers ||
			o.KubeQPS != DefaultKubeQPS || o.KubeBurst != DefaultKubeBurst {
			t.Errorf("defaults = %+v", o)
		}
	})
	t.Run("the lease duration from the environment", func(t *testing.T) {
		t.Setenv("SUBMARINER_CLUSTERID", "cluster1")
		t.Setenv("LIGHTHOUSE_LEASE_DURATION", "15s")
		o, err := parse(t)
		if err != nil {
			t.Fatal(err)
		}
		if o.LeaseDuration != 15*time.Second {
			t.Errorf("lease duration = %s, want 15s", o.LeaseDuration)
		}
	})
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"bad values", []string{"--cluster-id=Cluster_1", "--lease-duration=1s", "--kube-api-qps=0", "--kube-api-burst=0", "--workers=100"},
			[]string{`--cluster-id: cluster ID "Cluster_1"`, "--lease-duration 1s is out of range: give a duration from 3s to 1h0m0s",
				"--kube-api-qps 0 is not positive", "--kube-api-burst 0 is less than 1", "--workers 100 is out of range: give 1 to 64"}},
		{"lease too long", []string{"--cluster-id=cluster1", "--lease-duration=2h"}, []string{"--lease-duration 2h0m0s is out of range"}},
		{"no broker namespace", []string{"--cluster-id=cluster1", "--broker-namespace="}, []string{"--broker-namespace is empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(t, tt.args...)
			if err == nil {
				t.Fatal("Validate accepted the flags")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestMainHelpAndVersion(t *testing.T) {
	var out bytes.Buffer
	if err := Main([]string{"--help"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"--lease-duration", "--broker-secret-dir", "--cluster-id", "--metrics-addr", "--uninstall"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("--help does not list %s", flag)
		}
	}
	out.Reset()
	if err := Main([]string{"--version"}, &out); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != ComponentName+" "+component.Version+"\n" {
		t.Errorf("--version printed %q", got)
	}
}
