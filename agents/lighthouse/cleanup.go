package lighthouse

import (
	"context"
	"errors"
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/submariner-go/submariner/agents/syncer"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Cleanup removes what the agent made, for a cluster that leaves the
// clusterset: this cluster's records from the aggregated ServiceImports on the
// broker (deleting those it was the last exporter of), its EndpointSlices on
// the broker and in the cluster, the copies of the broker's objects in the
// cluster, and its Lease. The ServiceExports stay: they are the user's. Nothing
// to remove is not an error; run it while the agent is not running.
func (a *Agent) Cleanup(ctx context.Context) error {
	scheme := Scheme()
	local, err := client.New(a.local, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("creating the local client: %w", err)
	}
	broker, err := client.New(a.broker, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("creating the broker client: %w", err)
	}
	me, ns := a.cfg.ClusterID, a.cfg.BrokerNamespace
	r := &exportReconciler{view: newView(a, local, local, broker, broker)}
	var errs []error

	var imports mcsv1beta1.ServiceImportList
	if err := broker.List(ctx, &imports, client.InNamespace(ns)); err != nil {
		return fmt.Errorf("listing the ServiceImports on the broker: %w", err)
	}
	for i := range imports.Items {
		si := &imports.Items[i]
		svcNS, svc, ok := aggregateOf(si)
		if !ok || !holdsRecordOf(si, me) {
			continue
		}
		if _, err := r.syncAggregate(ctx, client.ObjectKey{Namespace: svcNS, Name: svc}, nil); err != nil {
			errs = append(errs, err)
		}
	}

	deleteAll := func(c client.Client, list client.ObjectList, what string, opts ...client.ListOption) {
		if err := c.List(ctx, list, opts...); err != nil {
			errs = append(errs, fmt.Errorf("listing %s: %w", what, err))
			return
		}
		var items []client.Object
		switch l := list.(type) {
		case *discoveryv1.EndpointSliceList:
			for i := range l.Items {
				items = append(items, &l.Items[i])
			}
		case *mcsv1beta1.ServiceImportList:
			for i := range l.Items {
				items = append(items, &l.Items[i])
			}
		}
		for _, obj := range items {
			if err := c.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("deleting %s %s/%s: %w", what, obj.GetNamespace(), obj.GetName(), err))
			}
		}
	}
	deleteAll(broker, &discoveryv1.EndpointSliceList{}, "this cluster's EndpointSlices on the broker",
		client.InNamespace(ns), client.MatchingLabels{submv1.ClusterIDLabel: me})
	deleteAll(local, &discoveryv1.EndpointSliceList{}, "this cluster's lighthouse EndpointSlices",
		client.MatchingLabels(ownSliceLabels(me)))
	deleteAll(local, &discoveryv1.EndpointSliceList{}, "the copies of other clusters' EndpointSlices",
		client.MatchingLabels{discoveryv1.LabelManagedBy: submv1.LighthouseManagedBy, syncer.LabelCopy: "true"})
	deleteAll(local, &mcsv1beta1.ServiceImportList{}, "the copies of the ServiceImports",
		client.MatchingLabels{syncer.LabelCopy: "true"})

	lease := &coordinationv1.Lease{}
	lease.Namespace, lease.Name = ns, LeaseName(me)
	if err := broker.Delete(ctx, lease); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("deleting Lease %s/%s on the broker: %w", ns, lease.Name, err))
	}
	return errors.Join(errs...)
}
