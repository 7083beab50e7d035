// Package v1 holds the submariner.io/v1 API types of the data plane: Cluster,
// Endpoint and Gateway. The JSON field names are Submariner's own (cluster_id,
// private_ip, backend_config, ...), so tooling and habits built for Submariner carry
// over. Validation lives in the kubebuilder markers and is enforced by the API server
// through the generated CRD schemas in ../bases.
//
// +kubebuilder:object:generate=true
// +groupName=submariner.io
package v1
