package nodeagent

// The sandbox's CNI, in the node's network namespace:
//
//	pod netns sbx-pod-<uid>                 node netns (cfg.NetNS)
//	  eth0 10.241.21.5/24 ---- veth<hash> --+ cni0 10.241.21.1/24 (bridge)
//	  default via 10.241.21.1               |  eth0 192.168.241.21 --- cluster network
//	                                        |  10.241.22.0/24 via 192.168.241.22 (host-gw, per Node)
//	                                        |  nat POSTROUTING -> SANDBOX-CNI:
//	                                        |    -d ClusterCIDR RETURN; -s PodCIDR MASQUERADE
//
// Pods of a node share the cni0 bridge; a pod of another node is reached through
// that node's InternalIP (flannel's host-gw); traffic from pods to outside the
// cluster CIDR leaves with the node's address.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"

	"github.com/submariner-go/submariner/agents/netkit/netns"
)

// Names and numbers of the sandbox CNI.
const (
	// BridgeName is the node's pod bridge; it holds the first address of the pod CIDR.
	BridgeName = "cni0"
	// PodNetNSPrefix starts the name of every pod network namespace.
	PodNetNSPrefix = "sbx-pod-"
	// MasqueradeChain is the nat chain, jumped to from POSTROUTING, that masquerades
	// pod traffic leaving the cluster CIDR.
	MasqueradeChain = "SANDBOX-CNI"
	// RouteProtocol marks the host-gw routes the agent installs (rtnetlink protocol
	// number), so that it removes only its own.
	RouteProtocol = netlink.RouteProtocol(200)

	podInterface   = "eth0"
	vethPrefix     = "veth"
	jumpComment    = "sandbox cni: masquerade pod traffic leaving the cluster"
	defaultPodMTU  = 1500
	sysctlForward  = "/proc/sys/net/ipv4/ip_forward"
	sysctlBridgeNF = "/proc/sys/net/bridge/bridge-nf-call-iptables"
)

// podNetNSName is the network namespace of a pod.
func podNetNSName(uid string) string { return PodNetNSPrefix + uid }

// vethName is the node side of a pod's veth (at most 15 bytes).
func vethName(uid string) string {
	sum := sha256.Sum256([]byte(uid))
	return vethPrefix + hex.EncodeToString(sum[:])[:11]
}

// gatewayAddr is the pod CIDR's first host address, on cni0.
func gatewayAddr(podCIDR netip.Prefix) netip.Addr { return podCIDR.Masked().Addr().Next() }

// masqueradeRules renders the iptables-restore payload of MasqueradeChain.
// Declaring the chain flushes it, so the payload replaces the chain's rules.
func masqueradeRules(podCIDR, clusterCIDR netip.Prefix) string {
	return strings.Join([]string{
		"*nat",
		":" + MasqueradeChain + " - [0:0]",
		fmt.Sprintf("-A %s -d %s -m comment --comment \"sandbox cni: pod traffic inside the cluster keeps its source\" -j RETURN", MasqueradeChain, clusterCIDR.Masked()),
		fmt.Sprintf("-A %s -s %s -m comment --comment \"sandbox cni: masquerade pod traffic leaving the cluster\" -j MASQUERADE", MasqueradeChain, podCIDR.Masked()),
		"COMMIT",
		"",
	}, "\n")
}

// jumpRule is the POSTROUTING rule that jumps to MasqueradeChain (iptables args
// after the chain name).
func jumpRule() []string {
	return []string{"-m", "comment", "--comment", jumpComment, "-j", MasqueradeChain}
}

// hostRoute is a route to another node's pod CIDR through its InternalIP.
type hostRoute struct {
	Dst netip.Prefix
	Gw  netip.Addr
}

func (r hostRoute) String() string { return r.Dst.String() + " via " + r.Gw.String() }

// nodeRoute is what planRoutes needs to know of a Node.
type nodeRoute struct {
	Name     string
	PodCIDRs []netip.Prefix
	IP       netip.Addr
}

// planRoutes returns the host-gw routes of node self: one per pod CIDR of every
// other node with an InternalIP, sorted by destination. Pod CIDRs that overlap
// our own are left out.
func planRoutes(self string, own netip.Prefix, nodes []nodeRoute) []hostRoute {
	var out []hostRoute
	for _, n := range nodes {
		if n.Name == self || !n.IP.IsValid() {
			continue
		}
		for _, c := range n.PodCIDRs {
			if c.Overlaps(own) {
				continue
			}
			out = append(out, hostRoute{Dst: c.Masked(), Gw: n.IP})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Dst.Addr().Compare(out[j].Dst.Addr()); c != 0 {
			return c < 0
		}
		return out[i].Dst.Bits() < out[j].Dst.Bits()
	})
	return out
}

// cni drives the sandbox CNI in one node's network namespace.
type cni struct {
	ns          *netns.NS
	podCIDR     netip.Prefix
	clusterCIDR netip.Prefix
	mtu         int
}

