package globalnet

import (
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// TestTable feeds a table the way a reflector does (a list, watch events, a relist)
// and checks the records it keeps and the changes it reports: only real changes of
// the compact record after the first list, never a Pod status update that changes
// neither IP nor labels.
func TestTable(t *testing.T) {
	var events []string
	tb := newTable("pods", compactPod, func(k types.NamespacedName, old, cur *podRec) {
		show := func(r *podRec) string {
			if r == nil {
				return "-"
			}
			return fmt.Sprintf("%s%v", r.IP, r.Labels)
		}
		events = append(events, fmt.Sprintf("%s: %s -> %s", k, show(old), show(cur)))
	})
	pod := func(ns, name, ip string, labels map[string]string, mutate ...func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIPs: []corev1.PodIP{{IP: "fd00::1"}, {IP: ip}}}}
		for _, m := range mutate {
			m(p)
		}
		return p
	}
	step := func(name string, do func() error, want ...string) {
		t.Helper()
		events = nil
		if err := do(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		slices.Sort(events)
		if diff := cmp.Diff(want, events); diff != "" {
			t.Errorf("%s: events (-want +got):\n%s", name, diff)
		}
	}
	select {
	case <-tb.Synced():
		t.Fatal("synced before the first list")
	default:
	}
	// The first list is read whole by whoever waits for the sync: no events.
	step("first list", func() error {
		return tb.Replace([]any{pod("a", "p1", "10.0.0.1", nil), pod("a", "p2", "10.0.0.2", map[string]string{"x": "1"})}, "1")
	})
	select {
	case <-tb.Synced():
	default:
		t.Fatal("not synced after the first list")
	}
	step("a status change that does not matter", func() error {
		return tb.Update(pod("a", "p1", "10.0.0.1", nil, func(p *corev1.Pod) { p.Status.Conditions = []corev1.PodCondition{{Type: "Ready"}} }))
	})
	step("host network", func() error {
		return tb.Update(pod("a", "p1", "10.0.0.1", nil, func(p *corev1.Pod) { p.Spec.HostNetwork = true }))
	}, "a/p1: 10.0.0.1map[] -> invalid IPmap[]")
	step("added", func() error { return tb.Add(pod("b", "p3", "10.0.0.3", nil)) }, "b/p3: - -> 10.0.0.3map[]")
	step("deleted, as a tombstone", func() error {
		return tb.Delete(cache.DeletedFinalStateUnknown{Key: "b/p3", Obj: pod("b", "p3", "10.0.0.3", nil)})
	}, "b/p3: 10.0.0.3map[] -> -")
	step("relist: one gone, one changed, one new, one the same", func() error {
		return tb.Replace([]any{pod("a", "p2", "10.0.0.2", map[string]string{"x": "2"}), pod("c", "p4", "10.0.0.4", nil),
			&entry[podRec]{key: types.NamespacedName{Namespace: "c", Name: "p5"}, rec: podRec{}}}, "2")
	}, "a/p1: invalid IPmap[] -> -", "a/p2: 10.0.0.2map[x:1] -> 10.0.0.2map[x:2]", "c/p4: - -> 10.0.0.4map[]", "c/p5: - -> invalid IPmap[]")

	var names []string
	for _, r := range tb.All() {
		names = append(names, r.Key.String())
	}
	if diff := cmp.Diff([]string{"a/p2", "c/p4", "c/p5"}, names); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	if got := tb.List("c"); len(got) != 2 || got[0].Name != "p4" || got[1].Name != "p5" || tb.Len() != 3 {
		t.Errorf("List(c) = %+v, Len %d", got, tb.Len())
	}
	if _, err := tb.Transformer()(&corev1.Service{}); err == nil {
		t.Error("the pods table took a Service")
	}
}
