package v1

import (
	"crypto/sha256"
	"encoding/base32"
	"net/netip"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// The Globalnet API: GlobalEgressIP, ClusterGlobalEgressIP and GlobalIngressIP, with
// Submariner's schemas and JSON names (numberOfIPs, numGlobalIPs, allocatedIPs,
// allocatedIP, target, serviceRef, podRef), so that users' manifests and habits carry
// over. Globalnet (agents/globalnet) writes every allocation into the objects'
// status; that status is the only record of which global IP belongs to whom, and a
// restarted Globalnet reads it back before it allocates anything new.

func init() {
	// AddToScheme is bound to the SchemeBuilder variable (pointer receiver), so the
	// types registered here are added with the others.
	SchemeBuilder.Register(addGlobalnetTypes)
}

func addGlobalnetTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion,
		&GlobalEgressIP{}, &GlobalEgressIPList{},
		&ClusterGlobalEgressIP{}, &ClusterGlobalEgressIPList{},
		&GlobalIngressIP{}, &GlobalIngressIPList{},
	)
	return nil
}

// Names and values of the Globalnet API that Globalnet, the lighthouse agent, the
// gateway and subctl agree on.
const (
	// ClusterGlobalEgressIPName is the one ClusterGlobalEgressIP Globalnet honours:
	// the global IPs all Pod traffic to remote clusters leaves with, unless a
	// GlobalEgressIP or a headless Service gives a Pod its own. Others get the
	// condition reason InvalidInstance.
	ClusterGlobalEgressIPName = "cluster-egress.submariner.io"
	// DefaultClusterGlobalEgressIPs is the size of the cluster's egress block that
	// Globalnet creates ClusterGlobalEgressIPName with.
	DefaultClusterGlobalEgressIPs = 8
	// DefaultGlobalEgressIPs is a GlobalEgressIP's numberOfIPs when it gives none.
	DefaultGlobalEgressIPs = 1
	// MaxGlobalEgressIPs bounds numberOfIPs and numGlobalIPs.
	MaxGlobalEgressIPs = 20

	// ConditionAllocated is the condition type of every Globalnet object: True
	// when its global IPs are allocated, recorded in status and in use.
	ConditionAllocated = "Allocated"

	// AnnotationGlobalIP on the active gateway's Gateway object holds the
	// gateway's global IP: its Endpoint's healthCheckIP with Globalnet. Globalnet
	// answers ICMP to it on the gateway node.
	AnnotationGlobalIP = "submariner.io/globalIp"
	// LabelServiceRef on a GlobalIngressIP names the exported Service it serves
	// (for headless Pods shared by several Services, the first by name).
	LabelServiceRef = "submariner.io/serviceRef"
	// LabelExportedServiceRef on an internal Service names the exported Service it
	// stands in for.
	LabelExportedServiceRef = "submariner.io/exportedServiceRef"
	// AnnotationHeadlessPodIP on a HeadlessServicePod GlobalIngressIP is the Pod's
	// IP, the address its global IP is translated to.
	AnnotationHeadlessPodIP = "submariner.io/headless-svc-pod-ip"
	// AnnotationHeadlessEndpointsIP on a HeadlessServiceEndpoints GlobalIngressIP is
	// the endpoint's IP, the address its global IP is translated to.
	AnnotationHeadlessEndpointsIP = "submariner.io/headless-svc-endpoints-ip"
	// LabelManagedBy marks the objects Globalnet creates (GlobalIngressIPs,
	// internal Services, the default ClusterGlobalEgressIP) with value
	// GlobalnetManagedBy, so that its cleanup finds them.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// GlobalnetManagedBy is LabelManagedBy's value on Globalnet's objects.
	GlobalnetManagedBy = "submariner-globalnet"
)

// Reasons of the Allocated condition.
const (
	// ReasonSuccess: the IPs are allocated and in use.
	ReasonSuccess = "Success"
	// ReasonIPPoolAllocationFailed: the cluster's global CIDR has no room; the
	// object gets its IPs as soon as others release theirs.
	ReasonIPPoolAllocationFailed = "IPPoolAllocationFailed"
	// ReasonZeroInput: numberOfIPs (numGlobalIPs) is 0, so nothing is allocated.
	ReasonZeroInput = "ZeroInput"
	// ReasonInvalidInput: the spec cannot be acted on (the message says why).
	ReasonInvalidInput = "InvalidInput"
	// ReasonInvalidInstance: a ClusterGlobalEgressIP not named
	// ClusterGlobalEgressIPName; it is ignored.
	ReasonInvalidInstance = "InvalidInstance"
	// ReasonInternalServiceCreationFailed: the internal Service that carries a
	// ClusterIP Service's global IP could not be written.
	ReasonInternalServiceCreationFailed = "InternalServiceCreationFailed"
)

