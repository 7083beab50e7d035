package syncer

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

var endpointGVK = submv1.SchemeGroupVersion.WithKind("Endpoint")

// ep returns an Endpoint of cluster in namespace as an unstructured object,
// changed by opts.
func ep(t *testing.T, cluster, namespace, name string, opts ...func(*submv1.Endpoint)) *unstructured.Unstructured {
	t.Helper()
	e := &submv1.Endpoint{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, UID: types.UID("uid-" + name), ResourceVersion: "7"},
		Spec: submv1.EndpointSpec{
			ClusterID: cluster, CableName: "submariner-cable-" + cluster + "-192-0-2-1", Hostname: "gw1",
			PrivateIP: "192.0.2.1", Subnets: []string{"10.1.0.0/16"}, Backend: submv1.BackendVXLAN,
		},
	}
	for _, o := range opts {
		o(e)
	}
	u, err := toUnstructured(e, endpointGVK)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func withLabels(kv ...string) func(*submv1.Endpoint) {
	return func(e *submv1.Endpoint) {
		if e.Labels == nil {
			e.Labels = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			e.Labels[kv[i]] = kv[i+1]
		}
	}
}

func withAnnotations(kv ...string) func(*submv1.Endpoint) {
	return func(e *submv1.Endpoint) {
		if e.Annotations == nil {
			e.Annotations = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			e.Annotations[kv[i]] = kv[i+1]
		}
	}
}

func withHost(host string) func(*submv1.Endpoint) {
	return func(e *submv1.Endpoint) { e.Spec.Hostname = host }
}

