// Package clustersettest helps the end-to-end tests of whole clustersets in the
// sandbox: subctl in-process, waiting for tunnels, connecting with retries.
package clustersettest

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/nettest"
	"github.com/submariner-go/submariner/e2e/sandbox"
	"github.com/submariner-go/submariner/e2e/sandbox/sandboxtest"
	"github.com/submariner-go/submariner/subctl/commands"
)

// WaitConnected waits until `subctl show connections` in c shows a connected
// tunnel (with the driver, when given) and an RTT.
func WaitConnected(t testing.TB, sb *sandbox.Sandbox, c *sandboxtest.Cluster, driver string) {
	t.Helper()
	kubeconfig := Kubeconfig(t, sb, c.Name)
	var out string
	var err error
	connected := false
	sandboxtest.Eventually(t, func() bool {
		out, err = Subctl(t, false, "show", "connections", "--kubeconfig", kubeconfig)
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) >= 8 && f[len(f)-2] == "connected" && f[len(f)-1] != "-" && (driver == "" || strings.Contains(line, " "+driver+" ")) {
				connected = true
			}
		}
		return connected
	})
	if !connected {
		t.Fatalf("%s: no connected tunnel (driver %q) with an RTT:\n%s(err: %v)", c.Name, driver, out, err)
	}
	t.Logf("%s: subctl show connections\n%s", c.Name, out)
}

// ConnectReply runs nettest connect in the pod, retrying while the path comes up,
// and parses the reply.
func ConnectReply(t testing.TB, c *sandboxtest.Cluster, ns, pod string, args ...string) nettest.Reply {
	t.Helper()
	hasRetries := false
	for _, a := range args {
		hasRetries = hasRetries || strings.HasPrefix(a, "--retries")
	}
	if !hasRetries {
		args = append(args, "--timeout=2s", "--retries=15")
	}
	return c.ConnectReply(t, ns, pod, args...)
}

// Subctl runs the subctl command line in-process and returns its output.
func Subctl(t testing.TB, log bool, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := commands.New(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	if log || err != nil {
		t.Logf("subctl %s\n%s(err: %v)", strings.Join(args, " "), out.String(), err)
	}
	return out.String(), err
}

// MustSubctl is Subctl that fails the test on error.
func MustSubctl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := Subctl(t, true, args...)
	if err != nil {
		t.Fatalf("subctl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// Kubeconfig is the path of the kubeconfig of the sandbox's control plane name
// ("broker", "cluster1", ...).
func Kubeconfig(t testing.TB, sb *sandbox.Sandbox, name string) string {
	t.Helper()
	k, err := sb.Kubeconfig(name)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// RestartDaemonSet deletes every pod of c's component DaemonSet name and waits
// until each is replaced by a new, ready one; it returns the deleted pods.
func RestartDaemonSet(t testing.TB, c *sandboxtest.Cluster, name string) []corev1.Pod {
	t.Helper()
	ctx := context.Background()
	selector := map[string]string{sandboxtest.AppLabel: name}
	old := c.Pods(t, submv1.ComponentNamespace, selector)
	if len(old) == 0 {
		t.Fatalf("%s runs no pod of %s", c.Name, name)
	}
	for _, p := range old {
		if err := c.Kube.CoreV1().Pods(submv1.ComponentNamespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	sandboxtest.Eventually(t, func() bool {
		now := c.Pods(t, submv1.ComponentNamespace, selector)
		for _, p := range now {
			if slices.ContainsFunc(old, func(o corev1.Pod) bool { return o.UID == p.UID }) || !sandboxtest.PodReady(&p) {
				return false
			}
		}
		return len(now) == len(old)
	})
	c.WaitDaemonSet(t, submv1.ComponentNamespace, name)
	return old
}
