package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/submariner-go/submariner/agents/netkit/netns"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// The sandbox's network (DESIGN.md section 5):
//
//	root netns: API servers on 192.168.240.1, tests, the sandbox CLI
//	    | sbx-root 192.168.240.1/30   routes: node networks via .2; blackholes for every
//	    |                             other sandbox range; FORWARD drops sbx-root traffic
//	    | uplink 192.168.240.2/30
//	sbx-fabric (router; FORWARD policy DROP, SANDBOX-FABRIC allows only what is below)
//	    br-c1 192.168.241.1/24                br-c2 192.168.242.1/24
//	     |- c1-gw1   -> sbx-c1-gw1   eth0 .21  |- c2-gw1 ...
//	     |- c1-gw2   -> sbx-c1-gw2   eth0 .22  |- c2-gw2 ...
//	     |- c1-node1 -> sbx-c1-node1 eth0 .11  |- c2-node1 ...
//
// The fabric forwards between a node network and the root address (API servers,
// kubelet API), and between networks of different clusters only from gateway to
// gateway: UDP 4500 (cables), UDP 4490 (NAT discovery), ESP and ICMP echo (the
// health probe). It has no default route, so nothing reaches beyond the sandbox.

// fabricRules renders the fabric's whole filter table, for iptables-restore (the
// fabric namespace is ours alone, so the table is replaced, not merged).
func fabricRules(t Topology) string {
	var b strings.Builder
	b.WriteString("*filter\n")
	b.WriteString(":INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	fmt.Fprintf(&b, ":%s - [0:0]\n:%s - [0:0]\n", FabricChain, GatewayChain)
	fmt.Fprintf(&b, "-A FORWARD -j %s\n", FabricChain)
	fmt.Fprintf(&b, "-A %s -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n", FabricChain)
	root := netip.PrefixFrom(RootAddr.Addr(), 32)
	for _, c := range t.Clusters {
		fmt.Fprintf(&b, "-A %s -s %s -d %s -m comment --comment \"%s to the root netns\" -j ACCEPT\n", FabricChain, c.Network, root, c.Name)
		fmt.Fprintf(&b, "-A %s -s %s -d %s -m comment --comment \"root netns to %s\" -j ACCEPT\n", FabricChain, root, c.Network, c.Name)
	}
	for _, from := range t.Clusters {
		for _, to := range t.Clusters {
			if from.Name == to.Name {
				continue
			}
			for _, a := range from.Gateways() {
				for _, z := range to.Gateways() {
					fmt.Fprintf(&b, "-A %s -s %s/32 -d %s/32 -m comment --comment \"%s to %s\" -j %s\n", FabricChain, a.IP, z.IP, a.Name, z.Name, GatewayChain)
				}
			}
		}
	}
	// Refuse the rest out loud (the policy's DROP stays as a backstop), so that a
	// blocked connection fails at once with "no route to host" instead of timing out.
	fmt.Fprintf(&b, "-A %s -j REJECT --reject-with icmp-admin-prohibited\n", FabricChain)
	fmt.Fprintf(&b, "-A %s -p udp -m udp --dport %d -j ACCEPT\n", GatewayChain, submv1.CablePort)
	fmt.Fprintf(&b, "-A %s -p udp -m udp --dport %d -j ACCEPT\n", GatewayChain, submv1.NATDiscoveryPort)
	fmt.Fprintf(&b, "-A %s -p esp -j ACCEPT\n", GatewayChain)
	fmt.Fprintf(&b, "-A %s -p icmp -m icmp --icmp-type 8 -j ACCEPT\n", GatewayChain)
	b.WriteString("COMMIT\n")
	return b.String()
}

// rootRules renders our chain in the root netns's filter table for
// `iptables-restore --noflush`: the root netns never forwards to or from the
// sandbox, whatever the machine's ip_forward says. addJump adds FORWARD's jump to
// the chain (when it is not there yet).
func rootRules(addJump bool) string {
	var b strings.Builder
	b.WriteString("*filter\n")
	fmt.Fprintf(&b, ":%s - [0:0]\n", RootChain)
	if addJump {
		fmt.Fprintf(&b, "-I FORWARD 1 -j %s\n", RootChain)
	}
	fmt.Fprintf(&b, "-A %s -i %s -m comment --comment \"submariner sandbox: no forwarding from the sandbox\" -j DROP\n", RootChain, RootVeth)
	fmt.Fprintf(&b, "-A %s -o %s -m comment --comment \"submariner sandbox: no forwarding into the sandbox\" -j DROP\n", RootChain, RootVeth)
	b.WriteString("COMMIT\n")
	return b.String()
}

// iptablesFamilies are the root netns's iptables commands that get our chain.
var iptablesFamilies = []string{"iptables", "ip6tables"}

// network builds and removes the sandbox's network.
type network struct {
	topo Topology
	root *netlink.Handle
}

// setUp makes the whole network. The leak guard (blackholes, FORWARD drop) goes in
// before the first link into the sandbox exists. On error the caller tears down.
func (n *network) setUp(ctx context.Context) error {
	if err := n.guardRoot(ctx); err != nil {
		return err
	}
	fabric, err := netns.Create(ctx, FabricNetNS)
	if err != nil {
		return err
	}
	defer fabric.Close()
	if err := fabric.Do(func() error {
		return writeSysctls(map[string]string{
			"net/ipv4/ip_forward": "1",
			// Refusals (ICMP unreachable) must reach every sender at once, not one
			// per second and host: they are how blocked traffic fails fast.
			"net/ipv4/icmp_ratelimit":    "0",
			"net/ipv4/icmp_ratemask":     "0",
			"net/ipv4/icmp_msgs_per_sec": "100000",
			"net/ipv4/icmp_msgs_burst":   "10000",
			// The bridges are L2 within one cluster: bridged frames must not meet
			// the FORWARD policy, only routed packets between networks do.
			"net/bridge/bridge-nf-call-iptables":  "0",
			"net/bridge/bridge-nf-call-ip6tables": "0",
			"net/bridge/bridge-nf-call-arptables": "0",
			"net/ipv6/conf/all/disable_ipv6":      "1",
			"net/ipv6/conf/default/disable_ipv6":  "1",
		})
	}); err != nil {
		return fmt.Errorf("configuring %s: %w", FabricNetNS, err)
	}
	if err := n.linkRoot(fabric); err != nil {
		return err
	}
	for _, c := range n.topo.Clusters {
		if err := n.addCluster(ctx, fabric, c); err != nil {
			return err
		}
	}
	if err := restore(ctx, fabric, "iptables", fabricRules(n.topo), false); err != nil {
		return err
	}
	for _, c := range n.topo.Clusters {
		if err := n.root.RouteReplace(&netlink.Route{
			Dst:      ipNet(c.Network),
			Gw:       FabricAddr.Addr().AsSlice(),
			Protocol: RouteProtocol,
		}); err != nil {
			return fmt.Errorf("routing %s through the fabric: %w", c.Network, err)
		}
	}
	return nil
}

// guardRoot installs the root netns's part of the leak guard.
func (n *network) guardRoot(ctx context.Context) error {
	for _, p := range n.topo.GuardedRanges() {
		if err := n.root.RouteReplace(&netlink.Route{Dst: ipNet(p), Type: unix.RTN_BLACKHOLE, Protocol: RouteProtocol}); err != nil {
			return fmt.Errorf("adding the blackhole route for %s: %w", p, err)
		}
	}
	for _, cmd := range iptablesFamilies {
		save, err := exec.CommandContext(ctx, cmd+"-save", "-t", "filter").CombinedOutput()
		if err != nil {
			return fmt.Errorf("running %s-save: %w: %s", cmd, err, bytes.TrimSpace(save))
		}
		jump := fmt.Sprintf("-A FORWARD -j %s", RootChain)
		if err := restore(ctx, nil, cmd, rootRules(!strings.Contains(string(save), jump+"\n")), true); err != nil {
			return err
		}
	}
	return nil
}

// linkRoot makes the veth between the root netns and the fabric.
func (n *network) linkRoot(fabric *netns.NS) error {
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: RootVeth}, PeerName: FabricUplink, PeerNamespace: netlink.NsFd(fabric.Handle())}
	if err := n.root.LinkAdd(veth); err != nil {
		return fmt.Errorf("adding veth %s to %s: %w", RootVeth, FabricNetNS, err)
	}
	if err := writeSysctls(map[string]string{"net/ipv6/conf/" + RootVeth + "/disable_ipv6": "1"}); err != nil {
		return err
	}
	if err := configureLink(n.root, RootVeth, RootAddr); err != nil {
		return err
	}
	return configureLink(fabric.Netlink, FabricUplink, FabricAddr)
}

