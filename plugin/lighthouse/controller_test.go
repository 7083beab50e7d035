package lighthouse

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/submariner-go/submariner/crds"
	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/controlplane"
)

// testRecheck is how often the controllers under test look for the Gateway API.
const testRecheck = 100 * time.Millisecond

// startController starts a controller for cluster1 against plane p and stops it
// when the test ends.
func startController(t *testing.T, p *controlplane.Plane) *controller {
	t.Helper()
	c, err := newController(p.Config, localCluster, controllerOptions{gatewayRecheck: testRecheck})
	if err != nil {
		t.Fatal(err)
	}
	if c.HasSynced() {
		t.Error("HasSynced before start")
	}
	c.start()
	t.Cleanup(c.stop)
	return c
}

func waitSynced(t *testing.T, c *controller) {
	t.Helper()
	eventually(t, "HasSynced", "true", func() string {
		if c.HasSynced() {
			return "true"
		}
		return "false"
	})
}

// apply creates obj, or updates it when it exists; a Gateway's status is written
// through the status subresource. The object is deleted when the test ends, so
// tests sharing the API server (and repeated runs) see only their own.
func apply(t *testing.T, p *controlplane.Plane, obj client.Object) {
	t.Helper()
	ctx := context.Background()
	t.Cleanup(func() {
		err := p.Client.Delete(ctx, obj.DeepCopyObject().(client.Object))
		if err != nil && !apierrors.IsNotFound(err) && !apimeta.IsNoMatchError(err) {
			t.Errorf("deleting %T %s after the test: %v", obj, client.ObjectKeyFromObject(obj), err)
		}
	})
	var status *submv1.GatewayStatus
	if gw, ok := obj.(*submv1.Gateway); ok {
		s := gw.Status
		status = &s
	}
	obj.SetResourceVersion("")
	err := p.Client.Create(ctx, obj)
	if apierrors.IsAlreadyExists(err) {
		current := obj.DeepCopyObject().(client.Object)
		if err = p.Client.Get(ctx, client.ObjectKeyFromObject(obj), current); err == nil {
			obj.SetResourceVersion(current.GetResourceVersion())
			err = p.Client.Update(ctx, obj)
		}
	}
	if err != nil {
		t.Fatalf("applying %T %s: %v", obj, client.ObjectKeyFromObject(obj), err)
	}
	if status != nil {
		gw := obj.(*submv1.Gateway)
		gw.Status = *status
		if err := p.Client.Status().Update(ctx, gw); err != nil {
			t.Fatalf("updating the status of Gateway %s: %v", gw.Name, err)
		}
	}
}

func remove(t *testing.T, p *controlplane.Plane, obj client.Object) {
	t.Helper()
	if err := p.Client.Delete(context.Background(), obj); err != nil {
		t.Fatalf("deleting %T %s: %v", obj, client.ObjectKeyFromObject(obj), err)
	}
}

