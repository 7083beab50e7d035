package sandbox

import (
	"fmt"
	"net/netip"
	"sort"
)

// Fixed names, addresses and ports of the sandbox (DESIGN.md section 5). They are
// fixed so that `sandbox down` can find everything after a crash, which is also why
// only one sandbox can be up on a machine at a time.
const (
	// Prefix starts the name of every network namespace and link the sandbox
	// makes in the root netns. (The node agents name their pods' namespaces
	// nodeagent.PodNetNSPrefix + UID and remove them from their records.)
	Prefix = "sbx-"
	// FabricNetNS is the router between the cluster networks and the root netns.
	FabricNetNS = "sbx-fabric"
	// RootVeth is the root netns end of the veth to the fabric.
	RootVeth = "sbx-root"
	// FabricUplink is the fabric end of that veth.
	FabricUplink = "uplink"
	// NodeInterface is a node's interface on its cluster network.
	NodeInterface = "eth0"

	// RouteProtocol tags the routes the sandbox adds to the root netns (the
	// blackholes of the leak guard), so that `down` finds them by tag alone.
	RouteProtocol = 115
	// RootChain is our chain in the root netns's filter table; FORWARD jumps to it.
	RootChain = "SANDBOX-FORWARD"
	// FabricChain holds the fabric's forwarding policy.
	FabricChain = "SANDBOX-FABRIC"
	// GatewayChain accepts the traffic allowed between two gateways of different
	// clusters.
	GatewayChain = "SANDBOX-GATEWAYS"

	// EtcdClientPort and EtcdPeerPort are the shared etcd's ports on 127.0.0.1
	// (below the kernel's ephemeral range, so that no test's random port takes them).
	EtcdClientPort = 23790
	EtcdPeerPort   = 23800
	// BrokerAPIPort is the broker's API server port; cluster N's is BrokerAPIPort+N.
	BrokerAPIPort = 6440
	// KubeletPort is the node agents' kubelet API port on each node IP.
	KubeletPort = 10250
	// KubeProxyHealthPort is kube-proxy's healthz port on each node.
	KubeProxyHealthPort = 10256

	// BrokerName is the broker control plane's name; clusters are cluster1...clusterN.
	BrokerName = "broker"
	// ClusterDomain is every cluster's DNS domain.
	ClusterDomain = "cluster.local"

	// MaxClusters is the most clusters the address plan has room for
	// (192.168.241.0/24 ... 192.168.248.0/24 inside 192.168.240.0/20).
	MaxClusters = 8
	// MaxWorkers is the most worker nodes per cluster (.11 ... .19).
	MaxWorkers = 9
	// GatewaysPerCluster is the number of gateway nodes of every cluster (.21, .22).
	GatewaysPerCluster = 2
)

var (
	// RootAddr is the root netns's address on RootVeth; the API servers bind it.
	RootAddr = netip.MustParsePrefix("192.168.240.1/30")
	// FabricAddr is the fabric's address on FabricUplink.
	FabricAddr = netip.MustParsePrefix("192.168.240.2/30")
	// SandboxNetwork holds the root link and every cluster's node network.
	SandboxNetwork = netip.MustParsePrefix("192.168.240.0/20")
	// GlobalnetRange is Globalnet's default global CIDR; guarded like the rest.
	GlobalnetRange = netip.MustParsePrefix("242.0.0.0/8")
	// BrokerServiceCIDR is the broker's service range (it runs no pods).
	BrokerServiceCIDR = netip.MustParsePrefix("10.140.0.0/16")
)

// Topology is the sandbox's address plan: the broker and the clusters with their
// nodes. It is computed by Plan and is pure data.
type Topology struct {
	Broker   ControlPlane
	Clusters []Cluster
	// OverlappingCIDRs reports whether all clusters share the pod and service ranges.
	OverlappingCIDRs bool
}

// ControlPlane is what the broker and every cluster have: an API server.
type ControlPlane struct {
	// Name is "broker" or "clusterN".
	Name string
	// APIPort is the API server's port on RootAddr.
	APIPort int
	// ServiceCIDR is the service IP range.
	ServiceCIDR netip.Prefix
}

// APIServer returns the API server's URL.
func (c ControlPlane) APIServer() string {
	return fmt.Sprintf("https://%s", netip.AddrPortFrom(RootAddr.Addr(), uint16(c.APIPort)))
}

// KubernetesServiceIP is the ClusterIP of the default/kubernetes Service.
func (c ControlPlane) KubernetesServiceIP() netip.Addr { return nthAddr(c.ServiceCIDR, 1) }

// Cluster is one workload cluster.
type Cluster struct {
	ControlPlane
	// Index is N in clusterN, from 1.
	Index int
	// Short is "cN", the prefix of node names.
	Short string
	// Network is the cluster's node network, a /24 on the fabric.
	Network netip.Prefix
	// Bridge is the name of the network's bridge in the fabric.
	Bridge string
	// PodCIDR is the whole cluster's pod range (a /16; each node has a /24 of it).
	PodCIDR netip.Prefix
	// Nodes are the gateways first, then the workers.
	Nodes []Node
}

// BridgeAddr is the fabric's address on the cluster network, the nodes' default
// gateway.
func (c Cluster) BridgeAddr() netip.Prefix { return netip.PrefixFrom(nthAddr(c.Network, 1), 24) }

// DNSServiceIP is the ClusterIP of kube-system/kube-dns.
func (c Cluster) DNSServiceIP() netip.Addr { return nthAddr(c.ServiceCIDR, 10) }

