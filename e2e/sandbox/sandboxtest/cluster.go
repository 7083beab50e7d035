package sandboxtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/submariner-go/submariner/e2e/nettest"
	"github.com/submariner-go/submariner/e2e/sandbox"
)

// WaitTimeout bounds every wait of these helpers. It is a safety net against a
// hung test, not an assertion about speed.
const WaitTimeout = 3 * time.Minute

// Cluster is a test's handle on the broker or a cluster of the sandbox, as its
// administrator.
type Cluster struct {
	Name   string
	Config *rest.Config
	Kube   kubernetes.Interface
	Client client.Client
	// Topology is the cluster's part of the address plan (zero for the broker).
	Topology sandbox.Cluster

	binDir string
}

// ClusterFor returns a handle on the named cluster ("broker", "cluster1", ...),
// skipping the test when there is no sandbox.
func ClusterFor(t testing.TB, name string) *Cluster {
	t.Helper()
	s := Get(t)
	cfg, err := s.RESTConfig(name)
	if err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := s.Client(name)
	if err != nil {
		t.Fatal(err)
	}
	topo, _ := s.Topology.Cluster(name)
	return &Cluster{Name: name, Config: cfg, Kube: kube, Client: cl, Topology: topo, binDir: s.Options().BinDir}
}

var nonName = regexp.MustCompile(`[^a-z0-9-]+`)

// Namespace creates a fresh namespace with the same name in every given cluster
// (namespace sameness, as multi-cluster services expect), waits until pods can be
// created in it, and deletes it when the test ends.
func Namespace(t testing.TB, clusters ...*Cluster) string {
	t.Helper()
	suffix := make([]byte, 3)
	if _, err := rand.Read(suffix); err != nil {
		t.Fatal(err)
	}
	base := strings.Trim(nonName.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(base) > 40 {
		base = strings.Trim(base[:40], "-")
	}
	name := fmt.Sprintf("e2e-%s-%s", base, hex.EncodeToString(suffix))
	ctx := context.Background()
	for _, c := range clusters {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"e2e.submariner.io/test": base}}}
		if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating namespace %s in %s: %v", name, c.Name, err)
		}
		c := c
		t.Cleanup(func() {
			err := c.Kube.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("deleting namespace %s in %s: %v", name, c.Name, err)
			}
		})
		// The ServiceAccount admission refuses pods until the default account exists.
		c.waitFor(t, fmt.Sprintf("the default ServiceAccount of %s", name), func(ctx context.Context) (bool, string, error) {
			_, err := c.Kube.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return false, "not created yet", nil
			}
			return err == nil, "", err
		})
	}
	return name
}

// waitFor polls cond until it holds, failing the test with cond's last word after
// WaitTimeout.
func (c *Cluster) waitFor(t testing.TB, what string, cond func(ctx context.Context) (bool, string, error)) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, WaitTimeout, true, func(ctx context.Context) (bool, error) {
		ok, why, err := cond(ctx)
		last = why
		return ok, err
	})
	if err != nil {
		t.Fatalf("%s: waiting for %s: %v (last: %s)", c.Name, what, err, last)
	}
}

// WaitDeployment waits until the Deployment's current generation is rolled out
// with every replica available, and returns it.
func (c *Cluster) WaitDeployment(t testing.TB, namespace, name string) *appsv1.Deployment {
	t.Helper()
	var d *appsv1.Deployment
	c.waitFor(t, "deployment "+namespace+"/"+name, func(ctx context.Context) (bool, string, error) {
		var err error
		if d, err = c.Kube.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{}); err != nil {
			return false, err.Error(), nil
		}
		ok, why := sandbox.DeploymentComplete(d)
		return ok, why, nil
	})
	return d
}

// WaitDaemonSet waits until the DaemonSet runs an available, current pod on every
// node it should, and returns it.
func (c *Cluster) WaitDaemonSet(t testing.TB, namespace, name string) *appsv1.DaemonSet {
	t.Helper()
	var ds *appsv1.DaemonSet
	c.waitFor(t, "daemonset "+namespace+"/"+name, func(ctx context.Context) (bool, string, error) {
		var err error
		if ds, err = c.Kube.AppsV1().DaemonSets(namespace).Get(ctx, name, metav1.GetOptions{}); err != nil {
			return false, err.Error(), nil
		}
		st := ds.Status
		ok := st.ObservedGeneration >= ds.Generation && st.DesiredNumberScheduled > 0 &&
			st.UpdatedNumberScheduled == st.DesiredNumberScheduled && st.NumberAvailable == st.DesiredNumberScheduled
		return ok, fmt.Sprintf("%d desired, %d updated, %d available", st.DesiredNumberScheduled, st.UpdatedNumberScheduled, st.NumberAvailable), nil
	})
	return ds
}

