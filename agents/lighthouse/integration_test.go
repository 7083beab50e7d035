package lighthouse_test

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/submariner-go/submariner/agents/lighthouse"
)

// TestExportAndImport runs the agents of two clusters against a broker, each
// with only the permissions lighthouse.ClusterRules and BrokerRules grant, and
// a real CoreDNS with the lighthouse plugin on each cluster:
//
//	cluster2: Service + ServiceExport --agent--> broker: ServiceImport web-demo (record of cluster2)
//	                                                     EndpointSlice of cluster2
//	cluster1 and cluster2 <--syncers-- ServiceImport demo/web, EndpointSlices   <-- CoreDNS answers
func TestExportAndImport(t *testing.T) {
	f := startFleet(t, 0)
	c1, c2 := f.c("cluster1"), f.c("cluster2")
	for _, m := range []*member{c1, c2} {
		createNamespace(t, m.plane, "demo")
		f.startAgent(t, m)
		startCoreDNS(t, m)
	}
	const web = "web.demo.svc.clusterset.local"

	var ip2 string
	t.Run("an export in cluster2 reaches both clusters and resolves in both", func(t *testing.T) {
		ip2 = exportService(t, c2.plane, "demo", "web", false, port("http", 80))
		setEndpoints(t, c2.plane, "demo", "web", "web-abcde", podEndpoint{pod: "web-0", addr: "10.2.1.5", ready: true})
		eventually(t,
			conditions(c2.plane, "demo", "web", "Valid=True/Valid", "Ready=True/Exported", "Conflict=False/NoConflicts"),
			brokerImport(f, "demo", "web", "ClusterSetIP ports=http/TCP/80 clusters=cluster2 records=cluster2"),
			imports(c1.plane, "demo", "demo/web ClusterSetIP ports=http/TCP/80 clusters=cluster2"),
			imports(c2.plane, "demo", "demo/web ClusterSetIP ports=http/TCP/80 clusters=cluster2"),
			mcsSlices(c1.plane, "demo", "web", "web from cluster2: "+ip2),
			mcsSlices(c2.plane, "demo", "web", "web from cluster2: "+ip2),
			resolves(c1, dns.TypeA, web, "NOERROR", ip2),
			resolves(c2, dns.TypeA, web, "NOERROR", ip2),
			resolves(c1, dns.TypeSRV, "_http._tcp."+web, "NOERROR", "80 "+web+"."),
			metricIs(t, c2, "submariner_service_export", map[string]string{"state": "exported"}, 1),
			metricIs(t, c1, "submariner_service_import", map[string]string{"type": "ClusterSetIP"}, 1),
		)
	})

	t.Run("readiness follows the backends", func(t *testing.T) {
		setEndpoints(t, c2.plane, "demo", "web", "web-abcde", podEndpoint{pod: "web-0", addr: "10.2.1.5", ready: false})
		eventually(t,
			mcsSlices(c1.plane, "demo", "web", "web from cluster2: "+ip2+"(not ready)"),
			resolves(c1, dns.TypeA, web, "NOERROR"), // known, but no cluster with a ready backend
		)
		setEndpoints(t, c2.plane, "demo", "web", "web-abcde", podEndpoint{pod: "web-0", addr: "10.2.1.5", ready: true})
		eventually(t, resolves(c1, dns.TypeA, web, "NOERROR", ip2))
	})

	t.Run("a cluster without the namespace gets the import when the namespace appears", func(t *testing.T) {
		createNamespace(t, c2.plane, "shop")
		ip := exportService(t, c2.plane, "shop", "cart", false, port("http", 80))
		eventually(t,
			conditions(c2.plane, "shop", "cart", "Valid=True/Valid", "Ready=True/Exported", "Conflict=False/NoConflicts"),
			imports(c2.plane, "shop", "shop/cart ClusterSetIP ports=http/TCP/80 clusters=cluster2"),
			resolves(c1, dns.TypeA, "cart.shop.svc.clusterset.local", "NXDOMAIN"),
		)
		createNamespace(t, c1.plane, "shop")
		eventually(t,
			imports(c1.plane, "shop", "shop/cart ClusterSetIP ports=http/TCP/80 clusters=cluster2"),
			mcsSlices(c1.plane, "shop", "cart", "cart from cluster2: "+ip+"(not ready)"),
		)
	})

	t.Run("an export before its Service becomes valid when the Service appears", func(t *testing.T) {
		createExport(t, c2.plane, "demo", "late")
		eventually(t, conditions(c2.plane, "demo", "late", "Valid=False/NoService", "Ready=False/Pending"),
			brokerImport(f, "demo", "late"))
		createService(t, c2.plane, "demo", "late", false, port("grpc", 9000))
		eventually(t,
			conditions(c2.plane, "demo", "late", "Valid=True/Valid", "Ready=True/Exported", "Conflict=False/NoConflicts"),
			imports(c1.plane, "demo",
				"demo/late ClusterSetIP ports=grpc/TCP/9000 clusters=cluster2",
				"demo/web ClusterSetIP ports=http/TCP/80 clusters=cluster2"),
		)
	})

	t.Run("ExternalName is not exported", func(t *testing.T) {
		create(t, c2.plane.Client, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "ext"},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"}})
		createExport(t, c2.plane, "demo", "ext")
		eventually(t, conditions(c2.plane, "demo", "ext", "Valid=False/InvalidServiceType", "Ready=False/Failed"),
			brokerImport(f, "demo", "ext"),
			metricIs(t, c2, "submariner_service_export", map[string]string{"state": "invalid"}, 1))
	})

	t.Run("a headless Service's pods resolve by hostname", func(t *testing.T) {
		exportService(t, c2.plane, "demo", "db", true, port("sql", 5432))
		setEndpoints(t, c2.plane, "demo", "db", "db-xyz12",
			podEndpoint{pod: "db-0", addr: "10.2.1.10", hostname: "db-0", ready: true},
			podEndpoint{pod: "db-1", addr: "10.2.1.11", hostname: "db-1", ready: true},
			podEndpoint{pod: "db-2", addr: "10.2.1.12", hostname: "db-2", ready: false})
		eventually(t,
			conditions(c2.plane, "demo", "db", "Valid=True/Valid", "Ready=True/Exported", "Conflict=False/NoConflicts"),
			imports(c1.plane, "demo",
				"demo/db Headless ports=sql/TCP/5432 clusters=cluster2",
				"demo/late ClusterSetIP ports=grpc/TCP/9000 clusters=cluster2",
				"demo/web ClusterSetIP ports=http/TCP/80 clusters=cluster2"),
			mcsSlices(c1.plane, "demo", "db", "db from cluster2: db-0=10.2.1.10 db-1=10.2.1.11"),
			resolves(c1, dns.TypeA, "db-1.cluster2.db.demo.svc.clusterset.local", "NOERROR", "10.2.1.11"),
			resolves(c1, dns.TypeA, "db.demo.svc.clusterset.local", "NOERROR", "10.2.1.10", "10.2.1.11"),
			resolves(c1, dns.TypeA, "db-2.cluster2.db.demo.svc.clusterset.local", "NXDOMAIN"),
		)
	})

	t.Run("unexport removes it everywhere", func(t *testing.T) {
		remove(t, c2.plane.Client, &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web"}})
		eventually(t,
			brokerImport(f, "demo", "web"),
			imports(c1.plane, "demo",
				"demo/db Headless ports=sql/TCP/5432 clusters=cluster2",
				"demo/late ClusterSetIP ports=grpc/TCP/9000 clusters=cluster2"),
			mcsSlices(c1.plane, "demo", "web"),
			mcsSlices(c2.plane, "demo", "web"),
			mcsSlices(f.broker, brokerNS, "web"),
			resolves(c1, dns.TypeA, web, "NXDOMAIN"),
			resolves(c2, dns.TypeA, web, "NXDOMAIN"),
		)
	})

	t.Run("deleting the Service withdraws the export until it is back", func(t *testing.T) {
		remove(t, c2.plane.Client, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "late"}})
		eventually(t,
			conditions(c2.plane, "demo", "late", "Valid=False/NoService", "Ready=False/Pending"),
			brokerImport(f, "demo", "late"),
			resolves(c1, dns.TypeA, "late.demo.svc.clusterset.local", "NXDOMAIN"),
		)
	})

	t.Run("a restarted agent finds everything in place", func(t *testing.T) {
		var before mcsv1beta1.ServiceImport
		if err := c1.plane.Client.Get(context.Background(), client.ObjectKey{Namespace: "demo", Name: "db"}, &before); err != nil {
			t.Fatal(err)
		}
		f.stopAgent(t, c2)
		// Ready: every ServiceExport has been reconciled once.
		f.startAgent(t, c2)
		eventually(t, conditions(c2.plane, "demo", "db", "Valid=True/Valid", "Ready=True/Exported", "Conflict=False/NoConflicts"))
		var after mcsv1beta1.ServiceImport
		if err := c1.plane.Client.Get(context.Background(), client.ObjectKey{Namespace: "demo", Name: "db"}, &after); err != nil {
			t.Fatal(err)
		}
		if before.UID != after.UID {
			t.Error("the copy of demo/db in cluster1 was recreated by the restart")
		}
		if n := c2.agent.metric(t, "submariner_lighthouse_writes_total", map[string]string{"object": "ServiceImport"}); n != 0 {
			t.Errorf("the restarted agent wrote the aggregated ServiceImports %v times, want none", n)
		}
		if n := c2.agent.metric(t, "submariner_lighthouse_writes_total", map[string]string{"object": "EndpointSlice"}); n != 0 {
			t.Errorf("the restarted agent wrote EndpointSlices %v times, want none", n)
		}
	})
}

