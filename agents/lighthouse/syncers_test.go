package lighthouse

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// TestLocalImport turns the broker's aggregated ServiceImport into the copies
// the clusters get, as the live clusters make it.
func TestLocalImport(t *testing.T) {
	r1 := rec("cluster1", 0, tcp("http", 80))
	r2 := headless(rec("cluster2", 5, tcp("http", 80), tcp("metrics", 9090)))
	r3 := rec("cluster3", 10, tcp("https", 443))
	var si *mcsv1beta1.ServiceImport
	for _, r := range []Record{r1, r2, r3} {
		p, err := planAggregate(si, submv1.BrokerNamespace, "demo", "web", r.Cluster, &r)
		if err != nil {
			t.Fatal(err)
		}
		si = p.obj
	}
	tests := []struct {
		name string
		dead []string
		want string // "" when there is no copy
	}{
		{
			name: "all alive: the broker's merge",
			want: "demo/web ClusterSetIP ports=[http/TCP/80 https/TCP/443] affinity=None clusters=cluster1,cluster3 " +
				"annotations=lighthouse.submariner.io/sourceNamespace=demo multicluster.kubernetes.io/service-name=web",
		},
		{
			name: "the winner expired: the next oldest decides, and brings its type and ports",
			dead: []string{"cluster1"},
			want: "demo/web Headless ports=[http/TCP/80 metrics/TCP/9090] affinity=None clusters=cluster2 " +
				"annotations=lighthouse.submariner.io/sourceNamespace=demo multicluster.kubernetes.io/service-name=web",
		},
		{
			name: "a cluster expired: its ports and its cluster drop out",
			dead: []string{"cluster3"},
			want: "demo/web ClusterSetIP ports=[http/TCP/80] affinity=None clusters=cluster1 " +
				"annotations=lighthouse.submariner.io/sourceNamespace=demo multicluster.kubernetes.io/service-name=web",
		},
		{
			name: "every exporter expired: no copy",
			dead: []string{"cluster1", "cluster2", "cluster3"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			live := func(c string) bool {
				for _, d := range tt.dead {
					if c == d {
						return false
					}
				}
				return true
			}
			broker := si.DeepCopy()
			if !localImport(broker, live) {
				if tt.want != "" {
					t.Fatal("localImport says there is no copy")
				}
				return
			}
			if tt.want == "" {
				t.Fatal("localImport says there is a copy")
			}
			local := broker.DeepCopy()
			local.Namespace = "demo" // the syncer puts it into the namespace the Namespace function names
			if err := toLocalImport(local, live); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, describeImport(local)); diff != "" {
				t.Errorf("toLocalImport (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(describeImport(si), describeImport(broker)); diff != "" {
				t.Errorf("the broker's object changed (-before +after):\n%s", diff)
			}
		})
	}

	t.Run("a ServiceImport without records comes down as it is", func(t *testing.T) {
		foreign := &mcsv1beta1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: submv1.BrokerNamespace, Name: "db-demo",
			Annotations: map[string]string{mcsv1beta1.LabelServiceName: "db", submv1.LabelSourceNamespace: "demo"}},
			Spec: mcsv1beta1.ServiceImportSpec{Type: mcsv1beta1.ClusterSetIP, IPs: []string{"243.0.0.1"}}}
		if !localImport(foreign, func(string) bool { return false }) {
			t.Fatal("localImport drops a ServiceImport without records")
		}
		if err := toLocalImport(foreign, func(string) bool { return false }); err != nil {
			t.Fatal(err)
		}
		if foreign.Name != "db" || len(foreign.Spec.IPs) != 1 {
			t.Errorf("copy = %s ips %v, want db with its clusterset IP", foreign.Name, foreign.Spec.IPs)
		}
	})
	t.Run("a ServiceImport that names no Service is refused", func(t *testing.T) {
		bad := &mcsv1beta1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Name: "x", Annotations: map[string]string{
			mcsv1beta1.LabelServiceName: "Not_A_Name", submv1.LabelSourceNamespace: "demo"}}}
		if err := toLocalImport(bad, func(string) bool { return true }); err == nil {
			t.Error("toLocalImport accepted a Service name that is not a DNS label")
		}
	})
}