// WaitPod waits until the pod runs with all its containers ready, and returns it.
func (c *Cluster) WaitPod(t testing.TB, namespace, name string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	c.waitFor(t, "pod "+namespace+"/"+name, func(ctx context.Context) (bool, string, error) {
		var err error
		if pod, err = c.Kube.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{}); err != nil {
			return false, err.Error(), nil
		}
		return PodReady(pod), describePod(pod), nil
	})
	return pod
}

// PodReady reports whether the pod runs and is Ready.
func PodReady(pod *corev1.Pod) bool {
	if pod.Status.Phase != corev1.PodRunning || pod.DeletionTimestamp != nil {
		return false
	}
	for _, cond := range pod.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

func describePod(pod *corev1.Pod) string {
	var b strings.Builder
	fmt.Fprintf(&b, "phase %s", pod.Status.Phase)
	for _, cs := range pod.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil:
			fmt.Fprintf(&b, "; %s waiting: %s %s", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)
		case cs.State.Terminated != nil:
			fmt.Fprintf(&b, "; %s terminated: %s (exit %d)", cs.Name, cs.State.Terminated.Reason, cs.State.Terminated.ExitCode)
		default:
			fmt.Fprintf(&b, "; %s ready=%t restarts=%d", cs.Name, cs.Ready, cs.RestartCount)
		}
	}
	return b.String()
}

// Pods lists the pods that match the selector, sorted by name.
func (c *Cluster) Pods(t testing.TB, namespace string, selector map[string]string) []corev1.Pod {
	t.Helper()
	list, err := c.Kube.CoreV1().Pods(namespace).List(context.Background(), metav1.ListOptions{LabelSelector: labels.SelectorFromSet(selector).String()})
	if err != nil {
		t.Fatalf("%s: listing pods in %s: %v", c.Name, namespace, err)
	}
	pods := list.Items
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	return pods
}

// Exec runs a command in the pod's first container (through pods/exec, as kubectl
// exec does) and returns its standard output and error. A non-zero exit is an
// error that satisfies k8s.io/client-go/util/exec.ExitError.
func (c *Cluster) Exec(ctx context.Context, namespace, pod string, command ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	err = sandbox.Exec(ctx, c.Config, namespace, pod, sandbox.ExecOptions{Command: command, Stdout: &out, Stderr: &errOut})
	return out.String(), errOut.String(), err
}

// Nettest is the path of the test workload binary; pods see the host's files, so
// tests exec it by this path in any pod.
func (c *Cluster) Nettest() string { return c.binDir + "/nettest" }

// Connect runs `nettest connect ARGS...` in the pod and returns its output; the
// error carries the command's standard error.
func (c *Cluster) Connect(ctx context.Context, namespace, pod string, args ...string) (string, error) {
	out, errOut, err := c.Exec(ctx, namespace, pod, append([]string{c.Nettest(), "connect"}, args...)...)
	if err != nil {
		return out, fmt.Errorf("nettest connect %s in %s/%s: %w: %s", strings.Join(args, " "), namespace, pod, err, strings.TrimSpace(errOut))
	}
	return out, nil
}

// ConnectReply runs `nettest connect ARGS...` in the pod and parses the server's
// reply line.
func (c *Cluster) ConnectReply(t testing.TB, namespace, pod string, args ...string) nettest.Reply {
	t.Helper()
	out, err := c.Connect(context.Background(), namespace, pod, args...)
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(out, "\n")
	r, err := nettest.ParseReply(first)
	if err != nil {
		t.Fatalf("nettest connect %s in %s/%s: %v", strings.Join(args, " "), namespace, pod, err)
	}
	return r
}

// Eventually polls cond until it holds or WaitTimeout passes, for conditions that
// become true asynchronously; the caller asserts on the outcome afterwards.
func Eventually(t testing.TB, cond func() bool) {
	t.Helper()
	_ = wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, WaitTimeout, true, func(context.Context) (bool, error) {
		return cond(), nil
	})
}
