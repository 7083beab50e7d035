package syncer

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// probeTimeout bounds one reachability probe of the broker.
const probeTimeout = 10 * time.Second

// maxProbeInterval caps the interval between probes, so that a returning broker
// is noticed within seconds even after a long outage; one GET of /readyz every
// few seconds costs the broker nothing.
const maxProbeInterval = 5 * time.Second

// reachability tracks whether the broker answers. Errors that say it does not
// (connection refused, reset, timeouts, 503) mark it unreachable; one prober then
// polls it with a capped, jittered backoff, and when the probe succeeds it is
// reachable again and onRecover runs. While it is unreachable, wait blocks: the
// broker informers wait there instead of retrying on their own schedule, so that
// they relist as soon as the broker is back.
type reachability struct {
	probe     func(context.Context) error
	backoff   Backoff
	onChange  func(reachable bool)
	onRecover func()
	log       logr.Logger

	// probers counts the running probers, so that Run can wait for them.
	probers sync.WaitGroup

	mu sync.Mutex
	// ctx is the context of the running syncer; the prober stops with it.
	ctx context.Context
	// up is closed while the broker is reachable, open while it is not.
	up chan struct{}
}

func newReachability(probe func(context.Context) error, b Backoff, log logr.Logger) *reachability {
	up := make(chan struct{})
	close(up)
	b.Max = min(b.Max, maxProbeInterval)
	b.Initial = min(b.Initial, b.Max)
	return &reachability{probe: probe, backoff: b, log: log, up: up, ctx: context.Background()}
}

// start sets the context the prober runs in.
func (r *reachability) start(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ctx = ctx
}

// reachable reports whether the broker is believed to answer.
func (r *reachability) reachable() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.up:
		return true
	default:
		return false
	}
}

// wait blocks until the broker is reachable or ctx is done.
func (r *reachability) wait(ctx context.Context) error {
	r.mu.Lock()
	up := r.up
	r.mu.Unlock()
	select {
	case <-up:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// observe looks at an error of a broker request and, when it says the broker does
// not answer, marks it unreachable and starts the prober. It reports whether it did.
func (r *reachability) observe(err error) bool {
	if !isUnreachable(err) {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.up:
	default:
		return true // already unreachable, the prober runs
	}
	r.up = make(chan struct{})
	r.log.Info("Broker unreachable, keeping the local copies and probing it", "error", err.Error())
	if r.onChange != nil {
		r.onChange(false)
	}
	ctx, up := r.ctx, r.up
	r.probers.Go(func() { r.runProber(ctx, up) })
	return true
}

// runProber probes the broker until it answers or ctx is done, then marks it
// reachable. It stops early when a successful request already did.
func (r *reachability) runProber(ctx context.Context, up chan struct{}) {
	for failures := 0; ; failures++ {
		timer := time.NewTimer(r.backoff.delay(failures, rand.Float64()))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-up:
			timer.Stop()
			return
		case <-timer.C:
		}
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		err := r.probe(pctx)
		cancel()
		if err == nil {
			r.recovered(up)
			return
		}
		if ctx.Err() != nil {
			return
		}
		r.log.V(2).Info("Broker still unreachable", "attempt", failures+1, "error", err.Error())
	}
}

// succeeded records that a request to the broker got an answer: if the broker
// was unreachable, it is reachable again.
func (r *reachability) succeeded() {
	r.mu.Lock()
	up := r.up
	r.mu.Unlock()
	r.recovered(up)
}

// recovered marks the broker reachable, once per outage (up is the outage's
// channel), and runs the callbacks.
func (r *reachability) recovered(up chan struct{}) {
	r.mu.Lock()
	select {
	case <-up:
		r.mu.Unlock()
		return // already reachable
	default:
	}
	close(up)
	r.mu.Unlock()
	r.log.Info("Broker reachable again, reconciling everything")
	if r.onChange != nil {
		r.onChange(true)
	}
	if r.onRecover != nil {
		r.onRecover()
	}
}

// isUnreachable reports whether err says that the API server did not answer, as
// opposed to answering with a refusal.
func isUnreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return true // no answer from the server: connection refused, reset, EOF, timeout
	}
	return apierrors.IsServiceUnavailable(err) || apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err)
}
