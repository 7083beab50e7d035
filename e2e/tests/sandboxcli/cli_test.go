// Package sandboxcli_test tests the `sandbox` command as a user runs it: its bad
// input handling, and the life cycle up, status, kubeconfig, exec, down, again,
// and a crash, each compared against the machine's footprint before.
package sandboxcli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/submariner-go/submariner/agents/netkit/netns"
	"github.com/submariner-go/submariner/agents/netkit/netns/netnstest"
	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/controlplane"
	"github.com/submariner-go/submariner/e2e/sandbox"
	"github.com/submariner-go/submariner/e2e/sandbox/nodeagent"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if cliPath != "" {
		_ = os.RemoveAll(filepath.Dir(cliPath))
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	cliPath   string
	buildErr  error
)

// cli builds cmd/sandbox from this checkout into a directory everyone may read
// (the non-root case runs it too) and returns its path.
func cli(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped in -short mode: builds the sandbox binary")
	}
	buildOnce.Do(func() {
		root, err := controlplane.RepoRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "sandbox-cli-")
		if err == nil {
			err = os.Chmod(dir, 0o755)
		}
		if err != nil {
			buildErr = err
			return
		}
		cliPath = filepath.Join(dir, "sandbox")
		cmd := exec.Command("go", "build", "-o", cliPath, "./cmd/sandbox")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/sandbox: %w: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return cliPath
}

// result is one run of the CLI.
type result struct {
	stdout, stderr string
	code           int
}

func run(t *testing.T, cred *syscall.Credential, args ...string) result {
	t.Helper()
	return runWithInput(t, cred, "", args...)
}

// runWithInput runs the CLI with stdin as its standard input.
func runWithInput(t *testing.T, cred *syscall.Credential, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(cli(t), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("running sandbox %s: %v", strings.Join(args, " "), err)
	}
	t.Logf("sandbox %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

func (r result) wantFailure(t *testing.T, what, msg string) {
	t.Helper()
	if r.code == 0 {
		t.Errorf("%s succeeded, want a failure saying %q", what, msg)
	} else if !strings.Contains(r.stderr, msg) {
		t.Errorf("%s: stderr %q does not say %q", what, r.stderr, msg)
	}
}

func (r result) wantSuccess(t *testing.T, what string) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s failed with exit %d: %s", what, r.code, r.stderr)
	}
}

