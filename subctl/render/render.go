// Package render turns the embedded kustomize manifests (package manifests) into
// the objects subctl applies. It runs kustomize's krusty in-process on an in-memory
// filesystem that holds the manifests and a generated top kustomization, which picks
// the cable-driver overlay and Globalnet, sets the images and the namespace, and
// fills the submariner-config ConfigMap.
package render

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/kustomize/kyaml/resid"
	"sigs.k8s.io/yaml"

	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/manifests"
)

// Labels every object subctl applies carries; uninstall and prune recognise our
// objects by them.
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "subctl"
	// ConfigHashAnnotation on the pod templates changes whenever submariner-config
	// does, so that the workloads restart with the new configuration.
	ConfigHashAnnotation = "submariner.io/config-hash"
)

// The in-memory filesystem's layout.
const (
	manifestsRoot = "/manifests"
	renderRoot    = "/render"
)

// ClusterOptions choose what Cluster renders.
type ClusterOptions struct {
	// CableDriver picks the overlay.
	CableDriver submv1.Backend
	// Globalnet adds the globalnet Component.
	Globalnet bool
	// Images are the images to run, as Images returns them.
	Images map[string]string
	// Config is submariner-config: environment variable names to values.
	Config map[string]string
}

// Cluster renders the cluster components for one joined cluster. The objects come
// back in kustomize's order; Apply orders them for applying.
func Cluster(o ClusterOptions) ([]*unstructured.Unstructured, error) {
	if _, err := submv1.ParseBackend(string(o.CableDriver)); err != nil {
		return nil, err
	}
	k := types.Kustomization{
		TypeMeta:  types.TypeMeta{APIVersion: types.KustomizationVersion, Kind: types.KustomizationKind},
		Namespace: submv1.ComponentNamespace,
		Resources: []string{path.Join("..", path.Base(manifestsRoot), manifests.OverlaysDir, string(o.CableDriver))},
		Labels: []types.Label{{
			Pairs: map[string]string{ManagedByLabel: ManagedByValue},
		}},
	}
	if o.Globalnet {
		k.Components = []string{path.Join("..", path.Base(manifestsRoot), manifests.GlobalnetComponent)}
	}
	names := make([]string, 0, len(o.Images))
	for name := range o.Images {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		img, err := kustomizeImage(name, o.Images[name])
		if err != nil {
			return nil, err
		}
		k.Images = append(k.Images, img)
	}
	literals, hash := configLiterals(o.Config)
	k.ConfigMapGenerator = []types.ConfigMapArgs{{GeneratorArgs: types.GeneratorArgs{
		Name:          manifests.ConfigMapName,
		Behavior:      "merge",
		KvPairSources: types.KvPairSources{LiteralSources: literals},
		Options:       &types.GeneratorOptions{DisableNameSuffixHash: true},
	}}}
	for _, kind := range []string{"DaemonSet", "Deployment"} {
		k.Patches = append(k.Patches, types.Patch{
			Target: &types.Selector{ResId: resid.ResId{Gvk: resid.Gvk{Group: "apps", Kind: kind}}},
			Patch: fmt.Sprintf("apiVersion: apps/v1\nkind: %s\nmetadata:\n  name: any\nspec:\n  template:\n    metadata:\n      annotations:\n        %s: %q\n",
				kind, ConfigHashAnnotation, hash),
		})
	}
	return run(k)
}

// Broker renders the broker's namespace, RBAC and admission policies.
func Broker() ([]*unstructured.Unstructured, error) {
	return run(types.Kustomization{
		TypeMeta:  types.TypeMeta{APIVersion: types.KustomizationVersion, Kind: types.KustomizationKind},
		Resources: []string{path.Join("..", path.Base(manifestsRoot), manifests.BrokerDir)},
		Labels: []types.Label{{
			Pairs: map[string]string{ManagedByLabel: ManagedByValue},
		}},
	})
}

