package routeagent

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/submariner-go/submariner/agents/component"
	"github.com/submariner-go/submariner/agents/netkit/vxlan"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

func TestMainHelpAndVersion(t *testing.T) {
	var out bytes.Buffer
	if err := Main([]string{"--help"}, &out); err != nil {
		t.Fatalf("Main(--help) = %v", err)
	}
	for _, want := range []string{"Usage: submariner-routeagent", "--cluster-cidr", "SUBMARINER_CLUSTERCIDR", "--uninstall", "--resync-period"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := Main([]string{"--version"}, &out); err != nil || out.String() != ComponentName+" "+component.Version+"\n" {
		t.Errorf("Main(--version) = %v, printed %q", err, out.String())
	}
}

// TestOptionsValidate: bad flags are refused before anything runs, each error
// naming the flag and the fix; the cleanup mode does not need the network flags.
func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want []string // substrings of the error; none: valid
		cfg  Config
	}{
		{name: "from the ConfigMap's environment", env: map[string]string{
			"SUBMARINER_CLUSTERID": "cluster1", "SUBMARINER_CLUSTERCIDR": "10.1.0.0/16", "SUBMARINER_SERVICECIDR": "100.1.0.0/16",
			"SUBMARINER_GLOBALCIDR": "", "NODE_NAME": "node1",
		}, cfg: Config{ClusterID: "cluster1", ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("100.1.0.0/16")}}},
		{name: "no cluster CIDR", args: []string{"--cluster-id=cluster1", "--node-name=n"}, want: []string{"--cluster-cidr is empty", "SUBMARINER_CLUSTERCIDR"}},
		{name: "cluster CIDR with host bits", args: []string{"--cluster-id=cluster1", "--node-name=n", "--cluster-cidr=10.1.0.1/16"},
			want: []string{`--cluster-cidr "10.1.0.1/16" has host bits set: did you mean 10.1.0.0/16?`}},
		{name: "IPv6 cluster CIDR", args: []string{"--cluster-id=cluster1", "--node-name=n", "--cluster-cidr=fd00::/64"},
			want: []string{"--cluster-cidr fd00::/64 is not IPv4"}},
		{name: "negative resync", args: []string{"--cluster-id=cluster1", "--node-name=n", "--cluster-cidr=10.1.0.0/16", "--resync-period=-1s"},
			want: []string{"--resync-period -1s is negative"}},
		{name: "several problems at once", args: []string{"--cluster-id=Cluster1", "--node-name="},
			want: []string{"--cluster-id", "--node-name is empty", "--cluster-cidr is empty"}},
		{name: "uninstall needs no networks", args: []string{"--cluster-id=cluster1", "--node-name=n", "--uninstall"},
			cfg: Config{ClusterID: "cluster1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var o Options
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			if err := component.Parse(fs, tc.args, o.AddFlags(fs)...); err != nil {
				t.Fatal(err)
			}
			cfg, err := o.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				if diff := cmp.Diff(tc.cfg, cfg, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }), cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("config (-want +got):\n%s", diff)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error mentioning %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to mention %q", err, w)
				}
			}
		})
	}
}

// TestUninstall: the cleanup mode removes the agent's state, then reports ready and
// waits; a failing cleanup is retried and reported as not ready.
func TestUninstall(t *testing.T) {
	f := newFakes("0", hostLinks("11")...)
	a, _ := newTestAgent(t, f)
	mustSync(t, a, Input{NodeName: "node1", Nodes: testNodes(), Links: hostLinks("11"), Endpoints: []submv1.Endpoint{localGW1, cluster2}})

	failing := &failingOverlay{Interface: f.vx, failures: 2}
	cleaner, err := NewAgent(testConfig, Kernel{Overlay: failing, IPTables: f.ipt, System: f.sys}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	readiness := make(chan error, 16)
	done := make(chan error, 1)
	go func() { done <- Uninstall(ctx, cleaner, func(err error) { readiness <- err }) }()
	var seen []string
	for err := range readiness {
		if err == nil {
			break
		}
		seen = append(seen, err.Error())
	}
	want := []string{
		"removing the route agent's state",
		"cleanup failed, retrying: deleting vx-submariner: injected failure 1",
		"cleanup failed, retrying: deleting vx-submariner: injected failure 2",
	}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("readiness while cleaning up (-want +got):\n%s", diff)
	}
	if s := f.vx.String(); s != "" {
		t.Errorf("overlay left after cleanup:\n%s", s)
	}
	if strings.Contains(f.ipt.String(), "SUBMARINER") {
		t.Errorf("iptables left after cleanup:\n%s", f.ipt)
	}
	select {
	case err := <-done:
		t.Fatalf("Uninstall returned %v before it was stopped", err)
	default:
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Uninstall after cancel = %v, want nil", err)
	}
}

// failingOverlay fails its first Deletes.
type failingOverlay struct {
	vxlan.Interface
	failures int
	calls    int
}

func (f *failingOverlay) Delete(ctx context.Context, name string) error {
	f.calls++
	if f.calls <= f.failures {
		return fmt.Errorf("deleting %s: injected failure %d", name, f.calls)
	}
	return f.Interface.Delete(ctx, name)
}
