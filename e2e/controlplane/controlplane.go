// Package controlplane starts real Kubernetes control planes (etcd and kube-apiserver
// built by `make k8s-bins`) for integration tests, through controller-runtime's
// envtest, with our CRDs and the MCS CRDs installed.
package controlplane

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/submariner-go/submariner/crds"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Module is our Go module's path; the repository root is the directory whose go.mod
// declares it.
const Module = "github.com/submariner-go/submariner"

// required lists the binaries a control plane needs in the assets directory.
var required = []string{"etcd", "kube-apiserver"}

// Plane is one running control plane.
type Plane struct {
	// Name tells the planes of one test apart ("cluster1", "broker").
	Name string
	// Config reaches the API server as a cluster administrator.
	Config *rest.Config
	// Client is a controller-runtime client whose scheme knows our types and the MCS API.
	Client client.Client
	// Kube is a client-go clientset.
	Kube kubernetes.Interface
	// Kubeconfig is the path of a kubeconfig file for the administrator.
	Kubeconfig string

	env *envtest.Environment
}

// Scheme returns a scheme with the Kubernetes built-in types, apiextensions, our
// submariner.io/v1 types and the MCS v1beta1 types.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	utilruntime.Must(submv1.AddToScheme(s))
	utilruntime.Must(mcsv1beta1.AddToScheme(s))
	return s
}

// RepoRoot returns the repository root, found by walking up from the working
// directory to the go.mod that declares Module.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if declaresModule(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod declaring %s above the working directory", Module)
		}
		dir = parent
	}
}

func declaresModule(gomod string) bool {
	f, err := os.Open(gomod)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) == 2 && fields[0] == "module" {
			return fields[1] == Module
		}
	}
	return false
}

// Assets returns the directory with the Kubernetes binaries: KUBEBUILDER_ASSETS when
// set, else _output/k8s in the repository. The error says how to build them.
func Assets() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "_output", "k8s")
	}
	for _, bin := range required {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			return "", fmt.Errorf("the Kubernetes binaries are not in %s (no %s): run `make k8s-bins`", dir, bin)
		}
	}
	return dir, nil
}

// SkipUnlessAssets skips the test, with the command that fixes it, when the
// Kubernetes binaries have not been built.
func SkipUnlessAssets(t testing.TB) string {
	t.Helper()
	dir, err := Assets()
	if err != nil {
		t.Skipf("skipped: %v", err)
	}
	return dir
}

// Options change how StartWith starts control planes; the zero value is Start's.
type Options struct {
	// APIServerFlags are set on every kube-apiserver, replacing envtest's value of
	// the same flag (for example "authorization-mode": {"Node,RBAC"}).
	APIServerFlags map[string][]string
}

// Start starts one control plane per name in parallel, with our CRDs and the MCS
// CRDs installed, and stops them when the test ends. It skips the test when the
// binaries have not been built.
func Start(t testing.TB, names ...string) []*Plane {
	t.Helper()
	return StartWith(t, Options{}, names...)
}

// StartWith is Start with Options.
func StartWith(t testing.TB, opts Options, names ...string) []*Plane {
	t.Helper()
	dir := SkipUnlessAssets(t)
	planes, err := StartPlanesWith(context.Background(), dir, t.TempDir(), opts, names...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := StopAll(planes); err != nil {
			t.Error(err)
		}
	})
	return planes
}

// StartPlanes is Start for callers without a testing.TB, such as TestMain: it starts
// the planes with binaries from assets, writes kubeconfig files under workDir and
// leaves stopping them to the caller (StopAll). On error nothing is left running.
func StartPlanes(ctx context.Context, assets, workDir string, names ...string) ([]*Plane, error) {
	return StartPlanesWith(ctx, assets, workDir, Options{}, names...)
}

// StartPlanesWith is StartPlanes with Options.
func StartPlanesWith(ctx context.Context, assets, workDir string, opts Options, names ...string) ([]*Plane, error) {
	planes := make([]*Plane, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() { planes[i], errs[i] = start(ctx, assets, workDir, name, opts) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		var started []*Plane
		for _, p := range planes {
			if p != nil {
				started = append(started, p)
			}
		}
		return nil, errors.Join(err, StopAll(started))
	}
	return planes, nil
}

func start(ctx context.Context, assets, workDir, name string, opts Options) (*Plane, error) {
	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
		Scheme:                   Scheme(),
	}
	flags := make([]string, 0, len(opts.APIServerFlags))
	for flag := range opts.APIServerFlags {
		flags = append(flags, flag)
	}
	sort.Strings(flags)
	for _, flag := range flags {
		env.ControlPlane.GetAPIServer().Configure().Set(flag, opts.APIServerFlags[flag]...)
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting control plane %s: %w", name, err)
	}
	p := &Plane{Name: name, Config: cfg, env: env}
	if err := p.init(ctx, workDir); err != nil {
		return nil, errors.Join(err, p.Stop())
	}
	return p, nil
}

func (p *Plane) init(ctx context.Context, workDir string) error {
	var err error
	if p.Client, err = client.New(p.Config, client.Options{Scheme: Scheme()}); err != nil {
		return fmt.Errorf("creating client for %s: %w", p.Name, err)
	}
	if p.Kube, err = kubernetes.NewForConfig(p.Config); err != nil {
		return fmt.Errorf("creating clientset for %s: %w", p.Name, err)
	}
	admin, err := p.env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("adding an admin user to %s: %w", p.Name, err)
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		return fmt.Errorf("rendering the kubeconfig of %s: %w", p.Name, err)
	}
	p.Kubeconfig = filepath.Join(workDir, p.Name+".kubeconfig")
	if err := os.WriteFile(p.Kubeconfig, kubeconfig, 0o600); err != nil {
		return fmt.Errorf("writing the kubeconfig of %s: %w", p.Name, err)
	}
	if err := crds.Install(ctx, p.Config); err != nil {
		return fmt.Errorf("installing CRDs into %s: %w", p.Name, err)
	}
	return nil
}

// AddUser returns a client configuration that authenticates to the plane's API
// server as the given user and groups (by a client certificate from the plane's CA),
// for tests that act as a node or a component instead of an administrator.
func (p *Plane) AddUser(name string, groups ...string) (*rest.Config, error) {
	user, err := p.env.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, fmt.Errorf("adding user %s to %s: %w", name, p.Name, err)
	}
	return user.Config(), nil
}

// Stop stops the plane's API server and etcd and removes their data.
func (p *Plane) Stop() error {
	if err := p.env.Stop(); err != nil {
		return fmt.Errorf("stopping control plane %s: %w", p.Name, err)
	}
	return nil
}

// StopAll stops every plane, reporting every failure.
func StopAll(planes []*Plane) error {
	errs := make([]error, len(planes))
	var wg sync.WaitGroup
	for i, p := range planes {
		wg.Go(func() { errs[i] = p.Stop() })
	}
	wg.Wait()
	return errors.Join(errs...)
}
