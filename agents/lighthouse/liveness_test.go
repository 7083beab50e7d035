package lighthouse

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	testingclock "k8s.io/utils/clock/testing"
)

// fakeBroker answers the tracker's fresh reads of Leases.
type fakeBroker struct {
	mu     sync.Mutex
	leases map[string]*coordinationv1.Lease
	down   bool
}

func (b *fakeBroker) get(_ context.Context, name string) (*coordinationv1.Lease, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down {
		return nil, errors.New("dial tcp 127.0.0.1:6443: connect: connection refused")
	}
	l, ok := b.leases[name]
	if !ok {
		return nil, apierrors.NewNotFound(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, name)
	}
	return l.DeepCopy(), nil
}

func (b *fakeBroker) put(l *coordinationv1.Lease) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.leases[l.Name] = l.DeepCopy()
}

func lease(cluster, rv string, renewed time.Time, seconds int32) *coordinationv1.Lease {
	rt := metav1.NewMicroTime(renewed)
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: LeaseName(cluster), ResourceVersion: rv},
		Spec:       coordinationv1.LeaseSpec{RenewTime: &rt, LeaseDurationSeconds: &seconds},
	}
}

func TestLiveness(t *testing.T) {
	clk := testingclock.NewFakeClock(t0)
	b := &fakeBroker{leases: map[string]*coordinationv1.Lease{}}
	l := newLiveness("cluster1", time.Minute, clk, b.get, logr.Discard())
	ctx := context.Background()
	alive := func() map[string]bool {
		names, live := l.States()
		out := map[string]bool{}
		for i, n := range names {
			out[n] = live[i]
		}
		return out
	}
	check := func(step string, want map[string]bool) {
		t.Helper()
		if diff := cmp.Diff(want, alive()); diff != "" {
			t.Errorf("%s: clusters alive (-want +got):\n%s", step, diff)
		}
		for c, live := range want {
			if l.Live(c) != live {
				t.Errorf("%s: Live(%s) = %v, want %v", step, c, l.Live(c), live)
			}
		}
	}

	if !l.Live("cluster1") || l.Live("cluster9") {
		t.Fatal("this cluster must always be alive and an unknown cluster never")
	}
	// cluster2 renewed 10 s ago with a 30 s lease; cluster3's lease says nothing
	// of its duration (the default, a minute, applies) and was renewed in the
	// future by a clock ahead of ours.
	l2 := lease("cluster2", "1", t0.Add(-10*time.Second), 30)
	l3 := lease("cluster3", "1", t0.Add(time.Hour), 0)
	b.put(l2)
	b.put(l3)
	if !l.observe(l2) || !l.observe(l3) {
		t.Error("observing new clusters reported no change")
	}
	if l.observe(lease("cluster1", "9", t0, 30)) {
		t.Error("this cluster's own Lease reported a change")
	}
	check("observed", map[string]bool{"cluster2": true, "cluster3": true})
	due, next := l.due()
	if len(due) != 0 || !next.Equal(t0.Add(20*time.Second)) {
		t.Errorf("due = %v next %v, want none, next at t0+20s", due, next)
	}

	clk.Step(20 * time.Second)
	due, _ = l.due()
	if diff := cmp.Diff([]string{"cluster2"}, due); diff != "" {
		t.Fatalf("due after 20 s (-want +got):\n%s", diff)
	}

	t.Run("the broker does not answer: nobody expires", func(t *testing.T) {
		b.down = true
		if l.confirm(ctx, "cluster2") {
			t.Error("confirm reported a change while the broker was down")
		}
		check("broker down", map[string]bool{"cluster2": true, "cluster3": true})
		if due, next := l.due(); len(due) != 0 || !next.Equal(clk.Now().Add(confirmRetry)) {
			t.Errorf("due = %v next %v: want cluster2 looked at again after %v", due, next, confirmRetry)
		}
		if l.Reachable() {
			t.Error("the tracker did not notice that the broker does not answer")
		}
		// Back after the outage, nobody has renewed yet: everyone gets a lease
		// duration from now, since nobody could renew while it was down.
		clk.Step(confirmRetry)
		b.down = false
		if l.confirm(ctx, "cluster2") {
			t.Error("confirm expired a cluster right after the broker came back")
		}
		check("broker back", map[string]bool{"cluster2": true, "cluster3": true})
		if _, next := l.due(); !next.Equal(clk.Now().Add(30 * time.Second)) {
			t.Errorf("next deadline %v, want a full lease (30 s) after the broker came back, %v", next, clk.Now().Add(30*time.Second))
		}
	})

	t.Run("a renewal the watch has not delivered yet keeps the cluster", func(t *testing.T) {
		renewed := lease("cluster2", "2", clk.Now(), 30)
		b.put(renewed)
		if l.confirm(ctx, "cluster2") {
			t.Error("confirm reported a change for a renewed Lease")
		}
		check("renewed", map[string]bool{"cluster2": true, "cluster3": true})
		if l.observe(renewed) {
			t.Error("the watch delivering the renewal later reported a change")
		}
	})

	t.Run("an unchanged Lease past its deadline expires the cluster", func(t *testing.T) {
		clk.Step(30 * time.Second)
		if !l.confirm(ctx, "cluster2") {
			t.Error("confirm reported no change for an expired cluster")
		}
		check("expired", map[string]bool{"cluster2": false, "cluster3": true})
		if due, _ := l.due(); len(due) != 0 {
			t.Errorf("an expired cluster is due again: %v", due)
		}
	})

	t.Run("a renewal brings it back", func(t *testing.T) {
		if !l.observe(lease("cluster2", "3", clk.Now(), 30)) {
			t.Error("renewing an expired cluster reported no change")
		}
		check("back", map[string]bool{"cluster2": true, "cluster3": true})
	})

	t.Run("a deleted Lease: the cluster left", func(t *testing.T) {
		if !l.forget(LeaseName("cluster3")) {
			t.Error("forgetting a live cluster reported no change")
		}
		check("left", map[string]bool{"cluster2": true})
		if l.Live("cluster3") {
			t.Error("a cluster without a Lease is alive")
		}
	})

	t.Run("first seen long after its last renewal: expired once the broker confirms", func(t *testing.T) {
		stale := lease("cluster4", "1", clk.Now().Add(-time.Hour), 30)
		b.put(stale)
		l.observe(stale)
		if !l.Live("cluster4") {
			t.Error("a stale Lease expired without the broker's confirmation")
		}
		due, _ := l.due()
		if diff := cmp.Diff([]string{"cluster4"}, due); diff != "" {
			t.Fatalf("due (-want +got):\n%s", diff)
		}
		if !l.confirm(ctx, "cluster4") || l.Live("cluster4") {
			t.Error("the confirmed stale Lease did not expire its cluster")
		}
	})

	t.Run("a Lease deleted on the broker found while confirming", func(t *testing.T) {
		clk.Step(31 * time.Second)
		b.mu.Lock()
		delete(b.leases, LeaseName("cluster2"))
		b.mu.Unlock()
		if !l.confirm(ctx, "cluster2") || l.Live("cluster2") {
			t.Error("a cluster whose Lease is gone from the broker is still alive")
		}
	})
}

