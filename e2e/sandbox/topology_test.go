package sandbox

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// render prints a topology as one line per control plane and node.
func render(t Topology) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s services %s\n", t.Broker.Name, t.Broker.APIServer(), t.Broker.ServiceCIDR)
	for _, c := range t.Clusters {
		fmt.Fprintf(&b, "%s %s network %s bridge %s@%s pods %s services %s kubernetes %s dns %s\n",
			c.Name, c.APIServer(), c.Network, c.Bridge, c.BridgeAddr(), c.PodCIDR, c.ServiceCIDR, c.KubernetesServiceIP(), c.DNSServiceIP())
		for _, n := range c.Nodes {
			fmt.Fprintf(&b, "  %s netns %s ip %s pods %s gateway %t\n", n.Name, n.NetNS, n.IP, n.PodCIDR, n.Gateway)
		}
	}
	return b.String()
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name        string
		clusters    int
		workers     int
		overlapping bool
		want        string
	}{
		{
			name: "default", clusters: 2, workers: 1,
			want: `broker https://192.168.240.1:6440 services 10.140.0.0/16
cluster1 https://192.168.240.1:6441 network 192.168.241.0/24 bridge br-c1@192.168.241.1/24 pods 10.241.0.0/16 services 10.141.0.0/16 kubernetes 10.141.0.1 dns 10.141.0.10
  c1-gw1 netns sbx-c1-gw1 ip 192.168.241.21 pods 10.241.21.0/24 gateway true
  c1-gw2 netns sbx-c1-gw2 ip 192.168.241.22 pods 10.241.22.0/24 gateway true
  c1-node1 netns sbx-c1-node1 ip 192.168.241.11 pods 10.241.11.0/24 gateway false
cluster2 https://192.168.240.1:6442 network 192.168.242.0/24 bridge br-c2@192.168.242.1/24 pods 10.242.0.0/16 services 10.142.0.0/16 kubernetes 10.142.0.1 dns 10.142.0.10
  c2-gw1 netns sbx-c2-gw1 ip 192.168.242.21 pods 10.242.21.0/24 gateway true
  c2-gw2 netns sbx-c2-gw2 ip 192.168.242.22 pods 10.242.22.0/24 gateway true
  c2-node1 netns sbx-c2-node1 ip 192.168.242.11 pods 10.242.11.0/24 gateway false
`,
		},
		{
			name: "overlapping CIDRs keep node networks apart", clusters: 2, workers: 0, overlapping: true,
			want: `broker https://192.168.240.1:6440 services 10.140.0.0/16
cluster1 https://192.168.240.1:6441 network 192.168.241.0/24 bridge br-c1@192.168.241.1/24 pods 10.241.0.0/16 services 10.141.0.0/16 kubernetes 10.141.0.1 dns 10.141.0.10
  c1-gw1 netns sbx-c1-gw1 ip 192.168.241.21 pods 10.241.21.0/24 gateway true
  c1-gw2 netns sbx-c1-gw2 ip 192.168.241.22 pods 10.241.22.0/24 gateway true
cluster2 https://192.168.240.1:6442 network 192.168.242.0/24 bridge br-c2@192.168.242.1/24 pods 10.241.0.0/16 services 10.141.0.0/16 kubernetes 10.141.0.1 dns 10.141.0.10
  c2-gw1 netns sbx-c2-gw1 ip 192.168.242.21 pods 10.241.21.0/24 gateway true
  c2-gw2 netns sbx-c2-gw2 ip 192.168.242.22 pods 10.241.22.0/24 gateway true
`,
		},
		{
			name: "three clusters two workers", clusters: 3, workers: 2,
			want: `broker https://192.168.240.1:6440 services 10.140.0.0/16
cluster1 https://192.168.240.1:6441 network 192.168.241.0/24 bridge br-c1@192.168.241.1/24 pods 10.241.0.0/16 services 10.141.0.0/16 kubernetes 10.141.0.1 dns 10.141.0.10
  c1-gw1 netns sbx-c1-gw1 ip 192.168.241.21 pods 10.241.21.0/24 gateway true
  c1-gw2 netns sbx-c1-gw2 ip 192.168.241.22 pods 10.241.22.0/24 gateway true
  c1-node1 netns sbx-c1-node1 ip 192.168.241.11 pods 10.241.11.0/24 gateway false
  c1-node2 netns sbx-c1-node2 ip 192.168.241.12 pods 10.241.12.0/24 gateway false
cluster2 https://192.168.240.1:6442 network 192.168.242.0/24 bridge br-c2@192.168.242.1/24 pods 10.242.0.0/16 services 10.142.0.0/16 kubernetes 10.142.0.1 dns 10.142.0.10
  c2-gw1 netns sbx-c2-gw1 ip 192.168.242.21 pods 10.242.21.0/24 gateway true
  c2-gw2 netns sbx-c2-gw2 ip 192.168.242.22 pods 10.242.22.0/24 gateway true
  c2-node1 netns sbx-c2-node1 ip 192.168.242.11 pods 10.242.11.0/24 gateway false
  c2-node2 netns sbx-c2-node2 ip 192.168.242.12 pods 10.242.12.0/24 gateway false
cluster3 https://192.168.240.1:6443 network 192.168.243.0/24 bridge br-c3@192.168.243.1/24 pods 10.243.0.0/16 services 10.143.0.0/16 kubernetes 10.143.0.1 dns 10.143.0.10
  c3-gw1 netns sbx-c3-gw1 ip 192.168.243.21 pods 10.243.21.0/24 gateway true
  c3-gw2 netns sbx-c3-gw2 ip 192.168.243.22 pods 10.243.22.0/24 gateway true
  c3-node1 netns sbx-c3-node1 ip 192.168.243.11 pods 10.243.11.0/24 gateway false
  c3-node2 netns sbx-c3-node2 ip 192.168.243.12 pods 10.243.12.0/24 gateway false
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topo, err := Plan(tt.clusters, tt.workers, tt.overlapping)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, render(topo)); diff != "" {
				t.Errorf("Plan(%d, %d, %t) (-want +got):\n%s", tt.clusters, tt.workers, tt.overlapping, diff)
			}
		})
	}
}

func TestPlanRejectsCounts(t *testing.T) {
	tests := []struct {
		name              string
		clusters, workers int
		want              string
	}{
		{"no clusters", 0, 1, "0 clusters: the sandbox has room for 1 to 8, pick a count in that range"},
		{"too many clusters", 9, 1, "9 clusters: the sandbox has room for 1 to 8, pick a count in that range"},
		{"negative workers", 2, -1, "-1 workers per cluster: the sandbox has room for 0 to 9, pick a count in that range"},
		{"too many workers", 2, 10, "10 workers per cluster: the sandbox has room for 0 to 9, pick a count in that range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Plan(tt.clusters, tt.workers, false)
			if err == nil {
				t.Fatalf("Plan(%d, %d) succeeded, want error %q", tt.clusters, tt.workers, tt.want)
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlanLargestFitsNames(t *testing.T) {
	topo, err := Plan(MaxClusters, MaxWorkers, false)
	if err != nil {
		t.Fatal(err)
	}
	seenIP := map[netip.Addr]string{}
	for _, n := range topo.Nodes() {
		// Link names are at most 15 bytes (IFNAMSIZ-1).
		if len(n.FabricPort()) > 15 {
			t.Errorf("node %s: fabric port name %q is longer than 15 bytes", n.Name, n.FabricPort())
		}
		if other, dup := seenIP[n.IP]; dup {
			t.Errorf("nodes %s and %s share IP %s", other, n.Name, n.IP)
		}
		seenIP[n.IP] = n.Name
		c, _ := topo.Cluster(n.Cluster)
		if !c.Network.Contains(n.IP) || !c.PodCIDR.Contains(n.PodCIDR.Addr()) || !SandboxNetwork.Contains(n.IP) {
			t.Errorf("node %s: IP %s or pods %s outside its cluster's %s / %s", n.Name, n.IP, n.PodCIDR, c.Network, c.PodCIDR)
		}
	}
	last := topo.Clusters[len(topo.Clusters)-1]
	if got, want := last.Network.String(), "192.168.248.0/24"; got != want {
		t.Errorf("last cluster network %s, want %s", got, want)
	}
}

func TestGuardedRanges(t *testing.T) {
	for _, overlapping := range []bool{false, true} {
		topo, err := Plan(2, 1, overlapping)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range topo.GuardedRanges() {
			got = append(got, p.String())
		}
		want := []string{"10.140.0.0/16", "10.141.0.0/16", "10.142.0.0/16", "10.241.0.0/16", "10.242.0.0/16", "192.168.240.0/20", "242.0.0.0/8"}
		if overlapping {
			want = []string{"10.140.0.0/16", "10.141.0.0/16", "10.241.0.0/16", "192.168.240.0/20", "242.0.0.0/8"}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("GuardedRanges (overlapping %t) (-want +got):\n%s", overlapping, diff)
		}
	}
}

func TestControlPlaneLookup(t *testing.T) {
	topo, err := Plan(2, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := topo.ControlPlane("broker")
	if err != nil || cp.APIPort != 6440 {
		t.Errorf("ControlPlane(broker) = %+v, %v; want port 6440", cp, err)
	}
	_, err = topo.ControlPlane("cluster9")
	want := `no cluster named "cluster9" in the sandbox: it has [broker cluster1 cluster2]`
	if err == nil || err.Error() != want {
		t.Errorf("ControlPlane(cluster9) error %v, want %q", err, want)
	}
}