// TestController creates, changes and deletes ServiceImports, EndpointSlices and
// Gateways in a real API server and checks that the controller's view follows.
func TestController(t *testing.T) {
	p := sharedPlane(t)
	createNamespaces(t, p, "ctrl-a", "ctrl-b", submv1.ComponentNamespace)
	c := startController(t, p)
	waitSynced(t, c)

	web := []discoveryv1.EndpointPort{slicePort("http", corev1.ProtocolTCP, 80)}
	nginx := clusterSetIPImport("ctrl-a", "nginx", nil, importPort("http", corev1.ProtocolTCP, 80))
	local := epSlice("ctrl-a", "nginx", "cluster1", "nginx-c1", false, web, ep{addrs: []string{"10.1.0.10"}})
	remote := epSlice("ctrl-a", "nginx", "cluster2", "nginx-c2", false, web, ep{addrs: []string{"10.2.0.10"}})
	db := headlessImport("ctrl-b", "db")
	dbSlice := epSlice("ctrl-b", "db", "cluster2", "db-c2", true, nil,
		ep{hostname: "db-0", addrs: []string{"10.2.1.1"}}, ep{hostname: "db-1", addrs: []string{"10.2.1.2"}, notReady: true})
	// A slice of the default EndpointSlice controller is not ours.
	foreign := epSlice("ctrl-a", "nginx", "cluster3", "nginx-kube", false, web, ep{addrs: []string{"10.3.0.10"}})
	foreign.Labels[discoveryv1.LabelManagedBy] = "endpointslice-controller.k8s.io"
	gw := gatewayObj("gw1", true, map[string]submv1.ConnectionStatus{"cluster2": submv1.Connected})

	for _, o := range []client.Object{nginx, local, remote, db, dbSlice, foreign, gw} {
		apply(t, p, o)
	}
	eventually(t, "the view after creation", dedent(`
		ctrl-a/nginx ClusterSetIP ports=http/tcp/80
		  cluster cluster1 local ips=10.1.0.10 ports=http/tcp/80
		  cluster cluster2 connected ips=10.2.0.10 ports=http/tcp/80
		ctrl-b/db Headless
		  cluster cluster2 connected
		    host db-0 ips=10.2.1.1
		`), c.String)
	if !c.HasNamespace("ctrl-b") || c.Service("db.ctrl-b") == nil {
		t.Error("db.ctrl-b is not indexed")
	}

	// The tunnel to cluster2 fails; db-1 becomes ready; a clusterset IP is allocated.
	apply(t, p, gatewayObj("gw1", true, map[string]submv1.ConnectionStatus{"cluster2": submv1.ConnError}))
	dbSlice = epSlice("ctrl-b", "db", "cluster2", "db-c2", true, nil,
		ep{hostname: "db-0", addrs: []string{"10.2.1.1"}}, ep{hostname: "db-1", addrs: []string{"10.2.1.2"}})
	apply(t, p, dbSlice)
	nginx.Spec.IPs = []string{"243.0.0.1"}
	apply(t, p, nginx)
	eventually(t, "the view after the updates", dedent(`
		ctrl-a/nginx ClusterSetIP ips=243.0.0.1 ports=http/tcp/80
		  cluster cluster1 local ips=10.1.0.10 ports=http/tcp/80
		  cluster cluster2 disconnected ips=10.2.0.10 ports=http/tcp/80
		ctrl-b/db Headless
		  cluster cluster2 disconnected
		    host db-0 ips=10.2.1.1
		    host db-1 ips=10.2.1.2
		`), c.String)

	// A passive gateway's connections do not count; the active one's do.
	apply(t, p, gatewayObj("gw2", false, map[string]submv1.ConnectionStatus{"cluster2": submv1.Connected}))
	apply(t, p, gatewayObj("gw3", true, map[string]submv1.ConnectionStatus{"cluster2": submv1.Connected}))
	eventually(t, "the view with a second active gateway", dedent(`
		ctrl-a/nginx ClusterSetIP ips=243.0.0.1 ports=http/tcp/80
		  cluster cluster1 local ips=10.1.0.10 ports=http/tcp/80
		  cluster cluster2 connected ips=10.2.0.10 ports=http/tcp/80
		ctrl-b/db Headless
		  cluster cluster2 connected
		    host db-0 ips=10.2.1.1
		    host db-1 ips=10.2.1.2
		`), c.String)

	// Deletes: the local slice, then the headless import (its slice stays behind
	// until the agent removes it, and must not resurrect the service).
	remove(t, p, local)
	remove(t, p, db)
	eventually(t, "the view after the deletes", dedent(`
		ctrl-a/nginx ClusterSetIP ips=243.0.0.1 ports=http/tcp/80
		  cluster cluster2 connected ips=10.2.0.10 ports=http/tcp/80
		`), c.String)
	if c.HasNamespace("ctrl-b") {
		t.Error("namespace ctrl-b still indexed after its only import was deleted")
	}
	// The import comes back: the slice that stayed is picked up again.
	apply(t, p, headlessImport("ctrl-b", "db"))
	remove(t, p, gatewayObj("gw3", true, nil))
	eventually(t, "the view after the import returned and gw3 left", dedent(`
		ctrl-a/nginx ClusterSetIP ips=243.0.0.1 ports=http/tcp/80
		  cluster cluster2 disconnected ips=10.2.0.10 ports=http/tcp/80
		ctrl-b/db Headless
		  cluster cluster2 disconnected
		    host db-0 ips=10.2.1.1
		    host db-1 ips=10.2.1.2
		`), c.String)
}

