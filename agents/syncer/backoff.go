package syncer

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/client-go/util/workqueue"
)

// Backoff paces retries: exponential from Initial, doubling per failure, capped at
// Max, with up to Jitter (a fraction) taken off at random so that many objects that
// failed together do not retry together.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
	Jitter  float64
}

// DefaultBackoff retries after 200ms, 400ms, ... up to 30s, each shortened by up
// to half at random.
var DefaultBackoff = Backoff{Initial: 200 * time.Millisecond, Max: 30 * time.Second, Jitter: 0.5}

// Retries of all objects together are held to this rate, so that a burst of
// failures does not become a burst of requests.
const (
	retryQPS   = 10
	retryBurst = 100
)

func (b Backoff) withDefaults() Backoff {
	if b.Initial == 0 {
		b.Initial = DefaultBackoff.Initial
	}
	if b.Max == 0 {
		b.Max = DefaultBackoff.Max
	}
	if b.Jitter == 0 {
		b.Jitter = DefaultBackoff.Jitter
	}
	return b
}

func (b Backoff) validate() error {
	switch {
	case b.Initial < 0 || b.Max < 0:
		return fmt.Errorf("backoff %v..%v has a negative duration: use positive durations, or 0 for the defaults", b.Initial, b.Max)
	case b.Initial > b.Max:
		return fmt.Errorf("backoff initial delay %v exceeds its maximum %v: the initial delay must not be larger", b.Initial, b.Max)
	case b.Jitter < 0 || b.Jitter >= 1:
		return fmt.Errorf("backoff jitter %v is not in [0, 1): it is the fraction of a delay that may be taken off at random", b.Jitter)
	}
	return nil
}

// delay returns the wait before retry number failures+1, with r in [0, 1) the
// random draw: min(Initial*2^failures, Max) * (1 - Jitter*r). It never exceeds Max.
func (b Backoff) delay(failures int, r float64) time.Duration {
	d := b.Initial
	for i := 0; i < failures && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	return d - time.Duration(float64(d)*b.Jitter*r)
}

// itemBackoff is a workqueue rate limiter that applies a Backoff per item.
type itemBackoff[T comparable] struct {
	backoff Backoff
	rand    func() float64

	mu       sync.Mutex
	failures map[T]int
}

var _ workqueue.TypedRateLimiter[item] = (*itemBackoff[item])(nil)

func newItemBackoff[T comparable](b Backoff, rand func() float64) *itemBackoff[T] {
	return &itemBackoff[T]{backoff: b, rand: rand, failures: map[T]int{}}
}

// When returns how long it should wait before it is retried, and counts a failure.
func (l *itemBackoff[T]) When(it T) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.failures[it]
	l.failures[it] = n + 1
	return l.backoff.delay(n, l.rand())
}

// Forget resets the failures of it.
func (l *itemBackoff[T]) Forget(it T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.failures, it)
}

// NumRequeues returns the failures of it since it was last forgotten.
func (l *itemBackoff[T]) NumRequeues(it T) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failures[it]
}

// newRateLimiter returns the syncer queue's rate limiter: b per item, and retryQPS
// over all items.
func newRateLimiter(b Backoff) workqueue.TypedRateLimiter[item] {
	return workqueue.NewTypedMaxOfRateLimiter[item](
		newItemBackoff[item](b, rand.Float64),
		&workqueue.TypedBucketRateLimiter[item]{Limiter: rate.NewLimiter(retryQPS, retryBurst)},
	)
}
