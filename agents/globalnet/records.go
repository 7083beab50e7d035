package globalnet

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// The records the tables keep: only what Globalnet decides from.

// condition is the Allocated condition as last written, compactly: its message as a
// hash, its transition time in Unix seconds, known strings shared.
type condition struct {
	Status             metav1.ConditionStatus
	Reason             string
	MessageHash        uint64
	ObservedGeneration int64
	LastTransition     int64
}

func allocatedCondition(conds []metav1.Condition) condition {
	for _, c := range conds {
		if c.Type == submv1.ConditionAllocated {
			return condition{
				Status: metav1.ConditionStatus(intern(string(c.Status))), Reason: intern(c.Reason),
				MessageHash: hash([]byte(c.Message)), ObservedGeneration: c.ObservedGeneration,
				LastTransition: c.LastTransitionTime.Unix(),
			}
		}
	}
	return condition{}
}

// known are strings many records hold: each record shares these instead of its own
// copy from the JSON decoder.
var known = []string{
	string(metav1.ConditionTrue), string(metav1.ConditionFalse), string(metav1.ConditionUnknown),
	submv1.ReasonSuccess, submv1.ReasonIPPoolAllocationFailed, submv1.ReasonZeroInput, submv1.ReasonInvalidInput,
	submv1.ReasonInvalidInstance, submv1.ReasonInternalServiceCreationFailed,
	string(submv1.ClusterIPService), string(submv1.HeadlessServicePod), string(submv1.HeadlessServiceEndpoints),
}

func intern(s string) string {
	for _, k := range known {
		if k == s {
			return k
		}
	}
	return s
}

// ingressRec is a GlobalIngressIP.
type ingressRec struct {
	UID        types.UID
	Generation int64
	// Created is the creation time in Unix nanoseconds.
	Created    int64
	Target     submv1.TargetType
	ServiceRef string
	PodRef     string
	// TargetIP is the headless Pod's or endpoint's address, from the annotation.
	TargetIP    string
	ServiceLbl  string
	AllocatedIP string
	Cond        condition
}

func compactIngress(obj any) (types.NamespacedName, ingressRec, error) {
	o, ok := obj.(*submv1.GlobalIngressIP)
	if !ok {
		return types.NamespacedName{}, ingressRec{}, fmt.Errorf("unexpected %T", obj)
	}
	r := ingressRec{
		UID: o.UID, Generation: o.Generation, Created: o.CreationTimestamp.UnixNano(),
		Target: submv1.TargetType(intern(string(o.Spec.Target))), ServiceLbl: o.Labels[submv1.LabelServiceRef],
		AllocatedIP: o.Status.AllocatedIP, Cond: allocatedCondition(o.Status.Conditions),
	}
	if o.Spec.ServiceRef != nil {
		r.ServiceRef = o.Spec.ServiceRef.Name
		if r.ServiceLbl == r.ServiceRef {
			r.ServiceLbl = r.ServiceRef // one copy
		}
	}
	if o.Spec.PodRef != nil {
		r.PodRef = o.Spec.PodRef.Name
	}
	switch o.Spec.Target {
	case submv1.HeadlessServicePod:
		r.TargetIP = o.Annotations[submv1.AnnotationHeadlessPodIP]
	case submv1.HeadlessServiceEndpoints:
		r.TargetIP = o.Annotations[submv1.AnnotationHeadlessEndpointsIP]
	}
	return keyOf(o), r, nil
}

// egressRec is a GlobalEgressIP or a ClusterGlobalEgressIP.
type egressRec struct {
	UID        types.UID
	Generation int64
	Created    time.Time
	// NumberOfIPs is the spec's, defaulted.
	NumberOfIPs  int
	PodSelector  *metav1.LabelSelector
	AllocatedIPs []string
	Cond         condition
}

func compactEgress(obj any) (types.NamespacedName, egressRec, error) {
	switch o := obj.(type) {
	case *submv1.GlobalEgressIP:
		return keyOf(o), egressRec{
			UID: o.UID, Generation: o.Generation, Created: o.CreationTimestamp.Time,
			NumberOfIPs: ptr.Deref(o.Spec.NumberOfIPs, submv1.DefaultGlobalEgressIPs),
			PodSelector: o.Spec.PodSelector, AllocatedIPs: o.Status.AllocatedIPs, Cond: allocatedCondition(o.Status.Conditions),
		}, nil
	case *submv1.ClusterGlobalEgressIP:
		return keyOf(o), egressRec{
			UID: o.UID, Generation: o.Generation, Created: o.CreationTimestamp.Time,
			NumberOfIPs:  ptr.Deref(o.Spec.NumberOfIPs, submv1.DefaultClusterGlobalEgressIPs),
			AllocatedIPs: o.Status.AllocatedIPs, Cond: allocatedCondition(o.Status.Conditions),
		}, nil
	}
	return types.NamespacedName{}, egressRec{}, fmt.Errorf("unexpected %T", obj)
}

