package show_test

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/controlplane"
	"github.com/submariner-go/submariner/subctl/cluster"
	"github.com/submariner-go/submariner/subctl/show"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const ns = submv1.ComponentNamespace

func epSpec(id, host, ip, public string, backend submv1.Backend, subnets ...string) submv1.EndpointSpec {
	return submv1.EndpointSpec{ClusterID: id, CableName: "submariner-cable-" + id + "-" + strings.ReplaceAll(ip, ".", "-"),
		Hostname: host, PrivateIP: ip, PublicIP: public, Backend: backend, Subnets: subnets}
}

// seed writes the objects a joined cluster1 has once its gateways run.
func seed(t *testing.T, c client.Client) {
	t.Helper()
	ctx := context.Background()
	create := func(obj client.Object) {
		t.Helper()
		if err := c.Create(ctx, obj); err != nil {
			t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
		}
	}
	create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	create(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "submariner-config", Namespace: ns},
		Data: map[string]string{"SUBMARINER_CLUSTERID": "cluster1"}})
	for _, cl := range []submv1.ClusterSpec{
		{ClusterID: "cluster2", ClusterCIDR: []string{"10.2.0.0/16"}, ServiceCIDR: []string{"10.102.0.0/16"}, GlobalCIDR: []string{}},
		{ClusterID: "cluster1", ClusterCIDR: []string{"10.1.0.0/16"}, ServiceCIDR: []string{"10.101.0.0/16"}, GlobalCIDR: []string{}},
		{ClusterID: "cluster3", ClusterCIDR: []string{"10.3.0.0/16"}, ServiceCIDR: []string{"10.103.0.0/16"}, GlobalCIDR: []string{"242.0.16.0/20"}},
	} {
		create(&submv1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: cl.ClusterID, Namespace: ns}, Spec: cl})
	}
	remote2 := epSpec("cluster2", "c2-gw1", "192.168.242.21", "", submv1.BackendLibreswan, "10.2.0.0/16", "10.102.0.0/16")
	remote3 := epSpec("cluster3", "c3-gw1", "192.168.243.21", "203.0.113.3", submv1.BackendLibreswan, "242.0.16.0/20")
	remote3.NATEnabled = true
	local := epSpec("cluster1", "c1-gw1", "192.168.241.21", "", submv1.BackendLibreswan, "10.1.0.0/16", "10.101.0.0/16")
	for name, spec := range map[string]submv1.EndpointSpec{"cluster1-gw1": local, "cluster2-gw1": remote2, "cluster3-gw1": remote3} {
		create(&submv1.Endpoint{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: spec})
	}
	for name, st := range map[string]submv1.GatewayStatus{
		"c1-gw1": {HAStatus: submv1.HAStatusActive, Version: "v0.1.0", LocalEndpoint: &local, Connections: []submv1.Connection{
			{Status: submv1.Connected, Endpoint: remote2, UsingIP: "192.168.242.21", LatencyRTT: &submv1.LatencyRTT{Average: "489.822µs"}},
			{Status: submv1.Connecting, Endpoint: remote3, UsingNAT: true, StatusMessage: "waiting for the peer"},
		}},
		"c1-gw2": {HAStatus: submv1.HAStatusPassive, Version: "v0.1.0"},
	} {
		gw := &submv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
		create(gw)
		gw.Status = st
		if err := c.Status().Update(ctx, gw); err != nil {
			t.Fatal(err)
		}
	}
	seedGlobalnet(t, c)
	labels := map[string]string{"app.kubernetes.io/managed-by": "subctl"}
	podSpec := func(image string) corev1.PodTemplateSpec {
		return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": strings.Split(image, ":")[0][strings.LastIndex(image, "/")+1:]}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}}}
	}
	gwTmpl := podSpec("ghcr.io/submariner-go/submariner-gateway:v0.2.0")
	create(&appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "submariner-gateway", Namespace: ns, Labels: labels},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: gwTmpl.Labels}, Template: gwTmpl}})
	lhTmpl := podSpec("ghcr.io/submariner-go/lighthouse-agent:v0.2.0")
	create(&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "submariner-lighthouse-agent", Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: lhTmpl.Labels}, Template: lhTmpl}})
	// One gateway pod still runs the previous version.
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "submariner-gateway-x1", Namespace: ns, Labels: gwTmpl.Labels},
		Spec: corev1.PodSpec{NodeName: "c1-gw1", Containers: []corev1.Container{{Name: "c", Image: "ghcr.io/submariner-go/submariner-gateway:v0.1.0"}}}}
	create(pod)
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Name: "c",
		Image: "ghcr.io/submariner-go/submariner-gateway:v0.1.0", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}
	if err := c.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
}

