package component

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// ReleaseLease gives up the Lease namespace/name if identity holds it, so that the
// next candidate need not wait for it to expire. A Lease another candidate holds,
// or none, is left alone.
//
// Our components release their Lease with this, after their term has stopped, and
// only when they stop on purpose; never through client-go's ReleaseOnCancel. That
// one also releases after a failed renewal, and judges whether it still holds the
// Lease by the holder it last observed rather than the one it has just read: a
// leader cut off from the API server would, once back, free the Lease that its
// successor took meanwhile, take it again and set off a second failover. Its term
// would also only end once that release had given up.
func ReleaseLease(ctx context.Context, leases coordinationv1client.LeasesGetter, namespace, name, identity string) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		l, err := leases.Leases(namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if ptr.Deref(l.Spec.HolderIdentity, "") != identity {
			return nil
		}
		now := metav1.NewMicroTime(time.Now())
		// As client-go writes a released Lease: no holder, expiring in a second.
		l.Spec.HolderIdentity = ptr.To("")
		l.Spec.LeaseDurationSeconds = ptr.To[int32](1)
		l.Spec.AcquireTime, l.Spec.RenewTime = &now, &now
		_, err = leases.Leases(namespace).Update(ctx, l, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("releasing the Lease %s/%s: %w", namespace, name, err)
	}
	return nil
}
