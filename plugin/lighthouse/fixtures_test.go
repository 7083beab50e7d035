package lighthouse

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// The API objects below are what the lighthouse agent writes. The handler tests
// turn them into the plugin's view through the informers' transforms, and the
// controller tests create them in a real API server.

const testZone = "clusterset.local."

func clusterSetIPImport(ns, name string, ips []string, ports ...mcsv1beta1.ServicePort) *mcsv1beta1.ServiceImport {
	return &mcsv1beta1.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       mcsv1beta1.ServiceImportSpec{Type: mcsv1beta1.ClusterSetIP, IPs: ips, Ports: nonNilPorts(ports)},
	}
}

func headlessImport(ns, name string, ports ...mcsv1beta1.ServicePort) *mcsv1beta1.ServiceImport {
	return &mcsv1beta1.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       mcsv1beta1.ServiceImportSpec{Type: mcsv1beta1.Headless, Ports: nonNilPorts(ports)},
	}
}

// nonNilPorts keeps spec.ports an empty list rather than null: the CRD requires it.
func nonNilPorts(ports []mcsv1beta1.ServicePort) []mcsv1beta1.ServicePort {
	if ports == nil {
		return []mcsv1beta1.ServicePort{}
	}
	return ports
}

func importPort(name string, proto corev1.Protocol, number int32) mcsv1beta1.ServicePort {
	return mcsv1beta1.ServicePort{Name: name, Protocol: proto, Port: number}
}

// ep is one endpoint of a test slice.
type ep struct {
	hostname string
	addrs    []string
	notReady bool
}

func slicePort(name string, proto corev1.Protocol, number int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: &name, Protocol: &proto, Port: &number}
}

// epSlice is a lighthouse EndpointSlice of service ns/svc from cluster; its address
// type follows the first address.
func epSlice(ns, svc, cluster, name string, headless bool, ports []discoveryv1.EndpointPort, eps ...ep) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{
			discoveryv1.LabelManagedBy:    submv1.LighthouseManagedBy,
			mcsv1beta1.LabelServiceName:   svc,
			mcsv1beta1.LabelSourceCluster: cluster,
			submv1.LabelSourceNamespace:   ns,
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       ports,
	}
	if headless {
		es.Labels[submv1.LabelIsHeadless] = "true"
	}
	for _, e := range eps {
		if strings.Contains(e.addrs[0], ":") {
			es.AddressType = discoveryv1.AddressTypeIPv6
		}
		ready := !e.notReady
		var hostname *string
		if e.hostname != "" {
			hostname = &e.hostname
		}
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  e.addrs,
			Hostname:   hostname,
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
		})
	}
	return es
}

func publishNotReady(es *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	es.Annotations = map[string]string{submv1.AnnotationPublishNotReady: "true"}
	return es
}

// gatewayObj is an active or passive Gateway with a connection per cluster.
func gatewayObj(name string, active bool, conns map[string]submv1.ConnectionStatus) *submv1.Gateway {
	gw := &submv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: submv1.ComponentNamespace, Name: name}}
	gw.Status.HAStatus = submv1.HAStatusPassive
	if active {
		gw.Status.HAStatus = submv1.HAStatusActive
	}
	for _, id := range sortedKeys(conns) {
		gw.Status.Connections = append(gw.Status.Connections, submv1.Connection{
			Status:   conns[id],
			Endpoint: submv1.EndpointSpec{ClusterID: id, CableName: "submariner-cable-" + id + "-192-168-0-1", PrivateIP: "192.168.0.1", Backend: submv1.BackendVXLAN},
		})
	}
	return gw
}

// fakeController serves the handler from objects given up front: it runs them
// through the informers' transforms and the same view builder as the controller.
type fakeController struct {
	*index
	notSynced bool
}

var _ dnsController = (*fakeController)(nil)

// HasSynced implements dnsController.
func (f *fakeController) HasSynced() bool { return !f.notSynced }

// Serial implements dnsController with a fixed serial, so SOA records compare.
func (f *fakeController) Serial() uint32 { return testSerial }

const testSerial = 1700000000

// newFakeController builds the view of objs (ServiceImports, EndpointSlices,
// Gateways) for local cluster local.
func newFakeController(t testing.TB, local string, objs ...runtime.Object) *fakeController {
	t.Helper()
	stripped := make([]any, 0, len(objs))
	for _, o := range objs {
		s, err := strip(o)
		if err != nil {
			t.Fatal(err)
		}
		stripped = append(stripped, s)
	}
	return &fakeController{index: buildIndex(local, stripped)}
}

// strip runs an API object through its informer transform.
func strip(o runtime.Object) (any, error) {
	switch o := o.(type) {
	case *mcsv1beta1.ServiceImport:
		return toServiceImport(o)
	case *discoveryv1.EndpointSlice:
		return toEndpointSlice(o)
	case *submv1.Gateway:
		return toGateway(o)
	}
	return nil, fmt.Errorf("unexpected %T", o)
}

// buildIndex makes the index of stripped objects, as the controller's handlers do.
func buildIndex(local string, stripped []any) *index {
	x := newIndex(local)
	var imports []*serviceImport
	slicesByKey := map[string][]*endpointSlice{}
	var connected []string
	for _, o := range stripped {
		switch v := o.(type) {
		case *serviceImport:
			imports = append(imports, v)
		case *endpointSlice:
			slicesByKey[v.namespace+"/"+v.service] = append(slicesByKey[v.namespace+"/"+v.service], v)
		case *gateway:
			if v.active {
				connected = append(connected, v.connected...)
			}
		}
	}
	x.setConnectivity(false, connected)
	for _, si := range imports {
		x.set(serviceKey(si.name, si.namespace), buildService(si, slicesByKey[si.namespace+"/"+si.name], x.cluster))
	}
	return x
}