// addCluster makes a cluster's bridge in the fabric and its nodes.
func (n *network) addCluster(ctx context.Context, fabric *netns.NS, c Cluster) error {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: c.Bridge}}
	if err := fabric.Netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("adding bridge %s: %w", c.Bridge, err)
	}
	if err := configureLink(fabric.Netlink, c.Bridge, c.BridgeAddr()); err != nil {
		return err
	}
	for _, node := range c.Nodes {
		if err := n.addNode(ctx, fabric, c, node); err != nil {
			return err
		}
	}
	return nil
}

// addNode makes a node's namespace with eth0 on the cluster's bridge and the
// default route through the fabric.
func (n *network) addNode(ctx context.Context, fabric *netns.NS, c Cluster, node Node) error {
	ns, err := netns.Create(ctx, node.NetNS)
	if err != nil {
		return err
	}
	defer ns.Close()
	if err := ns.Do(func() error {
		return writeSysctls(map[string]string{
			"net/ipv6/conf/all/disable_ipv6":     "1",
			"net/ipv6/conf/default/disable_ipv6": "1",
			// Pods on one node's bridge reach each other's Services through
			// kube-proxy's DNAT: replies must pass the node's iptables too.
			"net/bridge/bridge-nf-call-iptables": "1",
		})
	}); err != nil {
		return fmt.Errorf("configuring %s: %w", node.NetNS, err)
	}
	bridge, err := fabric.Netlink.LinkByName(c.Bridge)
	if err != nil {
		return fmt.Errorf("finding bridge %s: %w", c.Bridge, err)
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: node.FabricPort(), MasterIndex: bridge.Attrs().Index},
		PeerName:      NodeInterface,
		PeerNamespace: netlink.NsFd(ns.Handle()),
	}
	if err := fabric.Netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("adding veth %s for node %s: %w", node.FabricPort(), node.Name, err)
	}
	port, err := fabric.Netlink.LinkByName(node.FabricPort())
	if err == nil {
		err = fabric.Netlink.LinkSetUp(port)
	}
	if err != nil {
		return fmt.Errorf("bringing up %s in %s: %w", node.FabricPort(), FabricNetNS, err)
	}
	if err := configureLink(ns.Netlink, NodeInterface, netip.PrefixFrom(node.IP, c.Network.Bits())); err != nil {
		return err
	}
	if err := ns.Netlink.RouteReplace(&netlink.Route{Dst: ipNet(netip.MustParsePrefix("0.0.0.0/0")), Gw: c.BridgeAddr().Addr().AsSlice()}); err != nil {
		return fmt.Errorf("adding the default route of node %s: %w", node.Name, err)
	}
	return nil
}