// setupNode creates cni0, turns forwarding on and installs the masquerade rules.
// It may be called again on a node already set up.
func (c *cni) setupNode(ctx context.Context) error {
	h := c.ns.Netlink
	c.mtu = defaultPodMTU
	if routes, err := h.RouteList(nil, netlink.FAMILY_V4); err == nil {
		for _, r := range routes {
			if r.Dst == nil || r.Dst.IP.IsUnspecified() {
				if l, err := h.LinkByIndex(r.LinkIndex); err == nil {
					c.mtu = l.Attrs().MTU
				}
				break
			}
		}
	}
	br, err := h.LinkByName(BridgeName)
	if err != nil {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = BridgeName
		attrs.MTU = c.mtu
		if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("creating bridge %s in %s: %w", BridgeName, c.ns.Name, err)
		}
		if br, err = h.LinkByName(BridgeName); err != nil {
			return fmt.Errorf("finding bridge %s in %s: %w", BridgeName, c.ns.Name, err)
		}
	} else if br.Type() != "bridge" {
		return fmt.Errorf("%s in %s is a %s, not a bridge: remove it", BridgeName, c.ns.Name, br.Type())
	}
	gw := gatewayAddr(c.podCIDR)
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: gw.AsSlice(), Mask: net.CIDRMask(c.podCIDR.Bits(), 32)}}
	if err := h.AddrReplace(br, addr); err != nil {
		return fmt.Errorf("adding %s to %s in %s: %w", addr.IPNet, BridgeName, c.ns.Name, err)
	}
	if err := h.LinkSetUp(br); err != nil {
		return fmt.Errorf("bringing up %s in %s: %w", BridgeName, c.ns.Name, err)
	}
	if err := c.ns.Do(func() error {
		if err := os.WriteFile(sysctlForward, []byte("1"), 0o644); err != nil {
			return fmt.Errorf("enabling IPv4 forwarding: %w", err)
		}
		// Service traffic between pods on one bridge must pass kube-proxy's rules.
		if err := os.WriteFile(sysctlBridgeNF, []byte("1"), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("enabling bridge-nf-call-iptables: %w", err)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("setting sysctls in %s: %w", c.ns.Name, err)
	}
	return c.setupMasquerade(ctx)
}

func (c *cni) setupMasquerade(ctx context.Context) error {
	cmd := c.ns.Command(ctx, "iptables-restore", "--noflush", "-w")
	cmd.Stdin = strings.NewReader(masqueradeRules(c.podCIDR, c.clusterCIDR))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("writing chain %s in %s: %w: %s", MasqueradeChain, c.ns.Name, err, strings.TrimSpace(string(out)))
	}
	check := append([]string{"-w", "-t", "nat", "-C", "POSTROUTING"}, jumpRule()...)
	if _, err := c.ns.Run(ctx, "iptables", check...); err == nil {
		return nil
	}
	add := append([]string{"-w", "-t", "nat", "-A", "POSTROUTING"}, jumpRule()...)
	if _, err := c.ns.Run(ctx, "iptables", add...); err != nil {
		return fmt.Errorf("hooking %s into POSTROUTING: %w", MasqueradeChain, err)
	}
	return nil
}

