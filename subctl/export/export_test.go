package export_test

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/submariner-go/submariner/e2e/controlplane"
	"github.com/submariner-go/submariner/subctl/cluster"
	"github.com/submariner-go/submariner/subctl/export"
)

// TestExportUnexport creates and deletes ServiceExports on a real API server.
func TestExportUnexport(t *testing.T) {
	p := controlplane.Start(t, "export")[0]
	c, err := cluster.New(p.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := p.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	exported := func() bool {
		t.Helper()
		var se mcsv1beta1.ServiceExport
		err := p.Client.Get(ctx, client.ObjectKey{Namespace: "apps", Name: "web"}, &se)
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}

	// No Service: a clear error, and nothing is created.
	_, err = export.Export(ctx, c, "apps", "web")
	if err == nil || err.Error() != "service apps/web does not exist: create it first, or check the name and the namespace (-n)" {
		t.Errorf("export without the Service: %v", err)
	}
	if exported() {
		t.Fatal("a ServiceExport was created for a missing Service")
	}
	_, err = export.Unexport(ctx, c, "apps", "web")
	if err == nil || !strings.Contains(err.Error(), "service apps/web does not exist and is not exported") {
		t.Errorf("unexport of nothing: %v", err)
	}

	if _, err := p.Kube.CoreV1().Services("apps").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false} {
		created, err := export.Export(ctx, c, "apps", "web")
		if err != nil || created != want {
			t.Fatalf("export #%d: created %v, err %v; want created %v", i+1, created, err, want)
		}
	}
	if !exported() {
		t.Fatal("no ServiceExport after export")
	}
	for i, want := range []bool{true, false} {
		deleted, err := export.Unexport(ctx, c, "apps", "web")
		if err != nil || deleted != want {
			t.Fatalf("unexport #%d: deleted %v, err %v; want deleted %v", i+1, deleted, err, want)
		}
	}
	if exported() {
		t.Fatal("the ServiceExport is still there after unexport")
	}
	for _, tc := range []struct{ name, ns, want string }{
		{"Web", "apps", `service name "Web" is not valid`},
		{"web", "Apps", `namespace "Apps" is not valid`},
	} {
		if err := export.Validate(tc.name, tc.ns); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%q, %q) = %v, want %q", tc.name, tc.ns, err, tc.want)
		}
	}
}
