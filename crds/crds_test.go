package crds_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"github.com/submariner-go/submariner/crds"
)

func TestEmbeddedCRDs(t *testing.T) {
	all, err := crds.All()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, crd := range all {
		names = append(names, crd.Name)
	}
	want := []string{
		"clusterglobalegressips.submariner.io",
		"clusters.submariner.io",
		"endpoints.submariner.io",
		"gateways.submariner.io",
		"globalegressips.submariner.io",
		"globalingressips.submariner.io",
		"serviceexports.multicluster.x-k8s.io",
		"serviceimports.multicluster.x-k8s.io",
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("embedded CRDs (-want +got):\n%s", diff)
	}
	for _, crd := range all {
		want := apiextensionsv1.NamespaceScoped
		if crd.Name == "clusterglobalegressips.submariner.io" {
			want = apiextensionsv1.ClusterScoped
		}
		if crd.Spec.Scope != want {
			t.Errorf("%s has scope %s, want %s", crd.Name, crd.Spec.Scope, want)
		}
	}
}

func TestMCSCRDsServeV1beta1(t *testing.T) {
	mcs, err := crds.MCS()
	if err != nil {
		t.Fatal(err)
	}
	for _, crd := range mcs {
		served := false
		for _, v := range crd.Spec.Versions {
			if v.Name == "v1beta1" && v.Served {
				served = true
			}
		}
		if !served {
			t.Errorf("%s does not serve v1beta1", crd.Name)
		}
	}
}

// Cluster and Endpoint are written whole by their owners; Gateway and the
// Globalnet objects have a status that only the agents write.
func TestStatusSubresources(t *testing.T) {
	ours, err := crds.Submariner()
	if err != nil {
		t.Fatal(err)
	}
	for _, crd := range ours {
		for _, v := range crd.Spec.Versions {
			hasStatus := v.Subresources != nil && v.Subresources.Status != nil
			wantStatus := !strings.HasPrefix(crd.Name, "clusters.") && !strings.HasPrefix(crd.Name, "endpoints.")
			if hasStatus != wantStatus {
				t.Errorf("%s %s: status subresource %v, want %v", crd.Name, v.Name, hasStatus, wantStatus)
			}
		}
	}
}
