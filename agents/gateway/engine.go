package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/go-logr/logr"

	"github.com/submariner-go/submariner/agents/gateway/cable"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Rejected is a remote Endpoint the engine does not connect to, and why. It shows
// in the Gateway status as a connection in error.
type Rejected struct {
	// Name is the Endpoint object's name.
	Name string
	Spec submv1.EndpointSpec
	// Reason says what is wrong and how to fix it.
	Reason string
}

// Plan is what the engine must do to the driver's tunnels.
type Plan struct {
	// Disconnect lists the tunnels to remove first: their cluster is gone, or has
	// a newer Endpoint with another cable, or an Endpoint that cannot be used.
	Disconnect []cable.Endpoint
	// Connect lists the tunnels to set up or update.
	Connect []cable.Tunnel
	// Keep lists the tunnels that are already as wanted.
	Keep []cable.Tunnel
	// Rejected lists the remote Endpoints that get no tunnel.
	Rejected []Rejected
}

// String renders the plan, one action per line, for tests and logs.
func (p Plan) String() string {
	var b strings.Builder
	for _, e := range p.Disconnect {
		fmt.Fprintf(&b, "disconnect %s (cluster %s)\n", e.CableName, e.ClusterID)
	}
	for _, t := range p.Connect {
		fmt.Fprintf(&b, "connect %s\n", t)
	}
	for _, t := range p.Keep {
		fmt.Fprintf(&b, "keep %s\n", t)
	}
	for _, r := range p.Rejected {
		fmt.Fprintf(&b, "reject %s: %s\n", r.Name, r.Reason)
	}
	return b.String()
}

// PlanTunnels computes, without I/O, the tunnels the local gateway must have:
// one to the newest Endpoint of every remote cluster (by creation time, then
// name), unless that Endpoint is unusable (invalid addresses, another cable
// driver, subnets overlapping the local ones), in which case it is rejected with
// the reason and the cluster gets no tunnel. installed maps remote cluster IDs to
// the tunnels the driver has. Every list in the plan is sorted by cluster ID.
func PlanTunnels(local cable.Endpoint, remotes []submv1.Endpoint, installed map[string]cable.Tunnel) Plan {
	newest := map[string]submv1.Endpoint{}
	for _, ep := range remotes {
		id := ep.Spec.ClusterID
		if id == local.ClusterID || ep.DeletionTimestamp != nil {
			continue
		}
		if cur, ok := newest[id]; !ok || endpointOrder(cur, ep) < 0 {
			newest[id] = ep
		}
	}
	var p Plan
	for _, id := range slices.Sorted(maps.Keys(installed)) {
		if _, ok := newest[id]; !ok {
			p.Disconnect = append(p.Disconnect, installed[id].Remote)
		}
	}
	// Usable Endpoints, oldest first: when two remote clusters' subnets overlap,
	// the one that was there first keeps its tunnel.
	type candidate struct {
		ep     submv1.Endpoint
		tunnel cable.Tunnel
	}
	var candidates []candidate
	reject := func(ep submv1.Endpoint, reason string) {
		p.Rejected = append(p.Rejected, Rejected{Name: ep.Name, Spec: ep.Spec, Reason: reason})
		if have, ok := installed[ep.Spec.ClusterID]; ok {
			p.Disconnect = append(p.Disconnect, have.Remote)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(newest)) {
		ep := newest[id]
		if t, reason := tunnelTo(local, ep); reason != "" {
			reject(ep, reason)
		} else {
			candidates = append(candidates, candidate{ep: ep, tunnel: t})
		}
	}
	slices.SortFunc(candidates, func(a, b candidate) int { return endpointOrder(a.ep, b.ep) })
	var accepted []cable.Tunnel
	for _, c := range candidates {
		if reason := overlapping(c.tunnel, accepted); reason != "" {
			reject(c.ep, reason)
			continue
		}
		accepted = append(accepted, c.tunnel)
	}
	slices.SortFunc(accepted, func(a, b cable.Tunnel) int { return cmp.Compare(a.Remote.ClusterID, b.Remote.ClusterID) })
	for _, t := range accepted {
		have, isInstalled := installed[t.Remote.ClusterID]
		switch {
		case !isInstalled:
			p.Connect = append(p.Connect, t)
		case have.Equal(t):
			p.Keep = append(p.Keep, t)
		case have.Remote.CableName != t.Remote.CableName:
			p.Disconnect = append(p.Disconnect, have.Remote)
			p.Connect = append(p.Connect, t)
		default:
			p.Connect = append(p.Connect, t)
		}
	}
	slices.SortFunc(p.Rejected, func(a, b Rejected) int {
		return cmp.Or(cmp.Compare(a.Spec.ClusterID, b.Spec.ClusterID), cmp.Compare(a.Name, b.Name))
	})
	slices.SortFunc(p.Disconnect, func(a, b cable.Endpoint) int {
		return cmp.Or(cmp.Compare(a.ClusterID, b.ClusterID), cmp.Compare(a.CableName, b.CableName))
	})
	return p
}

// endpointOrder sorts Endpoints oldest first: by creation time, then name.
func endpointOrder(a, b submv1.Endpoint) int {
	if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
		return c
	}
	return cmp.Compare(a.Name, b.Name)
}

