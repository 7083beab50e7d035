// Package globalnet is Globalnet: clusters with overlapping Pod and Service CIDRs
// reach each other through global IPs from each cluster's slice of the global CIDR
// (242.0.0.0/8, a /16 per cluster by default).
//
// It runs on the gateway nodes; the instance on the active gateway node (the node
// the cluster's Endpoint names) that holds the Lease submariner-globalnet-lock does
// the work (Agent). Its Engine allocates from one pool (package ipam), records every
// allocation in the object's status (GlobalIngressIP, GlobalEgressIP,
// ClusterGlobalEgressIP, the Gateway's submariner.io/globalIp annotation), reads the
// allocations back before allocating anything after a restart, and writes the nat
// rules with one iptables-restore per sync into chains it owns:
//
//	remote cluster --tunnel--> gateway node
//	  PREROUTING  SUBMARINER-GN-INGRESS: headless Pod's global IP -> Pod IP (DNAT),
//	              gateway's global IP (ICMP) -> its CNI address;
//	              a ClusterIP Service's global IP falls through to kube-proxy, which
//	              translates it as an external IP of the internal Service
//	  POSTROUTING SUBMARINER-GN-EGRESS: from a remote cluster: ACCEPT (no masquerade,
//	              the Pod sees the client's global IP); to a remote cluster: mark
//	              0xc0000, then SNAT to the Pod's own global IPs (GlobalEgressIP,
//	              headless Pod) or the cluster's (ClusterGlobalEgressIP)
//
// Plan computes the rules from what the engine decided; it is pure and golden-tested.
// README.md explains the design decisions and what the other components do with
// Globalnet.
package globalnet
