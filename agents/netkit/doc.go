// Package netkit is the small shared library through which our agents and tests touch
// the kernel and its tools: network namespaces (netns), VXLAN devices (vxlan), routes
// and policy rules marked as ours (route),
// iptables rulesets written in one restore (iptables) and Libreswan's whack (whack).
//
// Nothing under netkit imports Kubernetes or CoreDNS packages; a test in the
// repository root enforces that, so the library stays small and fast to build.
package netkit
