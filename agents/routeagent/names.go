package routeagent

import (
	"github.com/submariner-go/submariner/agents/netkit/iptables"
)

// Names and numbers of the route agent.
const (
	// ComponentName names the agent in logs, metrics and --version.
	ComponentName = "submariner-routeagent"
	// DefaultMetricsAddr serves /metrics, /healthz and /readyz (the DaemonSet's
	// metrics port).
	DefaultMetricsAddr = ":32782"

	// TCPClampMSSAnnotation on a Node forces the TCP MSS of cross-cluster
	// connections through that node to its value, instead of clamping to the path
	// MTU (Submariner's annotation).
	TCPClampMSSAnnotation = "submariner.io/tcp-clamp-mss"
	// minMSS and maxMSS bound the annotation's value: Linux's smallest MSS, and
	// the largest IPv4 MTU less the IP and TCP headers.
	minMSS = 88
	maxMSS = 65495
)

// Sysctl paths (under /proc/sys), in the slash form, so that interface names with
// dots (eth0.100) stay one path element.
const (
	sysctlForwarding  = "net/ipv4/ip_forward"
	sysctlRPFilterAll = "net/ipv4/conf/all/rp_filter"
	// rpFilterLoose is reverse-path filtering's loose mode: a packet passes when
	// its source is routable by any interface.
	rpFilterLoose  = "2"
	rpFilterStrict = "1"
)

// rpFilterPath returns the rp_filter sysctl of interface iface.
func rpFilterPath(iface string) string { return "net/ipv4/conf/" + iface + "/rp_filter" }

// owner names the iptables chains the route agent owns. Globalnet owns the
// SUBMARINER-GN- and SM-GN- chains; the two never overlap.
var owner = iptables.Owner{Chains: []iptables.Chain{
	iptables.SubmarinerPostrouting,
	iptables.SubmarinerInput,
	iptables.SubmarinerForward,
}}
