package globalnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// reconcileGateway gives the active gateway (this node) a global IP, recorded in the
// annotation submariner.io/globalIp of its Gateway object, and answers ICMP to it on
// this node; other Gateways lose theirs.
func (e *Engine) reconcileGateway(ctx context.Context) error {
	it := item{kind: kindGateway}
	var errs []error
	target, terr := e.healthTarget()
	type annotation struct {
		obj   *submv1.Gateway
		uid   types.UID
		value *string
	}
	var annotate []annotation
	var health HealthCheck
	present := map[string]bool{}
	e.mu.Lock()
	for _, g := range e.t.gateways.List(e.cfg.Namespace) {
		present[g.Name] = true
		own := owner(kindGateway, "", g.Name)
		obj := &submv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: g.Name, Namespace: e.cfg.Namespace}}
		if g.Name != e.cfg.NodeName {
			if g.Rec.GlobalIP != "" {
				annotate = append(annotate, annotation{obj, g.Rec.UID, nil})
			}
			e.release(own)
			continue
		}
		ips, err := e.allocate(it, own, g.Rec.UID, 1)
		if err != nil {
			errs = append(errs, fmt.Errorf("allocating the gateway's global IP: %w", err))
			continue
		}
		if g.Rec.GlobalIP != ips[0].String() {
			annotate = append(annotate, annotation{obj, g.Rec.UID, ptrTo(ips[0].String())})
		}
		if terr != nil {
			errs = append(errs, terr)
			continue
		}
		health = HealthCheck{GlobalIP: ips[0], Target: target}
	}
	for _, o := range e.pool.Owners() {
		if name, ok := strings.CutPrefix(o, kindGateway.String()+"/"); ok && !present[name] {
			e.release(o)
		}
	}
	if !present[e.cfg.NodeName] {
		e.unstarve(it)
	}
	if health != e.health {
		e.health = health
		e.rulesChanged()
	}
	e.mu.Unlock()
	for _, a := range annotate {
		errs = append(errs, e.annotateGateway(ctx, a.obj, a.uid, a.value))
	}
	return errors.Join(errs...)
}

// healthTarget returns the address ICMP to the gateway's global IP goes to: the
// gateway node's address inside a cluster CIDR (its CNI interface's).
func (e *Engine) healthTarget() (netip.Addr, error) {
	if e.host == nil {
		return netip.Addr{}, errors.New("no host to find the gateway's CNI address on")
	}
	addrs, err := e.host.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("reading the gateway node's addresses: %w", err)
	}
	a, ok := CNIAddr(addrs, e.cfg.ClusterCIDRs)
	if !ok {
		return netip.Addr{}, fmt.Errorf("the gateway node has no address inside the cluster CIDRs %v: the health check of its global IP cannot be answered", e.cfg.ClusterCIDRs)
	}
	return a, nil
}

func ptrTo(s string) *string { return &s }

// annotateGateway sets (value) or removes (nil) a Gateway's global IP annotation.
func (e *Engine) annotateGateway(ctx context.Context, obj *submv1.Gateway, uid types.UID, value *string) error {
	var v any
	if value != nil {
		v = *value
	}
	data, err := json.Marshal(map[string]any{"metadata": map[string]any{"uid": uid, "annotations": map[string]any{submv1.AnnotationGlobalIP: v}}})
	if err != nil {
		return err
	}
	err = e.kube.Patch(ctx, obj, client.RawPatch(types.MergePatchType, data))
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("annotating Gateway %s with its global IP: %w", obj.Name, err)
	}
	return nil
}

// input gathers the rules' fixed input (the per-address rules are in e.rules).
// Callers hold e.mu.
func (e *Engine) input(remotes []netip.Prefix) Input {
	return Input{
		GlobalCIDR:    e.cfg.GlobalCIDR,
		ClusterCIDRs:  e.cfg.ClusterCIDRs,
		RemoteSubnets: remotes,
		ClusterEgress: e.clusterEgress,
		HealthCheck:   e.health,
	}
}

// syncRules writes the rules: one iptables-restore with what changed since the last
// sync (the first sync of a term reads the tables and writes what differs).
func (e *Engine) syncRules(ctx context.Context) error {
	start := time.Now()
	remotes, ignored := RemoteSubnets(e.cfg, e.t.endpoints.List(e.cfg.Namespace))
	e.mu.Lock()
	p := e.rules.Build(e.input(remotes))
	e.mu.Unlock()
	notes := append(ignored, p.Notes...)
	slices.Sort(notes)
	for _, n := range notes {
		if !slices.Contains(e.notes, n) {
			e.log.Info("Ignoring input", "reason", n)
		}
	}
	e.notes = notes
	sctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	res, err := e.writer.Sync(sctx, p.Rules)
	if e.metrics != nil {
		e.metrics.observeSync(res, err, time.Since(start))
	}
	if err != nil {
		e.ready(fmt.Errorf("writing the iptables rules failed (retrying): %w", err))
		return fmt.Errorf("writing the iptables rules: %w", err)
	}
	e.lastSync = res
	if res.Bytes > 0 {
		e.log.V(1).Info("Rules written", "full", res.Full, "chainsWritten", len(res.Written), "chainsDeleted", len(res.Deleted), "lines", res.Lines, "duration", time.Since(start))
	}
	if !e.synced {
		e.synced = true
		e.log.Info("Rules in place", "full", res.Full, "chainsWritten", len(res.Written), "rules", p.Rules.Len(), "duration", time.Since(start))
	}
	e.ready(nil)
	return nil
}

// RemoteSubnets returns the subnets of the remote clusters' Endpoints (the newest
// Endpoint of each cluster), sorted, without those that overlap the local cluster's
// CIDRs (explained in the notes).
func RemoteSubnets(cfg Config, endpoints []Named[endpointRec]) ([]netip.Prefix, []string) {
	newest := map[string]Named[endpointRec]{}
	for _, ep := range endpoints {
		id := ep.Rec.ClusterID
		if id == "" || id == cfg.ClusterID {
			continue
		}
		if have, ok := newest[id]; ok && (have.Rec.Created.After(ep.Rec.Created) || have.Rec.Created.Equal(ep.Rec.Created) && have.Name > ep.Name) {
			continue
		}
		newest[id] = ep
	}
	local := slices.Concat(cfg.ClusterCIDRs, cfg.ServiceCIDRs, []netip.Prefix{cfg.GlobalCIDR})
	var out []netip.Prefix
	var notes []string
	for _, id := range slices.Sorted(maps.Keys(newest)) {
		ep := newest[id]
		for _, s := range ep.Rec.Subnets {
			p, err := submv1.ParseCIDR("subnet", s)
			if err != nil || !p.Addr().Is4() {
				notes = append(notes, fmt.Sprintf("subnet %q of cluster %s (Endpoint %s): not an IPv4 CIDR", s, id, ep.Name))
				continue
			}
			if i := slices.IndexFunc(local, func(l netip.Prefix) bool { return l.Overlaps(p) }); i >= 0 {
				notes = append(notes, fmt.Sprintf("subnet %s of cluster %s (Endpoint %s): overlaps the local %s", p, id, ep.Name, local[i]))
				continue
			}
			out = append(out, p)
		}
	}
	slices.SortFunc(out, comparePrefix)
	return slices.Compact(out), notes
}
