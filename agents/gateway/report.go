package gateway

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/submariner-go/submariner/agents/component"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// status computes the gateway's current status and the traffic per remote cable.
func (g *Gateway) status(ctx context.Context) (submv1.GatewayStatus, map[string][2]uint64) {
	g.mu.Lock()
	active, failure, local, engine, health := g.leading(), g.failure, g.local, g.engine, g.health
	g.mu.Unlock()
	in := StatusInput{Version: component.Version, HAStatus: submv1.HAStatusPassive, Failure: failure}
	traffic := map[string][2]uint64{}
	if active {
		in.HAStatus = submv1.HAStatusActive
		if local != nil {
			spec := local.Spec()
			in.LocalEndpoint = &spec
		}
		if engine != nil {
			in.Connections = engine.Connections(ctx)
			for _, c := range in.Connections {
				if c.Tunnel != nil {
					traffic[c.Spec.CableName] = [2]uint64{c.Status.RxBytes, c.Status.TxBytes}
				}
			}
		}
		if health != nil {
			in.Health = health.Result
		}
	}
	return BuildStatus(in), traffic
}

// withoutRTT blanks the round-trip figures, which change with every probe: a
// status whose only change is in them waits for the periodic refresh. Their
// arrival (the first reply) is a change.
func withoutRTT(st submv1.GatewayStatus) submv1.GatewayStatus {
	st = *st.DeepCopy()
	for i := range st.Connections {
		if st.Connections[i].LatencyRTT != nil {
			st.Connections[i].LatencyRTT = &submv1.LatencyRTT{}
		}
	}
	return st
}

// statusLoop keeps the Gateway object up to date: at once when the status changes
// (round-trip figures aside), else every StatusPeriod, which also refreshes its
// update-timestamp. While active, it also deletes stale Gateways. It runs until
// ctx ends.
func (g *Gateway) statusLoop(ctx context.Context) {
	tick := time.NewTicker(statusTick)
	defer tick.Stop()
	var written *submv1.GatewayStatus
	var writtenAt time.Time
	for {
		st, traffic := g.status(ctx)
		var local *submv1.EndpointSpec
		if st.HAStatus == submv1.HAStatusActive {
			local = st.LocalEndpoint
		}
		g.deps.Metrics.observe(local, st, traffic)
		if written == nil || !cmp.Equal(withoutRTT(*written), withoutRTT(st)) || time.Since(writtenAt) >= g.cfg.StatusPeriod {
			if err := g.writeGateway(ctx, st, time.Now()); err != nil {
				if ctx.Err() == nil {
					g.log.Error(err, "Writing the Gateway status; retrying")
				}
			} else {
				written, writtenAt = &st, time.Now()
			}
		}
		if st.HAStatus == submv1.HAStatusActive {
			if err := g.pruneGateways(ctx); err != nil && ctx.Err() == nil {
				g.log.Error(err, "Deleting stale Gateways; retrying")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-g.kickStatus:
		}
	}
}

// writeGateway creates or updates the Gateway named after the node with st and
// the update-timestamp now.
func (g *Gateway) writeGateway(ctx context.Context, st submv1.GatewayStatus, now time.Time) error {
	ts := strconv.FormatInt(now.Unix(), 10)
	var gw submv1.Gateway
	err := g.client.Get(ctx, types.NamespacedName{Namespace: g.cfg.Namespace, Name: g.cfg.NodeName}, &gw)
	switch {
	case apierrors.IsNotFound(err):
		gw = submv1.Gateway{ObjectMeta: metav1.ObjectMeta{
			Name: g.cfg.NodeName, Namespace: g.cfg.Namespace,
			Annotations: map[string]string{AnnotationUpdateTimestamp: ts},
		}}
		if err := g.client.Create(ctx, &gw); err != nil {
			return fmt.Errorf("creating Gateway %s: %w", g.cfg.NodeName, err)
		}
	case err != nil:
		return fmt.Errorf("reading Gateway %s: %w", g.cfg.NodeName, err)
	default:
		g.observeGlobalIP(gw.Annotations[submv1.AnnotationGlobalIP])
	}
	if gw.Annotations[AnnotationUpdateTimestamp] != ts {
		if gw.Annotations == nil {
			gw.Annotations = map[string]string{}
		}
		gw.Annotations[AnnotationUpdateTimestamp] = ts
		if err := g.client.Update(ctx, &gw); err != nil {
			return fmt.Errorf("refreshing Gateway %s's %s: %w", g.cfg.NodeName, AnnotationUpdateTimestamp, err)
		}
	}
	if cmp.Equal(gw.Status, st) {
		return nil
	}
	gw.Status = st
	if err := g.client.Status().Update(ctx, &gw); err != nil {
		return fmt.Errorf("updating Gateway %s's status: %w", g.cfg.NodeName, err)
	}
	return nil
}
