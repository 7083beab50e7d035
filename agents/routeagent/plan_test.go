package routeagent

// Test address plan (shared with the netkit packages):
//   cluster1 (local) pods 10.1.0.0/16, services 100.1.0.0/16
//   cluster2 pods 10.2.0.0/16, services 100.2.0.0/16; cluster3 10.3.0.0/16, 100.3.0.0/16
//   underlay 192.0.2.0/24 (RFC 5737): gw1 .21, gw2 .22, node1 .11, node2 .12
//   each node's cni0 holds 10.1.<last octet>.1/24; VTEPs 240.0.2.x

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites the file with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file: %v (run `go test -run %s -update` to create it)", err, t.Name())
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got):\n%s", path, diff)
	}
}

var testConfig = Config{
	ClusterID:    "cluster1",
	ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")},
	ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("100.1.0.0/16")},
}

// t0 is when the first Endpoints were created.
var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func testNodes() []Node {
	return []Node{
		{Name: "gw1", IP: netip.MustParseAddr("192.0.2.21")},
		{Name: "gw2", IP: netip.MustParseAddr("192.0.2.22")},
		{Name: "node1", IP: netip.MustParseAddr("192.0.2.11")},
		{Name: "node2", IP: netip.MustParseAddr("192.0.2.12")},
	}
}

