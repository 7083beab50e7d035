//go:build linux

package gatewaytest

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/submariner-go/submariner/agents/component"
	"github.com/submariner-go/submariner/agents/gateway"
	"github.com/submariner-go/submariner/agents/gateway/cable"
	"github.com/submariner-go/submariner/agents/gateway/cable/cabletest"
	"github.com/submariner-go/submariner/agents/netkit/netns/netnstest"
	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/controlplane"

	_ "github.com/submariner-go/submariner/agents/gateway/cable/vxlan"
	_ "github.com/submariner-go/submariner/agents/gateway/cable/wireguard"
)

func TestMain(m *testing.M) {
	l := funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) }, funcr.Options{})
	ctrl.SetLogger(l)
	klog.SetLogger(l)
	os.Exit(m.Run())
}

// TestPrivilegedGateways runs, for the VXLAN and the WireGuard cable drivers, one
// gateway per cluster in its node's network namespace against real API servers (a
// broker and two clusters): they elect themselves, publish their Endpoints through
// the broker, connect with the real driver, and a pod of cluster1 reaches a pod of
// cluster2 over TCP. The health checker's ICMP probes cross the tunnel: the Gateway
// status shows the connection connected with round-trip times. When the underlay
// fails, the probes go unanswered and the connection turns to error; when it comes
// back, connected again:
//
//	API servers (root netns, loopback): broker, cluster1, cluster2
//	west pod (netns)        west gateway (netns)                      east gateway (netns)        east pod (netns)
//	eth0 10.1.1.2/24 ---veth--- cni0 10.1.1.1/24 (bridge)            cni0 10.2.1.1/24 (bridge) ---veth--- eth0 10.2.1.2/24
//	                            eth0 198.51.100.1/24 <---veth---> eth0 198.51.100.2/24
//	                            gateway c1-gw1 (cluster1)             gateway c2-gw1 (cluster2)
func TestPrivilegedGateways(t *testing.T) {
	netnstest.RequirePrivileged(t)
	controlplane.SkipUnlessAssets(t)
	for _, backend := range []submv1.Backend{submv1.BackendVXLAN, submv1.BackendWireGuard} {
		t.Run(string(backend), func(t *testing.T) { testGateways(t, backend) })
	}
}

func testGateways(t *testing.T, backend submv1.Backend) {
	planes := controlplane.Start(t, "broker", "cluster1", "cluster2")
	broker := planes[0]
	tp := cabletest.New(t)
	psk := make([]byte, 48)
	if _, err := rand.Read(psk); err != nil {
		t.Fatal(err)
	}
	pskFile := filepath.Join(t.TempDir(), "psk")
	if err := os.WriteFile(pskFile, psk, 0o600); err != nil {
		t.Fatal(err)
	}
	createNamespace(t, broker, submv1.BrokerNamespace)
	sides := map[*controlplane.Plane]*cabletest.Side{planes[1]: tp.West, planes[2]: tp.East}
	for p, s := range sides {
		createNamespace(t, p, submv1.ComponentNamespace)
		node := nodeName(s)
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node, Labels: map[string]string{submv1.GatewayLabel: "true"}}}
		if err := p.Client.Create(context.Background(), n); err != nil {
			t.Fatal(err)
		}
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: s.IP.String()}}
		if err := p.Client.Status().Update(context.Background(), n); err != nil {
			t.Fatal(err)
		}
		startGateway(t, p, broker, s, backend, pskFile)
	}
	c1 := planes[1]

	t.Run("connected, with round-trip times from the health checker", func(t *testing.T) {
		waitConnection(t, c1, nodeName(tp.West), func(c submv1.Connection) bool {
			return c.Status == submv1.Connected && c.LatencyRTT != nil && c.LatencyRTT.Last != "" && c.Endpoint.ClusterID == "cluster2"
		})
	})

	t.Run("pod to remote pod over TCP", func(t *testing.T) {
		if err := tp.TCP(10 * time.Second); err != nil {
			t.Fatalf("TCP from cluster1's pod to cluster2's: %v", err)
		}
	})

	t.Run("the underlay fails: error; it comes back: connected", func(t *testing.T) {
		ctx := context.Background()
		if _, err := tp.East.Gateway.Run(ctx, "ip", "link", "set", "eth0", "down"); err != nil {
			t.Fatal(err)
		}
		waitConnection(t, c1, nodeName(tp.West), func(c submv1.Connection) bool {
			return c.Status == submv1.ConnError && strings.HasPrefix(c.StatusMessage, "Failed to successfully ping the remote endpoint IP 10.2.1.1")
		})
		if _, err := tp.East.Gateway.Run(ctx, "ip", "link", "set", "eth0", "up"); err != nil {
			t.Fatal(err)
		}
		waitConnection(t, c1, nodeName(tp.West), func(c submv1.Connection) bool { return c.Status == submv1.Connected })
		if err := tp.TCP(10 * time.Second); err != nil {
			t.Fatalf("TCP after the underlay came back: %v", err)
		}
	})
}

