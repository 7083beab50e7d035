// Package libreswan is the IPsec cable driver: it supervises a pluto of its own in
// the gateway's network namespace (own run directory, NSS database and secrets
// file holding the clusterset's pre-shared key) and drives it only through whack,
// by way of agents/netkit/whack: one IPsec connection per (local subnet, remote
// subnet) pair of each tunnel, IKEv2 with the pre-shared key, IKE and NAT-T on the
// cable port, ESP encapsulated in UDP when NAT lies on the path, added, routed,
// initiated and deleted with whack. A restarted pluto gets every tunnel again.
//
//	pod (cluster1) -> node -> vx-submariner -> active gateway
//	    rule 100: lookup table 100
//	    table 100: 10.2.0.0/16 via <next hop to the remote gateway> dev eth0 src <cni0 IP>  proto 241
//	    xfrm policy 10.1.0.0/16 -> 10.2.0.0/16: ESP tunnel to the remote gateway (UDP 4500)
//
// A tunnel is connected when one of its connections has an established Child SA
// (whack --trafficstatus). Until then it is connecting, and its message says how
// far it got: IKE negotiating, IKE SA established, or the kernel's refusal to
// install the Child SA as pluto logged it (a kernel without ESP answers "Function
// not implemented"). Nothing reports connected without a Child SA.
package libreswan