// overlapping says why t's subnets cannot be routed next to those of the accepted
// tunnels, or "".
func overlapping(t cable.Tunnel, accepted []cable.Tunnel) string {
	for _, o := range accepted {
		for _, r := range t.Remote.Subnets {
			for _, s := range o.Remote.Subnets {
				if r.Overlaps(s) {
					return fmt.Sprintf("cluster %s's subnet %s overlaps cluster %s's %s (its Endpoint is older): clusters with overlapping CIDRs need Globalnet (subctl join --globalnet)",
						t.Remote.ClusterID, r, o.Remote.ClusterID, s)
				}
			}
		}
	}
	return ""
}

// tunnelTo returns the tunnel from local to ep, or why there can be none.
func tunnelTo(local cable.Endpoint, ep submv1.Endpoint) (cable.Tunnel, string) {
	remote, err := cable.ParseEndpoint(ep.Spec)
	if err != nil {
		return cable.Tunnel{}, fmt.Sprintf("invalid Endpoint %s of cluster %s: %s", ep.Name, ep.Spec.ClusterID, oneLine(err))
	}
	if remote.Backend != local.Backend {
		return cable.Tunnel{}, fmt.Sprintf("cluster %s uses cable driver %s and this cluster %s: every cluster of the clusterset must use the same cable driver (subctl join --cable-driver)",
			remote.ClusterID, remote.Backend, local.Backend)
	}
	for _, r := range remote.Subnets {
		for _, l := range local.Subnets {
			if r.Overlaps(l) {
				return cable.Tunnel{}, fmt.Sprintf("cluster %s's subnet %s overlaps this cluster's %s: clusters with overlapping CIDRs need Globalnet (subctl join --globalnet)",
					remote.ClusterID, r, l)
			}
		}
	}
	t := cable.Tunnel{Local: local, Remote: remote, UseIP: remote.PrivateIP}
	// Without NAT discovery, Submariner's legacy rule: when either side says NAT,
	// go to the remote's public IP (if it has one) and encapsulate for NAT.
	if local.NATEnabled || remote.NATEnabled {
		t.UseNAT = true
		if remote.PublicIP.IsValid() {
			t.UseIP = remote.PublicIP
		}
	}
	return t, ""
}

func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

// Engine keeps the driver's tunnels as PlanTunnels says, and reports them.
type Engine struct {
	driver cable.Driver
	log    logr.Logger

	mu        sync.Mutex
	installed map[string]cable.Tunnel // by remote cluster ID
	failed    map[string]failure      // by remote cluster ID
	rejected  []Rejected
}

// failure is a tunnel the driver could not set up.
type failure struct {
	tunnel cable.Tunnel
	err    error
}

// NewEngine returns an engine driving d, which must be initialised.
func NewEngine(d cable.Driver, log logr.Logger) *Engine {
	return &Engine{driver: d, log: log, installed: map[string]cable.Tunnel{}, failed: map[string]failure{}}
}

