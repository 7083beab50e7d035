package clustersettest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/sandbox/sandboxtest"
)

// step runs f as the subtest name and, when it fails, keeps the logs of the
// clusters' component pods (the later steps, uninstall among them, remove the
// pods and their logs).
func step(t *testing.T, name string, f func(t *testing.T), clusters ...*sandboxtest.Cluster) {
	t.Run(name, func(t *testing.T) {
		defer func() {
			if t.Failed() {
				KeepComponentLogs(t, clusters...)
			}
		}()
		f(t)
	})
}

// KeepComponentLogs writes the logs of every container of the component pods
// of clusters (the current run and the previous one, when there is one) into a
// new directory and says where.
func KeepComponentLogs(t testing.TB, clusters ...*sandboxtest.Cluster) {
	t.Helper()
	dir, err := os.MkdirTemp("", "clusterset-logs-")
	if err != nil {
		t.Logf("keeping the component logs: %v", err)
		return
	}
	ctx := context.Background()
	for _, c := range clusters {
		pods, err := c.Kube.CoreV1().Pods(submv1.ComponentNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Logf("keeping the component logs of %s: %v", c.Name, err)
			continue
		}
		for _, p := range pods.Items {
			for _, ctr := range p.Spec.Containers {
				for _, previous := range []bool{false, true} {
					raw, err := c.Kube.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: ctr.Name, Previous: previous}).DoRaw(ctx)
					if err != nil {
						continue // no previous run, or the node is gone
					}
					name := fmt.Sprintf("%s-%s-%s-%s", c.Name, p.Spec.NodeName, p.Name, ctr.Name)
					if previous {
						name += "-previous"
					}
					if err := os.WriteFile(filepath.Join(dir, name+".log"), raw, 0o644); err != nil {
						t.Logf("keeping the component logs: %v", err)
					}
				}
			}
		}
	}
	t.Logf("the component pods' logs are kept in %s", dir)
}
