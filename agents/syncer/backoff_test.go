package syncer

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Initial: 200 * time.Millisecond, Max: 30 * time.Second, Jitter: 0.5}
	for _, tc := range []struct {
		name     string
		failures int
		r        float64
		want     time.Duration
	}{
		{"first retry, no jitter drawn", 0, 0, 200 * time.Millisecond},
		{"first retry, half the jitter", 0, 0.5, 150 * time.Millisecond},
		{"doubles", 3, 0, 1600 * time.Millisecond},
		{"capped", 10, 0, 30 * time.Second},
		{"capped with jitter", 10, 0.5, 22500 * time.Millisecond},
		{"no overflow after many failures", 1000, 0, 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := b.delay(tc.failures, tc.r); got != tc.want {
				t.Errorf("delay(%d, %v) = %v, want %v", tc.failures, tc.r, got, tc.want)
			}
		})
	}
}

func TestItemBackoff(t *testing.T) {
	draws := []float64{0, 0.5, 0, 0}
	l := newItemBackoff[string](Backoff{Initial: time.Second, Max: 4 * time.Second, Jitter: 0.5}, func() float64 {
		r := draws[0]
		draws = draws[1:]
		return r
	})
	var got []time.Duration
	for range 3 {
		got = append(got, l.When("a"))
	}
	if n := l.NumRequeues("a"); n != 3 {
		t.Errorf("NumRequeues = %d, want 3", n)
	}
	l.Forget("a")
	got = append(got, l.When("a"))
	want := []time.Duration{time.Second, 1500 * time.Millisecond, 4 * time.Second, time.Second}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("delays (-want +got):\n%s", d)
	}
}
