package discovery_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/submariner-go/submariner/e2e/controlplane"
	"github.com/submariner-go/submariner/subctl/discovery"
)

func controlPlanePod(component string, command ...string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: component + "-master", Namespace: "kube-system", Labels: map[string]string{"component": component}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: component, Command: command}}},
	}
}

func kubeadmConfig(pods, services string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "kubeadm-config", Namespace: "kube-system"},
		Data: map[string]string{"ClusterConfiguration": "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nnetworking:\n" +
			"  dnsDomain: cluster.local\n  podSubnet: " + pods + "\n  serviceSubnet: " + services + "\n"},
	}
}

func node(name string, podCIDRs ...string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDRs: podCIDRs}}
}

func serviceCIDR(name string, cidrs ...string) *networkingv1.ServiceCIDR {
	return &networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: cidrs}}
}

func TestDiscover(t *testing.T) {
	type found struct {
		Cluster, Service []string
		ClusterSource    string
		ServiceSource    string
		Guess            bool
	}
	for _, tc := range []struct {
		name     string
		objects  []runtime.Object
		want     found
		warnings []string
		wantErr  []string
	}{
		{
			name: "ServiceCIDR objects and the controller-manager's flag",
			objects: []runtime.Object{
				serviceCIDR("kubernetes", "10.96.0.0/12"), serviceCIDR("extra", "10.200.0.0/16"),
				controlPlanePod("kube-controller-manager", "kube-controller-manager", "--allocate-node-cidrs=true", "--cluster-cidr=10.244.0.0/16"),
				controlPlanePod("kube-apiserver", "kube-apiserver", "--service-cluster-ip-range=10.55.0.0/16"),
			},
			want: found{Cluster: []string{"10.244.0.0/16"}, ClusterSource: "the kube-controller-manager pod's --cluster-cidr",
				Service: []string{"10.96.0.0/12", "10.200.0.0/16"}, ServiceSource: "the ServiceCIDR objects"},
		},
		{
			name: "API server flag with a separate value, dual-stack",
			objects: []runtime.Object{
				controlPlanePod("kube-apiserver", "kube-apiserver", "--service-cluster-ip-range", "10.96.0.0/12,fd00:10:96::/112"),
				controlPlanePod("kube-controller-manager", "kube-controller-manager", "--cluster-cidr", "fd00:10:244::/56,10.244.0.0/16"),
			},
			want: found{Cluster: []string{"10.244.0.0/16"}, ClusterSource: "the kube-controller-manager pod's --cluster-cidr",
				Service: []string{"10.96.0.0/12"}, ServiceSource: "the kube-apiserver pod's --service-cluster-ip-range"},
			warnings: []string{
				"the kube-apiserver pod's --service-cluster-ip-range lists the IPv6 range fd00:10:96::/112, left out: Submariner connects IPv4 only",
				"the kube-controller-manager pod's --cluster-cidr lists the IPv6 range fd00:10:244::/56, left out: Submariner connects IPv4 only",
			},
		},
		{
			name:    "kubeadm-config",
			objects: []runtime.Object{kubeadmConfig("10.32.0.0/12", "10.112.0.0/12"), controlPlanePod("kube-controller-manager", "kube-controller-manager")},
			want: found{Cluster: []string{"10.32.0.0/12"}, ClusterSource: "the kubeadm-config ConfigMap's networking.podSubnet",
				Service: []string{"10.112.0.0/12"}, ServiceSource: "the kubeadm-config ConfigMap's networking.serviceSubnet"},
		},
		{
			name: "nodes' podCIDRs are a guess",
			objects: []runtime.Object{
				node("n1", "10.42.0.0/24"), node("n2", "10.42.1.0/24"), node("n3", "10.42.5.0/24"), node("n4"),
				kubeadmConfig("", "10.43.0.0/16"),
			},
			want: found{Cluster: []string{"10.42.0.0/21"}, ClusterSource: "the nodes' podCIDRs", Guess: true,
				Service: []string{"10.43.0.0/16"}, ServiceSource: "the kubeadm-config ConfigMap's networking.serviceSubnet"},
			warnings: []string{"the Pod CIDR 10.42.0.0/21 is a guess: it is the smallest range covering the 3 node podCIDRs (10.42.0.0/24, 10.42.1.0/24, 10.42.5.0/24); if the cluster's Pod range is larger, give it with --clustercidr"},
		},
		{
			name: "nothing to go by",
			wantErr: []string{
				"could not discover the cluster's Service CIDR (tried the ServiceCIDR objects (none); the kube-apiserver pod's --service-cluster-ip-range (no pod labelled component=kube-apiserver in kube-system); the kubeadm-config ConfigMap's networking.serviceSubnet (no kube-system/kubeadm-config)): give it with --servicecidr",
				"could not discover the cluster's Pod CIDR (tried the kube-controller-manager pod's --cluster-cidr (no pod labelled component=kube-controller-manager in kube-system); the kubeadm-config ConfigMap's networking.podSubnet (no kube-system/kubeadm-config); the nodes' podCIDRs (no node has one)): give it with --clustercidr",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kube := fake.NewClientset(tc.objects...)
			res, err := discovery.Discoverer{Kube: kube}.Discover(context.Background(), true, true)
			if tc.wantErr != nil {
				var nf *discovery.NotFoundError
				if !errors.As(err, &nf) {
					t.Fatalf("got %v, want NotFoundErrors", err)
				}
				if diff := cmp.Diff(tc.wantErr, strings.Split(err.Error(), "\n")); diff != "" {
					t.Errorf("errors (-want +got):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := found{Cluster: strs(res.Cluster.CIDRs), Service: strs(res.Service.CIDRs), ClusterSource: res.Cluster.Source,
				ServiceSource: res.Service.Source, Guess: res.Cluster.Guess}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("found (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.warnings, res.Warnings); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

func strs(ps []netip.Prefix) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

func TestCover(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{[]string{"10.1.2.0/24"}, "10.1.2.0/24"},
		{[]string{"10.1.0.0/24", "10.1.1.0/24"}, "10.1.0.0/23"},
		{[]string{"10.1.0.0/24", "10.1.255.0/24"}, "10.1.0.0/16"},
		{[]string{"10.0.0.0/24", "11.0.0.0/24"}, "10.0.0.0/7"},
	} {
		var ps []netip.Prefix
		for _, s := range tc.in {
			ps = append(ps, netip.MustParsePrefix(s))
		}
		if got := discovery.Cover(ps).String(); got != tc.want {
			t.Errorf("Cover(%v) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// TestDiscoverAPIServer asks a real API server: it serves the ServiceCIDR of its
// --service-cluster-ip-range (10.0.0.0/24 for envtest's), and with no
// controller-manager pod and no kubeadm-config the Pod CIDR comes from the nodes.
func TestDiscoverAPIServer(t *testing.T) {
	p := controlplane.Start(t, "discovery")[0]
	ctx := context.Background()
	for _, n := range []*corev1.Node{node("n1", "10.240.1.0/24"), node("n2", "10.240.2.0/24")} {
		if _, err := p.Kube.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := discovery.Discoverer{Kube: p.Kube}.Discover(ctx, true, true)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strs(res.Service.CIDRs), []string{"10.0.0.0/24"}; !cmp.Equal(got, want) || res.Service.Source != "the ServiceCIDR objects" {
		t.Errorf("service CIDRs %v from %q, want %v from the ServiceCIDR objects", got, res.Service.Source, want)
	}
	if got, want := strs(res.Cluster.CIDRs), []string{"10.240.0.0/22"}; !cmp.Equal(got, want) || !res.Cluster.Guess {
		t.Errorf("cluster CIDRs %v (guess %v), want the guess %v", got, res.Cluster.Guess, want)
	}
}
