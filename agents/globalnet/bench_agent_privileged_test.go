//go:build linux

package globalnet

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/submariner-go/submariner/agents/netkit/netns"
	"github.com/submariner-go/submariner/agents/netkit/netns/netnstest"
	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/controlplane"
)

// agentBench is the globalnet binary running against a control plane full of
// exported Services, in a network namespace of its own.
type agentBench struct {
	b          *testing.B
	plane      *controlplane.Plane
	c          client.Client
	ns         *netns.NS
	bin        string
	kubeconfig string
	metrics    string // host:port of the agent's metrics inside ns
	cmd        *exec.Cmd
	out        bytes.Buffer
}

const benchNamespaces = 10

func newAgentBench(b *testing.B, n int) *agentBench {
	b.Helper()
	plane := controlplane.StartWith(b, controlplane.Options{APIServerFlags: map[string][]string{
		// Every exported Service has an internal Service: room for both.
		"service-cluster-ip-range": {"10.96.0.0/12"},
	}}, "globalnet-bench")[0]
	cfg := rest.CopyConfig(plane.Config)
	cfg.QPS, cfg.Burst = 2000, 4000
	c, err := client.New(cfg, client.Options{Scheme: controlplane.Scheme()})
	if err != nil {
		b.Fatal(err)
	}
	ab := &agentBench{b: b, plane: plane, c: c, ns: netnstest.New(b), metrics: "127.0.0.1:32781"}

	root, err := controlplane.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	ab.bin = filepath.Join(b.TempDir(), "globalnet")
	build := exec.Command("go", "build", "-o", ab.bin, "./cmd/globalnet")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building cmd/globalnet: %v\n%s", err, out)
	}

	apiURL, err := url.Parse(plane.Config.Host)
	if err != nil {
		b.Fatal(err)
	}
	kc, err := os.ReadFile(plane.Kubeconfig)
	if err != nil {
		b.Fatal(err)
	}
	ab.kubeconfig = filepath.Join(b.TempDir(), "globalnet.kubeconfig")
	kc = bytes.ReplaceAll(kc, []byte(apiURL.Host), []byte(forwardB(b, ab.ns, apiURL.Host)))
	if err := os.WriteFile(ab.kubeconfig, kc, 0o600); err != nil {
		b.Fatal(err)
	}

	ctx := context.Background()
	objs := []client.Object{namespace(submv1.ComponentNamespace), namespace("bench-extra"),
		endpoint("cluster1-gw", "cluster1", "gw", "242.0.0.0/16"), endpoint("cluster2-gw", "cluster2", "c2-gw", "242.1.0.0/16"), gatewayObj("gw")}
	for i := 0; i < benchNamespaces; i++ {
		objs = append(objs, namespace(fmt.Sprintf("bench-%d", i)))
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			b.Fatal(err)
		}
	}
	// Create the Services and exports with a few workers.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				ns, name := fmt.Sprintf("bench-%d", i%benchNamespaces), fmt.Sprintf("svc-%d", i)
				if err := ab.create(ctx, ns, name); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	return ab
}

func (ab *agentBench) create(ctx context.Context, ns, name string) error {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": name},
		Ports:    []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}},
	}}
	if err := ab.c.Create(ctx, svc); err != nil {
		return fmt.Errorf("creating Service %s/%s: %w", ns, name, err)
	}
	if err := ab.c.Create(ctx, &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}); err != nil {
		return fmt.Errorf("exporting Service %s/%s: %w", ns, name, err)
	}
	return nil
}

func (ab *agentBench) export(ns, name string) {
	if err := ab.create(context.Background(), ns, name); err != nil {
		ab.b.Fatal(err)
	}
}

func (ab *agentBench) unexport(ns, name string) {
	if err := ab.c.Delete(context.Background(), &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}); err != nil {
		ab.b.Fatal(err)
	}
}

