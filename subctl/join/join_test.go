package join

import (
	"encoding/base64"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

func mustPrefixes(t *testing.T, ss ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func clusterSpec(id string, pods, services, global []string) submv1.Cluster {
	return submv1.Cluster{Spec: submv1.ClusterSpec{ClusterID: id, ClusterCIDR: pods, ServiceCIDR: services, GlobalCIDR: global}}
}

func TestCheckOverlaps(t *testing.T) {
	others := []submv1.Cluster{
		clusterSpec("cluster2", []string{"10.2.0.0/16"}, []string{"10.102.0.0/16"}, nil),
		clusterSpec("cluster3", []string{"10.1.0.0/16"}, []string{"10.101.0.0/16"}, []string{"242.0.0.0/16"}),
		clusterSpec("cluster1", []string{"10.1.0.0/16"}, []string{"10.101.0.0/16"}, nil), // this cluster's earlier join
	}
	for _, tc := range []struct {
		name           string
		pods, services []string
		globalnet      bool
		want           string
	}{
		{name: "distinct", pods: []string{"10.1.0.0/16"}, services: []string{"10.101.0.0/16"}},
		{name: "pods overlap another cluster's services", pods: []string{"10.102.128.0/17"}, services: []string{"10.101.0.0/16"},
			want: "this cluster's Pod CIDR 10.102.128.0/17 overlaps the Service CIDR 10.102.0.0/16 of cluster cluster2"},
		{name: "a Globalnet cluster is compared by its global CIDR", pods: []string{"242.0.0.0/24"}, services: []string{"10.101.0.0/16"},
			want: "this cluster's Pod CIDR 242.0.0.0/24 overlaps the global CIDR 242.0.0.0/16 of cluster cluster3"},
		{name: "Globalnet allows overlaps", pods: []string{"10.2.0.0/16"}, services: []string{"10.102.0.0/16"}, globalnet: true},
		{name: "own ranges overlap", pods: []string{"10.1.0.0/16"}, services: []string{"10.1.200.0/24"}, globalnet: true,
			want: "the Pod CIDR 10.1.0.0/16 overlaps the Service CIDR 10.1.200.0/24 of the same cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckOverlaps("cluster1", mustPrefixes(t, tc.pods...), mustPrefixes(t, tc.services...), tc.globalnet, others)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestJWTClaims(t *testing.T) {
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	tok := enc(`{"alg":"RS256"}`) + "." + enc(`{"sub":"system:serviceaccount:ns:cluster-a","exp":1900000000}`) + "." + enc("sig")
	sub, exp, ok := jwtClaims(tok)
	if !ok || sub != "system:serviceaccount:ns:cluster-a" || !exp.Equal(time.Unix(1900000000, 0)) {
		t.Errorf("jwtClaims = %q, %v, %v", sub, exp, ok)
	}
	for _, bad := range []string{"", "a.b", "a.!!!.c", enc("x") + "." + enc(`{"sub":"s"}`) + "." + enc("y")} {
		if _, _, ok := jwtClaims(bad); ok {
			t.Errorf("jwtClaims(%q) accepted a token without claims", bad)
		}
	}
}

// TestValidate checks that join refuses bad flags before contacting anything:
// there is no cluster or broker behind these options at all.
func TestValidate(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "broker-info.subm")
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := func() *Options {
		o := &Options{BrokerInfo: missing, ClusterID: "cluster1", CableDriver: "libreswan", Globalnet: true,
			Repository: "ghcr.io/submariner-go", Version: "v1", TokenValidity: time.Hour}
		o.Cluster.Kubeconfig = kubeconfig
		return o
	}
	for _, tc := range []struct {
		name   string
		modify func(*Options)
		want   []string
	}{
		{"everything at once", func(o *Options) {
			o.ClusterID, o.CableDriver, o.ClusterCIDRs = "", "gre", []string{"fd00::/64"}
		}, []string{
			"does not exist: give the broker-info.subm",
			"--clusterid: the cluster ID is empty",
			`--cable-driver: unknown cable driver "gre"`,
			"--clustercidr fd00::/64 is IPv6: Submariner connects IPv4 ranges only",
		}},
		{"global CIDR while opting out", func(o *Options) { o.GlobalnetCIDR, o.Globalnet = "242.1.0.0/16", false },
			[]string{"--globalnet-cidr with --globalnet=false: leave one of them out"}},
		{"bad CoreDNS ConfigMap", func(o *Options) { o.CorednsCustomConfigMap = "coredns-custom" },
			[]string{`--coredns-custom-configmap "coredns-custom" is not namespace/name`}},
		{"short token validity", func(o *Options) { o.TokenValidity = time.Minute },
			[]string{"--token-validity 1m0s is shorter than the API server's minimum of 10m"}},
		{"missing kubeconfig", func(o *Options) { o.Cluster.Kubeconfig = missing + ".kubeconfig" },
			[]string{"--kubeconfig " + missing + ".kubeconfig: no such file or directory"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := base()
			tc.modify(o)
			err := o.Validate()
			if err == nil {
				t.Fatal("Validate accepted the options")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