// teardownNode removes what setupNode and syncRoutes installed. Missing pieces
// are not an error.
func teardownNode(ctx context.Context, ns *netns.NS) error {
	var errs []error
	del := append([]string{"-w", "-t", "nat", "-D", "POSTROUTING"}, jumpRule()...)
	for {
		if _, err := ns.Run(ctx, "iptables", del...); err != nil {
			break // no (more) jump rule
		}
	}
	if _, err := ns.Run(ctx, "iptables", "-w", "-t", "nat", "-L", MasqueradeChain, "-n"); err == nil {
		if _, err := ns.Run(ctx, "iptables", "-w", "-t", "nat", "-F", MasqueradeChain); err != nil {
			errs = append(errs, err)
		}
		if _, err := ns.Run(ctx, "iptables", "-w", "-t", "nat", "-X", MasqueradeChain); err != nil {
			errs = append(errs, err)
		}
	}
	if err := syncRoutes(ns, nil); err != nil {
		errs = append(errs, err)
	}
	links, err := ns.Netlink.LinkList()
	if err != nil {
		errs = append(errs, fmt.Errorf("listing links in %s: %w", ns.Name, err))
	}
	for _, l := range links {
		name := l.Attrs().Name
		if name == BridgeName || (strings.HasPrefix(name, vethPrefix) && l.Type() == "veth") {
			if err := ns.Netlink.LinkDel(l); err != nil && !errors.Is(err, syscall.ENODEV) {
				errs = append(errs, fmt.Errorf("deleting %s in %s: %w", name, ns.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// syncRoutes makes the host-gw routes in ns exactly want.
func syncRoutes(ns *netns.NS, want []hostRoute) error {
	h := ns.Netlink
	have, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return fmt.Errorf("listing routes in %s: %w", ns.Name, err)
	}
	wanted := map[hostRoute]bool{}
	for _, r := range want {
		wanted[r] = true
	}
	var errs []error
	present := map[hostRoute]bool{}
	for _, r := range have {
		if r.Dst == nil {
			continue
		}
		dst, _ := netip.AddrFromSlice(r.Dst.IP.To4())
		bits, _ := r.Dst.Mask.Size()
		gw, _ := netip.AddrFromSlice(r.Gw.To4())
		hr := hostRoute{Dst: netip.PrefixFrom(dst, bits), Gw: gw}
		if wanted[hr] {
			present[hr] = true
			continue
		}
		if err := h.RouteDel(&r); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("deleting route %s in %s: %w", hr, ns.Name, err))
		}
	}
	for _, r := range want {
		if present[r] {
			continue
		}
		route := &netlink.Route{
			Dst:      &net.IPNet{IP: r.Dst.Addr().AsSlice(), Mask: net.CIDRMask(r.Dst.Bits(), 32)},
			Gw:       r.Gw.AsSlice(),
			Protocol: RouteProtocol,
		}
		if err := h.RouteReplace(route); err != nil {
			errs = append(errs, fmt.Errorf("adding route %s in %s: %w", r, ns.Name, err))
		}
	}
	return errors.Join(errs...)
}

// addPod creates the pod's network namespace (or reuses it after an agent
// restart), its veth pair into cni0 and its address and default route.
func (c *cni) addPod(ctx context.Context, uid string, ip netip.Addr) (*netns.NS, error) {
	name := podNetNSName(uid)
	pod, err := netns.Open(name)
	if err != nil {
		if pod, err = netns.Create(ctx, name); err != nil {
			return nil, err
		}
	}
	fail := func(err error) (*netns.NS, error) {
		_ = pod.Delete(context.WithoutCancel(ctx))
		return nil, err
	}
	h := c.ns.Netlink
	br, err := h.LinkByName(BridgeName)
	if err != nil {
		return fail(fmt.Errorf("finding %s in %s: %w", BridgeName, c.ns.Name, err))
	}
	host := vethName(uid)
	if old, err := h.LinkByName(host); err == nil {
		_ = h.LinkDel(old)
	}
	if old, err := pod.Netlink.LinkByName(podInterface); err == nil {
		_ = pod.Netlink.LinkDel(old)
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = host
	attrs.MTU = c.mtu
	veth := &netlink.Veth{LinkAttrs: attrs, PeerName: podInterface, PeerNamespace: netlink.NsFd(pod.Handle()), PeerMTU: uint32(c.mtu)}
	if err := h.LinkAdd(veth); err != nil {
		return fail(fmt.Errorf("creating veth %s for pod %s: %w", host, uid, err))
	}
	hl, err := h.LinkByName(host)
	if err == nil {
		err = h.LinkSetMaster(hl, br)
	}
	if err == nil {
		err = h.LinkSetHairpin(hl, true)
	}
	if err == nil {
		err = h.LinkSetUp(hl)
	}
	if err != nil {
		return fail(fmt.Errorf("attaching %s to %s: %w", host, BridgeName, err))
	}
	eth, err := pod.Netlink.LinkByName(podInterface)
	if err != nil {
		return fail(fmt.Errorf("finding %s in %s: %w", podInterface, name, err))
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(c.podCIDR.Bits(), 32)}}
	if err := pod.Netlink.AddrReplace(eth, addr); err != nil {
		return fail(fmt.Errorf("adding %s to %s in %s: %w", addr.IPNet, podInterface, name, err))
	}
	if err := pod.Netlink.LinkSetUp(eth); err != nil {
		return fail(fmt.Errorf("bringing up %s in %s: %w", podInterface, name, err))
	}
	def := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gatewayAddr(c.podCIDR).AsSlice()}
	if err := pod.Netlink.RouteReplace(def); err != nil {
		return fail(fmt.Errorf("adding the default route via %s in %s: %w", gatewayAddr(c.podCIDR), name, err))
	}
	return pod, nil
}

// removePodNetwork deletes the pod's veth and network namespace; both may be gone.
func removePodNetwork(ctx context.Context, nodeNS *netns.NS, uid string) error {
	var errs []error
	if nodeNS != nil {
		if l, err := nodeNS.Netlink.LinkByName(vethName(uid)); err == nil {
			if err := nodeNS.Netlink.LinkDel(l); err != nil && !errors.Is(err, syscall.ENODEV) {
				errs = append(errs, fmt.Errorf("deleting veth of pod %s: %w", uid, err))
			}
		}
	}
	if err := netns.Remove(ctx, podNetNSName(uid)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// podNetNSExists reports whether the pod's namespace is still bound.
func podNetNSExists(uid string) bool {
	_, err := os.Stat(filepath.Join(netns.Dir, podNetNSName(uid)))
	return err == nil
}
