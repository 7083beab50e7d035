package lighthouse

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// The informers keep these stripped-down copies of the API objects instead of the
// objects themselves: with 10,000 exported services there are tens of thousands of
// ServiceImports and EndpointSlices, and a full EndpointSlice (managed fields,
// labels, annotations, conditions, topology) costs several times what the plugin
// needs. Adding a field here therefore costs memory in every CoreDNS replica; add
// only what a DNS answer depends on.

// meta is the part of an object's metadata that an informer needs: the store key
// (namespace/name) and the resource version.
type meta struct {
	name, namespace, resourceVersion string
}

// GetObjectMeta implements metav1.ObjectMetaAccessor so that client-go's key
// functions (meta.Accessor) work on the stripped objects. It is called when events
// are processed, never while answering a query.
func (m *meta) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Name: m.name, Namespace: m.namespace, ResourceVersion: m.resourceVersion}
}

// GetObjectKind implements runtime.Object.
func (*meta) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

func metaOf(o metav1.Object) meta {
	return meta{name: o.GetName(), namespace: o.GetNamespace(), resourceVersion: o.GetResourceVersion()}
}

// port is one port of a service or of a cluster's EndpointSlices. The name and the
// protocol are lower case, as they appear in SRV names (_http._tcp).
type port struct {
	name   string
	proto  string
	number uint16
}

func (p port) String() string { return fmt.Sprintf("%s/%s/%d", p.name, p.proto, p.number) }

func comparePorts(a, b port) int {
	return cmp.Or(cmp.Compare(a.name, b.name), cmp.Compare(a.proto, b.proto), cmp.Compare(a.number, b.number))
}

// newPort converts an API port. It reports false for a port that cannot appear in
// DNS: a number outside 1..65535.
func newPort(name string, proto string, number int32) (port, bool) {
	if number < 1 || number > 65535 {
		return port{}, false
	}
	if proto == "" {
		proto = "TCP" // the API's default
	}
	return port{name: strings.ToLower(name), proto: strings.ToLower(proto), number: uint16(number)}, true
}

// serviceImport is what the plugin keeps of an MCS ServiceImport.
type serviceImport struct {
	meta
	headless bool
	// ips are the clusterset IPs (spec.ips) that parse as IP addresses.
	ips []netip.Addr
	// ports are spec.ports, sorted.
	ports []port
}

// DeepCopyObject implements runtime.Object. The stripped objects are never mutated
// after they are made, so a shallow copy is a deep one for every reader.
func (s *serviceImport) DeepCopyObject() runtime.Object { c := *s; return &c }

// endpointSlice is what the plugin keeps of a lighthouse EndpointSlice.
type endpointSlice struct {
	meta
	// service and cluster come from the MCS labels service-name and source-cluster;
	// cluster is lower case.
	service, cluster string
	ports            []port
	// endpoints holds only the endpoints DNS may answer with: ready ones, or all of
	// them when the slice carries the publish-not-ready-addresses annotation.
	endpoints []endpoint
}

// DeepCopyObject implements runtime.Object.
func (s *endpointSlice) DeepCopyObject() runtime.Object { c := *s; return &c }

// endpoint is one usable endpoint: its addresses and its DNS host name (the
// endpoint's hostname field, else its first address with dashes).
type endpoint struct {
	hostname string
	addrs    []netip.Addr
}

// gateway is what the plugin keeps of a submariner.io/v1 Gateway.
type gateway struct {
	meta
	active bool
	// connected lists, sorted, the clusters the gateway has a connected tunnel to.
	connected []string
}

// DeepCopyObject implements runtime.Object.
func (g *gateway) DeepCopyObject() runtime.Object { c := *g; return &c }

var (
	_ runtime.Object            = (*serviceImport)(nil)
	_ runtime.Object            = (*endpointSlice)(nil)
	_ runtime.Object            = (*gateway)(nil)
	_ metav1.ObjectMetaAccessor = (*serviceImport)(nil)
	_ metav1.ObjectMetaAccessor = (*endpointSlice)(nil)
	_ metav1.ObjectMetaAccessor = (*gateway)(nil)
)

