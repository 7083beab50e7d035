package routeagent

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/submariner-go/submariner/agents/netkit/iptables"
	"github.com/submariner-go/submariner/agents/netkit/vxlan"
)

// Agent converges one node's kernel to the plan of its inputs. It is safe for
// concurrent use; syncs run one at a time.
type Agent struct {
	cfg     Config
	kernel  Kernel
	writer  *iptables.Writer
	metrics *metrics

	mu    sync.Mutex
	last  string          // the last state converged, rendered
	notes map[string]bool // the notes of the last plan, already logged
}

// NewAgent returns an agent for a node of the cluster configured by cfg, acting
// on kernel, with its metrics registered in reg.
func NewAgent(cfg Config, kernel Kernel, reg prometheus.Registerer) (*Agent, error) {
	if kernel.Overlay == nil || kernel.IPTables == nil || kernel.System == nil {
		return nil, errors.New("route agent: the kernel needs Overlay, IPTables and System")
	}
	w, err := iptables.NewWriter(kernel.IPTables, owner)
	if err != nil {
		return nil, fmt.Errorf("route agent: %w", err)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("registering the route agent's metrics: %w", err)
	}
	return &Agent{cfg: cfg, kernel: kernel, writer: w, metrics: m}, nil
}

// Links lists the host's interfaces, for Input.Links.
func (a *Agent) Links(ctx context.Context) ([]Link, error) {
	return a.kernel.System.Links(ctx)
}

// Invalidate makes the next sync read the iptables tables again and repair what
// others changed behind the agent's back. The overlay and the sysctls are read on
// every sync anyway.
func (a *Agent) Invalidate() { a.writer.Invalidate() }

// Sync plans in and makes the kernel match the plan: vx-submariner with its FDB
// entries and routes in one Apply (or its removal when no gateway is known), the
// sysctls, and the iptables chains in at most one iptables-restore. What is already
// as wanted is left alone, so a restarted agent changes nothing. It returns the
// state planned; an error from one mechanism does not stop the others.
func (a *Agent) Sync(ctx context.Context, in Input) (State, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	start := time.Now()
	st, err := a.sync(ctx, in)
	a.metrics.syncs.Inc()
	a.metrics.lastDuration.Set(time.Since(start).Seconds())
	if err != nil {
		a.metrics.syncErrors.Inc()
	}
	return st, err
}

func (a *Agent) sync(ctx context.Context, in Input) (State, error) {
	log := logr.FromContextOrDiscard(ctx)
	st, err := Plan(in, a.cfg)
	if err != nil {
		return State{}, fmt.Errorf("planning node %s: %w", in.NodeName, err)
	}
	a.logNotes(log, st.Notes)
	a.metrics.observe(st)

	var errs []error
	if st.Overlay != nil {
		if err := a.kernel.Overlay.Apply(ctx, *st.Overlay); err != nil {
			errs = append(errs, err)
		}
	} else if err := a.kernel.Overlay.Delete(ctx, vxlan.DeviceName); err != nil {
		errs = append(errs, err)
	}
	// After the overlay: a recreated vx-submariner starts with the default rp_filter.
	if err := a.applySysctls(ctx, st); err != nil {
		errs = append(errs, err)
	}
	res, err := a.writer.Sync(ctx, st.Rules)
	if res.Lines > 0 {
		a.metrics.restores.Inc()
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("writing iptables chains: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		a.last = ""
		return st, err
	}

	text := st.String()
	kv := []any{"activeGateway", st.ActiveGateway, "gateway", st.Gateway, "remoteSubnets", prefixes(st.RemoteSubnets),
		"iptablesFull", res.Full, "iptablesLines", res.Lines, "iptablesWritten", strings.Join(res.Written, ",")}
	if text != a.last {
		log.Info("Converged", kv...)
		log.V(4).Info("Converged state", "state", text)
	} else {
		log.V(4).Info("Unchanged", kv...)
	}
	a.last = text
	return st, nil
}

// logNotes logs the notes that the previous plan did not have.
func (a *Agent) logNotes(log logr.Logger, notes []string) {
	next := make(map[string]bool, len(notes))
	for _, n := range notes {
		next[n] = true
		if !a.notes[n] {
			log.Info("Ignoring input", "reason", n)
		}
	}
	a.notes = next
}

// applySysctls sets the plan's sysctls and loosens strict reverse-path filtering.
// Only values that differ are written.
func (a *Agent) applySysctls(ctx context.Context, st State) error {
	sys := a.kernel.System
	log := logr.FromContextOrDiscard(ctx)
	var errs []error
	for _, sc := range st.Sysctls {
		have, err := sys.Sysctl(ctx, sc.Path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if have == sc.Value {
			continue
		}
		log.Info("Setting sysctl", "path", sc.Path, "value", sc.Value, "was", have)
		if err := sys.SetSysctl(ctx, sc.Path, sc.Value); err != nil {
			errs = append(errs, err)
		}
	}
	if len(st.LooseRPFilter) == 0 {
		return errors.Join(errs...)
	}
	all, err := sys.Sysctl(ctx, sysctlRPFilterAll)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, iface := range st.LooseRPFilter {
		path := rpFilterPath(iface)
		have, err := sys.Sysctl(ctx, path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		// The kernel applies the larger of "all" and the interface's value.
		if max(atoi(all), atoi(have)) != atoi(rpFilterStrict) {
			continue
		}
		log.Info("Loosening reverse-path filtering", "interface", iface, "was", have, "all", all)
		if err := sys.SetSysctl(ctx, path, rpFilterLoose); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func atoi(s string) int {
	n, _ := strconv.Atoi(strings.TrimSpace(s))
	return n
}

// Cleanup removes everything the agent made: vx-submariner with its FDB entries,
// every route and rule of route.ProtocolRouteAgent, the agent's iptables chains and
// the jumps into them. Sysctls stay as they are: forwarding is what a Kubernetes
// node needs anyway, and the rp_filter values that were loosened cannot be told
// from values an administrator set. Nothing to remove is not an error.
func (a *Agent) Cleanup(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.last = ""
	var errs []error
	if err := a.kernel.Overlay.Delete(ctx, vxlan.DeviceName); err != nil {
		errs = append(errs, err)
	}
	res, err := a.writer.Cleanup(ctx)
	if err != nil {
		errs = append(errs, fmt.Errorf("removing iptables chains: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	logr.FromContextOrDiscard(ctx).Info("Removed the route agent's state", "device", vxlan.DeviceName,
		"iptablesChainsDeleted", strings.Join(res.Deleted, ","), "iptablesJumpsDeleted", res.JumpsDeleted)
	return nil
}
