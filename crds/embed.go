// Package crds holds the CustomResourceDefinitions the product installs: our own
// submariner.io types (generated from ./v1 by controller-gen into ./bases) and the
// MCS API's, which come from sigs.k8s.io/mcs-api/config/crd. Install puts them
// into a cluster and waits until the API server serves them.
package crds

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	mcscrd "sigs.k8s.io/mcs-api/config/crd"
	"sigs.k8s.io/yaml"
)

//go:embed bases/*.yaml
var bases embed.FS

// Submariner returns our own CRDs, sorted by name.
func Submariner() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	names, err := fs.Glob(bases, "bases/*.yaml")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	crds := make([]*apiextensionsv1.CustomResourceDefinition, 0, len(names))
	for _, name := range names {
		data, err := bases.ReadFile(name)
		if err != nil {
			return nil, err
		}
		crd, err := decode(path.Base(name), data)
		if err != nil {
			return nil, err
		}
		crds = append(crds, crd)
	}
	return crds, nil
}

// MCS returns the MCS API's ServiceExport and ServiceImport CRDs.
func MCS() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	var crds []*apiextensionsv1.CustomResourceDefinition
	for name, data := range map[string][]byte{
		"serviceexports": mcscrd.ServiceExportCRD,
		"serviceimports": mcscrd.ServiceImportCRD,
	} {
		crd, err := decode(name, data)
		if err != nil {
			return nil, err
		}
		crds = append(crds, crd)
	}
	sort.Slice(crds, func(i, j int) bool { return crds[i].Name < crds[j].Name })
	return crds, nil
}

// All returns our CRDs followed by the MCS ones.
func All() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	ours, err := Submariner()
	if err != nil {
		return nil, err
	}
	mcs, err := MCS()
	if err != nil {
		return nil, err
	}
	return append(ours, mcs...), nil
}

func decode(name string, data []byte) (*apiextensionsv1.CustomResourceDefinition, error) {
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(data, crd); err != nil {
		return nil, fmt.Errorf("decoding CRD %s: %w", name, err)
	}
	if crd.Kind != "CustomResourceDefinition" || crd.Name == "" {
		return nil, fmt.Errorf("decoding CRD %s: not a named CustomResourceDefinition", name)
	}
	return crd, nil
}