// GlobalEgressIP gives the Pods of its namespace, or those its podSelector chooses,
// their own global IPs for traffic to remote clusters.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,shortName=geip
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="IPs",type=integer,JSONPath=".spec.numberOfIPs"
// +kubebuilder:printcolumn:name="Allocated IPs",type=string,JSONPath=".status.allocatedIPs"
// +kubebuilder:printcolumn:name="Allocated",type=string,JSONPath=".status.conditions[?(@.type==\"Allocated\")].reason"
type GlobalEgressIP struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec GlobalEgressIPSpec `json:"spec,omitempty"`
	// +optional
	Status GlobalEgressIPStatus `json:"status,omitempty"`
}

// GlobalEgressIPSpec says how many global IPs and for which Pods.
//
// +kubebuilder:validation:XValidation:rule="has(self.podSelector) == has(oldSelf.podSelector) && (!has(self.podSelector) || self.podSelector == oldSelf.podSelector)",message="podSelector cannot be changed once the GlobalEgressIP exists: create a new GlobalEgressIP with the new selector and delete this one"
type GlobalEgressIPSpec struct {
	// NumberOfIPs is how many contiguous global IPs to allocate (default 1, at most
	// 20); the Pods' connections are spread over them. 0 allocates none.
	//
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=20
	NumberOfIPs *int `json:"numberOfIPs,omitempty"`
	// PodSelector chooses the Pods of the namespace; without it the whole
	// namespace. It cannot change after creation.
	//
	// +optional
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])",message="matchExpressions operators must be In, NotIn, Exists or DoesNotExist"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, !(e.operator in ['In', 'NotIn']) || (has(e.values) && size(e.values) > 0))",message="matchExpressions with In or NotIn need at least one value"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, !(e.operator in ['Exists', 'DoesNotExist']) || !has(e.values) || size(e.values) == 0)",message="matchExpressions with Exists or DoesNotExist take no values"
	PodSelector *metav1.LabelSelector `json:"podSelector,omitempty"`
}

// GlobalEgressIPStatus is what Globalnet allocated.
type GlobalEgressIPStatus struct {
	// Conditions holds the Allocated condition.
	//
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// AllocatedIPs are the global IPs, contiguous and in order.
	//
	// +optional
	// +kubebuilder:validation:MaxItems=20
	// +kubebuilder:validation:items:MaxLength=15
	// +kubebuilder:validation:items:XValidation:rule="isIP(self)",message="must be an IPv4 address"
	AllocatedIPs []string `json:"allocatedIPs,omitempty"`
}

// +kubebuilder:object:root=true

// GlobalEgressIPList is a list of GlobalEgressIPs.
type GlobalEgressIPList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []GlobalEgressIP `json:"items"`
}

// ClusterGlobalEgressIP holds the global IPs the whole cluster's traffic to remote
// clusters leaves with. Only the instance named cluster-egress.submariner.io is
// honoured; Globalnet creates it with 8 IPs.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=cgeip
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="IPs",type=integer,JSONPath=".spec.numGlobalIPs"
// +kubebuilder:printcolumn:name="Allocated IPs",type=string,JSONPath=".status.allocatedIPs"
// +kubebuilder:printcolumn:name="Allocated",type=string,JSONPath=".status.conditions[?(@.type==\"Allocated\")].reason"
type ClusterGlobalEgressIP struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec ClusterGlobalEgressIPSpec `json:"spec,omitempty"`
	// +optional
	Status GlobalEgressIPStatus `json:"status,omitempty"`
}

// ClusterGlobalEgressIPSpec says how many global IPs the cluster's egress uses.
type ClusterGlobalEgressIPSpec struct {
	// NumberOfIPs is how many contiguous global IPs to allocate (default 8, at most
	// 20). 0 allocates none, which leaves Pods without a GlobalEgressIP unable to
	// reach remote clusters.
	//
	// +optional
	// +kubebuilder:default=8
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=20
	NumberOfIPs *int `json:"numGlobalIPs,omitempty"`
}

// +kubebuilder:object:root=true

// ClusterGlobalEgressIPList is a list of ClusterGlobalEgressIPs.
type ClusterGlobalEgressIPList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []ClusterGlobalEgressIP `json:"items"`
}

// TargetType is what a GlobalIngressIP's global IP leads to.
//
// +kubebuilder:validation:Enum=ClusterIPService;HeadlessServicePod;HeadlessServiceEndpoints
type TargetType string

// The GlobalIngressIP targets.
const (
	// ClusterIPService: an exported ClusterIP Service (serviceRef), reached
	// through an internal Service whose externalIPs hold the global IP.
	ClusterIPService TargetType = "ClusterIPService"
	// HeadlessServicePod: a Pod (podRef) backing an exported headless Service.
	HeadlessServicePod TargetType = "HeadlessServicePod"
	// HeadlessServiceEndpoints: an endpoint address of an exported headless Service
	// without a selector (serviceRef; the address is in the annotation
	// submariner.io/headless-svc-endpoints-ip).
	HeadlessServiceEndpoints TargetType = "HeadlessServiceEndpoints"
)

