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
	// Binary is the absolute path of the local file that plays the image's
	// entrypoint.
	Binary string
	// Entrypoint is the path of the entrypoint inside the real image (its
	// ENTRYPOINT), such as "/coredns". A container without `command` runs it; a
	// `command[0]` equal to it, or to one of Aliases, runs Binary.
	Entrypoint string
	// Aliases are further in-image paths that stand for Binary.
	Aliases []string
	// Args are the image's default arguments (its CMD), used when the container
	// sets neither `command` nor `args`.
	Args []string
}

// runs reports whether the in-image path p names the image's binary.
func (img Image) runs(p string) bool {
	if p == img.Entrypoint && p != "" {
		return true
	}
	for _, a := range img.Aliases {
		if p == a {
			return true
		}
	}
	return false
}

// Catalog maps container images to local binaries, since the sandbox has no
// container runtime and no registry.
type Catalog struct {
	Images []Image
}

// Image repositories of DefaultCatalog.
const (
	ImageGateway           = "ghcr.io/submariner-go/submariner-gateway"
	ImageRouteAgent        = "ghcr.io/submariner-go/submariner-route-agent"
	ImageGlobalnet         = "ghcr.io/submariner-go/submariner-globalnet"
	ImageLighthouseAgent   = "ghcr.io/submariner-go/lighthouse-agent"
	ImageLighthouseCoreDNS = "ghcr.io/submariner-go/lighthouse-coredns"
	ImageCoreDNS           = "registry.k8s.io/coredns/coredns"
	ImageNettest           = "ghcr.io/submariner-go/nettest"
)

// DefaultCatalog returns the images of our components, CoreDNS and the test
// workload, each mapped to the binary of the same role in binDir (as `make build`
// lays them out). The README lists the entries.
func DefaultCatalog(binDir string) Catalog {
	images := []struct{ repo, bin, entrypoint string }{
		{ImageGateway, "gateway", "/usr/local/bin/submariner-gateway"},
		{ImageRouteAgent, "routeagent", "/usr/local/bin/submariner-route-agent"},
		{ImageGlobalnet, "globalnet", "/usr/local/bin/submariner-globalnet"},
		{ImageLighthouseAgent, "lighthouse-agent", "/usr/local/bin/lighthouse-agent"},
		{ImageLighthouseCoreDNS, "coredns", "/usr/local/bin/lighthouse-coredns"},
		{ImageCoreDNS, "coredns", "/coredns"},
		{ImageNettest, "nettest", "/usr/local/bin/nettest"},
	}
	c := Catalog{}
	for _, img := range images {
		c.Images = append(c.Images, Image{
			Repository: img.repo,
			Binary:     filepath.Join(binDir, img.bin),
			Entrypoint: img.entrypoint,
			// The binary's own name works as a command too ("command: [coredns]").
			Aliases: []string{img.bin, "/" + img.bin},
		})
	}
	return c
}

// Validate reports an entry without a repository or with a relative binary path,
// and repositories listed twice.
func (c Catalog) Validate() error {
	seen := map[string]bool{}
	for _, img := range c.Images {
		switch {
		case img.Repository == "" || Repository(img.Repository) != img.Repository:
			return fmt.Errorf("catalog entry %q: the repository must be an image reference without tag or digest", img.Repository)
		case !filepath.IsAbs(img.Binary):
			return fmt.Errorf("catalog entry %q: binary %q is not an absolute path", img.Repository, img.Binary)
		case seen[img.Repository]:
			return fmt.Errorf("catalog entry %q is listed twice: keep one", img.Repository)
		}
		seen[img.Repository] = true
	}
	return nil
}

// Resolve returns the catalog entry for an image reference; tags and digests are
// ignored, and so is the implicit "docker.io/" or "docker.io/library/" prefix.
// The error names the image and lists what the catalog knows.
func (c Catalog) Resolve(ref string) (Image, error) {
	repo := normalize(Repository(ref))
	for _, img := range c.Images {
		if normalize(img.Repository) == repo {
			return img, nil
		}
	}
	return Image{}, fmt.Errorf("image %q is not in the sandbox catalog, which knows %s", ref, strings.Join(c.Known(), ", "))
}

// Known returns the catalog's repositories, sorted.
func (c Catalog) Known() []string {
	known := make([]string, 0, len(c.Images))
	for _, img := range c.Images {
		known = append(known, img.Repository)
	}
	sort.Strings(known)
	return known
}

// normalize drops the registry and namespace that Docker fills in for short names.
func normalize(repo string) string {
	repo = strings.TrimPrefix(repo, "docker.io/")
	return strings.TrimPrefix(repo, "library/")
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