// start runs the agent inside the namespace (ip netns exec execs, so the PID is the
// agent's).
func (ab *agentBench) start() {
	ab.out.Reset()
	ab.cmd = exec.Command("ip", "netns", "exec", ab.ns.Name, ab.bin,
		"--kubeconfig="+ab.kubeconfig, "--cluster-id=cluster1", "--node-name=gw",
		"--cluster-cidr=10.241.0.0/16", "--service-cidr=10.96.0.0/12", "--global-cidr=242.0.0.0/16",
		"--metrics-addr="+ab.metrics)
	ab.cmd.Stdout, ab.cmd.Stderr = &ab.out, &ab.out
	if err := ab.cmd.Start(); err != nil {
		ab.b.Fatalf("starting globalnet: %v", err)
	}
}

// kill stops the agent with SIGTERM and waits for it.
func (ab *agentBench) kill() {
	if ab.cmd == nil {
		return
	}
	_ = ab.cmd.Process.Signal(syscall.SIGTERM)
	_ = ab.cmd.Wait()
	ab.cmd = nil
}

func (ab *agentBench) stop() {
	ab.kill()
	if ab.b.Failed() {
		ab.b.Logf("globalnet's output (last 4 KiB):\n%s", tail(ab.out.String(), 4096))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// get fetches path from the agent's HTTP server inside the namespace.
func (ab *agentBench) get(path string) (int, string, error) {
	var code int
	var body []byte
	err := ab.ns.Do(func() error {
		conn, err := net.DialTimeout("tcp", ab.metrics, time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: agent\r\n\r\n", path); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		code = resp.StatusCode
		body, err = io.ReadAll(resp.Body)
		return err
	})
	return code, string(body), err
}

// metric returns the sum of the agent's samples of a metric (0 when absent).
func (ab *agentBench) metric(name string) float64 {
	_, body, err := ab.get("/metrics")
	if err != nil {
		ab.b.Fatalf("reading the agent's metrics: %v", err)
	}
	return sumMetric(body, name)
}

func sumMetric(body, name string) float64 {
	total := 0.0
	for _, l := range strings.Split(body, "\n") {
		if !strings.HasPrefix(l, name+" ") && !strings.HasPrefix(l, name+"{") {
			continue
		}
		f := strings.Fields(l)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			total += v
		}
	}
	return total
}

func (ab *agentBench) waitMetric(name string, want float64, timeout time.Duration) {
	ab.b.Helper()
	last := 0.0
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		_, body, err := ab.get("/metrics")
		if err != nil {
			return false, nil //nolint:nilerr // not serving yet
		}
		last = sumMetric(body, name)
		return last == want, nil
	})
	if err != nil {
		ab.b.Fatalf("waiting for %s to be %v: %v (last %v)", name, want, err, last)
	}
}

func (ab *agentBench) waitReady(timeout time.Duration) {
	ab.b.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		code, _, err := ab.get("/readyz")
		return err == nil && code == http.StatusOK, nil
	})
	if err != nil {
		ab.b.Fatalf("waiting for the agent to be ready: %v", err)
	}
}

// memory returns the agent's VmRSS and VmHWM in MiB.
func (ab *agentBench) memory() (rss, hwm float64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", ab.cmd.Process.Pid))
	if err != nil {
		ab.b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		kib, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kib / 1024
		case "VmHWM:":
			hwm = kib / 1024
		}
	}
	return rss, hwm
}

// forwardB is forward for benchmarks.
func forwardB(b *testing.B, ns *netns.NS, target string) string {
	b.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", "127.0.0.1:0"); return err }); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go relay(ln, target)
	return ln.Addr().String()
}

// relay accepts on ln and copies every connection to and from target.
func relay(ln net.Listener, target string) {
	for {
		in, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer in.Close()
			out, err := net.Dial("tcp", target)
			if err != nil {
				return
			}
			defer out.Close()
			go func() { _, _ = io.Copy(out, in) }()
			_, _ = io.Copy(in, out)
		}()
	}
}
