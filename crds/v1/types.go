package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Cluster describes one cluster of the clusterset: its ID and the address ranges
// its pods and services use. Each cluster publishes its own Cluster on the broker
// at join; the syncer copies the others' into the cluster's component namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced
// +kubebuilder:printcolumn:name="Cluster ID",type=string,JSONPath=".spec.cluster_id"
// +kubebuilder:printcolumn:name="Cluster CIDR",type=string,JSONPath=".spec.cluster_cidr"
// +kubebuilder:printcolumn:name="Service CIDR",type=string,JSONPath=".spec.service_cidr"
// +kubebuilder:printcolumn:name="Global CIDR",type=string,JSONPath=".spec.global_cidr"
type Cluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec ClusterSpec `json:"spec"`
}

// ClusterSpec is the address plan of one cluster.
type ClusterSpec struct {
	// ClusterID names the cluster in the clusterset. It is an RFC 1123 label.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="must be an RFC 1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit, for example cluster-1"
	ClusterID string `json:"cluster_id"`

	// ColorCodes is kept for compatibility with Submariner; it is not used.
	//
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=63
	ColorCodes []string `json:"color_codes,omitempty"`

	// ServiceCIDR lists the ranges of the cluster's Service IPs.
	//
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=43
	// +kubebuilder:validation:items:XValidation:rule="isCIDR(self)",message="must be a CIDR in address/prefix form, for example 10.96.0.0/16"
	ServiceCIDR []string `json:"service_cidr"`

	// ClusterCIDR lists the ranges of the cluster's Pod IPs.
	//
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=43
	// +kubebuilder:validation:items:XValidation:rule="isCIDR(self)",message="must be a CIDR in address/prefix form, for example 10.244.0.0/16"
	ClusterCIDR []string `json:"cluster_cidr"`

	// GlobalCIDR lists the cluster's Globalnet ranges; empty without Globalnet.
	//
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=43
	// +kubebuilder:validation:items:XValidation:rule="isCIDR(self)",message="must be a CIDR in address/prefix form, for example 242.0.0.0/16"
	GlobalCIDR []string `json:"global_cidr"`
}

// +kubebuilder:object:root=true

// ClusterList is a list of Clusters.
type ClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []Cluster `json:"items"`
}

// Backend names a cable driver.
//
// +kubebuilder:validation:Enum=libreswan;wireguard;vxlan
type Backend string

// The cable drivers.
const (
	BackendLibreswan Backend = "libreswan"
	BackendWireGuard Backend = "wireguard"
	BackendVXLAN     Backend = "vxlan"
)

// Backends lists every cable driver, in the order the docs present them.
var Backends = []Backend{BackendLibreswan, BackendWireGuard, BackendVXLAN}

// Endpoint is a cluster's active gateway as the other clusters reach it. The active
// gateway publishes exactly one Endpoint for its cluster on the broker.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced
// +kubebuilder:printcolumn:name="Cluster ID",type=string,JSONPath=".spec.cluster_id"
// +kubebuilder:printcolumn:name="Private IP",type=string,JSONPath=".spec.private_ip"
// +kubebuilder:printcolumn:name="Public IP",type=string,JSONPath=".spec.public_ip"
// +kubebuilder:printcolumn:name="Backend",type=string,JSONPath=".spec.backend"
// +kubebuilder:printcolumn:name="Hostname",type=string,JSONPath=".spec.hostname"
type Endpoint struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec EndpointSpec `json:"spec"`
}

// EndpointSpec describes how to reach a cluster's active gateway and what is behind it.
type EndpointSpec struct {
	// ClusterID is the cluster the gateway belongs to. It is an RFC 1123 label.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="must be an RFC 1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit, for example cluster-1"
	ClusterID string `json:"cluster_id"`

	// CableName is submariner-cable-<cluster ID>-<private IP with dots as dashes>.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	CableName string `json:"cable_name"`

	// HealthCheckIP is the address the other gateways probe; empty disables probing.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=39
	// +kubebuilder:validation:XValidation:rule="self == '' || isIP(self)",message="must be an IP address such as 10.244.1.1, or empty"
	HealthCheckIP string `json:"healthCheckIP,omitempty"`

	// Hostname is the gateway node's name.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Hostname string `json:"hostname"`

	// Subnets lists what is reachable through this gateway: the cluster's Pod and
	// Service CIDRs, or its global CIDR with Globalnet.
	//
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=43
	// +kubebuilder:validation:items:XValidation:rule="isCIDR(self)",message="must be a CIDR in address/prefix form, for example 10.244.0.0/16"
	Subnets []string `json:"subnets"`

	// PrivateIP is the gateway's address on its node network.
	//
	// +required
	// +kubebuilder:validation:MaxLength=39
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IP address such as 192.168.1.10"
	PrivateIP string `json:"private_ip"`

	// PublicIP is the gateway's address as seen from outside a NAT, if any.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=39
	// +kubebuilder:validation:XValidation:rule="self == '' || isIP(self)",message="must be an IP address such as 203.0.113.10, or empty"
	PublicIP string `json:"public_ip,omitempty"`

	// NATEnabled says that the gateways must assume NAT between the clusters.
	//
	// +optional
	NATEnabled bool `json:"nat_enabled"`

	// Backend is the cable driver: libreswan, wireguard or vxlan.
	//
	// +required
	Backend Backend `json:"backend"`

	// BackendConfig holds driver settings the peers need, such as udp-port or the
	// WireGuard publicKey.
	//
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	BackendConfig map[string]string `json:"backend_config,omitempty"`
}

