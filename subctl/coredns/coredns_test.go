package coredns_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/submariner-go/submariner/subctl/coredns"
)

// kubeadmCorefile is the Corefile kubeadm writes.
const kubeadmCorefile = `.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
`

var upstream = netip.MustParseAddr("10.96.7.7")

func TestPatch(t *testing.T) {
	got, err := coredns.Patch(kubeadmCorefile, upstream)
	if err != nil {
		t.Fatal(err)
	}
	want := `#lighthouse-start AUTO-GENERATED SECTION. DO NOT EDIT
clusterset.local:53 {
    forward . 10.96.7.7
}
#lighthouse-end
` + kubeadmCorefile
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("patched Corefile (-want +got):\n%s", diff)
	}
	again, err := coredns.Patch(got, upstream)
	if err != nil || again != got {
		t.Errorf("patching twice changed the Corefile (err %v):\n%s", err, cmp.Diff(got, again))
	}
	moved, err := coredns.Patch(got, netip.MustParseAddr("10.96.8.8"))
	if err != nil || strings.Count(moved, "clusterset.local") != 1 || !strings.Contains(moved, "forward . 10.96.8.8") {
		t.Errorf("a new upstream did not replace the block (err %v):\n%s", err, moved)
	}
	back, found, err := coredns.Unpatch(got)
	if err != nil || !found || back != kubeadmCorefile {
		t.Errorf("Unpatch: found %v, err %v, diff:\n%s", found, err, cmp.Diff(kubeadmCorefile, back))
	}
	if _, found, _ := coredns.Unpatch(kubeadmCorefile); found {
		t.Error("Unpatch found a block in a Corefile without one")
	}
	if _, err := coredns.Patch("#lighthouse-end\n"+kubeadmCorefile, upstream); err == nil {
		t.Error("Patch accepted an end marker without a start marker")
	}
}

func TestServerPort(t *testing.T) {
	for corefile, want := range map[string]int{
		kubeadmCorefile:                    53,
		".:1053 {\n  forward . 1.1.1.1\n}": 1053,
		". {\n}":                           53,
		"dns://.:5353 {\n}":                5353,
		"example.org {\n}":                 53,
	} {
		if got := coredns.ServerPort(corefile); got != want {
			t.Errorf("ServerPort(%q) = %d, want %d", corefile, got, want)
		}
	}
	got, err := coredns.Patch(strings.Replace(kubeadmCorefile, ".:53", ".:1053", 1), upstream)
	if err != nil || !strings.Contains(got, "clusterset.local:1053 {") {
		t.Errorf("the block does not take the root block's port (err %v):\n%s", err, got)
	}
}

func TestApplyRemove(t *testing.T) {
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "coredns", Namespace: "kube-system"},
		Data: map[string]string{"Corefile": kubeadmCorefile}}
	kube := fake.NewClientset(cm)
	target := coredns.DefaultTarget
	labels := map[string]string{"app.kubernetes.io/managed-by": "subctl"}

	for i, wantChanged := range []bool{true, false} {
		changed, err := target.Apply(ctx, kube, upstream, labels)
		if err != nil || changed != wantChanged {
			t.Fatalf("Apply #%d: changed %v, err %v; want changed %v", i+1, changed, err, wantChanged)
		}
	}
	got, _ := kube.CoreV1().ConfigMaps("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
	if !strings.HasPrefix(got.Data["Corefile"], coredns.StartMarker) {
		t.Errorf("the Corefile does not start with our block:\n%s", got.Data["Corefile"])
	}
	for i, wantChanged := range []bool{true, false} {
		changed, err := target.Remove(ctx, kube, "subctl")
		if err != nil || changed != wantChanged {
			t.Fatalf("Remove #%d: changed %v, err %v; want changed %v", i+1, changed, err, wantChanged)
		}
	}
	got, _ = kube.CoreV1().ConfigMaps("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
	if diff := cmp.Diff(kubeadmCorefile, got.Data["Corefile"]); diff != "" {
		t.Errorf("Remove did not restore the Corefile (-want +got):\n%s", diff)
	}

	_, err := coredns.Target{Namespace: "kube-system", Name: "missing"}.Apply(ctx, kube, upstream, labels)
	if !errors.Is(err, coredns.ErrNoConfigMap) {
		t.Errorf("Apply without the ConfigMap: %v, want ErrNoConfigMap", err)
	}

	custom, err := coredns.ParseCustom("kube-system/coredns-custom")
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := custom.Apply(ctx, kube, upstream, labels); err != nil || !changed {
		t.Fatalf("custom Apply: changed %v, err %v", changed, err)
	}
	got, err = kube.CoreV1().ConfigMaps("kube-system").Get(ctx, "coredns-custom", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"lighthouse.server": "clusterset.local:53 {\n    forward . 10.96.7.7\n}\n"}, got.Data); diff != "" {
		t.Errorf("custom ConfigMap (-want +got):\n%s", diff)
	}
	if changed, err := custom.Remove(ctx, kube, "subctl"); err != nil || !changed {
		t.Fatalf("custom Remove: changed %v, err %v", changed, err)
	}
	if _, err := kube.CoreV1().ConfigMaps("kube-system").Get(ctx, "coredns-custom", metav1.GetOptions{}); err == nil {
		t.Error("the custom ConfigMap that Apply created is still there")
	}
	if _, err := coredns.ParseCustom("coredns-custom"); err == nil {
		t.Error("ParseCustom accepted a value without a namespace")
	}
}
