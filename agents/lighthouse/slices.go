package lighthouse

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// SliceInput is what the EndpointSlices a cluster publishes for one exported
// Service are computed from.
type SliceInput struct {
	// ClusterID is the exporting cluster.
	ClusterID string
	// Service is the exported Service.
	Service *corev1.Service
	// Address is what the cluster publishes for a Service with a ClusterIP: the
	// ClusterIP, or with Globalnet its global ingress IP (the controller's
	// serviceAddress picks it). Ignored for a headless Service.
	Address netip.Addr
	// Sources are the Service's own EndpointSlices (label
	// kubernetes.io/service-name), from the Kubernetes controllers or the user.
	Sources []*discoveryv1.EndpointSlice
	// Globalnet says the cluster runs Globalnet: the addresses published are
	// global IPs, and the slices' annotation globalnet-enabled says so.
	Globalnet bool
	// GlobalIPs, with Globalnet, maps the addresses of a headless Service's
	// endpoints to the global IPs Globalnet allocated to them (their
	// GlobalIngressIPs); nil without Globalnet. Ignored for a Service with a
	// ClusterIP.
	GlobalIPs map[netip.Addr]netip.Addr
}

// DesiredSlices returns the EndpointSlices the cluster publishes for the Service
// in in, sorted by name, in the Service's namespace, labelled for the MCS API and
// the lighthouse plugin:
//
//   - a Service with a ClusterIP: one slice, named <service>-<cluster>, with one
//     endpoint, Address, ready when any endpoint of the sources is (an endpoint
//     whose readiness is unknown counts as ready), and the Service's ports;
//   - a headless Service: one slice per source slice of address type IPv4 or
//     IPv6, named <service>-<cluster>-<10 hex digits of the source's name's
//     SHA-256>, with the source's ports and its endpoints that have addresses:
//     addresses, readiness as the source says, and the hostname (the endpoint's,
//     else the name of the Pod it targets when that is a DNS label). An endpoint
//     that is not ready is left out unless the Service publishes not-ready
//     addresses; the annotation publish-not-ready-addresses tells the plugin.
//
// Every slice's annotation globalnet-enabled says whether its addresses are
// global IPs.
//
//	With Globalnet (GlobalIPs set) every address is replaced by its global IP,
//	and an address without one yet is left out (with it an endpoint left
//	with none), since no other cluster could reach it.
func DesiredSlices(in SliceInput) []*discoveryv1.EndpointSlice {
	svc := in.Service
	headless := svc.Spec.ClusterIP == corev1.ClusterIPNone
	publishNotReady := svc.Spec.PublishNotReadyAddresses
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{
			Namespace: svc.Namespace,
			Name:      name,
			Labels: map[string]string{
				discoveryv1.LabelManagedBy:    submv1.LighthouseManagedBy,
				mcsv1beta1.LabelServiceName:   svc.Name,
				mcsv1beta1.LabelSourceCluster: in.ClusterID,
				submv1.LabelSourceNamespace:   svc.Namespace,
				submv1.LabelIsHeadless:        strconv.FormatBool(headless),
			},
			Annotations: map[string]string{
				submv1.AnnotationPublishNotReady:  strconv.FormatBool(publishNotReady),
				submv1.AnnotationGlobalnetEnabled: strconv.FormatBool(in.Globalnet),
			},
		}
	}

	if !headless {
		if !in.Address.IsValid() {
			return nil
		}
		ready := false
		for _, src := range in.Sources {
			for _, ep := range src.Endpoints {
				if len(ep.Addresses) > 0 && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) {
					ready = true
				}
			}
		}
		addrType := discoveryv1.AddressTypeIPv4
		if in.Address.Unmap().Is6() {
			addrType = discoveryv1.AddressTypeIPv6
		}
		var ports []discoveryv1.EndpointPort
		for _, p := range svc.Spec.Ports {
			ip := importPort(p)
			ports = append(ports, discoveryv1.EndpointPort{Name: new(ip.Name), Protocol: new(ip.Protocol), Port: new(ip.Port), AppProtocol: ip.AppProtocol})
		}
		return []*discoveryv1.EndpointSlice{{
			ObjectMeta:  meta(svc.Name + "-" + in.ClusterID),
			AddressType: addrType,
			Endpoints: []discoveryv1.Endpoint{{
				Addresses:  []string{in.Address.Unmap().String()},
				Conditions: discoveryv1.EndpointConditions{Ready: new(ready)},
			}},
			Ports: ports,
		}}
	}

	var out []*discoveryv1.EndpointSlice
	for _, src := range in.Sources {
		if src.AddressType != discoveryv1.AddressTypeIPv4 && src.AddressType != discoveryv1.AddressTypeIPv6 {
			continue // FQDN slices have no addresses DNS can answer with
		}
		es := &discoveryv1.EndpointSlice{
			ObjectMeta:  meta(svc.Name + "-" + in.ClusterID + "-" + shortHash(src.Name)),
			AddressType: src.AddressType,
			Endpoints:   []discoveryv1.Endpoint{},
		}
		for _, p := range src.Ports {
			es.Ports = append(es.Ports, *p.DeepCopy())
		}
		for _, ep := range src.Endpoints {
			if len(ep.Addresses) == 0 {
				continue
			}
			if !publishNotReady && ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			addrs := slices.Clone(ep.Addresses)
			if in.GlobalIPs != nil {
				addrs = globalAddresses(addrs, in.GlobalIPs)
				if len(addrs) == 0 {
					continue
				}
			}
			out := discoveryv1.Endpoint{
				Addresses:  addrs,
				Conditions: *ep.Conditions.DeepCopy(),
				Hostname:   hostnameOf(ep),
			}
			es.Endpoints = append(es.Endpoints, out)
		}
		out = append(out, es)
	}
	slices.SortFunc(out, func(a, b *discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// globalAddresses returns the global IPs of addrs, in order, leaving out those
// without one.
func globalAddresses(addrs []string, global map[netip.Addr]netip.Addr) []string {
	var out []string
	for _, a := range addrs {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			continue
		}
		if g, ok := global[ip.Unmap()]; ok {
			out = append(out, g.String())
		}
	}
	return out
}

// hostnameOf returns the DNS host name of an endpoint: its hostname, else the
// name of the Pod it targets when that is a DNS label, else nil (the plugin then
// names it after its address).
func hostnameOf(ep discoveryv1.Endpoint) *string {
	if ep.Hostname != nil && *ep.Hostname != "" {
		return new(*ep.Hostname)
	}
	if ref := ep.TargetRef; ref != nil && ref.Kind == "Pod" && len(validation.IsDNS1123Label(ref.Name)) == 0 {
		return new(ref.Name)
	}
	return nil
}

// shortHash returns 10 hex digits of the SHA-256 of s.
func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:10]
}

