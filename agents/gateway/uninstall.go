package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/submariner-go/submariner/agents/gateway/cable"
	"github.com/submariner-go/submariner/agents/syncer"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// UninstallDeps are what the cleanup mode needs.
type UninstallDeps struct {
	Local *rest.Config
	Host  *cable.Host
	Log   logr.Logger
	Ready func(error)
}

// Uninstall is the cleanup mode: it removes every cable driver's devices, routes,
// rules and IPsec state from the host, this node's Gateway object and the local
// Endpoints that name this node, retrying with backoff until that succeeds; then
// it reports ready and waits until ctx is done (the contract `subctl uninstall`
// relies on: a ready cleanup pod has finished).
func Uninstall(ctx context.Context, cfg Config, deps UninstallDeps) error {
	deps.Ready(errors.New("removing the gateway's state"))
	c, err := newClient(deps.Local)
	if err != nil {
		return err
	}
	b := wait.Backoff{Duration: retryMin, Factor: 2, Jitter: 0.1, Steps: 1 << 30, Cap: retryMax}
	err = wait.ExponentialBackoffWithContext(ctx, b, func(ctx context.Context) (bool, error) {
		var errs []error
		if err := cable.Cleanup(ctx, deps.Host); err != nil {
			errs = append(errs, err)
		}
		if err := deleteOwnObjects(ctx, c, cfg); err != nil {
			errs = append(errs, err)
		}
		if err := errors.Join(errs...); err != nil {
			deps.Log.Error(err, "Cleanup failed, retrying")
			deps.Ready(fmt.Errorf("cleanup failed, retrying: %s", strings.ReplaceAll(err.Error(), "\n", "; ")))
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("cleanup did not finish: %w", err)
	}
	deps.Ready(nil)
	deps.Log.Info("Cleanup done; waiting to be stopped")
	<-ctx.Done()
	return nil
}

// deleteOwnObjects deletes this node's Gateway and the cluster's local Endpoints
// that name this node. Objects already gone are fine.
func deleteOwnObjects(ctx context.Context, c client.Client, cfg Config) error {
	var errs []error
	gw := &submv1.Gateway{}
	gw.Name, gw.Namespace = cfg.NodeName, cfg.Namespace
	if err := c.Delete(ctx, gw); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("deleting Gateway %s: %w", cfg.NodeName, err))
	}
	var eps submv1.EndpointList
	if err := c.List(ctx, &eps, client.InNamespace(cfg.Namespace)); err != nil {
		return errors.Join(append(errs, fmt.Errorf("listing Endpoints: %w", err))...)
	}
	for _, e := range eps.Items {
		if e.Spec.ClusterID != cfg.ClusterID || e.Spec.Hostname != cfg.NodeName || e.Labels[syncer.LabelCopy] == "true" {
			continue
		}
		if err := c.Delete(ctx, &e); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting Endpoint %s: %w", e.Name, err))
		}
	}
	return errors.Join(errs...)
}