// exportRec is a ServiceExport: Globalnet only needs to know it exists.
type exportRec struct {
	UID types.UID
}

func compactExport(obj any) (types.NamespacedName, exportRec, error) {
	o, ok := obj.(*mcsv1beta1.ServiceExport)
	if !ok {
		return types.NamespacedName{}, exportRec{}, fmt.Errorf("unexpected %T", obj)
	}
	return keyOf(o), exportRec{UID: o.UID}, nil
}

// serviceRec is a Service: the exported one (what its internal Service copies) or
// an internal one (what Globalnet wrote).
type serviceRec struct {
	UID types.UID
	// ClusterIP is true for a ClusterIP Service with a cluster IP.
	ClusterIP bool
	// Headless is true for a ClusterIP Service without one.
	Headless bool
	// Spec is what an internal Service copies (serviceSpec), as compact JSON: one
	// string instead of a map and a slice per Service. Internal Services keep only
	// its hash.
	Spec     string
	SpecHash uint64
	// ExternalIP is the internal Service's first external IP.
	ExternalIP string
	// ExportedRef is the internal Service's LabelExportedServiceRef.
	ExportedRef string
}

// serviceSpec is the part of a Service that its internal Service copies.
type serviceSpec struct {
	Selector              map[string]string             `json:"selector,omitempty"`
	Ports                 []corev1.ServicePort          `json:"ports,omitempty"`
	SessionAffinity       corev1.ServiceAffinity        `json:"sessionAffinity,omitempty"`
	SessionAffinityConfig *corev1.SessionAffinityConfig `json:"sessionAffinityConfig,omitempty"`
}

func compactService(obj any) (types.NamespacedName, serviceRec, error) {
	o, ok := obj.(*corev1.Service)
	if !ok {
		return types.NamespacedName{}, serviceRec{}, fmt.Errorf("unexpected %T", obj)
	}
	r := serviceRec{UID: o.UID, ExportedRef: o.Labels[submv1.LabelExportedServiceRef]}
	if len(o.Spec.ExternalIPs) > 0 {
		r.ExternalIP = o.Spec.ExternalIPs[0]
	}
	if o.Spec.Type == corev1.ServiceTypeClusterIP || o.Spec.Type == "" {
		r.Headless = o.Spec.ClusterIP == corev1.ClusterIPNone
		r.ClusterIP = o.Spec.ClusterIP != "" && !r.Headless
	}
	spec := serviceSpec{Selector: o.Spec.Selector, SessionAffinity: o.Spec.SessionAffinity, SessionAffinityConfig: o.Spec.SessionAffinityConfig}
	for _, p := range o.Spec.Ports {
		spec.Ports = append(spec.Ports, corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, Port: p.Port, TargetPort: p.TargetPort, AppProtocol: p.AppProtocol})
	}
	data, err := json.Marshal(spec) // map keys sorted: canonical
	if err != nil {
		return types.NamespacedName{}, serviceRec{}, fmt.Errorf("encoding the spec of Service %s/%s: %w", o.Namespace, o.Name, err)
	}
	r.Spec, r.SpecHash = string(data), hash(data)
	return keyOf(o), r, nil
}

// compactInternalService is compactService for internal Services: what they copy
// is compared by hash only.
func compactInternalService(obj any) (types.NamespacedName, serviceRec, error) {
	key, r, err := compactService(obj)
	r.Spec = ""
	return key, r, err
}

// compactUserService is compactService for the users' Services, whose UID Globalnet
// does not need.
func compactUserService(obj any) (types.NamespacedName, serviceRec, error) {
	key, r, err := compactService(obj)
	r.UID = ""
	return key, r, err
}

// hash is FNV-1a, 64 bits.
func hash(data []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, b := range data {
		h ^= uint64(b)
		h *= 1099511628211
	}
	return h
}

// podRec is a Pod: its IPv4 address and labels.
type podRec struct {
	IP     netip.Addr
	Labels map[string]string
}

func compactPod(obj any) (types.NamespacedName, podRec, error) {
	o, ok := obj.(*corev1.Pod)
	if !ok {
		return types.NamespacedName{}, podRec{}, fmt.Errorf("unexpected %T", obj)
	}
	r := podRec{Labels: o.Labels}
	// Host-network Pods have the node's address, finished Pods none that counts.
	if !o.Spec.HostNetwork && o.Status.Phase != corev1.PodSucceeded && o.Status.Phase != corev1.PodFailed {
		for _, ip := range o.Status.PodIPs {
			if a, err := netip.ParseAddr(ip.IP); err == nil && a.Is4() {
				r.IP = a
				break
			}
		}
	}
	return keyOf(o), r, nil
}

// sliceRec is an EndpointSlice of a headless Service.
type sliceRec struct {
	Service   string
	Endpoints []sliceEndpoint
}

