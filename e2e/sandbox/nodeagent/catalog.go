package nodeagent

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

// Image is one entry of a Catalog: the binary that stands for a container image.
type Image struct {
	// Repository is the image reference without tag or digest, such as
	// "ghcr.io/submariner-go/submariner-gateway".
	Repository string
	// Binary is the absolute path of the image's entrypoint.
	Binary string
}

// Catalog maps container images to local binaries, since the sandbox has no
// container runtime and no registry.
type Catalog struct {
	Images []Image
}

// DefaultCatalog returns the images of our components, CoreDNS and the test
// workload, each mapped to the binary of the same role in binDir (as `make build`
// lays them out).
func DefaultCatalog(binDir string) Catalog {
	images := []struct{ repo, bin string }{
		{"ghcr.io/submariner-go/submariner-gateway", "gateway"},
		{"ghcr.io/submariner-go/submariner-route-agent", "routeagent"},
		{"ghcr.io/submariner-go/submariner-globalnet", "globalnet"},
		{"ghcr.io/submariner-go/lighthouse-agent", "lighthouse-agent"},
		{"ghcr.io/submariner-go/lighthouse-coredns", "coredns"},
		{"registry.k8s.io/coredns/coredns", "coredns"},
		{"ghcr.io/submariner-go/nettest", "nettest"},
	}
	c := Catalog{}
	for _, img := range images {
		c.Images = append(c.Images, Image{Repository: img.repo, Binary: filepath.Join(binDir, img.bin)})
	}
	return c
}

// Resolve returns the catalog entry for an image reference; tags and digests are
// ignored. The error names the image and lists what the catalog knows.
func (c Catalog) Resolve(ref string) (Image, error) {
	repo := Repository(ref)
	for _, img := range c.Images {
		if img.Repository == repo {
			return img, nil
		}
	}
	known := make([]string, 0, len(c.Images))
	for _, img := range c.Images {
		known = append(known, img.Repository)
	}
	sort.Strings(known)
	return Image{}, fmt.Errorf("image %q is not in the sandbox catalog, which knows %s", ref, strings.Join(known, ", "))
}

// Repository strips the tag and digest from an image reference.
func Repository(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	// A tag follows the last ':' only when no '/' comes after it (a registry port
	// such as localhost:5000/x is not a tag).
	if i := strings.LastIndex(ref, ":"); i >= 0 && !strings.Contains(ref[i:], "/") {
		ref = ref[:i]
	}
	return ref
}
