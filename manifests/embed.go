// Package manifests holds the kustomize bases and overlays that subctl installs,
// embedded so that subctl renders them in-process (with kustomize's krusty) and
// needs no files at run time:
//
//	broker/               the broker: namespace, RBAC for the cluster identities and
//	                      the joiner, and the admission policies that keep each
//	                      cluster to its own objects
//	base/                 the cluster components: gateway, routeagent,
//	                      lighthouse-agent and lighthouse-coredns, each with its
//	                      ServiceAccount and least-privilege RBAC
//	overlays/libreswan/   base plus what each cable driver needs in the gateway
//	overlays/wireguard/
//	overlays/vxlan/
//	overlays/globalnet/   a kustomize Component adding the globalnet DaemonSet
//	coredns/              the Corefile block that forwards clusterset.local to
//	                      the lighthouse CoreDNS
//
// The directories are also plain kustomize directories (`kubectl kustomize
// manifests/overlays/vxlan` renders them with empty configuration).
package manifests

import "embed"

// FS holds every file of the directories above, at their paths relative to this
// package ("base/kustomization.yaml").
//
//go:embed broker base overlays coredns
var FS embed.FS

// Paths inside FS.
const (
	// BrokerDir is the kustomization of the broker.
	BrokerDir = "broker"
	// BaseDir is the kustomization of the cluster components without a cable driver.
	BaseDir = "base"
	// OverlaysDir holds one overlay per cable driver, named after the driver.
	OverlaysDir = "overlays"
	// GlobalnetComponent is the kustomize Component that adds Globalnet.
	GlobalnetComponent = "overlays/globalnet"
	// CorednsForwardTemplate is the text/template of the cluster CoreDNS block that
	// forwards clusterset.local; it receives .Zone, .Port and .Upstream.
	CorednsForwardTemplate = "coredns/clusterset-forward.tmpl"
)