// summary renders an object as text: key, labels, annotations, and every
// top-level field but the metadata as JSON.
func summary(u *unstructured.Unstructured) string {
	if u == nil {
		return "<none>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%s\n", u.GetNamespace(), u.GetName())
	for _, kind := range []struct {
		name string
		m    map[string]string
	}{{"label", u.GetLabels()}, {"annotation", u.GetAnnotations()}} {
		for _, k := range slices.Sorted(maps.Keys(kind.m)) {
			fmt.Fprintf(&b, "%s %s=%s\n", kind.name, k, kind.m[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(u.Object)) {
		if k == "metadata" {
			continue
		}
		data, _ := json.Marshal(u.Object[k])
		fmt.Fprintf(&b, "%s: %s\n", k, data)
	}
	return b.String()
}

func testSettings(t *testing.T, modify func(*Config[*submv1.Endpoint])) settings {
	t.Helper()
	cfg := validEndpointConfig()
	if modify != nil {
		modify(&cfg)
	}
	s, err := cfg.settings()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// specJSON is the spec of ep's Endpoint of cluster.
func specJSON(cluster string) string {
	return `{"backend":"vxlan","cable_name":"submariner-cable-` + cluster + `-192-0-2-1","cluster_id":"` + cluster +
		`","hostname":"gw1","nat_enabled":false,"private_ip":"192.0.2.1","subnets":["10.1.0.0/16"]}`
}

var endpointSpecJSON = specJSON("cluster1")

func TestDesiredBroker(t *testing.T) {
	stripAndFilter := func(c *Config[*submv1.Endpoint]) {
		c.ToBroker.Filter = func(e *submv1.Endpoint) bool { return e.Labels["skip"] != "true" }
		c.ToBroker.Transform = func(e *submv1.Endpoint) error {
			if e.Spec.Hostname == "" {
				return errors.New("no hostname")
			}
			delete(e.Annotations, "local-only")
			e.Name = "ignored" // the broker name is not the transform's to choose
			return nil
		}
	}
	for _, tc := range []struct {
		name       string
		modify     func(*Config[*submv1.Endpoint])
		src        *unstructured.Unstructured
		want       string
		wantReason string
	}{
		{"labelled and named after its origin", nil,
			ep(t, "cluster1", "submariner-operator", "gw1", withLabels("app", "gw"), withAnnotations("note", "x")), `submariner-k8s-broker/gw1.submariner-operator.cluster1
label app=gw
label submariner-io/clusterID=cluster1
label submariner-io/originatingNamespace=submariner-operator
annotation note=x
annotation syncer.submariner.io/origin-name=gw1
apiVersion: "submariner.io/v1"
kind: "Endpoint"
spec: ` + endpointSpecJSON + "\n", ""},
		{"gone", nil, nil, "<none>", ""},
		{"a copy never goes up", nil, ep(t, "cluster2", "submariner-operator", "x", withLabels(LabelCopy, "true")), "<none>", ""},
		{"another cluster's object never goes up", nil,
			ep(t, "cluster2", "submariner-operator", "x", withLabels(submv1.ClusterIDLabel, "cluster2")), "<none>", ""},
		{"being deleted", nil, ep(t, "cluster1", "submariner-operator", "gw1", func(e *submv1.Endpoint) {
			now := metav1.Now()
			e.DeletionTimestamp = &now
		}), "<none>", ""},
		{"filtered out", stripAndFilter, ep(t, "cluster1", "submariner-operator", "gw1", withLabels("skip", "true")), "<none>", ""},
		{"transformed", stripAndFilter,
			ep(t, "cluster1", "submariner-operator", "gw1", withAnnotations("local-only", "1", "kept", "2")), `submariner-k8s-broker/gw1.submariner-operator.cluster1
label submariner-io/clusterID=cluster1
label submariner-io/originatingNamespace=submariner-operator
annotation kept=2
annotation syncer.submariner.io/origin-name=gw1
apiVersion: "submariner.io/v1"
kind: "Endpoint"
spec: ` + endpointSpecJSON + "\n", ""},
		{"transform refuses", stripAndFilter, ep(t, "cluster1", "submariner-operator", "gw1", withHost("")), "<none>", reasonInvalid},
		{"broker name function gives an invalid name", func(c *Config[*submv1.Endpoint]) {
			c.ToBroker.Name = func(_, _, name string) string { return "Bad_" + name }
		}, ep(t, "cluster1", "submariner-operator", "gw1"), "<none>", reasonInvalid},
		{"status is not synced by default", nil, func() *unstructured.Unstructured {
			u := ep(t, "cluster1", "submariner-operator", "gw1")
			u.Object["status"] = map[string]any{"x": "y"}
			return u
		}(), `submariner-k8s-broker/gw1.submariner-operator.cluster1
label submariner-io/clusterID=cluster1
label submariner-io/originatingNamespace=submariner-operator
annotation syncer.submariner.io/origin-name=gw1
apiVersion: "submariner.io/v1"
kind: "Endpoint"
spec: ` + endpointSpecJSON + "\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testSettings(t, tc.modify)
			got, err := s.desiredBroker(tc.src)
			checkRejection(t, err, tc.wantReason)
			if d := cmp.Diff(tc.want, summary(got)); d != "" {
				t.Errorf("desired broker object (-want +got):\n%s", d)
			}
		})
	}
}

func checkRejection(t *testing.T, err error, wantReason string) {
	t.Helper()
	var rej *rejection
	switch {
	case wantReason == "" && err != nil:
		t.Errorf("unexpected error %v", err)
	case wantReason != "" && !errors.As(err, &rej):
		t.Errorf("error %v, want a rejection (%s)", err, wantReason)
	case wantReason != "" && rej.reason != wantReason:
		t.Errorf("rejected for %s (%v), want %s", rej.reason, err, wantReason)
	}
}

func TestDesiredCopy(t *testing.T) {
	fromLabel := func(c *Config[*submv1.Endpoint]) {
		c.FromBroker.Namespace = NamespaceFromLabel[*submv1.Endpoint](submv1.LabelSourceNamespace)
	}
	// The gateway's filter: never import an endpoint whose subnets overlap ours.
	noOverlap := func(c *Config[*submv1.Endpoint]) {
		c.FromBroker.Filter = func(e *submv1.Endpoint) bool { return !slices.Contains(e.Spec.Subnets, "10.1.0.0/16") }
	}
	renamed := func(c *Config[*submv1.Endpoint]) {
		c.FromBroker.Transform = func(e *submv1.Endpoint) error {
			e.Name = e.Annotations[AnnotationOriginName]
			e.Namespace = "elsewhere"
			delete(e.Labels, submv1.ClusterIDLabel) // put back by the syncer
			return nil
		}
	}
	brokerEP := func(cluster string, opts ...func(*submv1.Endpoint)) *unstructured.Unstructured {
		opts = append([]func(*submv1.Endpoint){
			withLabels(submv1.ClusterIDLabel, cluster, LabelOriginNamespace, "submariner-operator"),
			withAnnotations(AnnotationOriginName, "gw1"),
		}, opts...)
		return ep(t, cluster, "submariner-k8s-broker", "gw1.submariner-operator."+cluster, opts...)
	}
	const copyOfCluster2 = `submariner-operator/gw1.submariner-operator.cluster2
label submariner-io/clusterID=cluster2
label submariner-io/originatingNamespace=submariner-operator
label syncer.submariner.io/copy=true
annotation syncer.submariner.io/broker-name=gw1.submariner-operator.cluster2
annotation syncer.submariner.io/origin-name=gw1
apiVersion: "submariner.io/v1"
kind: "Endpoint"
`
	for _, tc := range []struct {
		name       string
		modify     func(*Config[*submv1.Endpoint])
		b          *unstructured.Unstructured
		want       string
		wantReason string
	}{
		{"another cluster's object comes down", nil, brokerEP("cluster2"),
			copyOfCluster2 + `spec: ` + specJSON("cluster2") + "\n", ""},
		{"our own object never comes down", nil, brokerEP("cluster1"), "<none>", ""},
		{"gone", nil, nil, "<none>", ""},
		{"filtered out", noOverlap, brokerEP("cluster2"), "<none>", ""},
		{"namespace from a label", fromLabel, brokerEP("cluster2", withLabels(submv1.LabelSourceNamespace, "demo")), `demo/gw1.submariner-operator.cluster2
label lighthouse.submariner.io/sourceNamespace=demo
label submariner-io/clusterID=cluster2
label submariner-io/originatingNamespace=submariner-operator
label syncer.submariner.io/copy=true
annotation syncer.submariner.io/broker-name=gw1.submariner-operator.cluster2
annotation syncer.submariner.io/origin-name=gw1
apiVersion: "submariner.io/v1"
kind: "Endpoint"
spec: ` + specJSON("cluster2") + "\n", ""},
		{"no namespace label", fromLabel, brokerEP("cluster2"), "<none>", reasonInvalid},
		{"renamed and moved", renamed, brokerEP("cluster2"), `elsewhere/gw1
label submariner-io/clusterID=cluster2
label submariner-io/originatingNamespace=submariner-operator
label syncer.submariner.io/copy=true
annotation syncer.submariner.io/broker-name=gw1.submariner-operator.cluster2
annotation syncer.submariner.io/origin-name=gw1
apiVersion: "submariner.io/v1"
kind: "Endpoint"
spec: ` + specJSON("cluster2") + "\n", ""},
		{"a shared object comes down everywhere", nil, ep(t, "", "submariner-k8s-broker", "shared"), `submariner-operator/shared
label syncer.submariner.io/copy=true
annotation syncer.submariner.io/broker-name=shared
apiVersion: "submariner.io/v1"
kind: "Endpoint"
spec: ` + specJSON("") + "\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testSettings(t, tc.modify)
			got, err := s.desiredCopy(tc.b)
			checkRejection(t, err, tc.wantReason)
			if d := cmp.Diff(tc.want, summary(got)); d != "" {
				t.Errorf("desired copy (-want +got):\n%s", d)
			}
		})
	}
}

// ops renders actions as "op namespace/name" lines.
func ops(actions []action) []string {
	var out []string
	for _, a := range actions {
		out = append(out, a.op+" "+objectKey(a.obj))
	}
	return out
}

func TestPlanToBroker(t *testing.T) {
	s := testSettings(t, nil)
	sh := shape{}
	src := ep(t, "cluster1", "submariner-operator", "gw1")
	desired, err := s.desiredBroker(src)
	if err != nil {
		t.Fatal(err)
	}
	existing := desired.DeepCopy()
	existing.SetUID("broker-uid")
	existing.SetResourceVersion("42")
	changed, _ := s.desiredBroker(ep(t, "cluster1", "submariner-operator", "gw1", withHost("gw2")))
	otherCluster := existing.DeepCopy()
	otherCluster.SetLabels(map[string]string{submv1.ClusterIDLabel: "cluster2"})
	otherSource := existing.DeepCopy()
	otherSource.SetAnnotations(map[string]string{AnnotationOriginName: "gw9"})
	unannotated := existing.DeepCopy()
	unannotated.SetLabels(map[string]string{submv1.ClusterIDLabel: "cluster1"})
	unannotated.SetAnnotations(nil)
	nullSubnets := existing.DeepCopy()
	nullSubnets.Object["spec"].(map[string]any)["public_ip"] = nil

	for _, tc := range []struct {
		name              string
		desired, existing *unstructured.Unstructured
		memo              writeMemo
		want              []string
		wantReason        string
	}{
		{"missing on the broker", desired, nil, writeMemo{}, []string{"create submariner-k8s-broker/gw1.submariner-operator.cluster1"}, ""},
		{"in sync", desired, existing, writeMemo{}, nil, ""},
		{"a null field is no field", desired, nullSubnets, writeMemo{}, nil, ""},
		{"changed", changed, existing, writeMemo{}, []string{"update submariner-k8s-broker/gw1.submariner-operator.cluster1"}, ""},
		{"source gone", nil, existing, writeMemo{}, []string{"delete submariner-k8s-broker/gw1.submariner-operator.cluster1"}, ""},
		{"source gone, broker object from another source", nil, otherSource, writeMemo{}, nil, ""},
		{"source gone, broker object without origin", nil, unannotated, writeMemo{}, nil, ""},
		{"name taken by another cluster", desired, otherCluster, writeMemo{}, nil, reasonConflict},
		{"name taken by another source", desired, otherSource, writeMemo{}, nil, reasonConflict},
		{"ours without origin is adopted", desired, unannotated,
			writeMemo{}, []string{"update submariner-k8s-broker/gw1.submariner-operator.cluster1"}, ""},
		{"written as wanted, stored differently", changed, existing,
			writeMemo{fingerprint: sh.fingerprint(changed), resourceVersion: "42"}, nil, ""},
		{"written as wanted, changed since", changed, existing,
			writeMemo{fingerprint: sh.fingerprint(changed), resourceVersion: "41"}, []string{"update submariner-k8s-broker/gw1.submariner-operator.cluster1"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			actions, err := s.planToBroker(sh, tc.desired, tc.existing, "submariner-operator", "gw1", tc.memo)
			checkRejection(t, err, tc.wantReason)
			if d := cmp.Diff(tc.want, ops(actions)); d != "" {
				t.Errorf("actions (-want +got):\n%s", d)
			}
		})
	}

	t.Run("update keeps the identity", func(t *testing.T) {
		actions, _ := s.planToBroker(sh, changed, existing, "submariner-operator", "gw1", writeMemo{})
		got := actions[0].obj
		if got.GetUID() != "broker-uid" || got.GetResourceVersion() != "42" {
			t.Errorf("update of uid %q rv %q, want the existing object's (broker-uid, 42)", got.GetUID(), got.GetResourceVersion())
		}
		if host, _, _ := unstructured.NestedString(got.Object, "spec", "hostname"); host != "gw2" {
			t.Errorf("update carries hostname %q, want gw2", host)
		}
	})
}

func TestPlanStatus(t *testing.T) {
	withStatusOf := func(u *unstructured.Unstructured, status any) *unstructured.Unstructured {
		out := u.DeepCopy()
		if status == nil {
			delete(out.Object, "status")
		} else {
			out.Object["status"] = status
		}
		return out
	}
	s := testSettings(t, func(c *Config[*submv1.Endpoint]) { c.SyncStatus = true })
	base, _ := s.desiredBroker(ep(t, "cluster1", "submariner-operator", "gw1"))
	existing := withStatusOf(base, map[string]any{"clusters": []any{"cluster1"}})
	existing.SetResourceVersion("5")
	for _, tc := range []struct {
		name    string
		sh      shape
		desired *unstructured.Unstructured
		want    []string
	}{
		{"subresource: status only", shape{true, true}, withStatusOf(base, map[string]any{"clusters": []any{"cluster1", "cluster2"}}),
			[]string{"update_status submariner-k8s-broker/gw1.submariner-operator.cluster1"}},
		{"subresource: same status", shape{true, true}, withStatusOf(base, map[string]any{"clusters": []any{"cluster1"}}), nil},
		{"subresource: status cleared", shape{true, true}, withStatusOf(existing, map[string]any{}), []string{
			"update_status submariner-k8s-broker/gw1.submariner-operator.cluster1"}},
		{"no subresource: status is content", shape{true, false}, withStatusOf(base, map[string]any{"clusters": []any{"cluster2"}}),
			[]string{"update submariner-k8s-broker/gw1.submariner-operator.cluster1"}},
		{"status not synced", shape{false, true}, withStatusOf(base, map[string]any{"clusters": []any{"cluster2"}}), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			actions, err := s.planToBroker(tc.sh, tc.desired, existing, "submariner-operator", "gw1", writeMemo{})
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, ops(actions)); d != "" {
				t.Errorf("actions (-want +got):\n%s", d)
			}
			for _, a := range actions {
				if a.op == opUpdateStatus && a.obj.GetResourceVersion() != "5" {
					t.Errorf("status update of resourceVersion %q, want the existing 5", a.obj.GetResourceVersion())
				}
			}
		})
	}
}