// TestCleanup runs the agent's cleanup mode (--uninstall) for a cluster that
// leaves: its records go from the aggregated ServiceImports (deleting those it
// was the last exporter of), its slices and Lease from the broker, and its own
// slices and the copies from the cluster; the other cluster keeps its exports.
func TestCleanup(t *testing.T) {
	f := startFleet(t, 0)
	c1, c2 := f.c("cluster1"), f.c("cluster2")
	for _, m := range []*member{c1, c2} {
		createNamespace(t, m.plane, "demo")
		f.startAgent(t, m)
	}
	ip1 := exportService(t, c1.plane, "demo", "both", false, port("http", 80))
	ip2 := exportService(t, c2.plane, "demo", "both", false, port("http", 80))
	exportService(t, c2.plane, "demo", "only2", false, port("http", 80))
	eventually(t,
		brokerImport(f, "demo", "both", "ClusterSetIP ports=http/TCP/80 clusters=cluster1,cluster2 records=cluster1,cluster2"),
		imports(c1.plane, "demo", "demo/both ClusterSetIP ports=http/TCP/80 clusters=cluster1,cluster2",
			"demo/only2 ClusterSetIP ports=http/TCP/80 clusters=cluster2"),
		mcsSlices(c2.plane, "demo", "both", "both from cluster1: "+ip1+"(not ready)", "both from cluster2: "+ip2+"(not ready)"),
	)

	f.stopAgent(t, c2)
	a, err := lighthouse.New(lighthouse.Config{ClusterID: "cluster2", Local: c2.local, Broker: c2.broker})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t,
		brokerImport(f, "demo", "both", "ClusterSetIP ports=http/TCP/80 clusters=cluster1 records=cluster1"),
		brokerImport(f, "demo", "only2"),
		mcsSlices(f.broker, brokerNS, "both", "both from cluster1: "+ip1+"(not ready)"),
		mcsSlices(f.broker, brokerNS, "only2"),
		imports(c1.plane, "demo", "demo/both ClusterSetIP ports=http/TCP/80 clusters=cluster1"),
		mcsSlices(c1.plane, "demo", "both", "both from cluster1: "+ip1+"(not ready)"),
		imports(c2.plane, "demo"),
		mcsSlices(c2.plane, "demo", "both"),
		mcsSlices(c2.plane, "demo", "only2"),
	)
	var leases coordinationv1.LeaseList
	if err := f.broker.Client.List(context.Background(), &leases, client.InNamespace(brokerNS)); err != nil {
		t.Fatal(err)
	}
	for _, l := range leases.Items {
		if l.Name == lighthouse.LeaseName("cluster2") {
			t.Errorf("Lease %s is still on the broker", l.Name)
		}
	}
	// Cleaning up again finds nothing to do.
	if err := a.Cleanup(context.Background()); err != nil {
		t.Errorf("a second cleanup: %v", err)
	}
}

