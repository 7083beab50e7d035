package sandbox

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites the file with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

func TestProcessSpecs(t *testing.T) {
	topo, err := Plan(2, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	l := Layout{Dir: "/state"}
	const k8s = "/k8s"
	c1 := topo.Clusters[0]
	specs := []procSpec{
		etcdSpec(l, k8s),
		apiServerSpec(l, k8s, topo.Broker),
		apiServerSpec(l, k8s, c1.ControlPlane),
		// The broker has no pods: its controller manager gets no --cluster-cidr.
		controllerManagerSpec(l, k8s, topo.Broker, netip.Prefix{}),
		controllerManagerSpec(l, k8s, c1.ControlPlane, c1.PodCIDR),
		schedulerSpec(l, k8s, c1.ControlPlane),
		kubeProxySpec(l, k8s, c1, c1.Nodes[0]),
	}
	var b strings.Builder
	for _, s := range specs {
		b.WriteString("# " + s.Name + " (stage " + s.Stage + ")\n" + s.Path + "\n")
		for _, a := range s.Args {
			b.WriteString("  " + a + "\n")
		}
	}
	golden(t, "processes.txt", b.String())
}

func TestFabricRules(t *testing.T) {
	for _, tt := range []struct {
		name     string
		clusters int
	}{
		{"fabric-2-clusters.rules", 2},
		{"fabric-3-clusters.rules", 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			topo, err := Plan(tt.clusters, 1, false)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name, fabricRules(topo))
		})
	}
}

func TestRootRules(t *testing.T) {
	golden(t, "root-with-jump.rules", rootRules(true))
	golden(t, "root-without-jump.rules", rootRules(false))
}

func TestCorefile(t *testing.T) {
	golden(t, "Corefile", Corefile())
}
