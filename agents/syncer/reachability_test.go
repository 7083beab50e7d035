package syncer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// guard only keeps a broken test from hanging; nothing here is timed.
const guard = 30 * time.Second

func connRefused() error {
	return &url.Error{Op: "Get", URL: "https://127.0.0.1:6443/readyz", Err: &net.OpError{
		Op: "dial", Net: "tcp", Err: fmt.Errorf("connect: %w", syscall.ECONNREFUSED)}}
}

func TestIsUnreachable(t *testing.T) {
	gr := schema.GroupResource{Group: "submariner.io", Resource: "endpoints"}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"no error", nil, false},
		{"connection refused", connRefused(), true},
		{"unexpected EOF", io.ErrUnexpectedEOF, true},
		{"deadline exceeded", context.DeadlineExceeded, true},
		{"503", apierrors.NewServiceUnavailable("starting"), true},
		{"server timeout", apierrors.NewServerTimeout(gr, "list", 1), true},
		{"not found", apierrors.NewNotFound(gr, "x"), false},
		{"conflict", apierrors.NewConflict(gr, "x", errors.New("modified")), false},
		{"forbidden", apierrors.NewForbidden(gr, "x", errors.New("rbac")), false},
		{"our own cancellation", context.Canceled, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := isUnreachable(tc.err); got != tc.want {
				t.Errorf("isUnreachable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

// TestReachabilityProbesUntilBack marks the broker unreachable, lets two probes
// fail and the third succeed, and checks that waiters are released and the
// recovery callback runs exactly once.
func TestReachabilityProbesUntilBack(t *testing.T) {
	var probes atomic.Int32
	r := newReachability(func(context.Context) error {
		if probes.Add(1) < 3 {
			return connRefused()
		}
		return nil
	}, Backoff{Initial: time.Millisecond, Max: 2 * time.Millisecond, Jitter: 0.5}, logr.Discard())
	recovered := make(chan struct{}, 10)
	var changes []bool
	r.onChange = func(up bool) { changes = append(changes, up) }
	r.onRecover = func() { recovered <- struct{}{} }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.start(ctx)

	if r.observe(apierrors.NewNotFound(schema.GroupResource{}, "x")) || !r.reachable() {
		t.Fatal("an answer from the server marked the broker unreachable")
	}
	if !r.observe(connRefused()) || r.reachable() {
		t.Fatal("connection refused did not mark the broker unreachable")
	}
	if !r.observe(connRefused()) {
		t.Error("a second failure while unreachable was not recognised")
	}
	waited := make(chan error, 1)
	go func() { waited <- r.wait(ctx) }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(guard):
		t.Fatal("wait did not return after the broker came back")
	}
	<-recovered
	r.probers.Wait()
	if n := probes.Load(); n != 3 {
		t.Errorf("%d probes, want 3 (two failures, one success, one prober)", n)
	}
	if len(recovered) != 0 {
		t.Error("the recovery callback ran more than once")
	}
	if fmt.Sprint(changes) != "[false true]" {
		t.Errorf("reachability changes %v, want [false true]", changes)
	}
}

// TestReachabilitySuccessEndsTheOutage checks that a request that gets through
// ends the outage at once, without waiting for the prober.
func TestReachabilitySuccessEndsTheOutage(t *testing.T) {
	block := make(chan struct{})
	r := newReachability(func(ctx context.Context) error {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return connRefused()
	}, Backoff{Initial: time.Millisecond, Max: time.Millisecond, Jitter: 0.1}, logr.Discard())
	var recoveries atomic.Int32
	r.onRecover = func() { recoveries.Add(1) }
	ctx, cancel := context.WithCancel(context.Background())
	r.start(ctx)
	r.observe(connRefused())
	r.succeeded()
	if !r.reachable() {
		t.Error("still unreachable after a successful request")
	}
	r.succeeded()
	if n := recoveries.Load(); n != 1 {
		t.Errorf("%d recoveries, want 1", n)
	}
	close(block)
	cancel()
	r.probers.Wait()
	if !r.reachable() {
		t.Error("the prober's failure after the recovery marked the broker unreachable again")
	}
}

func TestReachabilityWaitHonoursContext(t *testing.T) {
	r := newReachability(func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }, DefaultBackoff, logr.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	r.start(ctx)
	r.observe(connRefused())
	cancel()
	if err := r.wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("wait after cancel = %v, want context.Canceled", err)
	}
	r.probers.Wait()
}
