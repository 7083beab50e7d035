package globalnet

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/submariner-go/submariner/agents/component"
)

func TestOptions(t *testing.T) {
	noGlobal := []string{"--cluster-id", "cluster1", "--node-name", "gw1", "--cluster-cidr", "10.241.0.0/16", "--service-cidr", "10.141.0.0/16"}
	base := append(noGlobal[:len(noGlobal):len(noGlobal)], "--global-cidr", "242.0.0.0/16")
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want []string // substrings of the error; none: valid
	}{{
		name: "valid",
		args: base,
	}, {
		name: "from the environment, as the DaemonSet passes them",
		env: map[string]string{"SUBMARINER_CLUSTERID": "cluster1", "NODE_NAME": "gw1", "SUBMARINER_CLUSTERCIDR": "10.241.0.0/16",
			"SUBMARINER_GLOBALCIDR": "242.0.0.0/16", "SUBMARINER_CLUSTEREGRESSIPS": "4"},
	}, {
		name: "no global CIDR",
		args: []string{"--cluster-id", "cluster1", "--node-name", "gw1", "--cluster-cidr", "10.241.0.0/16"},
		want: []string{"--global-cidr is empty", "242.0.0.0/16"},
	}, {
		name: "two global CIDRs",
		args: append(noGlobal[:len(noGlobal):len(noGlobal)], "--global-cidr", "242.0.0.0/16,242.1.0.0/16"),
		want: []string{"--global-cidr lists 2 CIDRs"},
	}, {
		name: "global CIDR overlapping the services",
		args: append(noGlobal[:len(noGlobal):len(noGlobal)], "--global-cidr", "10.141.0.0/24"),
		want: []string{"--global-cidr 10.141.0.0/24 overlaps the cluster's 10.141.0.0/16"},
	}, {
		name: "global CIDR with host bits",
		args: append(noGlobal[:len(noGlobal):len(noGlobal)], "--global-cidr", "242.0.0.1/16"),
		want: []string{`--global-cidr "242.0.0.1/16" has host bits set: did you mean 242.0.0.0/16?`},
	}, {
		name: "tiny global CIDR",
		args: append(noGlobal[:len(noGlobal):len(noGlobal)], "--global-cidr", "242.0.0.0/31"),
		want: []string{"--global-cidr 242.0.0.0/31 must be an IPv4 CIDR of at least 4 addresses"},
	}, {
		name: "no cluster CIDR",
		args: []string{"--cluster-id", "cluster1", "--node-name", "gw1", "--global-cidr", "242.0.0.0/16"},
		want: []string{"--cluster-cidr is empty"},
	}, {
		name: "too many cluster egress IPs, bad leader timings",
		args: append(base[:len(base):len(base)], "--cluster-egress-ips", "21", "--leader-renew-deadline", "20s"),
		want: []string{"--cluster-egress-ips 21 is out of range: give 0 to 20", "the lease duration must exceed the renew deadline"},
	}, {
		name: "uninstall needs no networks",
		args: []string{"--cluster-id", "cluster1", "--node-name", "gw1", "--uninstall"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var o Options
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			env := o.AddFlags(fs)
			err := component.Parse(fs, tc.args, env...)
			if err == nil {
				_, err = o.Validate()
			}
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want an error mentioning %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
