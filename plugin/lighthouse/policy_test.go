package lighthouse

import (
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPolicy(t *testing.T) {
	tests := []struct {
		name     string
		policy   Policy
		n, local int
		want     []int // successive picks
	}{
		{"round-robin over three", roundRobin{}, 3, -1, []int{0, 1, 2, 0, 1}},
		{"round-robin ignores the local cluster", roundRobin{}, 2, 1, []int{0, 1, 0}},
		{"round-robin over one", roundRobin{}, 1, -1, []int{0, 0}},
		{"local first", defaultPolicy, 3, 2, []int{2, 2, 2}},
		{"no local candidate: round-robin", defaultPolicy, 2, -1, []int{0, 1, 0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var next atomic.Uint32
			var got []int
			for range tt.want {
				got = append(got, tt.policy.Pick(tt.n, tt.local, &next))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("%s picks (-want +got):\n%s", tt.policy, diff)
			}
		})
	}
}

// TestRoundRobinWraps: the position is a uint32 and wraps without a negative index.
func TestRoundRobinWraps(t *testing.T) {
	var next atomic.Uint32
	next.Store(^uint32(0))
	for range 3 {
		if i := (roundRobin{}).Pick(3, -1, &next); i < 0 || i >= 3 {
			t.Fatalf("Pick = %d, out of range", i)
		}
	}
}