// tearDownNetwork removes the node and fabric namespaces, the root veth, our
// routes and our iptables chain, using only the fixed names: it works without
// knowing the topology, after a crash and twice. Processes inside the namespaces
// must be gone first, or the namespaces outlive their names.
func tearDownNetwork(ctx context.Context) error {
	var errs []error
	names, err := sandboxNetNS()
	if err != nil {
		errs = append(errs, err)
	}
	for _, name := range names {
		if err := netns.Remove(ctx, name); err != nil {
			errs = append(errs, err)
		}
	}
	root, err := netlink.NewHandle()
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("opening a netlink handle: %w", err))...)
	}
	defer root.Close()
	if link, err := root.LinkByName(RootVeth); err == nil {
		if err := root.LinkDel(link); err != nil {
			errs = append(errs, fmt.Errorf("deleting %s: %w", RootVeth, err))
		}
	} else if !errors.As(err, new(netlink.LinkNotFoundError)) {
		errs = append(errs, fmt.Errorf("finding %s: %w", RootVeth, err))
	}
	routes, err := root.RouteListFiltered(unix.AF_INET, &netlink.Route{Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		errs = append(errs, fmt.Errorf("listing the sandbox's routes: %w", err))
	}
	for _, r := range routes {
		if err := root.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("deleting route %s: %w", r.Dst, err))
		}
	}
	for _, cmd := range iptablesFamilies {
		if err := removeRootChain(ctx, cmd); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// nodeNetNS matches the names of node namespaces (Prefix + node name).
var nodeNetNS = regexp.MustCompile(`^` + Prefix + `c[0-9]+-(gw|node)[0-9]+$`)

// sandboxNetNS lists the sandbox's own namespaces, the nodes' and then the
// fabric. Pod namespaces are the node agents' to remove (nodeagent.Cleanup, from
// their records): node agents outside the sandbox, such as the node agent's own
// tests, name theirs alike.
func sandboxNetNS() ([]string, error) {
	all, err := netns.List()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, name := range all {
		if nodeNetNS.MatchString(name) {
			names = append(names, name)
		}
	}
	for _, name := range all {
		if name == FabricNetNS {
			names = append(names, name)
		}
	}
	return names, nil
}

// removeRootChain deletes FORWARD's jumps to our chain and the chain itself; a
// chain that is not there is success.
func removeRootChain(ctx context.Context, cmd string) error {
	save, err := exec.CommandContext(ctx, cmd+"-save", "-t", "filter").CombinedOutput()
	if err != nil {
		return fmt.Errorf("running %s-save: %w: %s", cmd, err, bytes.TrimSpace(save))
	}
	jump := fmt.Sprintf("-A FORWARD -j %s", RootChain)
	var payload strings.Builder
	payload.WriteString("*filter\n")
	for _, line := range strings.Split(string(save), "\n") {
		if line == jump {
			fmt.Fprintf(&payload, "-D FORWARD -j %s\n", RootChain)
		}
	}
	if !strings.Contains(string(save), ":"+RootChain+" ") {
		if payload.Len() == len("*filter\n") {
			return nil
		}
	} else {
		fmt.Fprintf(&payload, "-F %s\n-X %s\n", RootChain, RootChain)
	}
	payload.WriteString("COMMIT\n")
	return restore(ctx, nil, cmd, payload.String(), true)
}

// restore feeds payload to name-restore (name is iptables or ip6tables), in ns
// when not nil. A failure carries the output, which names the failing line.
func restore(ctx context.Context, ns *netns.NS, name, payload string, noflush bool) error {
	args := []string{"-w"}
	if noflush {
		args = append(args, "--noflush")
	}
	var c *exec.Cmd
	where := "the root netns"
	if ns != nil {
		c = ns.Command(ctx, name+"-restore", args...)
		where = ns.Name
	} else {
		c = exec.CommandContext(ctx, name+"-restore", args...)
	}
	c.Stdin = strings.NewReader(payload)
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("%s-restore in %s: %w: %s\npayload:\n%s", name, where, err, bytes.TrimSpace(out), payload)
	}
	return nil
}

// configureLink puts addr on the link and brings it up.
func configureLink(h *netlink.Handle, name string, addr netip.Prefix) error {
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("finding link %s: %w", name, err)
	}
	if err := h.AddrReplace(link, &netlink.Addr{IPNet: ipNet(addr)}); err != nil {
		return fmt.Errorf("adding %s to %s: %w", addr, name, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("bringing up %s: %w", name, err)
	}
	return nil
}

// writeSysctls writes the sysctls (paths under /proc/sys) in the calling thread's
// network namespace, in sorted order.
func writeSysctls(values map[string]string) error {
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		path := filepath.Join("/proc/sys", k)
		if err := os.WriteFile(path, []byte(values[k]), 0o644); err != nil {
			return fmt.Errorf("setting %s to %s: %w", strings.ReplaceAll(k, "/", "."), values[k], err)
		}
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