// TestLivenessRun runs the tracker's loop on a fake clock: the expiry is
// noticed at the deadline without any event, and reported once.
func TestLivenessRun(t *testing.T) {
	clk := testingclock.NewFakeClock(t0)
	b := &fakeBroker{leases: map[string]*coordinationv1.Lease{}}
	l := newLiveness("cluster1", time.Minute, clk, b.get, logr.Discard())
	changes := make(chan struct{}, 10)
	l.onChange = func() { changes <- struct{}{} }
	l2 := lease("cluster2", "1", t0, 10)
	b.put(l2)
	l.observe(l2)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.run(ctx) }()
	defer func() { cancel(); <-done }()

	// The timeout guards against a hang only.
	if err := wait.PollUntilContextTimeout(ctx, time.Millisecond, time.Minute, true,
		func(context.Context) (bool, error) { return clk.HasWaiters(), nil }); err != nil {
		t.Fatalf("waiting for the loop to wait for the deadline: %v", err)
	}
	if !l.Live("cluster2") {
		t.Fatal("cluster2 expired before its deadline")
	}
	clk.Step(10 * time.Second)
	select {
	case <-changes:
	case <-time.After(time.Minute):
		t.Fatal("no change reported after the deadline")
	}
	if l.Live("cluster2") {
		t.Error("cluster2 is alive after its deadline")
	}
	select {
	case <-changes:
		t.Error("the expiry was reported twice")
	default:
	}
}
