package globalnet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/submariner-go/submariner/agents/netkit/iptables"
	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/controlplane"
)

// TestAgent runs Globalnet agents against a real API server with in-memory kernels
// (iptables.Fake) and follows one cluster's life: the cluster's egress IPs and the
// gateway's health-check IP, exported ClusterIP and headless Services, namespace and
// pod-selector egress IPs, a foreign ClusterGlobalEgressIP, pool exhaustion and the
// release that ends it, unexport, a restart that must change nothing, a gateway
// failover to another node, and the cleanup mode.
//
// Address plan: pods 10.241.0.0/16, services 10.141.0.0/16, global CIDR
// 242.0.0.0/27 (30 usable addresses, so that exhaustion is easy to reach); the
// remote cluster2 has the global CIDR 242.1.0.0/16.
func TestAgent(t *testing.T) {
	plane := controlplane.Start(t, "globalnet")[0]
	c := plane.Client
	top := t // agents started in subtests run on until the test ends
	ctx := context.Background()
	local := endpoint("cluster1-node-a", "cluster1", "node-a", "242.0.0.0/27")
	mustCreate(t, c, namespace(submv1.ComponentNamespace), namespace("web"), namespace("db"),
		local, endpoint("cluster2-gw", "cluster2", "c2-gw", "242.1.0.0/16", "10.241.0.0/16"),
		gatewayObj("node-a"), gatewayObj("node-b"))

	cidr := "242.0.0.0/27"
	kernelA := iptables.NewFake()
	hostA := fakeHost{{Interface: "eth0", Addr: addr("192.168.241.21")}, {Interface: "cni0", Addr: addr("10.241.21.1")}}
	a := startAgent(t, plane.Config, testConfig("node-a"), kernelA, hostA)

	rulesHave := func(k iptables.Interface, want ...string) func() (bool, string) {
		return func() (bool, string) {
			rules := ourRules(kernelText(t, k))
			for _, w := range want {
				if !containsLine(rules, w) {
					return false, fmt.Sprintf("missing %q in:\n%s", w, strings.Join(rules, "\n"))
				}
			}
			return true, ""
		}
	}
	rulesLack := func(k iptables.Interface, unwanted ...string) func() (bool, string) {
		return func() (bool, string) {
			rules := ourRules(kernelText(t, k))
			for _, u := range unwanted {
				for _, l := range rules {
					if strings.Contains(l, u) {
						return false, fmt.Sprintf("still there: %q", l)
					}
				}
			}
			return true, ""
		}
	}

	t.Run("cluster egress and the gateway's global IP", func(t *testing.T) {
		ips := waitEgress(t, c, &submv1.ClusterGlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Name: submv1.ClusterGlobalEgressIPName}}, submv1.ReasonSuccess)
		want := addrStrings(rangeOf("242.0.0.1", 8))
		if diff := cmp.Diff(want, ips); diff != "" {
			t.Errorf("cluster egress IPs (-want +got):\n%s", diff)
		}
		waitFor(t, "the gateway's global IP annotation", func() (bool, string) {
			gw := gatewayObj("node-a")
			if err := c.Get(ctx, client.ObjectKeyFromObject(gw), gw); err != nil {
				return false, err.Error()
			}
			return gw.Annotations[submv1.AnnotationGlobalIP] == "242.0.0.30", fmt.Sprintf("annotations %v", gw.Annotations)
		})
		waitFor(t, "the cluster egress, health check and remote rules", rulesHave(kernelA,
			"-A SM-GN-EGRESS-CLUSTER -s 10.241.0.0/16 -j SNAT --to-source 242.0.0.1-242.0.0.8",
			"-A SUBMARINER-GN-INGRESS -d 242.0.0.30/32 -p icmp -j DNAT --to-destination 10.241.21.1",
			"-A SUBMARINER-GN-MARK -d 242.1.0.0/16 -j MARK --set-xmark 0xc0000/0xc0000",
			"-A SUBMARINER-GN-EGRESS -s 242.1.0.0/16 -j ACCEPT",
			"-A PREROUTING -j SUBMARINER-GN-INGRESS",
			"-A POSTROUTING -j SUBMARINER-GN-EGRESS",
		))
		// The remote cluster's 10.241.0.0/16 overlaps ours: it must not be marked.
		if rules := ourRules(kernelText(t, kernelA)); containsLine(rules, "-A SUBMARINER-GN-MARK -d 10.241.0.0/16 -j MARK --set-xmark 0xc0000/0xc0000") {
			t.Errorf("the remote subnet overlapping the local Pod CIDR is marked:\n%s", strings.Join(rules, "\n"))
		}
		waitFor(t, "readiness", func() (bool, string) { ok, err := a.ready.ready(); return ok, fmt.Sprint(err) })
	})

	var webIP netip.Addr
	t.Run("exported ClusterIP Service", func(t *testing.T) {
		mustCreate(t, c, clusterIPService("web", "web", map[string]string{"app": "web"}), export("web", "web"))
		webIP = allocatedIngress(t, c, "web", "web")
		if !prefix(cidr).Contains(webIP) {
			t.Fatalf("web's global IP %s is not in %s", webIP, cidr)
		}
		g, _ := getGIIP(c, "web", "web")
		if g.Spec.Target != submv1.ClusterIPService || g.Spec.ServiceRef == nil || g.Spec.ServiceRef.Name != "web" ||
			g.Labels[submv1.LabelServiceRef] != "web" || len(g.OwnerReferences) != 1 || g.OwnerReferences[0].Kind != "ServiceExport" {
			t.Errorf("GlobalIngressIP web: spec %+v labels %v owners %+v", g.Spec, g.Labels, g.OwnerReferences)
		}
		internal := &corev1.Service{}
		waitFor(t, "the internal Service", func() (bool, string) {
			err := c.Get(ctx, client.ObjectKey{Namespace: "web", Name: submv1.InternalServiceName("web")}, internal)
			if err != nil {
				return false, err.Error()
			}
			return slices.Equal(internal.Spec.ExternalIPs, []string{webIP.String()}), fmt.Sprintf("spec %+v", internal.Spec)
		})
		if diff := cmp.Diff(map[string]string{"app": "web"}, internal.Spec.Selector); diff != "" {
			t.Errorf("internal Service selector (-want +got):\n%s", diff)
		}
		if len(internal.Spec.Ports) != 1 || internal.Spec.Ports[0].Port != 80 || internal.Spec.Ports[0].TargetPort.IntValue() != 8080 {
			t.Errorf("internal Service ports %+v", internal.Spec.Ports)
		}
		if internal.Labels[submv1.LabelExportedServiceRef] != "web" || len(internal.OwnerReferences) != 1 ||
			internal.OwnerReferences[0].UID != g.UID || !ptr.Deref(internal.OwnerReferences[0].Controller, false) {
			t.Errorf("internal Service labels %v owners %+v", internal.Labels, internal.OwnerReferences)
		}

		// The internal Service follows the exported one.
		svc := &corev1.Service{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "web", Name: "web"}, svc); err != nil {
			t.Fatal(err)
		}
		svc.Spec.Ports[0].Port = 81
		if err := c.Update(ctx, svc); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the internal Service to follow the new port", func() (bool, string) {
			if err := c.Get(ctx, client.ObjectKeyFromObject(internal), internal); err != nil {
				return false, err.Error()
			}
			return internal.Spec.Ports[0].Port == 81, fmt.Sprintf("ports %+v", internal.Spec.Ports)
		})
		if again := allocatedIngress(t, c, "web", "web"); again != webIP {
			t.Errorf("the global IP changed from %s to %s", webIP, again)
		}
	})

	t.Run("export before the Service exists", func(t *testing.T) {
		pre := gauge(t, a.metrics.allocated, cidr)
		mustCreate(t, c, export("web", "late"))
		mustCreate(t, c, clusterIPService("web", "late", map[string]string{"app": "late"}))
		late := allocatedIngress(t, c, "web", "late")
		if late == webIP {
			t.Errorf("two Services got %s", late)
		}
		mustDelete(t, c, export("web", "late"))
		waitFor(t, "the late Service's GlobalIngressIP to go", func() (bool, string) {
			_, err := getGIIP(c, "web", "late")
			return apierrors.IsNotFound(err), fmt.Sprint(err)
		})
		// The engine releases the address when it sees the deletion, which can
		// come after the API server's NotFound.
		waitFor(t, "the late Service's address to be released", func() (bool, string) {
			n := gauge(t, a.metrics.allocated, cidr)
			return n == pre, fmt.Sprintf("%v allocated, want %v", n, pre)
		})
	})

	t.Run("a GlobalIngressIP no export wants is removed", func(t *testing.T) {
		before := gauge(t, a.metrics.allocated, cidr)
		stray := &submv1.GlobalIngressIP{ObjectMeta: metav1.ObjectMeta{Name: "unexported", Namespace: "web"},
			Spec: submv1.GlobalIngressIPSpec{Target: submv1.ClusterIPService, ServiceRef: &submv1.LocalRef{Name: "unexported"}}}
		mustCreate(t, c, clusterIPService("web", "unexported", map[string]string{"app": "x"}), stray)
		waitFor(t, "the stray GlobalIngressIP to go", func() (bool, string) {
			_, err := getGIIP(c, "web", "unexported")
			return apierrors.IsNotFound(err), fmt.Sprint(err)
		})
		waitFor(t, "no address left to the stray GlobalIngressIP", func() (bool, string) {
			n := gauge(t, a.metrics.allocated, cidr)
			return n == before, fmt.Sprintf("%v allocated, want %v", n, before)
		})
	})

	podIPs := map[string]netip.Addr{}
	t.Run("exported headless Service", func(t *testing.T) {
		mustCreate(t, c, headlessService("db", "db", map[string]string{"app": "db"}), export("db", "db"),
			headlessSlice("db", "db", "db-abc", map[string]string{"db-0": "10.241.11.7", "db-1": "10.241.12.4", "-ext": "192.168.50.5"}))
		for _, n := range []string{submv1.PodGlobalIngressIPName("db-0"), submv1.PodGlobalIngressIPName("db-1"), submv1.EndpointsGlobalIngressIPName(addr("192.168.50.5"))} {
			podIPs[n] = allocatedIngress(t, c, "db", n)
		}
		g0, _ := getGIIP(c, "db", "pod.db-0")
		if g0.Spec.Target != submv1.HeadlessServicePod || g0.Spec.PodRef == nil || g0.Spec.PodRef.Name != "db-0" || g0.Annotations[submv1.AnnotationHeadlessPodIP] != "10.241.11.7" {
			t.Errorf("GlobalIngressIP pod.db-0: spec %+v annotations %v", g0.Spec, g0.Annotations)
		}
		gx, _ := getGIIP(c, "db", "ep.192-168-50-5")
		if gx.Spec.Target != submv1.HeadlessServiceEndpoints || gx.Annotations[submv1.AnnotationHeadlessEndpointsIP] != "192.168.50.5" {
			t.Errorf("GlobalIngressIP ep.192-168-50-5: spec %+v annotations %v", gx.Spec, gx.Annotations)
		}
		db0, db1, ext := podIPs["pod.db-0"], podIPs["pod.db-1"], podIPs["ep.192-168-50-5"]
		waitFor(t, "the headless rules", rulesHave(kernelA,
			fmt.Sprintf("-d %s/32 -j DNAT --to-destination 10.241.11.7", db0),
			fmt.Sprintf("-d %s/32 -j DNAT --to-destination 10.241.12.4", db1),
			fmt.Sprintf("-d %s/32 -j DNAT --to-destination 192.168.50.5", ext),
			fmt.Sprintf("-s 10.241.11.7/32 -j SNAT --to-source %s", db0),
			fmt.Sprintf("-s 10.241.12.4/32 -j SNAT --to-source %s", db1),
			fmt.Sprintf("-s 192.168.50.5/32 -j SNAT --to-source %s", ext),
		))

		// db-1 moves: same global IP, new target.
		slice := headlessSlice("db", "db", "db-abc", map[string]string{"db-0": "10.241.11.7", "db-1": "10.241.12.9", "-ext": "192.168.50.5"})
		cur := headlessSlice("db", "db", "db-abc", nil)
		if err := c.Get(ctx, client.ObjectKeyFromObject(cur), cur); err != nil {
			t.Fatal(err)
		}
		slice.ResourceVersion = cur.ResourceVersion
		if err := c.Update(ctx, slice); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "db-1's rules to follow its new address", rulesHave(kernelA,
			fmt.Sprintf("-d %s/32 -j DNAT --to-destination 10.241.12.9", db1),
			fmt.Sprintf("-s 10.241.12.9/32 -j SNAT --to-source %s", db1)))
		waitFor(t, "db-1's old address to go", rulesLack(kernelA, "10.241.12.4"))
		if again := allocatedIngress(t, c, "db", "pod.db-1"); again != db1 {
			t.Errorf("db-1's global IP changed from %s to %s", db1, again)
		}

		// A second exported headless Service with db-0: still one global IP for it.
		mustCreate(t, c, headlessService("db", "db-replicas", map[string]string{"app": "db"}), export("db", "db-replicas"),
			headlessSlice("db", "db-replicas", "db-replicas-abc", map[string]string{"db-0": "10.241.11.7"}))
		var list submv1.GlobalIngressIPList
		if err := c.List(ctx, &list, client.InNamespace("db")); err != nil {
			t.Fatal(err)
		}
		if len(list.Items) != 3 {
			t.Errorf("%d GlobalIngressIPs in db, want 3 (db-0 is shared)", len(list.Items))
		}
		if again := allocatedIngress(t, c, "db", "pod.db-0"); again != db0 {
			t.Errorf("db-0's global IP changed from %s to %s", db0, again)
		}
	})

	allGEIP := &submv1.GlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Name: "all", Namespace: "web"}, Spec: submv1.GlobalEgressIPSpec{NumberOfIPs: ptr.To(2)}}
	specialGEIP := &submv1.GlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Name: "special", Namespace: "web"},
		Spec: submv1.GlobalEgressIPSpec{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "special"}}}}
	t.Run("namespace and pod-selector egress IPs", func(t *testing.T) {
		runningPod(t, c, "web", "web-1", "10.241.1.1", map[string]string{"app": "web"})
		runningPod(t, c, "web", "special-1", "10.241.1.2", map[string]string{"app": "special"})
		mustCreate(t, c, allGEIP, specialGEIP)
		all := waitEgress(t, c, allGEIP, submv1.ReasonSuccess)
		special := waitEgress(t, c, specialGEIP, submv1.ReasonSuccess)
		if len(all) != 2 || len(special) != 1 {
			t.Fatalf("allocated %v and %v, want 2 and 1 addresses", all, special)
		}
		allRange := all[0] + "-" + all[1]
		waitFor(t, "the egress rules", rulesHave(kernelA,
			"-s 10.241.1.1/32 -j SNAT --to-source "+allRange,
			"-s 10.241.1.2/32 -j SNAT --to-source "+special[0]))

		// A new Pod in the namespace gets the namespace's IPs; relabelled, the
		// selector's.
		p := runningPod(t, c, "web", "web-2", "10.241.1.3", map[string]string{"app": "web"})
		waitFor(t, "the new Pod's rule", rulesHave(kernelA, "-s 10.241.1.3/32 -j SNAT --to-source "+allRange))
		p.Labels["app"] = "special"
		if err := c.Update(ctx, p); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the relabelled Pod's rule", rulesHave(kernelA, "-s 10.241.1.3/32 -j SNAT --to-source "+special[0]))
	})

	t.Run("a ClusterGlobalEgressIP with another name is ignored", func(t *testing.T) {
		other := &submv1.ClusterGlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Name: "mine"}, Spec: submv1.ClusterGlobalEgressIPSpec{NumberOfIPs: ptr.To(2)}}
		mustCreate(t, c, other)
		if ips := waitEgress(t, c, other, submv1.ReasonInvalidInstance); len(ips) != 0 {
			t.Errorf("the ignored ClusterGlobalEgressIP got %v", ips)
		}
	})

	t.Run("zero IPs", func(t *testing.T) {
		zero := &submv1.GlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Name: "zero", Namespace: "db"}, Spec: submv1.GlobalEgressIPSpec{NumberOfIPs: ptr.To(0)}}
		mustCreate(t, c, zero)
		if ips := waitEgress(t, c, zero, submv1.ReasonZeroInput); len(ips) != 0 {
			t.Errorf("a GlobalEgressIP for 0 IPs got %v", ips)
		}
	})

	t.Run("pool exhausted, then room again", func(t *testing.T) {
		// In use: .1-.8 cluster, .9-.11 the two GlobalEgressIPs, 5 singles at the
		// top (gateway, web, 3 headless): 14 contiguous left, 16 asked.
		big := &submv1.GlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Name: "big", Namespace: "db"}, Spec: submv1.GlobalEgressIPSpec{NumberOfIPs: ptr.To(16)}}
		mustCreate(t, c, big)
		waitEgress(t, c, big, submv1.ReasonIPPoolAllocationFailed)
		_, cond, _ := egressStatus(c, big)
		if !strings.Contains(cond.Message, "global IP pool exhausted") || cond.Status != metav1.ConditionFalse {
			t.Errorf("exhaustion condition %+v", cond)
		}
		mustDelete(t, c, allGEIP, specialGEIP)
		ips := waitEgress(t, c, big, submv1.ReasonSuccess)
		if diff := cmp.Diff(addrStrings(rangeOf("242.0.0.9", 16)), ips); diff != "" {
			t.Errorf("the big GlobalEgressIP's addresses after the release (-want +got):\n%s", diff)
		}
		waitFor(t, "the web Pods to fall back to the cluster's egress", rulesLack(kernelA, "-s 10.241.1.1/32", "-s 10.241.1.2/32", "-s 10.241.1.3/32"))
		mustDelete(t, c, big)
		waitFor(t, "the big GlobalEgressIP's release", func() (bool, string) {
			n := gauge(t, a.metrics.egressAllocated, cidr)
			return n == 0, fmt.Sprintf("%d egress IPs allocated", n)
		})
	})

	t.Run("unexport releases the addresses and removes the rules", func(t *testing.T) {
		before := gauge(t, a.metrics.allocated, cidr)
		mustDelete(t, c, export("web", "web"))
		waitFor(t, "web's GlobalIngressIP and internal Service to go", func() (bool, string) {
			_, err1 := getGIIP(c, "web", "web")
			err2 := c.Get(ctx, client.ObjectKey{Namespace: "web", Name: submv1.InternalServiceName("web")}, &corev1.Service{})
			return apierrors.IsNotFound(err1) && apierrors.IsNotFound(err2), fmt.Sprint(err1, err2)
		})
		mustDelete(t, c, export("db", "db"))
		waitFor(t, "db-1's and the endpoint's GlobalIngressIPs to go", func() (bool, string) {
			_, err1 := getGIIP(c, "db", "pod.db-1")
			_, err2 := getGIIP(c, "db", "ep.192-168-50-5")
			return apierrors.IsNotFound(err1) && apierrors.IsNotFound(err2), fmt.Sprint(err1, err2)
		})
		waitFor(t, "their rules to go", rulesLack(kernelA, "10.241.12.9", "192.168.50.5", podIPs["pod.db-1"].String()+"/32"))
		waitFor(t, "the addresses to be released", func() (bool, string) {
			n := gauge(t, a.metrics.allocated, cidr)
			return n == before-3, fmt.Sprintf("%d allocated, want %d", n, before-3)
		})
		// db-0 still backs db-replicas.
		if again := allocatedIngress(t, c, "db", "pod.db-0"); again != podIPs["pod.db-0"] {
			t.Errorf("db-0's global IP changed from %s to %s", podIPs["pod.db-0"], again)
		}
		// Export web again for what follows.
		mustCreate(t, c, export("web", "web"))
		allocatedIngress(t, c, "web", "web")
	})

	allAgain := &submv1.GlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Name: "all", Namespace: "web"}, Spec: submv1.GlobalEgressIPSpec{NumberOfIPs: ptr.To(2)}}
	mustCreate(t, c, allAgain)
	again := waitEgress(t, c, allAgain, submv1.ReasonSuccess)
	waitFor(t, "the web Pods' egress rules", rulesHave(kernelA,
		"-s 10.241.1.1/32 -j SNAT --to-source "+strings.Join(again, "-"),
		"-s 10.241.1.3/32 -j SNAT --to-source "+strings.Join(again, "-")))

	t.Run("a restart keeps every allocation and changes nothing in the kernel", func(t *testing.T) {
		waitFor(t, "the rules to settle", func() (bool, string) { ok, err := a.ready.ready(); return ok, fmt.Sprint(err) })
		before := snapshot(t, c)
		kernelBefore := kernelText(t, kernelA)
		restoresBefore := len(kernelA.Restores())
		a.stop()
		a = startAgent(top, plane.Config, testConfig("node-a"), kernelA, hostA)
		waitFor(t, "the restarted agent's first sync", func() (bool, string) {
			ok, err := a.ready.ready()
			return ok && kernelA.Saves() > 0, fmt.Sprint(err)
		})
		waitFor(t, "the restarted agent to have read the allocations", func() (bool, string) {
			n := gauge(t, a.metrics.allocated, cidr)
			return n == countAllocated(before), fmt.Sprintf("%d allocated, want %d", n, countAllocated(before))
		})
		if diff := cmp.Diff(before, snapshot(t, c)); diff != "" {
			t.Errorf("allocations after a restart (-before +after):\n%s", diff)
		}
		if diff := cmp.Diff(kernelBefore, kernelText(t, kernelA)); diff != "" {
			t.Errorf("kernel after a restart (-before +after):\n%s", diff)
		}
		if n := len(kernelA.Restores()); n != restoresBefore {
			t.Errorf("the restarted agent ran %d iptables-restore, want none:\n%s", n-restoresBefore, kernelA.LastRestore())
		}
	})

	kernelB := iptables.NewFake()
	var b *runningAgent
	t.Run("failover to another gateway node", func(t *testing.T) {
		before := snapshot(t, c)
		b = startAgent(top, plane.Config, testConfig("node-b"), kernelB, fakeHost{{Interface: "cni0", Addr: addr("10.241.22.1")}})
		waitFor(t, "node-b to stand by", func() (bool, string) { ok, err := b.ready.ready(); return ok, fmt.Sprint(err) })
		if rules := ourRules(kernelText(t, kernelB)); len(rules) != 0 {
			t.Fatalf("the standby wrote rules:\n%s", strings.Join(rules, "\n"))
		}
		cur := &submv1.Endpoint{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(local), cur); err != nil {
			t.Fatal(err)
		}
		cur.Spec.Hostname = "node-b"
		if err := c.Update(ctx, cur); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "node-a's rules to go", func() (bool, string) {
			rules := ourRules(kernelText(t, kernelA))
			return len(rules) == 0, strings.Join(rules, "\n")
		})
		waitFor(t, "node-b's gateway global IP", func() (bool, string) {
			gb, ga := gatewayObj("node-b"), gatewayObj("node-a")
			if err := errors.Join(c.Get(ctx, client.ObjectKeyFromObject(gb), gb), c.Get(ctx, client.ObjectKeyFromObject(ga), ga)); err != nil {
				return false, err.Error()
			}
			return gb.Annotations[submv1.AnnotationGlobalIP] != "" && ga.Annotations[submv1.AnnotationGlobalIP] == "",
				fmt.Sprintf("node-a %v node-b %v", ga.Annotations, gb.Annotations)
		})
		db0 := podIPs["pod.db-0"]
		waitFor(t, "node-b's rules", rulesHave(kernelB,
			"-A SM-GN-EGRESS-CLUSTER -s 10.241.0.0/16 -j SNAT --to-source 242.0.0.1-242.0.0.8",
			fmt.Sprintf("-d %s/32 -j DNAT --to-destination 10.241.11.7", db0),
			"-p icmp -j DNAT --to-destination 10.241.22.1"))
		after := snapshot(t, c)
		delete(before, "gateway/node-a")
		delete(after, "gateway/node-b")
		if diff := cmp.Diff(before, after); diff != "" {
			t.Errorf("allocations after the failover (-before +after):\n%s", diff)
		}
	})

	t.Run("uninstall", func(t *testing.T) {
		a.stop()
		b.stop()
		ready := &readiness{}
		uctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Uninstall(uctx, testConfig("node-b"), plane.Config, kernelB, ready.set_) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}()
		waitFor(t, "the cleanup to finish", func() (bool, string) { ok, err := ready.ready(); return ok, fmt.Sprint(err) })
		if rules := ourRules(kernelText(t, kernelB)); len(rules) != 0 {
			t.Errorf("rules left after uninstall:\n%s", strings.Join(rules, "\n"))
		}
		var giips submv1.GlobalIngressIPList
		var svcs corev1.ServiceList
		var cgeips submv1.ClusterGlobalEgressIPList
		var geips submv1.GlobalEgressIPList
		var gws submv1.GatewayList
		for _, l := range []client.ObjectList{&giips, &svcs, &cgeips, &geips, &gws} {
			if err := c.List(ctx, l); err != nil {
				t.Fatal(err)
			}
		}
		if len(giips.Items) != 0 {
			t.Errorf("%d GlobalIngressIPs left", len(giips.Items))
		}
		for _, s := range svcs.Items {
			if _, ok := s.Labels[submv1.LabelExportedServiceRef]; ok {
				t.Errorf("internal Service %s/%s left", s.Namespace, s.Name)
			}
		}
		var names []string
		for _, cg := range cgeips.Items {
			names = append(names, cg.Name)
		}
		if diff := cmp.Diff([]string{"mine"}, names); diff != "" {
			t.Errorf("ClusterGlobalEgressIPs left: only the user's may stay (-want +got):\n%s", diff)
		}
		if len(geips.Items) == 0 {
			t.Error("the users' GlobalEgressIPs were deleted; they go with the CRDs")
		}
		for _, gw := range gws.Items {
			if v, ok := gw.Annotations[submv1.AnnotationGlobalIP]; ok {
				t.Errorf("Gateway %s keeps its global IP %s", gw.Name, v)
			}
		}
	})
}

// snapshot returns every allocation recorded in the cluster, by owner.
func snapshot(t *testing.T, c client.Client) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	var giips submv1.GlobalIngressIPList
	var geips submv1.GlobalEgressIPList
	var cgeips submv1.ClusterGlobalEgressIPList
	var gws submv1.GatewayList
	for _, l := range []client.ObjectList{&giips, &geips, &cgeips, &gws} {
		if err := c.List(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range giips.Items {
		out[owner(kindIngress, g.Namespace, g.Name)] = g.Status.AllocatedIP
	}
	for _, g := range geips.Items {
		out[owner(kindEgress, g.Namespace, g.Name)] = strings.Join(g.Status.AllocatedIPs, ",")
	}
	for _, g := range cgeips.Items {
		out[owner(kindClusterEgress, "", g.Name)] = strings.Join(g.Status.AllocatedIPs, ",")
	}
	for _, g := range gws.Items {
		if ip := g.Annotations[submv1.AnnotationGlobalIP]; ip != "" {
			out[owner(kindGateway, "", g.Name)] = ip
		}
	}
	return out
}

func countAllocated(s map[string]string) int {
	n := 0
	for _, v := range s {
		if v != "" {
			n += strings.Count(v, ",") + 1
		}
	}
	return n
}