func nodeName(s *cabletest.Side) string {
	return "c" + s.ClusterID[len(s.ClusterID)-1:] + "-gw1"
}

func createNamespace(t *testing.T, p *controlplane.Plane, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := p.Client.Create(context.Background(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// startGateway runs the gateway of s's cluster in s's gateway namespace until the
// test ends.
func startGateway(t *testing.T, p, broker *controlplane.Plane, s *cabletest.Side, backend submv1.Backend, pskFile string) {
	t.Helper()
	n := s.ClusterID[len(s.ClusterID)-1:]
	log := testr.NewWithOptions(t, testr.Options{LogTimestamp: true}).WithName(nodeName(s))
	g, err := gateway.New(gateway.Config{
		ClusterID: s.ClusterID, Namespace: submv1.ComponentNamespace, NodeName: nodeName(s),
		Networks: component.Networks{
			Cluster: []netip.Prefix{netip.MustParsePrefix("10." + n + ".0.0/16")},
			Service: []netip.Prefix{netip.MustParsePrefix("100." + n + ".0.0/16")},
		},
		Backend: backend, Port: submv1.CablePort, NATTDiscoveryPort: submv1.NATDiscoveryPort,
		HealthCheck: true, HealthCheckInterval: gateway.DefaultHealthCheckInterval, MaxPacketLoss: gateway.DefaultMaxPacketLoss,
		PSKFile:       pskFile,
		LeaseDuration: gateway.DefaultLeaseDuration, RenewDeadline: gateway.DefaultRenewDeadline, RetryPeriod: gateway.DefaultRetryPeriod,
		StatusPeriod: gateway.DefaultStatusPeriod, Resync: gateway.DefaultResync,
	}, gateway.Deps{
		Local: p.Config, Broker: broker.Config, BrokerNamespace: submv1.BrokerNamespace,
		Host:   s.Host,
		Driver: cable.Config{WireGuardMode: "auto", WireGuardSocketDir: t.TempDir(), Log: log.WithName(string(backend))},
		Log:    log,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway %s: %v", nodeName(s), err)
		}
	})
}

// waitConnection waits until node's Gateway in p has exactly one connection and
// it satisfies cond.
func waitConnection(t *testing.T, p *controlplane.Plane, node string, cond func(submv1.Connection) bool) {
	t.Helper()
	var last submv1.GatewayStatus
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		var gw submv1.Gateway
		if err := p.Client.Get(ctx, client.ObjectKey{Namespace: submv1.ComponentNamespace, Name: node}, &gw); err != nil {
			return false, nil
		}
		last = gw.Status
		return len(gw.Status.Connections) == 1 && cond(gw.Status.Connections[0]), nil
	})
	if err != nil {
		t.Fatalf("waiting for %s's connection: %v; last status: %+v", node, err, last)
	}
}