func TestPlanFromBroker(t *testing.T) {
	s := testSettings(t, nil)
	b := ep(t, "cluster2", "submariner-k8s-broker", "gw1.submariner-operator.cluster2",
		withLabels(submv1.ClusterIDLabel, "cluster2"))
	desired, err := s.desiredCopy(b)
	if err != nil {
		t.Fatal(err)
	}
	current := desired.DeepCopy()
	current.SetUID("copy-uid")
	current.SetResourceVersion("3")
	stale := current.DeepCopy()
	stale.SetNamespace("old-place")
	changedB := b.DeepCopy()
	changedB.Object["spec"].(map[string]any)["hostname"] = "gw9"
	changed, _ := s.desiredCopy(changedB)
	squatter := current.DeepCopy()
	squatter.SetAnnotations(map[string]string{AnnotationBrokerName: "other"})

	const key = "submariner-operator/gw1.submariner-operator.cluster2"
	for _, tc := range []struct {
		name       string
		desired    *unstructured.Unstructured
		copies     []*unstructured.Unstructured
		atTarget   *unstructured.Unstructured
		want       []string
		wantReason string
	}{
		{"no copy yet", desired, nil, nil, []string{"create " + key}, ""},
		{"in sync", desired, []*unstructured.Unstructured{current}, current, nil, ""},
		{"broker object changed", changed, []*unstructured.Unstructured{current}, current, []string{"update " + key}, ""},
		{"broker object gone", nil, []*unstructured.Unstructured{current, stale}, nil,
			[]string{"delete " + key, "delete old-place/gw1.submariner-operator.cluster2"}, ""},
		{"copy moved", desired, []*unstructured.Unstructured{stale}, nil,
			[]string{"delete old-place/gw1.submariner-operator.cluster2", "create " + key}, ""},
		{"target holds another broker object's copy", desired, nil, squatter, nil, reasonConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			actions, err := planFromBroker(shape{}, "gw1.submariner-operator.cluster2", tc.desired, tc.copies, tc.atTarget, writeMemo{})
			checkRejection(t, err, tc.wantReason)
			if d := cmp.Diff(tc.want, ops(actions)); d != "" {
				t.Errorf("actions (-want +got):\n%s", d)
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	in := map[string]any{
		"a": nil, "b": map[string]any{}, "c": []any{}, "d": map[string]any{"e": nil, "f": "x"},
		"g": []any{map[string]any{"h": nil}, "i"}, "j": false, "k": int64(0),
	}
	want := map[string]any{"d": map[string]any{"f": "x"}, "g": []any{nil, "i"}, "j": false, "k": int64(0)}
	if d := cmp.Diff(want, normalize(in)); d != "" {
		t.Errorf("normalize (-want +got):\n%s", d)
	}
	if got := normalize(map[string]any{"a": nil}); got != nil {
		t.Errorf("normalize of an all-null map = %v, want nil", got)
	}
}
