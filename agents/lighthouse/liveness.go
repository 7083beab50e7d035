package lighthouse

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// LeaseName is the name of cluster's liveness Lease on the broker.
func LeaseName(cluster string) string { return LeasePrefix + cluster }

// clusterOfLease returns the cluster whose Lease name is, or false.
func clusterOfLease(name string) (string, bool) {
	c, ok := strings.CutPrefix(name, LeasePrefix)
	return c, ok && c != ""
}

// confirmRetry is how soon a cluster whose expiry could not be confirmed (the
// broker did not answer) is looked at again.
const confirmRetry = 5 * time.Second

// liveness follows the other clusters' Leases on the broker and says which
// clusters are alive: this cluster always; another while its Lease exists and
// has changed within its duration, as measured on this agent's clock (clocks of
// different clusters are never compared, except once, for a Lease seen for the
// first time, whose renewTime says how old it is). A cluster is declared expired
// only after a fresh read of its Lease from the broker confirms it: while the
// broker does not answer, nobody expires, and the last known state stays.
type liveness struct {
	self     string
	duration time.Duration // for Leases without a duration of their own
	clock    clock.Clock
	// get reads a Lease from the broker, bypassing any cache.
	get func(ctx context.Context, name string) (*coordinationv1.Lease, error)
	log logr.Logger

	mu     sync.Mutex
	peers  map[string]*peer
	synced bool
	// unreachable is set while the broker does not answer this agent.
	unreachable bool
	// onChange is called, without the lock, after the set of live clusters changed.
	onChange func()
	// onReachable is called, with the lock held, with every verdict on the broker.
	onReachable func(bool)
	wake        chan struct{}
}

// peer is what the tracker knows about one other cluster's Lease.
type peer struct {
	resourceVersion string
	duration        time.Duration
	// deadline is when the cluster expires unless its Lease changes.
	deadline time.Time
	expired  bool
}

func newLiveness(self string, duration time.Duration, clk clock.Clock,
	get func(context.Context, string) (*coordinationv1.Lease, error), log logr.Logger) *liveness {
	return &liveness{self: self, duration: duration, clock: clk, get: get, log: log,
		peers: map[string]*peer{}, wake: make(chan struct{}, 1), onChange: func() {}}
}

// Live reports whether cluster is alive.
func (l *liveness) Live(cluster string) bool {
	if cluster == l.self {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	p, ok := l.peers[cluster]
	return ok && !p.expired
}

// Synced reports whether the Leases on the broker have been listed once.
func (l *liveness) Synced() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.synced
}

// setSynced records that the Leases have been listed.
func (l *liveness) setSynced() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.synced = true
}

// States returns the other clusters the tracker knows, sorted, and whether each
// is alive.
func (l *liveness) States() ([]string, []bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	names := make([]string, 0, len(l.peers))
	for c := range l.peers {
		names = append(names, c)
	}
	slices.Sort(names)
	live := make([]bool, len(names))
	for i, c := range names {
		live[i] = !l.peers[c].expired
	}
	return names, live
}

// setReachable records whether the broker answers this agent (its own Lease
// renewals and the fresh reads tell). When it answers again after an outage,
// every cluster still alive gets a full lease duration from now to renew: during
// the outage nobody could, and what the informer shows of the Leases is stale.
func (l *liveness) setReachable(ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.onReachable != nil {
		l.onReachable(ok)
	}
	if !ok {
		if !l.unreachable {
			l.log.Info("The broker does not answer: no cluster expires until it does")
		}
		l.unreachable = true
		return
	}
	if !l.unreachable {
		return
	}
	l.unreachable = false
	now := l.clock.Now()
	for _, p := range l.peers {
		if !p.expired && p.deadline.Before(now.Add(p.duration)) {
			p.deadline = now.Add(p.duration)
		}
	}
	l.log.Info("The broker answers again: every cluster has a lease duration to renew")
	l.poke()
}