// +kubebuilder:object:root=true

// EndpointList is a list of Endpoints.
type EndpointList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []Endpoint `json:"items"`
}

// HAStatus is a gateway's role in its cluster.
//
// +kubebuilder:validation:Enum=active;passive
type HAStatus string

// The gateway roles.
const (
	HAStatusActive  HAStatus = "active"
	HAStatusPassive HAStatus = "passive"
)

// ConnectionStatus is the state of a tunnel to a remote cluster.
//
// +kubebuilder:validation:Enum=connected;connecting;error;none
type ConnectionStatus string

// The tunnel states.
const (
	Connected  ConnectionStatus = "connected"
	Connecting ConnectionStatus = "connecting"
	ConnError  ConnectionStatus = "error"
	ConnNone   ConnectionStatus = "none"
)

// Gateway reports one gateway node's role and its tunnels. It lives only in its own
// cluster and is named after the gateway node.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="HA Status",type=string,JSONPath=".status.haStatus"
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=".status.version"
type Gateway struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Status GatewayStatus `json:"status,omitempty"`
}

// GatewayStatus is what a gateway reports about itself and its tunnels.
type GatewayStatus struct {
	// Version is the gateway's software version.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Version string `json:"version,omitempty"`

	// HAStatus is active on the one gateway that holds the cluster's tunnels.
	//
	// +optional
	HAStatus HAStatus `json:"haStatus,omitempty"`

	// LocalEndpoint is the Endpoint this gateway publishes while active.
	//
	// +optional
	LocalEndpoint *EndpointSpec `json:"localEndpoint,omitempty"`

	// StatusFailure explains why the gateway cannot work, when it cannot.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	StatusFailure string `json:"statusFailure,omitempty"`

	// Connections lists one entry per remote cluster's Endpoint.
	//
	// +optional
	// +kubebuilder:validation:MaxItems=1024
	Connections []Connection `json:"connections,omitempty"`
}

// Connection is the state of the tunnel to one remote Endpoint.
type Connection struct {
	// +required
	Status ConnectionStatus `json:"status"`

	// +optional
	// +kubebuilder:validation:MaxLength=4096
	StatusMessage string `json:"statusMessage,omitempty"`

	// Endpoint is the remote Endpoint this tunnel leads to.
	//
	// +required
	Endpoint EndpointSpec `json:"endpoint"`

	// UsingIP is the remote address the tunnel uses.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=39
	// +kubebuilder:validation:XValidation:rule="self == '' || isIP(self)",message="must be an IP address, or empty"
	UsingIP string `json:"usingIP,omitempty"`

	// UsingNAT says whether the tunnel is encapsulated for NAT traversal.
	//
	// +optional
	UsingNAT bool `json:"usingNAT,omitempty"`

	// LatencyRTT holds round-trip statistics from the health checker.
	//
	// +optional
	LatencyRTT *LatencyRTT `json:"latencyRTT,omitempty"`
}

// LatencyRTT holds round-trip time statistics as Go duration strings ("489.822µs").
type LatencyRTT struct {
	// +optional
	Last string `json:"last,omitempty"`
	// +optional
	Min string `json:"min,omitempty"`
	// +optional
	Average string `json:"average,omitempty"`
	// +optional
	Max string `json:"max,omitempty"`
	// +optional
	StdDev string `json:"stdDev,omitempty"`
}

// +kubebuilder:object:root=true

// GatewayList is a list of Gateways.
type GatewayList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []Gateway `json:"items"`
}