// Sync makes the tunnels match PlanTunnels(local, remotes, ...): it disconnects
// first, then connects. A failing tunnel does not stop the others: its error shows
// in its connection's status, and Sync returns the errors together so that the
// caller retries.
func (e *Engine) Sync(ctx context.Context, local cable.Endpoint, remotes []submv1.Endpoint) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := PlanTunnels(local, remotes, e.installed)
	if len(p.Disconnect)+len(p.Connect) > 0 {
		e.log.V(2).Info("Syncing tunnels", "plan", p.String())
	}
	var errs []error
	for _, r := range p.Disconnect {
		if err := e.driver.Disconnect(ctx, r); err != nil {
			errs = append(errs, fmt.Errorf("disconnecting from %s: %w", r.CableName, err))
			continue
		}
		e.log.Info("Disconnected", "cluster", r.ClusterID, "cable", r.CableName)
		if t, ok := e.installed[r.ClusterID]; ok && t.Remote.CableName == r.CableName {
			delete(e.installed, r.ClusterID)
		}
	}
	connecting := map[string]bool{}
	for _, t := range p.Connect {
		id := t.Remote.ClusterID
		connecting[id] = true
		if err := e.driver.Connect(ctx, t); err != nil {
			err = fmt.Errorf("connecting to %s: %w", t.Remote.CableName, err)
			errs = append(errs, err)
			e.failed[id] = failure{tunnel: t, err: err}
			continue
		}
		e.log.Info("Connected", "cluster", id, "cable", t.Remote.CableName, "ip", t.UseIP.String(), "nat", t.UseNAT)
		e.installed[id] = t
		delete(e.failed, id)
	}
	for id := range e.failed {
		if !connecting[id] {
			delete(e.failed, id)
		}
	}
	for _, r := range p.Rejected {
		if !slices.ContainsFunc(e.rejected, func(o Rejected) bool { return o.Name == r.Name && o.Reason == r.Reason }) {
			e.log.Info("Not connecting to a remote Endpoint", "endpoint", r.Name, "reason", r.Reason)
		}
	}
	e.rejected = p.Rejected
	return errors.Join(errs...)
}

// DisconnectAll removes every tunnel (another gateway of the cluster is active).
func (e *Engine) DisconnectAll(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	for _, id := range slices.Sorted(maps.Keys(e.installed)) {
		r := e.installed[id].Remote
		if err := e.driver.Disconnect(ctx, r); err != nil {
			errs = append(errs, fmt.Errorf("disconnecting from %s: %w", r.CableName, err))
			continue
		}
		e.log.Info("Disconnected", "cluster", id, "cable", r.CableName)
		delete(e.installed, id)
	}
	e.failed = map[string]failure{}
	e.rejected = nil
	return errors.Join(errs...)
}

// Tunnels returns the installed tunnels, sorted by remote cluster ID.
func (e *Engine) Tunnels() []cable.Tunnel {
	e.mu.Lock()
	defer e.mu.Unlock()
	return cable.SortedTunnels(e.installed, func(t cable.Tunnel) cable.Tunnel { return t })
}

// Connections returns the state of every tunnel as the driver reports it, of the
// tunnels the driver failed to set up and of the rejected Endpoints, sorted by
// remote cluster ID. Driver errors make every installed tunnel's state an error.
func (e *Engine) Connections(ctx context.Context) []DriverConnection {
	e.mu.Lock()
	installed := maps.Clone(e.installed)
	failed := maps.Clone(e.failed)
	rejected := slices.Clone(e.rejected)
	e.mu.Unlock()

	byCable := map[string]cable.Status{}
	var driverErr error
	if len(installed) > 0 {
		sts, err := e.driver.Connections(ctx)
		driverErr = err
		for _, s := range sts {
			byCable[s.Remote.CableName] = s
		}
	}
	var out []DriverConnection
	for id, t := range installed {
		s, ok := byCable[t.Remote.CableName]
		switch {
		case driverErr != nil:
			s = cable.Status{Status: submv1.ConnError, Message: "reading the tunnel's state: " + oneLine(driverErr)}
		case !ok:
			s = cable.Status{Status: submv1.ConnError, Message: "the cable driver has no tunnel to " + t.Remote.CableName}
		}
		s.Remote, s.UsingIP, s.UsingNAT = t.Remote, t.UseIP, t.UseNAT
		out = append(out, DriverConnection{ClusterID: id, Status: s, Spec: t.Remote.Spec(), Tunnel: &t})
	}
	for id, f := range failed {
		s := cable.Status{Remote: f.tunnel.Remote, Status: submv1.ConnError, Message: oneLine(f.err), UsingIP: f.tunnel.UseIP, UsingNAT: f.tunnel.UseNAT}
		out = append(out, DriverConnection{ClusterID: id, Status: s, Spec: f.tunnel.Remote.Spec()})
	}
	for _, r := range rejected {
		out = append(out, DriverConnection{ClusterID: r.Spec.ClusterID, Status: cable.Status{Status: submv1.ConnError, Message: r.Reason}, Spec: r.Spec})
	}
	slices.SortFunc(out, func(a, b DriverConnection) int {
		return cmp.Or(cmp.Compare(a.ClusterID, b.ClusterID), cmp.Compare(a.Spec.CableName, b.Spec.CableName))
	})
	return out
}

// DriverConnection is one remote cluster's connection before health-check data is
// merged in.
type DriverConnection struct {
	ClusterID string
	Status    cable.Status
	// Spec is the remote Endpoint as published.
	Spec submv1.EndpointSpec
	// Tunnel is the installed tunnel, nil when there is none.
	Tunnel *cable.Tunnel
}
