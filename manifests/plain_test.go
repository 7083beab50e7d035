package manifests_test

import (
	"io/fs"
	"path"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/submariner-go/submariner/manifests"
)

// TestPlainKustomize builds every directory as plain kustomize would
// (`kubectl kustomize manifests/overlays/vxlan`), without subctl's generated top
// kustomization, so the manifests stay usable on their own.
func TestPlainKustomize(t *testing.T) {
	mem := filesys.MakeFsInMemory()
	err := fs.WalkDir(manifests.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := manifests.FS.ReadFile(p)
		if err != nil {
			return err
		}
		return mem.WriteFile(path.Join("/", p), data)
	})
	if err != nil {
		t.Fatal(err)
	}
	// broker: namespace, 3 Roles, 2 RoleBindings, the joiner, 3 policies and their bindings;
	// cluster: namespace, submariner-config, 6 objects for gateway, routeagent and
	// lighthouse-coredns each, 4 for lighthouse-agent.
	want := map[string]int{"/broker": 15, "/overlays/libreswan": 24, "/overlays/wireguard": 24, "/overlays/vxlan": 24}
	for dir, n := range want {
		res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(mem, dir)
		if err != nil {
			t.Errorf("kustomize build %s: %v", dir, err)
			continue
		}
		if got := res.Size(); got != n {
			t.Errorf("kustomize build %s gave %d objects, want %d", dir, got, n)
		}
	}
}