// Reachable reports whether the broker answered this agent's last request.
func (l *liveness) Reachable() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.unreachable
}

// observe records a Lease as the broker (informer or fresh read) shows it and
// reports whether the set of live clusters changed.
func (l *liveness) observe(lease *coordinationv1.Lease) bool {
	cluster, ok := clusterOfLease(lease.Name)
	if !ok || cluster == l.self {
		return false
	}
	now := l.clock.Now()
	duration := l.duration
	if s := lease.Spec.LeaseDurationSeconds; s != nil && *s > 0 {
		duration = time.Duration(*s) * time.Second
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	p, known := l.peers[cluster]
	switch {
	case !known:
		// Seen for the first time: its renewTime says how old it is, as far as
		// the two clocks agree.
		renewed := now
		if rt := lease.Spec.RenewTime; rt != nil && rt.Time.Before(now) {
			renewed = rt.Time
		}
		p = &peer{resourceVersion: lease.ResourceVersion, duration: duration, deadline: renewed.Add(duration)}
		l.peers[cluster] = p
		l.poke()
		return true
	case p.resourceVersion == lease.ResourceVersion:
		return false
	}
	p.resourceVersion, p.duration, p.deadline = lease.ResourceVersion, duration, now.Add(duration)
	l.poke()
	if p.expired {
		p.expired = false
		l.log.Info("Cluster is alive again", "cluster", cluster)
		return true
	}
	return false
}

// forget records that cluster's Lease is gone and reports whether the set of
// live clusters changed.
func (l *liveness) forget(name string) bool {
	cluster, ok := clusterOfLease(name)
	if !ok || cluster == l.self {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	p, known := l.peers[cluster]
	delete(l.peers, cluster)
	if known && !p.expired {
		l.log.Info("Cluster left: its Lease was deleted", "cluster", cluster)
		return true
	}
	return false
}

// due returns the live clusters whose deadline has passed, sorted, and the next
// deadline after now (zero: none).
func (l *liveness) due() ([]string, time.Time) {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	var next time.Time
	for c, p := range l.peers {
		switch {
		case p.expired:
		case !p.deadline.After(now):
			out = append(out, c)
		case next.IsZero() || p.deadline.Before(next):
			next = p.deadline
		}
	}
	slices.Sort(out)
	return out, next
}

// confirm reads cluster's Lease from the broker and expires the cluster when it
// has not changed; it reports whether the set of live clusters changed.
func (l *liveness) confirm(ctx context.Context, cluster string) bool {
	rctx, cancel := context.WithTimeout(ctx, confirmRetry)
	lease, err := l.get(rctx, LeaseName(cluster))
	cancel()
	if err != nil && !apierrors.IsNotFound(err) {
		l.log.V(1).Info("Cannot read the Lease of a cluster past its deadline; keeping it alive while the broker does not answer",
			"cluster", cluster, "error", err.Error())
		l.setReachable(false)
		l.mu.Lock()
		if p, ok := l.peers[cluster]; ok {
			p.deadline = l.clock.Now().Add(confirmRetry)
		}
		l.mu.Unlock()
		return false
	}
	// The broker answered; after an outage that moves every deadline.
	l.setReachable(true)
	if err != nil {
		return l.forget(LeaseName(cluster))
	}
	if l.observe(lease) {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	p, ok := l.peers[cluster]
	if !ok || p.expired || p.deadline.After(l.clock.Now()) {
		return false
	}
	p.expired = true
	l.log.Info("Cluster expired: its Lease was not renewed in time", "cluster", cluster, "leaseDuration", p.duration.String())
	return true
}

func (l *liveness) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// run expires clusters at their deadlines until ctx is done.
func (l *liveness) run(ctx context.Context) {
	for {
		clusters, next := l.due()
		changed := false
		for _, c := range clusters {
			if l.confirm(ctx, c) {
				changed = true
			}
		}
		if changed {
			l.onChange()
		}
		if len(clusters) > 0 {
			continue // confirming moved the deadlines
		}
		var timer <-chan time.Time
		var t clock.Timer
		if !next.IsZero() {
			t = l.clock.NewTimer(next.Sub(l.clock.Now()))
			timer = t.C()
		}
		select {
		case <-ctx.Done():
		case <-l.wake:
		case <-timer:
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// handler returns the informer event handler that feeds the tracker.
func (l *liveness) handler() toolscache.ResourceEventHandler {
	changed := func(c bool) {
		if c {
			l.onChange()
		}
	}
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if lease, ok := obj.(*coordinationv1.Lease); ok {
				changed(l.observe(lease))
			}
		},
		UpdateFunc: func(_, obj any) {
			if lease, ok := obj.(*coordinationv1.Lease); ok {
				changed(l.observe(lease))
			}
		},
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if lease, ok := obj.(*coordinationv1.Lease); ok {
				changed(l.forget(lease.Name))
			}
		},
	}
}

// leaseKeeper creates and renews this cluster's Lease on the broker.
type leaseKeeper struct {
	cluster, namespace string
	duration           time.Duration
	broker             client.Client
	reader             client.Reader
	clock              clock.Clock
	log                logr.Logger
	// renewed is called after each successful renewal.
	renewed func()
	// reachable is told after each attempt whether the broker answered.
	reachable func(bool)
}

// run renews the Lease every third of its duration until ctx is done. The Lease
// stays when the agent stops: a restarting agent must not make the other
// clusters drop its services.
func (k *leaseKeeper) run(ctx context.Context) {
	period := k.duration / 3
	backoff := wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 1 << 30, Cap: period}
	for {
		delay := period
		// A renewal that takes longer than a period is as good as failed; the
		// bound also keeps a request on a dead connection from blocking renewals.
		rctx, cancel := context.WithTimeout(ctx, period)
		err := k.renew(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// An error with a status is the broker's answer (a refusal); without
			// one the broker was not reached.
			var answered apierrors.APIStatus
			k.reachable(errors.As(err, &answered))
			delay = backoff.Step()
			k.log.V(1).Info("Cannot renew the liveness Lease on the broker, retrying", "error", err.Error(), "retryIn", delay.String())
		} else {
			backoff.Duration, backoff.Steps = 200*time.Millisecond, 1<<30
			k.reachable(true)
			k.renewed()
		}
		t := k.clock.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

// renew creates the Lease, or renews it.
func (k *leaseKeeper) renew(ctx context.Context) error {
	now := metav1.NewMicroTime(k.clock.Now())
	seconds := int32(k.duration / time.Second)
	key := client.ObjectKey{Namespace: k.namespace, Name: LeaseName(k.cluster)}
	var lease coordinationv1.Lease
	err := k.reader.Get(ctx, key, &lease)
	if apierrors.IsNotFound(err) {
		lease = coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name,
				Labels: map[string]string{submv1.ClusterIDLabel: k.cluster}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: new(k.cluster), LeaseDurationSeconds: &seconds,
				AcquireTime: &now, RenewTime: &now},
		}
		if err := k.broker.Create(ctx, &lease, client.FieldOwner(FieldManager)); err != nil {
			return fmt.Errorf("creating Lease %s: %w", key, err)
		}
		k.log.Info("Created the liveness Lease on the broker", "lease", key.String(), "duration", k.duration.String())
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading Lease %s: %w", key, err)
	}
	if lease.Labels == nil {
		lease.Labels = map[string]string{}
	}
	lease.Labels[submv1.ClusterIDLabel] = k.cluster
	lease.Spec.HolderIdentity, lease.Spec.LeaseDurationSeconds, lease.Spec.RenewTime = new(k.cluster), &seconds, &now
	if err := k.broker.Update(ctx, &lease, client.FieldOwner(FieldManager)); err != nil {
		return fmt.Errorf("renewing Lease %s: %w", key, err)
	}
	return nil
}
