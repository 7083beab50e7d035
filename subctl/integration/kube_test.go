package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/submariner-go/submariner/e2e/controlplane"
	"github.com/submariner-go/submariner/manifests"
)

// startControllers runs a real kube-controller-manager and kube-scheduler (from
// `make k8s-bins`) against p with what uninstall depends on: the DaemonSet,
// Deployment and ReplicaSet controllers (roll the cleanup mode out and report
// it), the scheduler (binds the pods to their nodes), the namespace controller (removes a deleted
// namespace) and the garbage collector (removes the pods of deleted workloads).
// They stop when the test ends.
func startControllers(t *testing.T, p *controlplane.Plane) {
	t.Helper()
	run(t, p, "kube-controller-manager",
		"--kubeconfig="+p.Kubeconfig,
		"--controllers=daemonset-controller,deployment-controller,replicaset-controller,namespace-controller,garbage-collector-controller",
		"--leader-elect=false",
		"--secure-port=0",
		"--use-service-account-credentials=false",
	)
	run(t, p, "kube-scheduler",
		"--kubeconfig="+p.Kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
	)
}

// run starts the Kubernetes binary name with args and stops it when the test ends;
// its log is shown when the test failed.
func run(t *testing.T, p *controlplane.Plane, name string, args ...string) {
	t.Helper()
	dir := controlplane.SkipUnlessAssets(t)
	bin := filepath.Join(dir, name)
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("skipped: no %s in %s: run `make k8s-bins`", name, dir)
	}
	logPath := filepath.Join(t.TempDir(), p.Name+"-"+name+".log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		log.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil && len(b) > 0 {
				t.Logf("%s log (tail):\n%s", name, b[max(0, len(b)-3000):])
			}
		}
	})
}

// addNodes registers Nodes that report Ready; gateways get the gateway label only
// when label is set.
func addNodes(t *testing.T, kube kubernetes.Interface, names ...string) {
	t.Helper()
	ctx := context.Background()
	for _, name := range names {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}}
		created, err := kube.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating node %s: %v", name, err)
		}
		capacity := corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("16"),
			corev1.ResourceMemory: resource.MustParse("32Gi"),
			corev1.ResourcePods:   resource.MustParse("110"),
		}
		created.Status.Capacity, created.Status.Allocatable = capacity, capacity
		created.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(), Reason: "KubeletReady"}}
		ready, err := kube.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
		if err != nil {
			t.Fatalf("marking node %s ready: %v", name, err)
		}
		// The API server taints a new Node not-ready; the node lifecycle
		// controller lifts the taint once the Node reports Ready, which is done
		// here, so that Deployments' pods (which do not tolerate it, unlike
		// DaemonSets') are scheduled.
		ready.Spec.Taints = nil
		if _, err := kube.CoreV1().Nodes().Update(ctx, ready, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("lifting the not-ready taint of node %s: %v", name, err)
		}
	}
}

// fakeKubelet stands in for the kubelets of the test's nodes: it reports a bound
// pod Running and Ready once ready says so (the test decides, for example, when a
// component in cleanup mode has "removed its state"), and it completes the
// deletion of pods as a kubelet does once their containers stopped. It runs until
// the test ends.
func fakeKubelet(t *testing.T, kube kubernetes.Interface, ready func(*corev1.Pod) bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	t.Cleanup(func() { cancel(); <-stopped })
	go func() {
		defer close(stopped)
		// A kubelet syncs its pods on events and periodically; polling the pods
		// does both.
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			pods, err := kube.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
			if err == nil {
				for i := range pods.Items {
					pod := &pods.Items[i]
					if pod.Spec.NodeName == "" {
						continue
					}
					if err := kubeletSync(ctx, kube, pod, ready); err != nil && ctx.Err() == nil {
						t.Logf("fake kubelet: pod %s/%s: %v", pod.Namespace, pod.Name, err)
					}
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}

func kubeletSync(ctx context.Context, kube kubernetes.Interface, pod *corev1.Pod, ready func(*corev1.Pod) bool) error {
	api := kube.CoreV1().Pods(pod.Namespace)
	if pod.DeletionTimestamp != nil {
		zero := int64(0)
		err := api.Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &pod.UID}})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil
		}
		return err
	}
	if pod.Status.Phase == corev1.PodRunning || !ready(pod) {
		return nil
	}
	now := metav1.Now()
	pod = pod.DeepCopy()
	pod.Status.Phase = corev1.PodRunning
	pod.Status.StartTime = &now
	pod.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
	}
	pod.Status.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	_, err := api.UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// inCleanupMode reports whether every container of pod runs in cleanup mode.
func inCleanupMode(pod *corev1.Pod) bool {
	if len(pod.Spec.Containers) == 0 {
		return false
	}
	for _, c := range pod.Spec.Containers {
		found := false
		for _, e := range c.Env {
			if e.Name == manifests.UninstallEnv && e.Value == "true" {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}