// TestBadInput: wrong flags and arguments are refused with a message that names
// the value and the fix, before anything is made.
func TestBadInput(t *testing.T) {
	notASandbox := t.TempDir()
	if err := os.WriteFile(filepath.Join(notASandbox, "precious"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(t.TempDir(), "state")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no clusters", []string{"up", "--clusters", "0", "--state-dir", fresh}, "0 clusters: the sandbox has room for 1 to 8, pick a count in that range"},
		{"too many workers", []string{"up", "--workers-per-cluster", "12", "--state-dir", fresh}, "12 workers per cluster: the sandbox has room for 0 to 9"},
		{"relative state dir", []string{"up", "--state-dir", "state"}, `state dir "state": must be an absolute path`},
		{"state dir of something else", []string{"up", "--state-dir", notASandbox}, "holds files but is not a sandbox's"},
		{"missing binaries", []string{"up", "--state-dir", fresh, "--k8s-bin-dir", t.TempDir()}, "run `make k8s-bins`"},
		{"pod without namespace", []string{"exec", "cluster1", "coredns", "--", "true"}, `pod "coredns": give it as NAMESPACE/POD`},
		{"exec without --", []string{"exec", "cluster1", "kube-system/coredns", "true"}, "the command goes after --"},
		{"kubeconfig of nothing", []string{"kubeconfig", "cluster1", "--state-dir", fresh}, "no sandbox in " + fresh},
		{"unexpected argument", []string{"up", "now"}, `unknown command "now"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run(t, nil, tc.args...).wantFailure(t, "sandbox "+strings.Join(tc.args, " "), tc.want)
		})
	}
	if _, err := os.Stat(fresh); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused commands created the state dir %s (%v)", fresh, err)
	}
	if b, err := os.ReadFile(filepath.Join(notASandbox, "precious")); err != nil || string(b) != "keep" {
		t.Errorf("a refused up touched another directory's file: %q, %v", b, err)
	}
}

// lockedFootprint returns the machine's sandbox footprint while holding the
// machine-wide lock, so that no other test package's sandbox is in it.
func lockedFootprint(t *testing.T, stateDir string) string {
	t.Helper()
	lock := waitLock(t)
	defer lock.Release()
	return footprint(t, stateDir)
}

// cleanFootprint is lockedFootprint of a machine without leftovers: what a
// crashed earlier sandbox left (another test run's, say) is removed first.
func cleanFootprint(t *testing.T, stateDir string) string {
	t.Helper()
	for {
		lock := waitLock(t)
		left, err := sandbox.Leftovers()
		if err != nil {
			lock.Release()
			t.Fatal(err)
		}
		if len(left) == 0 {
			defer lock.Release()
			return footprint(t, stateDir)
		}
		lock.Release()
		t.Logf("removing leftovers of an earlier sandbox first: %v", left)
		if err := sandbox.Down(context.Background(), ""); err != nil {
			t.Fatal(err)
		}
	}
}

func waitLock(t *testing.T) *sandbox.Lock {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	lock, err := sandbox.WaitLock(ctx, func(reason error) { t.Logf("waiting for the sandbox lock: %v", reason) })
	if err != nil {
		t.Fatal(err)
	}
	return lock
}

// steadyFootprint is the footprint once two in a row, 100 ms apart, agree (at
// most 5 s), so that a helper process caught in the middle of its run does not
// become part of what later footprints must match.
func steadyFootprint(t *testing.T, stateDir string) string {
	t.Helper()
	last := footprint(t, stateDir)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		next := footprint(t, stateDir)
		if next == last {
			break
		}
		last = next
	}
	return last
}

// footprintChange compares the footprint with before until they match or 5 s
// pass, and returns the last difference: the running sandbox's own helpers
// (kube-proxy's iptables-restore, probes) come and go, so only a change that
// stays counts.
func footprintChange(t *testing.T, stateDir, before string) string {
	t.Helper()
	var diff string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if diff = cmp.Diff(before, footprint(t, stateDir)); diff == "" || time.Now().After(deadline) {
			return diff
		}
	}
}

func footprint(t *testing.T, stateDir string) string {
	t.Helper()
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	fp, err := sandbox.Footprint(stateDir, filepath.Dir(cli(t)), filepath.Join(root, "_output", "bin"))
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

// TestPrivilegedLifecycle runs the CLI as a user would, in a row: up, status,
// kubeconfig, exec, a refused second up (and one without root), down, down again,
// up with overlapping CIDRs, down, up, a crash of the supervisor, a refused up
// over the leftovers, down. After every down the
// machine's footprint (namespaces, links, routes, iptables, mounts, processes) is
// what it was before the first up. The sandbox:
//
//	root netns: API servers 192.168.240.1:6440-6442, the supervisor
//	   | sbx-root
//	sbx-fabric -- br-c1: c1-gw1, c1-gw2      br-c2: c2-gw1, c2-gw2
func TestPrivilegedLifecycle(t *testing.T) {
	netnstest.RequirePrivileged(t)
	stateDir := filepath.Join(t.TempDir(), "state")
	up := []string{"up", "--clusters", "2", "--workers-per-cluster", "0", "--state-dir", stateDir, "--wait-for-lock"}
	before := cleanFootprint(t, stateDir)
	t.Cleanup(func() { run(t, nil, "down", "--state-dir", stateDir) })

	// Pod namespaces are named by pod UID; the node agent's own tests, which may
	// run at the same time, name theirs alike, so the footprint leaves them out
	// and each down is checked against the UIDs of this sandbox's pods.
	var podNetNS []string
	checkClean := func(t *testing.T, when string) {
		t.Helper()
		for _, path := range podNetNS {
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s, pod namespace %s is still there (%v)", when, path, err)
			}
		}
		if diff := cmp.Diff(before, lockedFootprint(t, stateDir)); diff != "" {
			t.Errorf("%s, the machine is not as before (-before +after):\n%s", when, diff)
		}
		if _, err := os.Stat(stateDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s, the state dir %s is still there (%v)", when, stateDir, err)
		}
	}

	t.Run("first up", func(t *testing.T) {
		r := run(t, nil, up...)
		r.wantSuccess(t, "sandbox up")
		podNetNS = append(podNetNS, podNamespaces(t, stateDir)...)
		for _, want := range []string{"sandbox is up after", stateDir + "/cluster1/kubeconfig", stateDir + "/cluster2/kubeconfig", stateDir + "/broker/kubeconfig"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("sandbox up printed %q, want it to mention %q", r.stdout, want)
			}
		}
	})

	t.Run("status", func(t *testing.T) {
		r := run(t, nil, "status", "--state-dir", stateDir)
		r.wantSuccess(t, "sandbox status")
		for _, want := range []string{"up (owner pid", "cluster1  https://192.168.240.1:6441  yes      2/2", "cluster2  https://192.168.240.1:6442  yes      2/2", "broker    https://192.168.240.1:6440  yes      -"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("sandbox status printed\n%s\nwant a line with %q", r.stdout, want)
			}
		}
	})

	var coredns string
	t.Run("kubeconfig", func(t *testing.T) {
		r := run(t, nil, "kubeconfig", "cluster2", "--state-dir", stateDir)
		r.wantSuccess(t, "sandbox kubeconfig")
		cfg, err := clientcmd.BuildConfigFromFlags("", strings.TrimSpace(r.stdout))
		if err != nil {
			t.Fatal(err)
		}
		kube := kubernetes.NewForConfigOrDie(cfg)
		nodes, err := kube.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: submv1.GatewayLabel + "=true"})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, n := range nodes.Items {
			names = append(names, n.Name)
		}
		if diff := cmp.Diff([]string{"c2-gw1", "c2-gw2"}, names); diff != "" {
			t.Errorf("gateway nodes of cluster2 (-want +got):\n%s", diff)
		}
		pods, err := kube.CoreV1().Pods("kube-system").List(context.Background(), metav1.ListOptions{LabelSelector: sandbox.DNSAppLabel + "=" + sandbox.DNSAppLabelValue})
		if err != nil || len(pods.Items) == 0 {
			t.Fatalf("CoreDNS pods of cluster2: %v, %v", pods, err)
		}
		coredns = pods.Items[0].Name
	})

	t.Run("exec sees the pod's mounts and network", func(t *testing.T) {
		if coredns == "" {
			t.Skip("no CoreDNS pod found")
		}
		r := run(t, nil, "exec", "cluster2", "kube-system/"+coredns, "--state-dir", stateDir, "--", "cat", "/etc/coredns/Corefile")
		r.wantSuccess(t, "sandbox exec cat")
		if diff := cmp.Diff(sandbox.Corefile(), r.stdout); diff != "" {
			t.Errorf("the Corefile in the CoreDNS pod (-want +got):\n%s", diff)
		}
		r = run(t, nil, "exec", "cluster2", "kube-system/"+coredns, "--state-dir", stateDir, "--", "dig", "+short", "@127.0.0.1", "kube-dns.kube-system.svc.cluster.local")
		r.wantSuccess(t, "sandbox exec dig")
		if got := strings.TrimSpace(r.stdout); got != "10.142.0.10" {
			t.Errorf("CoreDNS on the pod's loopback answers %q for kube-dns, want 10.142.0.10", got)
		}
		r = runWithInput(t, nil, "from the terminal\n", "exec", "-i", "cluster2", "kube-system/"+coredns, "--state-dir", stateDir, "--", "cat")
		r.wantSuccess(t, "sandbox exec -i cat")
		if r.stdout != "from the terminal\n" {
			t.Errorf("sandbox exec -i cat printed %q, want its input back", r.stdout)
		}
		r = run(t, nil, "exec", "cluster2", "kube-system/"+coredns, "--state-dir", stateDir, "--", "sh", "-c", "exit 5")
		if r.code != 5 {
			t.Errorf("sandbox exec of `exit 5` exited %d, want 5", r.code)
		}
	})

	t.Run("a second up is refused and changes nothing", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "other")
		fp := steadyFootprint(t, stateDir)
		run(t, nil, "up", "--state-dir", other).wantFailure(t, "a second sandbox up", "a sandbox is already up on this machine (state dir "+stateDir)
		if diff := footprintChange(t, stateDir, fp); diff != "" {
			t.Errorf("the refused up changed the machine (-before +after):\n%s", diff)
		}
		if _, err := os.Stat(other); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the refused up created %s", other)
		}
	})

	t.Run("up without root is refused and changes nothing", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "other")
		fp := steadyFootprint(t, stateDir)
		run(t, &syscall.Credential{Uid: 65534, Gid: 65534}, "up", "--state-dir", other).wantFailure(t, "sandbox up as nobody", "the sandbox needs root")
		if diff := footprintChange(t, stateDir, fp); diff != "" {
			t.Errorf("the refused up changed the machine (-before +after):\n%s", diff)
		}
	})

	t.Run("down, and down again", func(t *testing.T) {
		run(t, nil, "down", "--state-dir", stateDir).wantSuccess(t, "sandbox down")
		checkClean(t, "after down")
		run(t, nil, "down", "--state-dir", stateDir).wantSuccess(t, "a second sandbox down")
		checkClean(t, "after the second down")
	})

	t.Run("up with overlapping CIDRs, and down again", func(t *testing.T) {
		run(t, nil, append(up, "--overlapping-cidrs")...).wantSuccess(t, "the second sandbox up")
		podNetNS = append(podNetNS, podNamespaces(t, stateDir)...)
		pods := netip.MustParsePrefix("10.241.0.0/16")
		for _, cluster := range []string{"cluster1", "cluster2"} {
			kube := kubeFor(t, stateDir, cluster)
			svc, err := kube.CoreV1().Services("kube-system").Get(context.Background(), sandbox.DNSServiceName, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if svc.Spec.ClusterIP != "10.141.0.10" {
				t.Errorf("kube-dns of %s is at %s, want 10.141.0.10 (the shared service range)", cluster, svc.Spec.ClusterIP)
			}
			list, err := kube.CoreV1().Pods("kube-system").List(context.Background(), metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range list.Items {
				if ip, err := netip.ParseAddr(p.Status.PodIP); err != nil || !pods.Contains(ip) {
					t.Errorf("pod %s of %s has IP %q, want one in the shared %s", p.Name, cluster, p.Status.PodIP, pods)
				}
			}
		}
		run(t, nil, "down", "--state-dir", stateDir).wantSuccess(t, "the second sandbox down")
		checkClean(t, "after the second up and down")
	})

	t.Run("down after a crash", func(t *testing.T) {
		run(t, nil, up...).wantSuccess(t, "the third sandbox up")
		podNetNS = append(podNetNS, podNamespaces(t, stateDir)...)
		owner := ownerPID(t, stateDir)
		// Keep the machine-wide lock through the crash: take a copy of the
		// supervisor's lock descriptor (the same open file, so the same flock)
		// before killing it, so that no other test package's sandbox can step in
		// and clean up before we look.
		lock := stealLock(t, owner)
		if err := syscall.Kill(owner, syscall.SIGKILL); err != nil {
			t.Fatalf("killing the supervisor %d: %v", owner, err)
		}
		waitExit(t, owner)
		left, err := sandbox.Leftovers()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(left, "\n"), "network namespace "+sandbox.FabricNetNS) {
			t.Errorf("after the crash, Leftovers() = %v, want the fabric namespace among them", left)
		}
		fp := steadyFootprint(t, stateDir)
		opts := sandbox.DefaultOptions()
		opts.StateDir, opts.Lock = stateDir, lock
		if _, err := sandbox.Up(context.Background(), opts); err == nil || !strings.Contains(err.Error(), "leftovers of an earlier sandbox are in the way") {
			t.Errorf("up over the crashed sandbox: %v, want it refused over the leftovers", err)
		}
		if diff := footprintChange(t, stateDir, fp); diff != "" {
			t.Errorf("the refused up changed the machine (-before +after):\n%s", diff)
		}
		lock.Release()
		run(t, nil, "down").wantSuccess(t, "sandbox down after the crash (state dir from the lock file)")
		checkClean(t, "after down following a crash")
	})
}

// stealLock duplicates the lock descriptor (fd 3) of the supervisor pid into this
// process with pidfd_getfd: the copy shares the open file, and so the flock.
func stealLock(t *testing.T, pid int) *sandbox.Lock {
	t.Helper()
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	defer unix.Close(pidfd)
	fd, err := unix.PidfdGetfd(pidfd, 3, 0)
	if err != nil {
		t.Fatalf("pidfd_getfd %d fd 3: %v", pid, err)
	}
	lock, err := sandbox.AdoptLock(os.NewFile(uintptr(fd), sandbox.LockPath))
	if err != nil {
		t.Fatal(err)
	}
	return lock
}

// waitExit waits until the killed process is gone (not even a zombie: its
// parent, init, reaps it).
func waitExit(t *testing.T, pid int) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
		return errors.Is(err, os.ErrNotExist), nil
	})
	if err != nil {
		t.Fatalf("process %d survives SIGKILL: %v", pid, err)
	}
}

// podNamespaces returns the namespace paths of every pod of the sandbox's
// clusters, after checking that they exist while the sandbox is up.
func podNamespaces(t *testing.T, stateDir string) []string {
	t.Helper()
	var paths []string
	for _, cluster := range []string{"cluster1", "cluster2"} {
		pods, err := kubeFor(t, stateDir, cluster).CoreV1().Pods("").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			if p.Spec.HostNetwork {
				continue
			}
			path := filepath.Join(netns.Dir, nodeagent.PodNetNSPrefix+string(p.UID))
			if _, err := os.Stat(path); err != nil {
				t.Errorf("pod %s/%s of %s runs without its namespace: %v", p.Namespace, p.Name, cluster, err)
			}
			paths = append(paths, path)
		}
	}
	if len(paths) == 0 {
		t.Error("the sandbox runs no pods (CoreDNS should run in every cluster)")
	}
	return paths
}

// kubeFor returns an administrator's clientset for a cluster of the sandbox.
func kubeFor(t *testing.T, stateDir, cluster string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", sandbox.Layout{Dir: stateDir}.Kubeconfig(cluster))
	if err != nil {
		t.Fatal(err)
	}
	return kubernetes.NewForConfigOrDie(cfg)
}

func ownerPID(t *testing.T, stateDir string) int {
	t.Helper()
	b, err := os.ReadFile(sandbox.Layout{Dir: stateDir}.StateFile())
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Owner struct {
			PID int `json:"pid"`
		} `json:"owner"`
	}
	if err := json.Unmarshal(b, &st); err != nil || st.Owner.PID == 0 {
		t.Fatalf("no owner in %s: %v", b, err)
	}
	return st.Owner.PID
}