// hostLinks are the interfaces of the node whose underlay address ends in last.
func hostLinks(last string) []Link {
	return []Link{
		{Name: "lo", MTU: 65536, Addrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8")}},
		{Name: "eth0", MTU: 1500, Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2." + last + "/24")}},
		{Name: "cni0", MTU: 1500, Addrs: []netip.Prefix{netip.MustParsePrefix("10.1." + last + ".1/24")}},
	}
}

// endpoint returns an Endpoint created at t0 plus age.
func endpoint(name, cluster, hostname, ip string, age time.Duration, subnets ...string) submv1.Endpoint {
	return submv1.Endpoint{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: submv1.ComponentNamespace, CreationTimestamp: metav1.NewTime(t0.Add(age))},
		Spec: submv1.EndpointSpec{
			ClusterID: cluster,
			CableName: "submariner-cable-" + cluster + "-" + strings.ReplaceAll(ip, ".", "-"),
			Hostname:  hostname,
			PrivateIP: ip,
			Subnets:   subnets,
			Backend:   submv1.BackendLibreswan,
		},
	}
}

var (
	localGW1 = endpoint("cluster1-gw1", "cluster1", "gw1", "192.0.2.21", 0, "10.1.0.0/16", "100.1.0.0/16")
	localGW2 = endpoint("cluster1-gw2", "cluster1", "gw2", "192.0.2.22", time.Minute, "10.1.0.0/16", "100.1.0.0/16")
	cluster2 = endpoint("cluster2-gw", "cluster2", "c2-gw1", "198.51.100.21", 0, "10.2.0.0/16", "100.2.0.0/16")
	cluster3 = endpoint("cluster3-gw", "cluster3", "c3-gw1", "203.0.113.21", 0, "10.3.0.0/16", "100.3.0.0/16")
)

func withMSS(nodes []Node, name, mss string) []Node {
	for i := range nodes {
		if nodes[i].Name == name {
			nodes[i].TCPClampMSS = mss
		}
	}
	return nodes
}

// TestPlanGolden renders the plan of each situation the agent meets, as canonical
// text: the iptables payload, the overlay and the sysctls.
func TestPlanGolden(t *testing.T) {
	globalnet := testConfig
	globalnet.GlobalCIDRs = []netip.Prefix{netip.MustParsePrefix("242.1.0.0/16")}
	for _, tc := range []struct {
		name string
		in   Input
		cfg  Config
	}{
		{name: "non-gateway", in: Input{NodeName: "node1", Nodes: testNodes(), Links: hostLinks("11"), Endpoints: []submv1.Endpoint{localGW1, cluster2}}},
		{name: "gateway", in: Input{NodeName: "gw1", Nodes: testNodes(), Links: hostLinks("21"), Endpoints: []submv1.Endpoint{cluster2, localGW1}}},
		// During a failover the new gateway's Endpoint exists next to the old one:
		// the newer wins, on every node.
		{name: "failover-non-gateway", in: Input{NodeName: "node1", Nodes: testNodes(), Links: hostLinks("11"), Endpoints: []submv1.Endpoint{localGW1, localGW2, cluster2}}},
		{name: "failover-old-gateway", in: Input{NodeName: "gw1", Nodes: testNodes(), Links: hostLinks("21"), Endpoints: []submv1.Endpoint{localGW2, cluster2, localGW1}}},
		{name: "failover-new-gateway", in: Input{NodeName: "gw2", Nodes: testNodes(), Links: hostLinks("22"), Endpoints: []submv1.Endpoint{localGW1, localGW2, cluster2}}},
		{name: "remote-added", in: Input{NodeName: "node1", Nodes: testNodes(), Links: hostLinks("11"), Endpoints: []submv1.Endpoint{localGW1, cluster3, cluster2}}},
		{name: "remote-removed", in: Input{NodeName: "node1", Nodes: testNodes(), Links: hostLinks("11"), Endpoints: []submv1.Endpoint{localGW1}}},
		{name: "remote-replaced", in: Input{NodeName: "node1", Nodes: testNodes(), Links: hostLinks("11"), Endpoints: []submv1.Endpoint{
			localGW1, cluster2, endpoint("cluster2-gw-new", "cluster2", "c2-gw2", "198.51.100.22", time.Minute, "10.2.0.0/16", "100.2.0.0/16", "10.22.0.0/16"),
		}}},
		{name: "overlapping-remote-ignored", in: Input{NodeName: "node1", Nodes: testNodes(), Links: hostLinks("11"), Endpoints: []submv1.Endpoint{
			localGW1, cluster2,
			endpoint("cluster4-gw", "cluster4", "c4-gw1", "203.0.113.41", 0, "10.1.128.0/17", "100.4.0.0/16"),
			endpoint("cluster5-gw", "cluster5", "c5-gw1", "203.0.113.51", 0, "100.2.0.0/24", "10.5.0.0/16"),
			endpoint("cluster6-gw", "cluster6", "c6-gw1", "203.0.113.61", 0, "10.6.0.1/16", "fd00:6::/64", "10.6.0.0/16"),
		}}},
		{name: "mss-annotation", in: Input{NodeName: "node1", Nodes: withMSS(testNodes(), "node1", "1300"), Links: hostLinks("11"), Endpoints: []submv1.Endpoint{localGW1, cluster2}}},
		{name: "mss-annotation-invalid", in: Input{NodeName: "node1", Nodes: withMSS(testNodes(), "node1", "13OO"), Links: hostLinks("11"), Endpoints: []submv1.Endpoint{localGW1, cluster2}}},
		{name: "no-gateway", in: Input{NodeName: "node1", Nodes: testNodes(), Links: hostLinks("11"), Endpoints: []submv1.Endpoint{cluster2}}},
		{name: "no-cni-interface", in: Input{NodeName: "node1", Nodes: testNodes(), Links: hostLinks("11")[:2], Endpoints: []submv1.Endpoint{localGW1, cluster2}}},
		{name: "unusable-local-endpoints", in: Input{NodeName: "node1", Nodes: testNodes(), Links: hostLinks("11"), Endpoints: []submv1.Endpoint{
			localGW1, cluster2,
			endpoint("cluster1-nohost", "cluster1", "", "192.0.2.22", time.Hour),
			endpoint("cluster1-badip", "cluster1", "gw2", "gw2.example", time.Hour),
			endpoint("cluster1-myip", "cluster1", "gw2", "192.0.2.11", time.Hour),
		}}},
		{name: "globalnet", cfg: globalnet, in: Input{NodeName: "node1", Nodes: testNodes(), Links: hostLinks("11"), Endpoints: []submv1.Endpoint{
			localGW1,
			endpoint("cluster2-gw", "cluster2", "c2-gw1", "198.51.100.21", 0, "242.2.0.0/16"),
			endpoint("cluster3-gw", "cluster3", "c3-gw1", "203.0.113.21", 0, "242.1.0.0/24"),
		}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			if cfg.ClusterID == "" {
				cfg = testConfig
			}
			st, err := Plan(tc.in, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Rules.Err(); err != nil {
				t.Errorf("the planned ruleset is invalid: %v", err)
			}
			golden(t, filepath.Join("plan", tc.name+".golden"), st.String())
		})
	}
}

// TestPlanIsDeterministic: the order of the inputs does not matter.
func TestPlanIsDeterministic(t *testing.T) {
	in := Input{NodeName: "gw2", Nodes: testNodes(), Links: hostLinks("22"), Endpoints: []submv1.Endpoint{localGW1, localGW2, cluster2, cluster3}}
	want, err := Plan(in, testConfig)
	if err != nil {
		t.Fatal(err)
	}
	reversed := Input{NodeName: in.NodeName}
	for i := len(in.Nodes) - 1; i >= 0; i-- {
		reversed.Nodes = append(reversed.Nodes, in.Nodes[i])
	}
	for i := len(in.Links) - 1; i >= 0; i-- {
		reversed.Links = append(reversed.Links, in.Links[i])
	}
	for i := len(in.Endpoints) - 1; i >= 0; i-- {
		reversed.Endpoints = append(reversed.Endpoints, in.Endpoints[i])
	}
	got, err := Plan(reversed, testConfig)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want.String(), got.String()); diff != "" {
		t.Errorf("plan of reversed inputs (-in order +reversed):\n%s", diff)
	}
}

// TestPlanErrors: inputs that leave nothing to plan are refused, naming the value
// and the fix.
func TestPlanErrors(t *testing.T) {
	noIP := testNodes()
	noIP[2].IP = netip.Addr{}
	for _, tc := range []struct {
		name string
		in   Input
		cfg  Config
		want []string
	}{
		{name: "unknown node", in: Input{NodeName: "node9", Nodes: testNodes(), Links: hostLinks("11")}, cfg: testConfig,
			want: []string{"node node9 is not among the cluster's Nodes", "NODE_NAME"}},
		{name: "no node name", in: Input{Nodes: testNodes(), Links: hostLinks("11")}, cfg: testConfig,
			want: []string{"NODE_NAME"}},
		{name: "node without address", in: Input{NodeName: "node1", Nodes: noIP, Links: hostLinks("11")}, cfg: testConfig,
			want: []string{"node node1 has no IPv4 InternalIP"}},
		{name: "address not on this host", in: Input{NodeName: "node1", Nodes: testNodes(), Links: hostLinks("12")}, cfg: testConfig,
			want: []string{"node node1's InternalIP 192.0.2.11 is on none of this host's interfaces", "hostNetwork"}},
		{name: "no cluster CIDR", in: Input{NodeName: "node1", Nodes: testNodes(), Links: hostLinks("11")}, cfg: Config{ClusterID: "cluster1"},
			want: []string{"--cluster-cidr is empty", "SUBMARINER_CLUSTERCIDR"}},
		{name: "bad cluster ID", in: Input{NodeName: "node1", Nodes: testNodes(), Links: hostLinks("11")},
			cfg:  Config{ClusterID: "Cluster_1", ClusterCIDRs: testConfig.ClusterCIDRs},
			want: []string{"--cluster-id", `"Cluster_1"`}},
		{name: "IPv6 cluster CIDR", in: Input{NodeName: "node1", Nodes: testNodes(), Links: hostLinks("11")},
			cfg:  Config{ClusterID: "cluster1", ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("fd00:1::/64")}},
			want: []string{"--cluster-cidr fd00:1::/64 is not IPv4"}},
		{name: "underlay MTU too small", in: Input{NodeName: "node1", Nodes: testNodes(), Endpoints: []submv1.Endpoint{localGW1},
			Links: []Link{{Name: "eth0", MTU: 100, Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.11/24")}}}}, cfg: testConfig,
			want: []string{"underlay eth0 (MTU 100)", "MTU 50 is out of range"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Plan(tc.in, tc.cfg)
			if err == nil {
				t.Fatalf("Plan() = nil error, want one mentioning %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Plan() = %q, want it to mention %q", err, w)
				}
			}
		})
	}
}