// toServiceImport is the informer transform for ServiceImports. Objects that are
// already stripped (tombstones, resyncs) pass through unchanged.
func toServiceImport(obj any) (any, error) {
	si, ok := obj.(*mcsv1beta1.ServiceImport)
	if !ok {
		return obj, nil
	}
	out := &serviceImport{meta: metaOf(si), headless: si.Spec.Type == mcsv1beta1.Headless}
	for _, s := range si.Spec.IPs {
		if a, err := netip.ParseAddr(s); err == nil {
			out.ips = append(out.ips, a.Unmap())
		}
	}
	for _, p := range si.Spec.Ports {
		if pp, ok := newPort(p.Name, string(p.Protocol), p.Port); ok {
			out.ports = append(out.ports, pp)
		}
	}
	slices.SortFunc(out.ports, comparePorts)
	out.ports = slices.Compact(out.ports)
	return out, nil
}

// toEndpointSlice is the informer transform for EndpointSlices.
func toEndpointSlice(obj any) (any, error) {
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return obj, nil
	}
	out := &endpointSlice{
		meta:    metaOf(es),
		service: es.Labels[mcsv1beta1.LabelServiceName],
		cluster: strings.ToLower(es.Labels[mcsv1beta1.LabelSourceCluster]),
	}
	for _, p := range es.Ports {
		if p.Port == nil {
			continue // "all ports": nothing an SRV record can name
		}
		var name, proto string
		if p.Name != nil {
			name = *p.Name
		}
		if p.Protocol != nil {
			proto = string(*p.Protocol)
		}
		if pp, ok := newPort(name, proto, *p.Port); ok {
			out.ports = append(out.ports, pp)
		}
	}
	slices.SortFunc(out.ports, comparePorts)
	out.ports = slices.Compact(out.ports)
	if es.AddressType != discoveryv1.AddressTypeIPv4 && es.AddressType != discoveryv1.AddressTypeIPv6 {
		return out, nil // FQDN slices carry no addresses DNS can answer with
	}
	publishNotReady := es.Annotations[submv1.AnnotationPublishNotReady] == "true"
	for i := range es.Endpoints {
		ep := &es.Endpoints[i]
		// A nil ready condition means "unknown", which consumers are told to treat as ready.
		if !publishNotReady && ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
			continue
		}
		var e endpoint
		for _, s := range ep.Addresses {
			if a, err := netip.ParseAddr(s); err == nil {
				e.addrs = append(e.addrs, a.Unmap())
			}
		}
		if len(e.addrs) == 0 {
			continue
		}
		if ep.Hostname != nil && *ep.Hostname != "" {
			e.hostname = strings.ToLower(*ep.Hostname)
		} else {
			e.hostname, _ = dashedHostname(e.addrs[0].String())
		}
		out.endpoints = append(out.endpoints, e)
	}
	return out, nil
}

// dashedHostname is the host name of an endpoint without one: its address with dots
// (IPv4) or colons (IPv6, compressed form) replaced by dashes, "10-0-0-1" or
// "fd00--1", with a "0" added where an IPv6 address would start or end the label with
// a dash ("::1" is "0--1"). It reports false for a string that is not an IP address.
func dashedHostname(ip string) (string, bool) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return "", false
	}
	a = a.Unmap()
	if a.Is4() {
		return strings.ReplaceAll(a.String(), ".", "-"), true
	}
	h := strings.ReplaceAll(a.WithZone("").String(), ":", "-")
	if strings.HasPrefix(h, "-") {
		h = "0" + h
	}
	if strings.HasSuffix(h, "-") {
		h += "0"
	}
	return h, true
}

// toGateway is the informer transform for Gateways.
func toGateway(obj any) (any, error) {
	gw, ok := obj.(*submv1.Gateway)
	if !ok {
		return obj, nil
	}
	out := &gateway{meta: metaOf(gw), active: gw.Status.HAStatus == submv1.HAStatusActive}
	for _, c := range gw.Status.Connections {
		if c.Status == submv1.Connected && c.Endpoint.ClusterID != "" {
			out.connected = append(out.connected, strings.ToLower(c.Endpoint.ClusterID))
		}
	}
	slices.Sort(out.connected)
	out.connected = slices.Compact(out.connected)
	return out, nil
}

// isLabel reports whether s can be one label of a service name: services and
// namespaces whose names are not DNS labels cannot be asked for.
func isLabel(s string) bool { return len(validation.IsDNS1123Label(s)) == 0 }
