package lighthouse

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// describeImport renders an aggregated ServiceImport as text: name, annotations
// (export records shortened to their type), spec and status.
func describeImport(si *mcsv1beta1.ServiceImport) string {
	if si == nil {
		return "<none>"
	}
	var notes []string
	for _, k := range sortedKeys(si.Annotations) {
		v := si.Annotations[k]
		if strings.HasPrefix(k, AnnotationExportPrefix) {
			v = strings.SplitN(strings.TrimPrefix(v, `{"type":"`), `"`, 2)[0]
		}
		notes = append(notes, k+"="+v)
	}
	var clusters []string
	for _, c := range si.Status.Clusters {
		clusters = append(clusters, c.Cluster)
	}
	return fmt.Sprintf("%s/%s %s ports=%s affinity=%s clusters=%s annotations=%s", si.Namespace, si.Name, si.Spec.Type,
		formatPorts(si.Spec.Ports), si.Spec.SessionAffinity, strings.Join(clusters, ","), strings.Join(notes, " "))
}

func TestPlanAggregate(t *testing.T) {
	const brokerNS = submv1.BrokerNamespace
	r1 := rec("cluster1", 0, tcp("http", 80))
	r2 := rec("cluster2", 10, tcp("http", 80), tcp("metrics", 9090))
	// build returns the aggregate holding records, as planAggregate writes it.
	build := func(records ...Record) *mcsv1beta1.ServiceImport {
		var si *mcsv1beta1.ServiceImport
		for _, r := range records {
			p, err := planAggregate(si, brokerNS, "demo", "web", r.Cluster, &r)
			if err != nil {
				t.Fatal(err)
			}
			si = p.obj
		}
		si.ResourceVersion, si.UID = "7", "uid-1"
		return si
	}
	base := "submariner-k8s-broker/web-demo ClusterSetIP "
	anno := func(clusters ...string) string {
		keys := []string{"lighthouse.submariner.io/sourceNamespace=demo", "multicluster.kubernetes.io/service-name=web"}
		for _, c := range clusters {
			ts := map[string]string{"cluster1": "1772366400000000000", "cluster2": "1772366410000000000"}[c]
			keys = append(keys, AnnotationExportPrefix+c+"=ClusterSetIP", AnnotationTimestampPrefix+c+"="+ts)
		}
		slices.Sort(keys)
		return strings.Join(keys, " ")
	}
	tests := []struct {
		name    string
		cur     *mcsv1beta1.ServiceImport
		cluster string
		rec     *Record
		wantOp  string
		want    string
		status  bool
		wantErr error
	}{
		{
			name: "nothing to withdraw", cluster: "cluster1",
			wantOp: opNone, want: "<none>",
		},
		{
			name: "the first export creates it", cluster: "cluster1", rec: &r1,
			wantOp: opCreate, status: true,
			want: base + "ports=[http/TCP/80] affinity=None clusters=cluster1 annotations=" + anno("cluster1"),
		},
		{
			name: "a second export adds its record, ports and cluster", cur: build(r1), cluster: "cluster2", rec: &r2,
			wantOp: opUpdate, status: true,
			want: base + "ports=[http/TCP/80 metrics/TCP/9090] affinity=None clusters=cluster1,cluster2 annotations=" + anno("cluster1", "cluster2"),
		},
		{
			name: "the same record again writes nothing", cur: build(r1, r2), cluster: "cluster2", rec: &r2,
			wantOp: opNone,
			want:   base + "ports=[http/TCP/80 metrics/TCP/9090] affinity=None clusters=cluster1,cluster2 annotations=" + anno("cluster1", "cluster2"),
		},
		{
			name: "unexport removes the record, its ports and its cluster", cur: build(r1, r2), cluster: "cluster2",
			wantOp: opUpdate, status: true,
			want: base + "ports=[http/TCP/80] affinity=None clusters=cluster1 annotations=" + anno("cluster1"),
		},
		{
			name: "the last unexport deletes it", cur: build(r1), cluster: "cluster1",
			wantOp: opDelete,
			want:   base + "ports=[http/TCP/80] affinity=None clusters=cluster1 annotations=" + anno("cluster1"),
		},
		{
			name: "withdrawing a record that is not there writes nothing", cur: build(r1), cluster: "cluster2",
			wantOp: opNone,
			want:   base + "ports=[http/TCP/80] affinity=None clusters=cluster1 annotations=" + anno("cluster1"),
		},
		{
			name: "a cluster without a record leaves the others' object alone, even when it is not up to date",
			cur: func() *mcsv1beta1.ServiceImport {
				si := build(r1, r2)
				si.Status.Clusters = nil // as between the creator's two writes
				return si
			}(),
			cluster: "cluster3",
			wantOp:  opNone,
			want:    base + "ports=[http/TCP/80 metrics/TCP/9090] affinity=None clusters= annotations=" + anno("cluster1", "cluster2"),
		},
		{
			name: "a name that belongs to another Service is refused", cluster: "cluster1", rec: &r1,
			cur: &mcsv1beta1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: brokerNS, Name: "web-demo",
				Annotations: map[string]string{mcsv1beta1.LabelServiceName: "web-demo", submv1.LabelSourceNamespace: "x"}}},
			wantErr: errNameTaken,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := planAggregate(tt.cur, brokerNS, "demo", "web", tt.cluster, tt.rec)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), "Service x/web-demo") {
					t.Fatalf("planAggregate error = %v, want %v naming Service x/web-demo", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.op != tt.wantOp || got.statusChanged != tt.status {
				t.Errorf("planAggregate op = %q status %v, want %q status %v", got.op, got.statusChanged, tt.wantOp, tt.status)
			}
			if diff := cmp.Diff(tt.want, describeImport(got.obj)); diff != "" {
				t.Errorf("planAggregate object (-want +got):\n%s", diff)
			}
			if tt.cur != nil && got.obj != nil && got.op != opDelete && got.obj.ResourceVersion != tt.cur.ResourceVersion {
				t.Errorf("the update does not carry the resourceVersion it was planned from (%q, want %q)", got.obj.ResourceVersion, tt.cur.ResourceVersion)
			}
		})
	}
}

func TestHasRecord(t *testing.T) {
	r1 := rec("cluster1", 0, tcp("http", 80))
	p, err := planAggregate(nil, submv1.BrokerNamespace, "demo", "web", "cluster1", &r1)
	if err != nil {
		t.Fatal(err)
	}
	if !hasRecord(p.obj, r1) {
		t.Error("hasRecord is false for the record just written")
	}
	changed := rec("cluster1", 0, tcp("http", 8080))
	if hasRecord(p.obj, changed) {
		t.Error("hasRecord is true for a record whose ports changed")
	}
	if hasRecord(nil, r1) {
		t.Error("hasRecord is true without a ServiceImport")
	}
}
