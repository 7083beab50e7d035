package main_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/submariner-go/submariner/agents/component"
	"github.com/submariner-go/submariner/agents/lighthouse"
	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/controlplane"
)

// TestBinary runs the built lighthouse-agent as a Deployment would: the cluster
// through a kubeconfig, the broker through the files of the broker Secret (server,
// ca.crt, a ServiceAccount token bound to lighthouse.BrokerRules), settings from
// the environment. It checks /readyz, an export reaching the broker, /metrics,
// and a clean exit on SIGTERM.
func TestBinary(t *testing.T) {
	planes := controlplane.Start(t, "broker", "cluster1")
	broker, c1 := planes[0], planes[1]
	ctx := context.Background()

	bin := filepath.Join(t.TempDir(), "lighthouse-agent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building lighthouse-agent: %v\n%s", err, out)
	}

	// The broker side of `subctl join`: namespace, Role, the cluster's identity.
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: submv1.BrokerNamespace}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: submv1.BrokerNamespace, Name: "lighthouse-agent"}, Rules: lighthouse.BrokerRules()},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: submv1.BrokerNamespace, Name: "cluster-cluster1"}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: submv1.BrokerNamespace, Name: "cluster-cluster1"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "lighthouse-agent"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: submv1.BrokerNamespace, Name: "cluster-cluster1"}}},
	} {
		if err := broker.Client.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating %T %s on the broker: %v", obj, obj.GetName(), err)
		}
	}
	token, err := broker.Kube.CoreV1().ServiceAccounts(submv1.BrokerNamespace).CreateToken(ctx, "cluster-cluster1",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating a token for cluster-cluster1 on the broker: %v", err)
	}
	server := broker.Config.Host
	if !strings.HasPrefix(server, "https://") {
		server = "https://" + server
	}
	secret := t.TempDir()
	for name, data := range map[string]string{
		component.BrokerSecretServer: server,
		component.BrokerSecretCA:     string(broker.Config.CAData),
		component.BrokerSecretToken:  token.Status.Token,
	} {
		if err := os.WriteFile(filepath.Join(secret, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "--kubeconfig", c1.Kubeconfig, "--metrics-addr", addr)
	cmd.Env = append(os.Environ(), "SUBMARINER_CLUSTERID=cluster1", "BROKER_K8S_SECRET_DIR="+secret, "LIGHTHOUSE_LEASE_DURATION=10s")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("lighthouse-agent output:\n%s", logs.String())
		}
	})

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	poll := func(what string, cond func() bool) {
		t.Helper()
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 3*time.Minute, true, func(context.Context) (bool, error) {
			select {
			case err := <-exited:
				exited <- err
				return false, fmt.Errorf("lighthouse-agent exited: %v", err)
			default:
			}
			return cond(), nil
		})
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
	}
	poll("/readyz", func() bool { code, _ := get("/readyz"); return code == http.StatusOK })

	if err := c1.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}); err != nil {
		t.Fatal(err)
	}
	if err := c1.Client.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}); err != nil {
		t.Fatal(err)
	}
	if err := c1.Client.Create(ctx, &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web"}}); err != nil {
		t.Fatal(err)
	}
	poll("the export on the broker and in the cluster", func() bool {
		var si mcsv1beta1.ServiceImport
		if broker.Client.Get(ctx, client.ObjectKey{Namespace: submv1.BrokerNamespace, Name: "web-demo"}, &si) != nil {
			return false
		}
		return c1.Client.Get(ctx, client.ObjectKey{Namespace: "demo", Name: "web"}, &si) == nil
	})
	poll("the metrics", func() bool {
		_, body := get("/metrics")
		return strings.Contains(body, `submariner_service_import{type="ClusterSetIP"} 1`) &&
			strings.Contains(body, `submariner_lighthouse_broker_reachable 1`) &&
			strings.Contains(body, `submariner_syncer_operations_total`)
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("lighthouse-agent exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("lighthouse-agent did not stop within a minute of SIGTERM")
	}
	// The Lease stays: a restarting agent must not make the others drop its services.
	if _, err := broker.Kube.CoordinationV1().Leases(submv1.BrokerNamespace).Get(ctx, lighthouse.LeaseName("cluster1"), metav1.GetOptions{}); err != nil {
		t.Errorf("the Lease of cluster1 after the agent stopped: %v", err)
	}
}
