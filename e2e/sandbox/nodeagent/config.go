// Package nodeagent is the sandbox's stand-in for the kubelet: it registers a Node,
// keeps its Lease fresh, wires pod networking on the node (a cni0 bridge, one veth per
// pod, host-gw routes to the other nodes' pod CIDRs, masquerade of pod traffic that
// leaves the cluster) and runs the pods bound to the node as processes, each in its
// own network namespace and private mount namespace, with binaries resolved through a
// Catalog. It reports pod status, runs readiness probes and serves the kubelet API
// for `kubectl logs` and `kubectl exec`.
package nodeagent

import (
	"crypto/tls"
	"crypto/x509"
	"net/netip"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
)

// Config describes one node. Every field is immutable while Run runs.
type Config struct {
	// NodeName is the Node object's name and the node's hostname.
	NodeName string
	// NodeIP is the node's InternalIP, on eth0 of its network namespace.
	NodeIP netip.Addr
	// PodCIDR is this node's pod range (a /24); its first address goes on cni0.
	PodCIDR netip.Prefix
	// ClusterCIDR is the whole cluster's pod range; pod traffic leaving it is
	// masqueraded to the node IP, as CNIs do.
	ClusterCIDR netip.Prefix
	// Labels are put on the Node at registration (e.g. submariner.io/gateway=true).
	Labels map[string]string
	// NetNS is the name of the node's network namespace under /run/netns.
	NetNS string

	// Kube reaches the API server as this node (user system:node:<NodeName> in group
	// system:nodes, so the Node authorizer and NodeRestriction apply as to a kubelet).
	Kube *rest.Config
	// ServingCert is the kubelet API's TLS certificate (for NodeIP).
	ServingCert tls.Certificate
	// ClientCAs verifies the client certificates of callers of the kubelet API (the
	// API server's kubelet client certificate).
	ClientCAs *x509.CertPool
	// KubeletPort is the kubelet API's port (10250 when zero).
	KubeletPort int

	// ClusterDNS is the nameserver of ClusterFirst pods (the kube-dns Service IP).
	ClusterDNS netip.Addr
	// ClusterDomain is the cluster's DNS domain, normally cluster.local.
	ClusterDomain string

	// Catalog maps container images to local binaries.
	Catalog Catalog
	// StateDir holds everything the agent keeps on disk: pod records (with PIDs, so
	// that a crashed agent's pods can be found and stopped), logs, volumes.
	StateDir string

	// Log receives the agent's structured logs.
	Log logr.Logger
}
