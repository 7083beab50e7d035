package controlplane_test

import (
	"context"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/submariner-go/submariner/e2e/controlplane"
)

// TestTwoPlanesAreIndependent starts two control planes side by side and checks that
// an object made in one does not exist in the other, and that each kubeconfig file
// reaches its own API server.
func TestTwoPlanesAreIndependent(t *testing.T) {
	planes := controlplane.Start(t, "one", "two")
	one, two := planes[0], planes[1]
	ctx := context.Background()

	if one.Config.Host == two.Config.Host {
		t.Fatalf("both planes serve at %s", one.Config.Host)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "only-in-one"}}
	if _, err := one.Kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := two.Kube.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace %s in plane two: got %v, want NotFound", ns.Name, err)
	}

	for _, p := range planes {
		data, err := os.ReadFile(p.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := clientcmd.RESTConfigFromKubeConfig(data)
		if err != nil {
			t.Fatalf("kubeconfig of %s: %v", p.Name, err)
		}
		if strings.TrimSuffix(cfg.Host, "/") != strings.TrimSuffix(p.Config.Host, "/") {
			t.Errorf("kubeconfig of %s points at %s, want %s", p.Name, cfg.Host, p.Config.Host)
		}
		var list corev1.NamespaceList
		if err := p.Client.List(ctx, &list); err != nil {
			t.Errorf("listing namespaces in %s: %v", p.Name, err)
		}
		_, err = p.Kube.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{})
		if inOne := err == nil; inOne != (p == one) {
			t.Errorf("namespace %s present in %s: %v", ns.Name, p.Name, inOne)
		}
	}
}

func TestAssetsNamesTheMakeTarget(t *testing.T) {
	t.Setenv("KUBEBUILDER_ASSETS", t.TempDir())
	_, err := controlplane.Assets()
	if err == nil || !strings.Contains(err.Error(), "make k8s-bins") {
		t.Errorf("Assets() with an empty directory = %v, want an error naming make k8s-bins", err)
	}
}
