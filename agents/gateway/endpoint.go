package gateway

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/submariner-go/submariner/agents/component"
	"github.com/submariner-go/submariner/agents/gateway/cable"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Link is a network interface of the gateway's host.
type Link struct {
	Name string
	// Addrs are its IPv4 addresses with their prefix lengths.
	Addrs []netip.Prefix
}

// links reads the IPv4 addresses of every interface through h.
func links(h *netlink.Handle) ([]Link, error) {
	ls, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing interfaces: %w", err)
	}
	var out []Link
	for _, l := range ls {
		addrs, err := h.AddrList(l, unix.AF_INET)
		if err != nil {
			return nil, fmt.Errorf("listing the addresses of %s: %w", l.Attrs().Name, err)
		}
		link := Link{Name: l.Attrs().Name}
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP.To4())
			if !ok {
				continue
			}
			ones, _ := a.Mask.Size()
			link.Addrs = append(link.Addrs, netip.PrefixFrom(ip, ones))
		}
		out = append(out, link)
	}
	return out, nil
}

// CNIAddress returns the interface holding an address inside the cluster CIDRs
// (cni0, tunl0, cilium_host, ...) and that address: the gateway's health-check IP
// and the source of its host-network traffic to remote clusters. The first such
// interface by name wins; false when there is none.
func CNIAddress(ls []Link, clusterCIDRs []netip.Prefix) (string, netip.Addr, bool) {
	sorted := slices.SortedFunc(slices.Values(ls), func(a, b Link) int { return cmp.Compare(a.Name, b.Name) })
	for _, l := range sorted {
		for _, a := range l.Addrs {
			if slices.ContainsFunc(clusterCIDRs, func(c netip.Prefix) bool { return c.Contains(a.Addr()) }) {
				return l.Name, a.Addr(), true
			}
		}
	}
	return "", netip.Addr{}, false
}

// hasAddress reports whether one of ls holds ip.
func hasAddress(ls []Link, ip netip.Addr) bool {
	return slices.ContainsFunc(ls, func(l Link) bool {
		return slices.ContainsFunc(l.Addrs, func(a netip.Prefix) bool { return a.Addr() == ip })
	})
}

// NodeIP returns the Node's IPv4 InternalIP.
func NodeIP(n *corev1.Node) (netip.Addr, error) {
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is4() {
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("node %s has no IPv4 InternalIP in its status: the gateway publishes it as its private IP; wait for the kubelet to report it", n.Name)
}

// nodeSetting returns the Node's annotation key, else its label key.
func nodeSetting(n *corev1.Node, key string) (string, bool) {
	if v, ok := n.Annotations[key]; ok {
		return v, true
	}
	v, ok := n.Labels[key]
	return v, ok
}

// CableName returns Submariner's cable name of a cluster's gateway:
// submariner-cable-<cluster ID>-<private IP with dashes>.
func CableName(clusterID string, privateIP netip.Addr) string {
	return "submariner-cable-" + clusterID + "-" + strings.ReplaceAll(privateIP.String(), ".", "-")
}

var notDNS = regexp.MustCompile(`[^a-z0-9.-]+`)

// EndpointName returns the name of a cluster's Endpoint object:
// <cluster ID>-<cable name>, made a valid object name.
func EndpointName(clusterID, cableName string) string {
	n := notDNS.ReplaceAllString(strings.ToLower(clusterID+"-"+cableName), "-")
	n = strings.Trim(n, "-.")
	if len(n) > 253 {
		n = strings.TrimRight(n[:253], "-.")
	}
	return n
}

// LocalInfo is what the local Endpoint is made of.
type LocalInfo struct {
	ClusterID string
	NodeName  string
	PrivateIP netip.Addr
	// PublicIP is the resolved public IP; invalid when none.
	PublicIP netip.Addr
	// HealthCheckIP is the CNI interface's address; invalid when health checks
	// are off or there is none.
	HealthCheckIP netip.Addr
	Networks      component.Networks
	NATEnabled    bool
	Backend       submv1.Backend
	// Port and NATTDiscoveryPort are the gateway's UDP ports.
	Port, NATTDiscoveryPort uint16
	PreferredServer         bool
	// DriverConfig is the driver's part of backend_config (the WireGuard
	// publicKey, for instance).
	DriverConfig map[string]string
}

// LocalEndpoint returns the Endpoint the gateway publishes for info. Its subnets
// are the Service and Pod CIDRs, or the global CIDR with Globalnet.
func LocalEndpoint(info LocalInfo) (cable.Endpoint, error) {
	var errs []error
	if err := submv1.ValidateClusterID(info.ClusterID); err != nil {
		errs = append(errs, err)
	}
	if info.NodeName == "" {
		errs = append(errs, errors.New("the node name is empty: pass NODE_NAME from the downward API"))
	}
	if !info.PrivateIP.Is4() {
		errs = append(errs, fmt.Errorf("private IP %v is not an IPv4 address", info.PrivateIP))
	}
	subnets := slices.Concat(info.Networks.Service, info.Networks.Cluster)
	if info.Networks.Globalnet() {
		subnets = slices.Clone(info.Networks.Global)
	}
	if len(subnets) == 0 {
		errs = append(errs, errors.New("no subnets to publish: give the cluster's CIDRs with --cluster-cidr and --service-cidr (SUBMARINER_CLUSTERCIDR, SUBMARINER_SERVICECIDR)"))
	}
	for _, s := range subnets {
		if !s.Addr().Is4() {
			errs = append(errs, fmt.Errorf("subnet %s is not IPv4: only IPv4 is routed between clusters", s))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return cable.Endpoint{}, fmt.Errorf("building the local Endpoint: %w", err)
	}
	bc := maps.Clone(info.DriverConfig)
	if bc == nil {
		bc = map[string]string{}
	}
	bc[cable.ConfigUDPPort] = strconv.Itoa(int(info.Port))
	bc[cable.ConfigNATTDiscoveryPort] = strconv.Itoa(int(info.NATTDiscoveryPort))
	bc[cable.ConfigPreferredServer] = strconv.FormatBool(info.PreferredServer)
	return cable.Endpoint{
		ClusterID:     info.ClusterID,
		CableName:     CableName(info.ClusterID, info.PrivateIP),
		Hostname:      info.NodeName,
		PrivateIP:     info.PrivateIP,
		PublicIP:      info.PublicIP,
		HealthCheckIP: info.HealthCheckIP,
		Subnets:       subnets,
		NATEnabled:    info.NATEnabled,
		Backend:       info.Backend,
		BackendConfig: bc,
		Port:          info.Port,
	}, nil
}