// waitNextSecond waits until the clock is in a later second than then:
// ServiceExport creation timestamps have a resolution of one second, and the
// test needs an export that is older, not one that wins by its cluster ID.
func waitNextSecond(t *testing.T, then time.Time) {
	t.Helper()
	<-time.After(time.Until(then.Truncate(time.Second).Add(time.Second)))
}

// TestExportedInBothClusters exports Services of the same name in both clusters:
// both are listed, the ports are the union, each cluster resolves its own
// address, and a type mismatch is a conflict that the oldest export wins.
func TestExportedInBothClusters(t *testing.T) {
	f := startFleet(t, 0)
	c1, c2 := f.c("cluster1"), f.c("cluster2")
	for _, m := range []*member{c1, c2} {
		createNamespace(t, m.plane, "demo")
		f.startAgent(t, m)
		startCoreDNS(t, m)
	}

	t.Run("both listed, ports the union, each cluster resolves its own", func(t *testing.T) {
		ip1 := exportService(t, c1.plane, "demo", "api", false, port("http", 80))
		ip2 := exportService(t, c2.plane, "demo", "api", false, port("http", 80), port("metrics", 9090))
		setEndpoints(t, c1.plane, "demo", "api", "api-aaaaa", podEndpoint{pod: "api-0", addr: "10.1.1.5", ready: true})
		setEndpoints(t, c2.plane, "demo", "api", "api-bbbbb", podEndpoint{pod: "api-0", addr: "10.2.1.5", ready: true})
		const api = "api.demo.svc.clusterset.local"
		both := []string{"api from cluster1: " + ip1, "api from cluster2: " + ip2}
		eventually(t,
			brokerImport(f, "demo", "api", "ClusterSetIP ports=http/TCP/80,metrics/TCP/9090 clusters=cluster1,cluster2 records=cluster1,cluster2"),
			imports(c1.plane, "demo", "demo/api ClusterSetIP ports=http/TCP/80,metrics/TCP/9090 clusters=cluster1,cluster2"),
			imports(c2.plane, "demo", "demo/api ClusterSetIP ports=http/TCP/80,metrics/TCP/9090 clusters=cluster1,cluster2"),
			mcsSlices(c1.plane, "demo", "api", both...),
			mcsSlices(c2.plane, "demo", "api", both...),
			conditions(c1.plane, "demo", "api", "Valid=True/Valid", "Ready=True/Exported", "Conflict=True/PortConflict"),
			conditions(c2.plane, "demo", "api", "Valid=True/Valid", "Ready=True/Exported", "Conflict=True/PortConflict"),
			resolves(c1, dns.TypeA, api, "NOERROR", ip1),
			resolves(c2, dns.TypeA, api, "NOERROR", ip2),
			// The port only cluster2 serves is answered by cluster2.
			resolves(c1, dns.TypeSRV, "_metrics._tcp."+api, "NOERROR", "9090 "+api+"."),
		)

		t.Run("the ports agree again: no conflict", func(t *testing.T) {
			var svc corev1.Service
			if err := c1.plane.Client.Get(context.Background(), client.ObjectKey{Namespace: "demo", Name: "api"}, &svc); err != nil {
				t.Fatal(err)
			}
			svc.Spec.Ports = append(svc.Spec.Ports, port("metrics", 9090))
			if err := c1.plane.Client.Update(context.Background(), &svc); err != nil {
				t.Fatal(err)
			}
			eventually(t,
				conditions(c1.plane, "demo", "api", "Valid=True/Valid", "Ready=True/Exported", "Conflict=False/NoConflicts"),
				conditions(c2.plane, "demo", "api", "Valid=True/Valid", "Ready=True/Exported", "Conflict=False/NoConflicts"),
			)
		})

		t.Run("one unexports: the other stays", func(t *testing.T) {
			remove(t, c2.plane.Client, &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "api"}})
			eventually(t,
				brokerImport(f, "demo", "api", "ClusterSetIP ports=http/TCP/80,metrics/TCP/9090 clusters=cluster1 records=cluster1"),
				imports(c2.plane, "demo", "demo/api ClusterSetIP ports=http/TCP/80,metrics/TCP/9090 clusters=cluster1"),
				mcsSlices(c2.plane, "demo", "api", "api from cluster1: "+ip1),
				resolves(c2, dns.TypeA, api, "NOERROR", ip1),
			)
		})
	})

	t.Run("type conflict: the oldest export wins, whatever the cluster IDs", func(t *testing.T) {
		// cluster2's headless export is the older one.
		exportService(t, c2.plane, "demo", "mixed", true, port("http", 80))
		setEndpoints(t, c2.plane, "demo", "mixed", "mixed-bbbbb", podEndpoint{pod: "mixed-0", addr: "10.2.2.5", hostname: "mixed-0", ready: true})
		eventually(t, conditions(c2.plane, "demo", "mixed", "Valid=True/Valid", "Ready=True/Exported", "Conflict=False/NoConflicts"))
		var first mcsv1beta1.ServiceExport
		if err := c2.plane.Client.Get(context.Background(), client.ObjectKey{Namespace: "demo", Name: "mixed"}, &first); err != nil {
			t.Fatal(err)
		}
		waitNextSecond(t, first.CreationTimestamp.Time)
		ip1 := exportService(t, c1.plane, "demo", "mixed", false, port("http", 80))
		setEndpoints(t, c1.plane, "demo", "mixed", "mixed-aaaaa", podEndpoint{pod: "mixed-0", addr: "10.1.2.5", ready: true})
		eventually(t,
			brokerImport(f, "demo", "mixed", "Headless ports=http/TCP/80 clusters=cluster2 records=cluster1,cluster2"),
			conditions(c2.plane, "demo", "mixed", "Valid=True/Valid", "Ready=True/Exported", "Conflict=True/TypeConflict"),
			conditions(c1.plane, "demo", "mixed", "Valid=True/Valid", "Ready=False/Failed", "Conflict=True/TypeConflict"),
			imports(c1.plane, "demo", "demo/api ClusterSetIP ports=http/TCP/80,metrics/TCP/9090 clusters=cluster1",
				"demo/mixed Headless ports=http/TCP/80 clusters=cluster2"),
			// cluster1's ClusterIP is not published: only cluster2's pod answers.
			mcsSlices(c1.plane, "demo", "mixed", "mixed from cluster2: mixed-0=10.2.2.5"),
			resolves(c1, dns.TypeA, "mixed.demo.svc.clusterset.local", "NOERROR", "10.2.2.5"),
		)

		t.Run("the winner unexports: the other export takes over", func(t *testing.T) {
			remove(t, c2.plane.Client, &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "mixed"}})
			eventually(t,
				brokerImport(f, "demo", "mixed", "ClusterSetIP ports=http/TCP/80 clusters=cluster1 records=cluster1"),
				conditions(c1.plane, "demo", "mixed", "Valid=True/Valid", "Ready=True/Exported", "Conflict=False/NoConflicts"),
				mcsSlices(c2.plane, "demo", "mixed", "mixed from cluster1: "+ip1),
				resolves(c2, dns.TypeA, "mixed.demo.svc.clusterset.local", "NOERROR", ip1),
			)
		})
	})
}