type sliceEndpoint struct {
	IP netip.Addr
	// Pod is the backing Pod's name, "" for an address without one.
	Pod    string
	PodUID types.UID
}

func compactSlice(obj any) (types.NamespacedName, sliceRec, error) {
	o, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return types.NamespacedName{}, sliceRec{}, fmt.Errorf("unexpected %T", obj)
	}
	r := sliceRec{Service: o.Labels[discoveryv1.LabelServiceName]}
	if o.AddressType != discoveryv1.AddressTypeIPv4 {
		return keyOf(o), r, nil
	}
	for _, ep := range o.Endpoints {
		var pod string
		var uid types.UID
		if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" && (ep.TargetRef.Namespace == "" || ep.TargetRef.Namespace == o.Namespace) {
			pod, uid = ep.TargetRef.Name, ep.TargetRef.UID
		}
		for _, a := range ep.Addresses {
			if ip, err := netip.ParseAddr(a); err == nil && ip.Is4() {
				r.Endpoints = append(r.Endpoints, sliceEndpoint{IP: ip, Pod: pod, PodUID: uid})
			}
		}
	}
	return keyOf(o), r, nil
}

// endpointRec is a submariner.io Endpoint.
type endpointRec struct {
	ClusterID string
	Hostname  string
	Subnets   []string
	Created   time.Time
}

func compactEndpoint(obj any) (types.NamespacedName, endpointRec, error) {
	o, ok := obj.(*submv1.Endpoint)
	if !ok {
		return types.NamespacedName{}, endpointRec{}, fmt.Errorf("unexpected %T", obj)
	}
	return keyOf(o), endpointRec{ClusterID: o.Spec.ClusterID, Hostname: o.Spec.Hostname, Subnets: o.Spec.Subnets, Created: o.CreationTimestamp.Time}, nil
}

// gatewayRec is a Gateway: its global IP annotation.
type gatewayRec struct {
	UID      types.UID
	GlobalIP string
}

func compactGateway(obj any) (types.NamespacedName, gatewayRec, error) {
	o, ok := obj.(*submv1.Gateway)
	if !ok {
		return types.NamespacedName{}, gatewayRec{}, fmt.Errorf("unexpected %T", obj)
	}
	return keyOf(o), gatewayRec{UID: o.UID, GlobalIP: o.Annotations[submv1.AnnotationGlobalIP]}, nil
}

func keyOf(o metav1.Object) types.NamespacedName {
	return types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}
}

// apiScheme knows our types and the MCS API, for the REST clients of the tables.
func apiScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(submv1.AddToScheme(s))
	utilruntime.Must(mcsv1beta1.AddToScheme(s))
	return s
}

// restClients reach the API groups Globalnet watches.
type restClients struct {
	core, discovery, submariner, mcs rest.Interface
}

func newRESTClients(cfg *rest.Config) (*restClients, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	codecs := serializer.NewCodecFactory(apiScheme()).WithoutConversion()
	forGroup := func(gv schema.GroupVersion) (rest.Interface, error) {
		c := rest.CopyConfig(cfg)
		c.APIPath = "/apis"
		c.GroupVersion = &gv
		c.NegotiatedSerializer = codecs
		if c.UserAgent == "" {
			c.UserAgent = rest.DefaultKubernetesUserAgent()
		}
		rc, err := rest.RESTClientFor(c)
		if err != nil {
			return nil, fmt.Errorf("creating the REST client for %s: %w", gv, err)
		}
		return rc, nil
	}
	subm, err := forGroup(submv1.SchemeGroupVersion)
	if err != nil {
		return nil, err
	}
	mcs, err := forGroup(mcsv1beta1.SchemeGroupVersion)
	if err != nil {
		return nil, err
	}
	return &restClients{core: cs.CoreV1().RESTClient(), discovery: cs.DiscoveryV1().RESTClient(), submariner: subm, mcs: mcs}, nil
}

// listWatch lists and watches resource in namespace ("" for all) through c, with
// the label selector sel ("" for everything).
func listWatch(c rest.Interface, resource, namespace, sel string) *cache.ListWatch {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = sel
			return c.Get().Namespace(namespace).Resource(resource).VersionedParams(&o, metav1.ParameterCodec).Do(ctx).Get()
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = sel
			o.Watch = true
			return c.Get().Namespace(namespace).Resource(resource).VersionedParams(&o, metav1.ParameterCodec).Watch(ctx)
		},
	}
}

// parseAddrs parses status addresses, nil when any is not an IPv4 address.
func parseAddrs(ss []string) []netip.Addr {
	out := make([]netip.Addr, 0, len(ss))
	for _, s := range ss {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return nil
		}
		out = append(out, a)
	}
	return out
}

func addrStrings(ips []netip.Addr) []string {
	out := make([]string, len(ips))
	for i, a := range ips {
		out[i] = a.String()
	}
	return out
}

func sameStrings(a, b []string) bool { return slices.Equal(a, b) }