// seedGlobalnet writes Globalnet objects with their status as Globalnet records
// them: an allocated Service IP, a GlobalEgressIP whose pool ran out, the
// cluster's egress IPs.
func seedGlobalnet(t *testing.T, c client.Client) {
	t.Helper()
	ctx := context.Background()
	cond := func(reason, msg string) []metav1.Condition {
		status := metav1.ConditionTrue
		if reason != submv1.ReasonSuccess {
			status = metav1.ConditionFalse
		}
		return []metav1.Condition{{Type: submv1.ConditionAllocated, Status: status, Reason: reason, Message: msg, LastTransitionTime: metav1.Now()}}
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}); err != nil {
		t.Fatal(err)
	}
	gip := &submv1.GlobalIngressIP{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "demo"},
		Spec: submv1.GlobalIngressIPSpec{Target: submv1.ClusterIPService, ServiceRef: &submv1.LocalRef{Name: "web"}}}
	geip := &submv1.GlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Name: "db-egress", Namespace: "demo"},
		Spec: submv1.GlobalEgressIPSpec{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}}}
	cgeip := &submv1.ClusterGlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Name: submv1.ClusterGlobalEgressIPName}}
	for _, obj := range []client.Object{gip, geip, cgeip} {
		if err := c.Create(ctx, obj); err != nil {
			t.Fatalf("creating %T: %v", obj, err)
		}
	}
	gip.Status = submv1.GlobalIngressIPStatus{AllocatedIP: "242.0.16.5", Conditions: cond(submv1.ReasonSuccess, "allocated")}
	geip.Status = submv1.GlobalEgressIPStatus{Conditions: cond(submv1.ReasonIPPoolAllocationFailed, "the global CIDR 242.0.16.0/20 has no free address")}
	cgeip.Status = submv1.GlobalEgressIPStatus{AllocatedIPs: []string{"242.0.16.1", "242.0.16.2"}, Conditions: cond(submv1.ReasonSuccess, "allocated")}
	for _, obj := range []client.Object{gip, geip, cgeip} {
		if err := c.Status().Update(ctx, obj); err != nil {
			t.Fatalf("updating the status of %T: %v", obj, err)
		}
	}
}

// TestShow renders every table and the JSON and YAML forms of a seeded cluster
// from a real API server, and compares them with testdata/ (-update rewrites).
func TestShow(t *testing.T) {
	p := controlplane.Start(t, "show")[0]
	c, err := cluster.New(p.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := show.Collect(ctx, c, show.All); err == nil || !strings.Contains(err.Error(), "it has not joined a clusterset (subctl join)") {
		t.Errorf("show on a cluster that never joined: %v", err)
	}
	seed(t, p.Client)
	for _, tc := range []struct {
		name   string
		what   show.What
		format show.Format
	}{
		{"all", show.All, show.Table},
		{"connections.json", show.Connections, show.JSON},
		{"gateways.yaml", show.Gateways, show.YAML},
		{"globalnet", show.Globalnet, show.Table},
		{"globalnet.json", show.Globalnet, show.JSON},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := show.Collect(ctx, c, tc.what)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := r.Write(&out, tc.format); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test -update creates it)", err)
			}
			if diff := cmp.Diff(string(want), out.String()); diff != "" {
				t.Errorf("output differs from %s (-want +got):\n%s", path, diff)
			}
		})
	}
}

func TestSummary(t *testing.T) {
	conn := func(s submv1.ConnectionStatus) submv1.Connection { return submv1.Connection{Status: s} }
	for _, tc := range []struct {
		st   submv1.GatewayStatus
		want string
	}{
		{submv1.GatewayStatus{HAStatus: submv1.HAStatusActive, StatusFailure: "cable driver failed"}, "cable driver failed"},
		{submv1.GatewayStatus{HAStatus: submv1.HAStatusPassive}, "standing by for the active gateway to fail"},
		{submv1.GatewayStatus{HAStatus: submv1.HAStatusActive}, "there are no connections"},
		{submv1.GatewayStatus{HAStatus: submv1.HAStatusActive, Connections: []submv1.Connection{conn(submv1.Connected), conn(submv1.Connected)}}, "All connections (2) are established"},
		{submv1.GatewayStatus{HAStatus: submv1.HAStatusActive, Connections: []submv1.Connection{conn(submv1.Connected), conn(submv1.ConnError)}}, "1 connections out of 2 are established"},
	} {
		if got := show.Summary(tc.st); got != tc.want {
			t.Errorf("Summary(%+v) = %q, want %q", tc.st, got, tc.want)
		}
	}
	if _, err := show.ParseFormat("xml"); err == nil {
		t.Error("ParseFormat accepted xml")
	}
}
