package e2e

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/e2e/sandbox"
	"github.com/submariner-go/submariner/e2e/sandbox/sandboxtest"
	"github.com/submariner-go/submariner/manifests"
	"github.com/submariner-go/submariner/manifests/manifeststest"
	"github.com/submariner-go/submariner/subctl/commands"
	"github.com/submariner-go/submariner/subctl/coredns"
)

func TestMain(m *testing.M) { sandboxtest.Main(m, sandbox.DefaultOptions()) }

func subctl(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	cmd := commands.New(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	t.Logf("subctl %s\n%s", strings.Join(args, " "), out.String())
	if err != nil {
		t.Fatalf("subctl %s: %v", strings.Join(args, " "), err)
	}
	return out.String()
}

// TestJoin deploys the broker and joins both sandbox clusters with the real
// manifests (VXLAN cable, as the sandbox kernel has no ESP):
//
//	broker
//	  |-- cluster1: c1-gw1, c1-gw2 (gateways), c1-node1
//	  `-- cluster2: c2-gw1, c2-gw2 (gateways), c2-node1
//
// Then, in each cluster: the real DaemonSet controller and scheduler place the
// gateway on exactly the gateway nodes and the route agent on every node; the
// cluster's CoreDNS forwards clusterset.local to the lighthouse CoreDNS Service;
// and each component's ServiceAccount may do what it needs and no more, as the
// sandbox's API server (Node,RBAC authorization) answers SubjectAccessReviews.
func TestJoin(t *testing.T) {
	s := sandboxtest.Get(t)
	ctx := context.Background()
	kubeconfig := func(name string) string {
		t.Helper()
		p, err := s.Kubeconfig(name)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	info := filepath.Join(t.TempDir(), "broker-info.subm")
	subctl(t, "deploy-broker", "--kubeconfig", kubeconfig("broker"), "-o", info)
	for _, name := range []string{"cluster1", "cluster2"} {
		c := sandboxtest.ClusterFor(t, name)
		subctl(t, "join", info, "--kubeconfig", kubeconfig(name), "--clusterid", name, "--cable-driver", "vxlan",
			"--clustercidr", c.Topology.PodCIDR.String(), "--servicecidr", c.Topology.ServiceCIDR.String())
	}
	for _, name := range []string{"cluster1", "cluster2"} {
		t.Run(name, func(t *testing.T) {
			c := sandboxtest.ClusterFor(t, name)
			var gateways, all []string
			for _, n := range c.Topology.Nodes {
				all = append(all, n.Name)
				if n.Gateway {
					gateways = append(gateways, n.Name)
				}
			}
			sort.Strings(gateways)
			sort.Strings(all)
			placed := func(app string) []string {
				var nodes []string
				for _, p := range c.Pods(t, submv1.ComponentNamespace, map[string]string{"app": app}) {
					if p.Spec.NodeName != "" && p.DeletionTimestamp == nil {
						nodes = append(nodes, p.Spec.NodeName)
					}
				}
				sort.Strings(nodes)
				return nodes
			}
			sandboxtest.Eventually(t, func() bool {
				return cmp.Equal(placed(manifests.GatewayDaemonSet), gateways) && cmp.Equal(placed(manifests.RouteAgentDaemonSet), all)
			})
			// With the components built, they also run and get ready.
			for ds, bin := range map[string]string{manifests.GatewayDaemonSet: "gateway", manifests.RouteAgentDaemonSet: "routeagent"} {
				if _, err := os.Stat(filepath.Join(s.Options().BinDir, bin)); err == nil {
					c.WaitDaemonSet(t, submv1.ComponentNamespace, ds)
				} else {
					t.Logf("%s is not built, so %s's pods are placed but cannot run yet", bin, ds)
				}
			}

			svc, err := c.Kube.CoreV1().Services(submv1.ComponentNamespace).Get(ctx, manifests.LighthouseCoreDNSService, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			dns, err := c.Kube.CoreV1().ConfigMaps(coredns.DefaultNamespace).Get(ctx, coredns.DefaultName, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			block, err := coredns.Block(coredns.ServerPort(dns.Data[coredns.CorefileKey]), netip.MustParseAddr(svc.Spec.ClusterIP))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(dns.Data[coredns.CorefileKey], coredns.StartMarker+"\n"+block+coredns.EndMarker+"\n") {
				t.Errorf("the sandbox's Corefile does not forward clusterset.local to %s:\n%s", svc.Spec.ClusterIP, dns.Data[coredns.CorefileKey])
			}

			if manifeststest.Check(t, c.Kube) == 0 {
				t.Error("no access was checked")
			}
		})
	}
}
