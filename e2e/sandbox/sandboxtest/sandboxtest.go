// Package sandboxtest runs e2e tests in a sandbox (package sandbox): Main, called
// from a test package's TestMain, brings one sandbox up for the whole package and
// takes it down at the end; tests isolate themselves by namespace (Namespace) and
// use the helpers here to deploy the test workload (nettest), wait for it, exec in
// pods and connect from them.
//
//	func TestMain(m *testing.M) { sandboxtest.Main(m, sandbox.DefaultOptions()) }
//
//	func TestSomething(t *testing.T) {
//		c1 := sandboxtest.ClusterFor(t, "cluster1")
//		ns := sandboxtest.Namespace(t, c1)
//		...
//	}
//
// Test packages that run at the same time queue on the machine-wide sandbox lock.
// Without root or without the binaries, Main still runs the package's tests, and
// every test that asks for the sandbox skips, naming the command that fixes it.
package sandboxtest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/submariner-go/submariner/e2e/sandbox"
	"github.com/submariner-go/submariner/e2e/sandbox/nodeagent"
)

// upTimeout bounds bringing the sandbox up, waiting for the lock included.
const upTimeout = 30 * time.Minute

var (
	current    *sandbox.Sandbox
	skipReason string
)

// Main is TestMain for a package of sandbox e2e tests: it runs the node agent's
// container shim when the test binary was started as one (nodeagent.Init), waits
// for the machine-wide lock, cleans up what a crashed sandbox left, brings a
// sandbox up with opts (in a fresh state dir unless opts.StateDir is set), runs the
// tests, and takes the sandbox down. The state dir is a fresh temporary one unless
// opts.StateDir names another than DefaultStateDir. When tests fail it keeps the
// sandbox's logs and says where. It never returns.
func Main(m *testing.M, opts sandbox.Options) {
	nodeagent.Init()
	os.Exit(run(m, opts))
}

func run(m *testing.M, opts sandbox.Options) int {
	flag.Parse()
	crlog.SetLogger(stderrLogger())
	if testing.Short() {
		skipReason = "skipped in -short mode: the sandbox takes a minute to come up"
		return m.Run()
	}
	if reason := precheck(&opts); reason != "" {
		skipReason = "skipped: " + reason
		fmt.Fprintf(os.Stderr, "sandboxtest: %s\n", skipReason)
		return m.Run()
	}
	ctx, cancel := context.WithTimeout(context.Background(), upTimeout)
	defer cancel()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "sandboxtest: "+format+"\n", args...)
	}
	lock, err := lockClean(ctx, logf)
	if err != nil {
		logf("%v", err)
		return 1
	}
	defer lock.Release()
	// A test package's sandbox is its own: a fresh state dir, unless the caller
	// named one other than the CLI's default.
	ownDir := opts.StateDir == "" || opts.StateDir == sandbox.DefaultStateDir
	if ownDir {
		if opts.StateDir, err = os.MkdirTemp("", "sandbox-e2e-"); err != nil {
			logf("%v", err)
			return 1
		}
	}
	opts.Lock = lock
	began := time.Now()
	opts.Progress = func(step string) { logf("[%5.1fs] %s", time.Since(began).Seconds(), step) }
	s, err := sandbox.Up(ctx, opts)
	if err != nil {
		logf("bringing the sandbox up: %v", err)
		return 1
	}
	logf("sandbox is up after %s (state dir %s)", s.Took.Round(100*time.Millisecond), s.StateDir())
	current = s

	code := m.Run()

	if code != 0 {
		if dir, err := keepLogs(s.Layout.Logs()); err == nil {
			logf("tests failed: the sandbox's logs are kept in %s", dir)
		} else {
			logf("tests failed, and keeping the sandbox's logs failed: %v", err)
		}
	}
	closeCtx, cancelClose := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancelClose()
	if err := s.Close(closeCtx); err != nil {
		logf("taking the sandbox down: %v", err)
		code = 1
	}
	if ownDir {
		_ = os.RemoveAll(opts.StateDir)
	}
	return code
}

func stderrLogger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		fmt.Fprintln(os.Stderr, "sandboxtest:", prefix, args)
	}, funcr.Options{})
}

// precheck returns why the sandbox cannot come up here, with the fix, or "".
func precheck(opts *sandbox.Options) string {
	if err := sandbox.RequireRoot(); err != nil {
		return "the sandbox tests need root (run them as root, as CI does)"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "iproute2 is not installed: run `make deps`"
	}
	o := *opts
	if o.StateDir == "" {
		o.StateDir = filepath.Join(os.TempDir(), "sandbox-e2e-check-does-not-exist")
	}
	if err := o.Validate(); err != nil {
		return err.Error()
	}
	opts.BinDir, opts.K8sBinDir = o.BinDir, o.K8sBinDir
	if _, err := os.Stat(filepath.Join(opts.BinDir, "nettest")); err != nil {
		return fmt.Sprintf("the test workload %s is missing: run `make build`", filepath.Join(opts.BinDir, "nettest"))
	}
	return ""
}

// lockClean waits for the machine-wide lock and removes what a crashed sandbox
// left (a test run is allowed to clean up after an earlier, dead one).
func lockClean(ctx context.Context, logf func(string, ...any)) (*sandbox.Lock, error) {
	for {
		lock, err := sandbox.WaitLock(ctx, func(reason error) { logf("waiting: %v", reason) })
		if err != nil {
			return nil, err
		}
		left, err := sandbox.Leftovers()
		if err != nil {
			lock.Release()
			return nil, err
		}
		if len(left) == 0 {
			return lock, nil
		}
		// Down takes the lock itself.
		lock.Release()
		logf("removing leftovers of an earlier sandbox: %s", strings.Join(left, "; "))
		if err := sandbox.Down(ctx, ""); err != nil {
			return nil, fmt.Errorf("removing leftovers of an earlier sandbox: %w", err)
		}
	}
}

// keepLogs copies the logs out of the state dir (which Close removes).
func keepLogs(dir string) (string, error) {
	dst, err := os.MkdirTemp("", "sandbox-logs-")
	if err != nil {
		return "", err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var errs []error
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		errs = append(errs, copyFile(filepath.Join(dir, e.Name()), filepath.Join(dst, e.Name())))
	}
	return dst, errors.Join(errs...)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Get returns the package's sandbox, or skips the test saying why there is none.
func Get(t testing.TB) *sandbox.Sandbox {
	t.Helper()
	if current == nil {
		if skipReason == "" {
			t.Skip("skipped: no sandbox: call sandboxtest.Main from the package's TestMain")
		}
		t.Skip(skipReason)
	}
	return current
}
