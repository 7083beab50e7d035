package lighthouse

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/submariner-go/submariner/e2e/controlplane"
)

// The controller and CoreDNS tests share one API server, started on first use and
// stopped when the tests end; each test works in its own namespaces. Tests that
// change the API itself (CRDs) start their own.
var shared struct {
	once  sync.Once
	plane *controlplane.Plane
	dir   string
	err   error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.plane != nil {
		if err := shared.plane.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	if shared.dir != "" {
		_ = os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// sharedPlane returns the shared API server, starting it on first use. It skips
// the test when the Kubernetes binaries have not been built.
func sharedPlane(t *testing.T) *controlplane.Plane {
	t.Helper()
	assets := controlplane.SkipUnlessAssets(t)
	shared.once.Do(func() {
		if shared.dir, shared.err = os.MkdirTemp("", "lighthouse-test-"); shared.err != nil {
			return
		}
		var planes []*controlplane.Plane
		planes, shared.err = controlplane.StartPlanes(context.Background(), assets, shared.dir, "lighthouse")
		if shared.err == nil {
			shared.plane = planes[0]
		}
	})
	if shared.err != nil {
		t.Fatalf("starting the shared control plane: %v", shared.err)
	}
	return shared.plane
}

// createNamespaces makes namespaces for a test in plane p.
func createNamespaces(t *testing.T, p *controlplane.Plane, names ...string) {
	t.Helper()
	for _, n := range names {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}
		if _, err := p.Kube.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating namespace %s: %v", n, err)
		}
	}
}

// convergeTimeout bounds the wait for a state the API server has been told about;
// it is a safety net for a wedged test, not a measure of speed.
const convergeTimeout = 60 * time.Second

// eventually polls got until it returns want, and fails the test with the last
// difference when it does not within convergeTimeout.
func eventually(t testing.TB, what string, want string, got func() string) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, convergeTimeout, true,
		func(context.Context) (bool, error) {
			last = got()
			return last == want, nil
		})
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%s did not converge (-want +got):\n%s", what, cmp.Diff(want, last))
	} else if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// dedent strips the first newline of a raw literal and the tabs that indent it.
func dedent(s string) string {
	s = strings.TrimPrefix(s, "\n")
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimLeft(l, "\t")
	}
	return strings.Join(lines, "\n")
}