// TestControllerWithoutGatewayAPI runs the controller against an API server without
// the Gateway CRD (service discovery only): every cluster counts as connected. When
// the CRD appears, the Gateways decide; when it goes, every cluster counts again.
func TestControllerWithoutGatewayAPI(t *testing.T) {
	p := controlplane.Start(t, "no-gateways")[0]
	ctx := context.Background()
	ext, err := apiextensionsclient.NewForConfig(p.Config)
	if err != nil {
		t.Fatal(err)
	}
	deleteGatewayCRD := func() {
		t.Helper()
		if err := ext.ApiextensionsV1().CustomResourceDefinitions().Delete(ctx, "gateways.submariner.io", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		// Wait until discovery no longer lists gateways, as the controller sees it.
		if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, convergeTimeout, true, func(context.Context) (bool, error) {
			res, err := p.Kube.Discovery().ServerResourcesForGroupVersion(submv1.SchemeGroupVersion.String())
			if apierrors.IsNotFound(err) {
				return true, nil
			}
			if err != nil {
				return false, nil
			}
			for _, r := range res.APIResources {
				if r.Name == gatewaysResource {
					return false, nil
				}
			}
			return true, nil
		}); err != nil {
			t.Fatalf("the API server still serves gateways: %v", err)
		}
	}
	deleteGatewayCRD()
	createNamespaces(t, p, "demo", submv1.ComponentNamespace)
	web := []discoveryv1.EndpointPort{slicePort("http", corev1.ProtocolTCP, 80)}
	for _, o := range []client.Object{
		clusterSetIPImport("demo", "nginx", nil, importPort("http", corev1.ProtocolTCP, 80)),
		epSlice("demo", "nginx", "cluster2", "nginx-c2", false, web, ep{addrs: []string{"10.2.0.10"}}),
		epSlice("demo", "nginx", "cluster3", "nginx-c3", false, web, ep{addrs: []string{"10.3.0.10"}}),
	} {
		apply(t, p, o)
	}

	c := startController(t, p)
	waitSynced(t, c)
	allConnected := dedent(`
		demo/nginx ClusterSetIP ports=http/tcp/80
		  cluster cluster2 connected ips=10.2.0.10 ports=http/tcp/80
		  cluster cluster3 connected ips=10.3.0.10 ports=http/tcp/80
		`)
	eventually(t, "the view without the Gateway API", allConnected, c.String)

	if err := crds.Install(ctx, p.Config); err != nil {
		t.Fatal(err)
	}
	apply(t, p, gatewayObj("gw1", true, map[string]submv1.ConnectionStatus{"cluster2": submv1.Connected, "cluster3": submv1.Connecting}))
	eventually(t, "the view once the Gateway API exists", dedent(`
		demo/nginx ClusterSetIP ports=http/tcp/80
		  cluster cluster2 connected ips=10.2.0.10 ports=http/tcp/80
		  cluster cluster3 disconnected ips=10.3.0.10 ports=http/tcp/80
		`), c.String)
	if !c.HasSynced() {
		t.Error("HasSynced went false when the Gateway informer started")
	}

	deleteGatewayCRD()
	eventually(t, "the view after the Gateway API left", allConnected, c.String)
}