// Images returns the image of every component: repository/<component>:version,
// except where overrides (component name to image) say otherwise. An override for
// an unknown component is an error that lists the known ones.
func Images(repository, version string, overrides map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(manifests.Images))
	for _, name := range manifests.Images {
		out[name] = strings.TrimSuffix(repository, "/") + "/" + name + ":" + version
	}
	keys := make([]string, 0, len(overrides))
	for k := range overrides {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, name := range keys {
		if _, ok := out[name]; !ok {
			return nil, fmt.Errorf("--image-override %s=%s: unknown component %q: use one of %s",
				name, overrides[name], name, strings.Join(manifests.Images, ", "))
		}
		if err := checkImage(overrides[name]); err != nil {
			return nil, fmt.Errorf("--image-override %s=%s: %w", name, overrides[name], err)
		}
		out[name] = overrides[name]
	}
	return out, nil
}

// ParseImageOverrides parses --image-override values of the form component=image.
func ParseImageOverrides(values []string) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range values {
		name, image, ok := strings.Cut(v, "=")
		if !ok || name == "" || image == "" {
			return nil, fmt.Errorf("--image-override %q is not component=image: write it like submariner-gateway=registry.example.com/gateway:v1", v)
		}
		if prev, dup := out[name]; dup && prev != image {
			return nil, fmt.Errorf("--image-override gives two images for %s: %s and %s", name, prev, image)
		}
		out[name] = image
	}
	return out, nil
}

func checkImage(ref string) error {
	if ref == "" || strings.ContainsAny(ref, " \t\n") {
		return fmt.Errorf("image %q is not an image reference such as registry.example.com/name:tag", ref)
	}
	return nil
}

// kustomizeImage maps the manifests' image of component to ref.
func kustomizeImage(component, ref string) (types.Image, error) {
	if err := checkImage(ref); err != nil {
		return types.Image{}, fmt.Errorf("component %s: %w", component, err)
	}
	img := types.Image{Name: manifests.DefaultRepository + "/" + component}
	name := ref
	if i := strings.Index(name, "@"); i >= 0 {
		img.Digest = name[i+1:]
		name = name[:i]
	}
	if i := strings.LastIndex(name, ":"); i >= 0 && !strings.Contains(name[i:], "/") {
		if img.Digest == "" {
			img.NewTag = name[i+1:]
		}
		name = name[:i]
	}
	img.NewName = name
	if img.NewTag == "" && img.Digest == "" {
		img.NewTag = "latest"
	}
	return img, nil
}

// configLiterals returns the configuration as sorted KEY=VALUE literals and a hash
// of them.
func configLiterals(cfg map[string]string) ([]string, string) {
	keys := make([]string, 0, len(cfg))
	for k := range cfg {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	literals := make([]string, 0, len(keys))
	h := sha256.New()
	for _, k := range keys {
		literals = append(literals, k+"="+cfg[k])
		fmt.Fprintf(h, "%s=%s\n", k, cfg[k])
	}
	return literals, hex.EncodeToString(h.Sum(nil))[:16]
}

// run renders k with the embedded manifests beside it.
func run(k types.Kustomization) ([]*unstructured.Unstructured, error) {
	mem := filesys.MakeFsInMemory()
	if err := copyManifests(mem); err != nil {
		return nil, err
	}
	top, err := yaml.Marshal(k)
	if err != nil {
		return nil, fmt.Errorf("encoding the top kustomization: %w", err)
	}
	if err := mem.MkdirAll(renderRoot); err != nil {
		return nil, err
	}
	if err := mem.WriteFile(path.Join(renderRoot, "kustomization.yaml"), top); err != nil {
		return nil, err
	}
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(mem, renderRoot)
	if err != nil {
		return nil, fmt.Errorf("rendering the manifests: %w", err)
	}
	var out []*unstructured.Unstructured
	for _, r := range resMap.Resources() {
		// Through JSON, so numbers become the int64 and float64 that unstructured
		// objects hold (kustomize's maps hold int).
		b, err := r.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("reading rendered %s: %w", r.CurId(), err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			return nil, fmt.Errorf("reading rendered %s: %w", r.CurId(), err)
		}
		out = append(out, u)
	}
	return out, nil
}

func copyManifests(mem filesys.FileSystem) error {
	return fs.WalkDir(manifests.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := path.Join(manifestsRoot, p)
		if d.IsDir() {
			return mem.MkdirAll(target)
		}
		data, err := manifests.FS.ReadFile(p)
		if err != nil {
			return err
		}
		return mem.WriteFile(target, data)
	})
}