// GlobalIngressIP is the global IP of an exported Service, or of a Pod or endpoint
// of an exported headless Service. Globalnet creates and deletes them.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,shortName=giip
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=".spec.target"
// +kubebuilder:printcolumn:name="IP",type=string,JSONPath=".status.allocatedIP"
// +kubebuilder:printcolumn:name="Allocated",type=string,JSONPath=".status.conditions[?(@.type==\"Allocated\")].reason"
type GlobalIngressIP struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec GlobalIngressIPSpec `json:"spec"`
	// +optional
	Status GlobalIngressIPStatus `json:"status,omitempty"`
}

// GlobalIngressIPSpec names what the global IP leads to.
//
// +kubebuilder:validation:XValidation:rule="self.target != 'ClusterIPService' || has(self.serviceRef)",message="a ClusterIPService target needs serviceRef: the exported Service's name"
// +kubebuilder:validation:XValidation:rule="self.target != 'HeadlessServicePod' || has(self.podRef)",message="a HeadlessServicePod target needs podRef: the Pod's name"
// +kubebuilder:validation:XValidation:rule="self.target != 'HeadlessServiceEndpoints' || has(self.serviceRef)",message="a HeadlessServiceEndpoints target needs serviceRef: the exported headless Service's name"
// +kubebuilder:validation:XValidation:rule="self.target == oldSelf.target",message="target cannot change: delete the GlobalIngressIP and create a new one"
// +kubebuilder:validation:XValidation:rule="has(self.podRef) == has(oldSelf.podRef) && (!has(self.podRef) || self.podRef == oldSelf.podRef)",message="podRef cannot change: delete the GlobalIngressIP and create a new one"
type GlobalIngressIPSpec struct {
	// Target is ClusterIPService, HeadlessServicePod or HeadlessServiceEndpoints.
	//
	// +required
	Target TargetType `json:"target"`
	// ServiceRef names the exported Service in the same namespace.
	//
	// +optional
	ServiceRef *LocalRef `json:"serviceRef,omitempty"`
	// PodRef names the Pod in the same namespace (HeadlessServicePod).
	//
	// +optional
	PodRef *LocalRef `json:"podRef,omitempty"`
}

// LocalRef names an object in the same namespace.
type LocalRef struct {
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// GlobalIngressIPStatus is what Globalnet allocated.
type GlobalIngressIPStatus struct {
	// Conditions holds the Allocated condition.
	//
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// AllocatedIP is the global IP.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:XValidation:rule="self == '' || isIP(self)",message="must be an IPv4 address, or empty"
	AllocatedIP string `json:"allocatedIP,omitempty"`
}

// +kubebuilder:object:root=true

// GlobalIngressIPList is a list of GlobalIngressIPs.
type GlobalIngressIPList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []GlobalIngressIP `json:"items"`
}

// maxNameLength is the longest object name (a DNS subdomain).
const maxNameLength = 253

// Prefixes of the generated GlobalIngressIP and internal Service names.
const (
	podIngressPrefix       = "pod."
	endpointsIngressPrefix = "ep."
	internalServicePrefix  = "submariner-"
)

// ServiceGlobalIngressIPName is the name of the GlobalIngressIP of an exported
// ClusterIP Service: the Service's (and the ServiceExport's) own name, in its
// namespace.
func ServiceGlobalIngressIPName(service string) string { return service }

// PodGlobalIngressIPName is the name of the GlobalIngressIP of a Pod backing an
// exported headless Service, in the Pod's namespace: "pod." and the Pod's name. The
// dot keeps it apart from every Service's GlobalIngressIP (Service names have no
// dots), and one Pod backing several exported Services has one global IP. Names
// that would be too long end in a hash instead.
func PodGlobalIngressIPName(pod string) string {
	return boundedName(podIngressPrefix, pod)
}

// EndpointsGlobalIngressIPName is the name of the GlobalIngressIP of an endpoint
// address of an exported headless Service without a selector: "ep." and the address
// with dashes for dots ("ep.10-1-2-3").
func EndpointsGlobalIngressIPName(ip netip.Addr) string {
	return endpointsIngressPrefix + strings.NewReplacer(".", "-", ":", "-").Replace(ip.String())
}

// InternalServiceName is the name of the internal Service that carries an exported
// ClusterIP Service's global IP as an external IP, in the Service's namespace:
// "submariner-" and 32 lower-case characters of the base32 SHA-256 of the Service's
// name (Submariner's naming).
func InternalServiceName(service string) string {
	sum := sha256.Sum256([]byte(service))
	return internalServicePrefix + strings.ToLower(base32.StdEncoding.EncodeToString(sum[:])[:32])
}

// boundedName returns prefix+name, or, when that exceeds maxNameLength, prefix and a
// shortened name ending in a hash of the whole name.
func boundedName(prefix, name string) string {
	if len(prefix)+len(name) <= maxNameLength {
		return prefix + name
	}
	sum := sha256.Sum256([]byte(name))
	hash := strings.ToLower(base32.StdEncoding.EncodeToString(sum[:])[:16])
	keep := maxNameLength - len(prefix) - len(hash) - 1
	return prefix + strings.TrimRight(name[:keep], "-.") + "-" + hash
}