// Gateways returns the cluster's gateway nodes.
func (c Cluster) Gateways() []Node {
	var gws []Node
	for _, n := range c.Nodes {
		if n.Gateway {
			gws = append(gws, n)
		}
	}
	return gws
}

// Node is one node: a network namespace on its cluster's network.
type Node struct {
	// Name is the Node's name, e.g. "c1-gw1" or "c1-node1".
	Name string
	// Cluster is the name of the node's cluster.
	Cluster string
	// NetNS is the node's network namespace, "sbx-" + Name.
	NetNS string
	// IP is the node's address on its cluster network (eth0).
	IP netip.Addr
	// PodCIDR is the node's pod range, 10.24N.<last octet of IP>.0/24.
	PodCIDR netip.Prefix
	// Gateway reports whether the node is labelled submariner.io/gateway=true.
	Gateway bool
}

// FabricPort is the name of the node's veth end in the fabric (on the bridge).
func (n Node) FabricPort() string { return n.Name }

// Plan computes the address plan for clusters clusters with workers worker nodes
// each; with overlapping, every cluster gets the pod range 10.241.0.0/16 and the
// service range 10.141.0.0/16 (node networks stay distinct).
func Plan(clusters, workers int, overlapping bool) (Topology, error) {
	if clusters < 1 || clusters > MaxClusters {
		return Topology{}, fmt.Errorf("%d clusters: the sandbox has room for 1 to %d, pick a count in that range", clusters, MaxClusters)
	}
	if workers < 0 || workers > MaxWorkers {
		return Topology{}, fmt.Errorf("%d workers per cluster: the sandbox has room for 0 to %d, pick a count in that range", workers, MaxWorkers)
	}
	t := Topology{
		Broker:           ControlPlane{Name: BrokerName, APIPort: BrokerAPIPort, ServiceCIDR: BrokerServiceCIDR},
		OverlappingCIDRs: overlapping,
	}
	for i := 1; i <= clusters; i++ {
		rangeIdx := i
		if overlapping {
			rangeIdx = 1
		}
		c := Cluster{
			ControlPlane: ControlPlane{
				Name:        fmt.Sprintf("cluster%d", i),
				APIPort:     BrokerAPIPort + i,
				ServiceCIDR: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(140 + rangeIdx), 0, 0}), 16),
			},
			Index:   i,
			Short:   fmt.Sprintf("c%d", i),
			Network: netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(240 + i), 0}), 24),
			Bridge:  fmt.Sprintf("br-c%d", i),
			PodCIDR: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(240 + rangeIdx), 0, 0}), 16),
		}
		add := func(name string, host byte, gateway bool) {
			c.Nodes = append(c.Nodes, Node{
				Name:    name,
				Cluster: c.Name,
				NetNS:   Prefix + name,
				IP:      netip.AddrFrom4([4]byte{192, 168, byte(240 + i), host}),
				PodCIDR: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(240 + rangeIdx), host, 0}), 24),
				Gateway: gateway,
			})
		}
		for g := 1; g <= GatewaysPerCluster; g++ {
			add(fmt.Sprintf("%s-gw%d", c.Short, g), byte(20+g), true)
		}
		for w := 1; w <= workers; w++ {
			add(fmt.Sprintf("%s-node%d", c.Short, w), byte(10+w), false)
		}
		t.Clusters = append(t.Clusters, c)
	}
	return t, nil
}

// ControlPlanes returns the broker and then the clusters' control planes.
func (t Topology) ControlPlanes() []ControlPlane {
	cps := []ControlPlane{t.Broker}
	for _, c := range t.Clusters {
		cps = append(cps, c.ControlPlane)
	}
	return cps
}

// Cluster returns the cluster of that name.
func (t Topology) Cluster(name string) (Cluster, bool) {
	for _, c := range t.Clusters {
		if c.Name == name {
			return c, true
		}
	}
	return Cluster{}, false
}

// ControlPlane returns the broker's or a cluster's control plane by name. The
// error lists the names there are.
func (t Topology) ControlPlane(name string) (ControlPlane, error) {
	var names []string
	for _, cp := range t.ControlPlanes() {
		if cp.Name == name {
			return cp, nil
		}
		names = append(names, cp.Name)
	}
	return ControlPlane{}, fmt.Errorf("no cluster named %q in the sandbox: it has %v", name, names)
}

// Nodes returns every node of every cluster.
func (t Topology) Nodes() []Node {
	var nodes []Node
	for _, c := range t.Clusters {
		nodes = append(nodes, c.Nodes...)
	}
	return nodes
}

// GuardedRanges returns the ranges that get a blackhole route in the root netns, so
// that nothing addressed to the sandbox can leave through the machine's uplink:
// the whole 192.168.240.0/20, every pod and service range and Globalnet's
// 242.0.0.0/8, sorted and without duplicates. (The routes to the node networks
// through the fabric are more specific and win.)
func (t Topology) GuardedRanges() []netip.Prefix {
	set := map[netip.Prefix]bool{SandboxNetwork: true, GlobalnetRange: true, t.Broker.ServiceCIDR: true}
	for _, c := range t.Clusters {
		set[c.PodCIDR] = true
		set[c.ServiceCIDR] = true
	}
	ranges := make([]netip.Prefix, 0, len(set))
	for p := range set {
		ranges = append(ranges, p)
	}
	sort.Slice(ranges, func(i, j int) bool {
		if c := ranges[i].Addr().Compare(ranges[j].Addr()); c != 0 {
			return c < 0
		}
		return ranges[i].Bits() < ranges[j].Bits()
	})
	return ranges
}

// nthAddr returns the n-th address of an IPv4 prefix.
func nthAddr(p netip.Prefix, n uint32) netip.Addr {
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) + n
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