// sliceChanged reports whether the existing slice have differs from want in
// anything the agent sets: labels and annotations it sets, address type,
// endpoints, ports.
func sliceChanged(have, want *discoveryv1.EndpointSlice) bool {
	for k, v := range want.Labels {
		if have.Labels[k] != v {
			return true
		}
	}
	for k, v := range want.Annotations {
		if have.Annotations[k] != v {
			return true
		}
	}
	return have.AddressType != want.AddressType ||
		!equality.Semantic.DeepEqual(have.Endpoints, want.Endpoints) ||
		!equality.Semantic.DeepEqual(have.Ports, want.Ports)
}

// sliceContentEqual reports whether two slices carry the same address type,
// endpoints and ports: whether the broker has a slice as the cluster has it.
func sliceContentEqual(a, b *discoveryv1.EndpointSlice) bool {
	return a.AddressType == b.AddressType &&
		equality.Semantic.DeepEqual(a.Endpoints, b.Endpoints) &&
		equality.Semantic.DeepEqual(a.Ports, b.Ports)
}

// isSourceSlice reports whether es is one of a Service's own EndpointSlices
// (labelled with the Service's name by a Kubernetes controller or the user), not
// one of lighthouse's.
func isSourceSlice(es *discoveryv1.EndpointSlice) bool {
	_, ok := es.Labels[LabelKubeServiceName]
	return ok && es.Labels[discoveryv1.LabelManagedBy] != submv1.LighthouseManagedBy
}

// ownSliceLabels select the EndpointSlices this agent publishes in its
// cluster: lighthouse's, of this cluster, not copies.
func ownSliceLabels(cluster string) map[string]string {
	return map[string]string{discoveryv1.LabelManagedBy: submv1.LighthouseManagedBy, mcsv1beta1.LabelSourceCluster: cluster}
}