// TestSilentCluster stops the agent of an exporting cluster, with a short lease:
// the other cluster drops its services when the lease runs out and brings them
// back when it renews; a broker outage longer than the lease expires nobody.
//
//	cluster2 agent stopped -> Lease lighthouse-cluster2 not renewed -> cluster1 deletes its copies
//	broker down            -> nobody can renew, nobody expires      -> cluster1 keeps its copies
func TestSilentCluster(t *testing.T) {
	const lease = 3 * time.Second // the shortest allowed
	f := startFleet(t, lease)
	c1, c2 := f.c("cluster1"), f.c("cluster2")
	for _, m := range []*member{c1, c2} {
		createNamespace(t, m.plane, "demo")
		f.startAgent(t, m)
	}
	startCoreDNS(t, c1)
	const web = "web.demo.svc.clusterset.local"
	ip2 := exportService(t, c2.plane, "demo", "web", false, port("http", 80))
	setEndpoints(t, c2.plane, "demo", "web", "web-abcde", podEndpoint{pod: "web-0", addr: "10.2.1.5", ready: true})
	ip1 := exportService(t, c1.plane, "demo", "local", false, port("http", 80))
	exported := []expectation{
		imports(c1.plane, "demo",
			"demo/local ClusterSetIP ports=http/TCP/80 clusters=cluster1",
			"demo/web ClusterSetIP ports=http/TCP/80 clusters=cluster2"),
		mcsSlices(c1.plane, "demo", "web", "web from cluster2: "+ip2),
		resolves(c1, dns.TypeA, web, "NOERROR", ip2),
	}
	eventually(t, exported...)

	t.Run("a silent cluster's services go when its lease runs out", func(t *testing.T) {
		f.stopAgent(t, c2)
		eventually(t,
			imports(c1.plane, "demo", "demo/local ClusterSetIP ports=http/TCP/80 clusters=cluster1"),
			mcsSlices(c1.plane, "demo", "web"),
			resolves(c1, dns.TypeA, web, "NXDOMAIN"),
			metricIs(t, c1, "submariner_lighthouse_cluster_alive", map[string]string{"cluster": "cluster2"}, 0),
			// The broker keeps them: the cluster may come back.
			brokerImport(f, "demo", "web", "ClusterSetIP ports=http/TCP/80 clusters=cluster2 records=cluster2"),
			mcsSlices(f.broker, brokerNS, "web", "web from cluster2: "+ip2),
		)
	})

	t.Run("they come back when it renews", func(t *testing.T) {
		f.startAgent(t, c2)
		eventually(t, append(exported,
			metricIs(t, c1, "submariner_lighthouse_cluster_alive", map[string]string{"cluster": "cluster2"}, 1))...)
	})

	t.Run("a broker outage longer than the lease expires nobody", func(t *testing.T) {
		before := copiesOf(t, c1.plane, "demo")
		var copied discoveryv1.EndpointSlice
		if err := c1.plane.Client.Get(context.Background(), client.ObjectKey{Namespace: "demo", Name: before[0]}, &copied); err != nil {
			t.Fatal(err)
		}
		if err := f.broker.StopAPIServer(); err != nil {
			t.Fatal(err)
		}
		restarted := false
		t.Cleanup(func() {
			if !restarted {
				if err := f.broker.StartAPIServer(); err != nil {
					t.Error(err)
				}
			}
		})
		eventually(t, metricIs(t, c1, "submariner_lighthouse_broker_reachable", nil, 0))
		// The outage must outlast the lease (twice) for this to mean anything.
		<-time.After(2 * lease)
		eventually(t, exported...)
		if err := f.broker.StartAPIServer(); err != nil {
			t.Fatal(err)
		}
		restarted = true
		eventually(t, append(exported,
			metricIs(t, c1, "submariner_lighthouse_broker_reachable", nil, 1),
			metricIs(t, c2, "submariner_lighthouse_broker_reachable", nil, 1),
			metricIs(t, c1, "submariner_lighthouse_cluster_alive", map[string]string{"cluster": "cluster2"}, 1))...)
		// And no flap after it: the copy in cluster1 is the one from before.
		<-time.After(2 * lease)
		eventually(t, exported...)
		var after discoveryv1.EndpointSlice
		if err := c1.plane.Client.Get(context.Background(), client.ObjectKey{Namespace: "demo", Name: before[0]}, &after); err != nil {
			t.Fatalf("the copy of cluster2's slice in cluster1: %v", err)
		}
		if after.UID != copied.UID {
			t.Error("cluster1 deleted and recreated the copy of cluster2's slice around the broker outage")
		}
		_ = ip1
	})
}
