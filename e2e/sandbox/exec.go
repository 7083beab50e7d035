package sandbox

import (
	"context"
	"fmt"
	"io"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
)

// ExecOptions say what to run in a pod and where its streams go.
type ExecOptions struct {
	// Container is the container's name; empty means the pod's first container.
	Container string
	Command   []string
	Stdin     io.Reader
	Stdout    io.Writer
	Stderr    io.Writer
}

// Exec runs a command in a pod's container (its network namespace and its mount
// view) the way `kubectl exec` does: through the API server's pods/exec
// subresource, which the node agent serves. A command that exits non-zero returns
// an error that satisfies k8s.io/client-go/util/exec.ExitError.
func Exec(ctx context.Context, cfg *rest.Config, namespace, pod string, o ExecOptions) error {
	if len(o.Command) == 0 {
		return fmt.Errorf("exec in pod %s/%s: no command given", namespace, pod)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	container := o.Container
	if container == "" {
		p, err := kube.CoreV1().Pods(namespace).Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("exec in pod %s/%s: %w", namespace, pod, err)
		}
		if len(p.Spec.Containers) == 0 {
			return fmt.Errorf("exec in pod %s/%s: the pod has no containers", namespace, pod)
		}
		container = p.Spec.Containers[0].Name
	}
	req := kube.CoreV1().RESTClient().Post().Resource("pods").Namespace(namespace).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{
			Container: container,
			Command:   o.Command,
			Stdin:     o.Stdin != nil,
			Stdout:    o.Stdout != nil,
			Stderr:    o.Stderr != nil,
		}, scheme.ParameterCodec)
	ws, err := remotecommand.NewWebSocketExecutor(cfg, http.MethodGet, req.URL().String())
	if err != nil {
		return fmt.Errorf("exec in pod %s/%s: %w", namespace, pod, err)
	}
	spdy, err := remotecommand.NewSPDYExecutor(cfg, http.MethodPost, req.URL())
	if err != nil {
		return fmt.Errorf("exec in pod %s/%s: %w", namespace, pod, err)
	}
	exec, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return fmt.Errorf("exec in pod %s/%s: %w", namespace, pod, err)
	}
	return exec.StreamWithContext(ctx, remotecommand.StreamOptions{
		Stdin:  o.Stdin,
		Stdout: o.Stdout,
		Stderr: o.Stderr,
	})
}
