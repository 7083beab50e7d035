// Package netnstest gives privileged tests fresh network namespaces that are removed
// when the test ends, and the gate every such test opens with.
package netnstest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/submariner-go/submariner/agents/netkit/netns"
)

// Prefix starts the name of every namespace this package creates.
const Prefix = "smtest-"

var counter atomic.Int64

// RequirePrivileged skips the test unless it runs as root with iproute2 installed,
// saying which is missing. Privileged tests must be named TestPrivileged..., so that
// `go test -run Privileged` selects them; a test that is not fails here.
func RequirePrivileged(t testing.TB) {
	t.Helper()
	if !strings.HasPrefix(t.Name(), "TestPrivileged") {
		t.Fatalf("%s changes kernel state: its name must start with TestPrivileged", t.Name())
	}
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root to create network namespaces (run the tests as root, as CI does)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipped: iproute2's ip is not installed: run `make deps`")
	}
}

// New creates a fresh network namespace with lo up, deleted when the test ends.
func New(t testing.TB) *netns.NS {
	t.Helper()
	name := fmt.Sprintf("%s%d-%d", Prefix, os.Getpid(), counter.Add(1))
	ns, err := netns.Create(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Delete(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return ns
}
