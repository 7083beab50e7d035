package component_test

import (
	"context"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/submariner-go/submariner/agents/component"
	"github.com/submariner-go/submariner/e2e/controlplane"
)

// TestReleaseLease releases a Lease against a real API server: only the holder's
// release frees it, keeping its transitions; another holder's Lease, and a
// missing one, are left as they are.
func TestReleaseLease(t *testing.T) {
	p := controlplane.Start(t, "cluster1")[0]
	ctx := context.Background()
	leases := p.Kube.CoordinationV1()
	const ns, name = "default", "test-lock"

	if err := component.ReleaseLease(ctx, leases, ns, name, "a"); err != nil {
		t.Fatalf("releasing a missing Lease: %v", err)
	}
	if _, err := leases.Leases(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("releasing a missing Lease created one (%v)", err)
	}

	now := metav1.NewMicroTime(time.Now())
	held, err := leases.Leases(ns).Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity: ptr.To("b"), LeaseDurationSeconds: ptr.To[int32](5),
			AcquireTime: &now, RenewTime: &now, LeaseTransitions: ptr.To[int32](3),
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := component.ReleaseLease(ctx, leases, ns, name, "a"); err != nil {
		t.Fatalf("releasing another holder's Lease: %v", err)
	}
	got, err := leases.Leases(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.ResourceVersion != held.ResourceVersion {
		t.Fatalf("a release by a, while b holds the Lease, changed it: holder %q", ptr.Deref(got.Spec.HolderIdentity, ""))
	}

	if err := component.ReleaseLease(ctx, leases, ns, name, "b"); err != nil {
		t.Fatalf("releasing the holder's Lease: %v", err)
	}
	got, err = leases.Leases(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h, d, tr := ptr.Deref(got.Spec.HolderIdentity, "?"), ptr.Deref(got.Spec.LeaseDurationSeconds, 0), ptr.Deref(got.Spec.LeaseTransitions, 0); h != "" || d != 1 || tr != 3 {
		t.Errorf("released Lease: holder %q, duration %d s, transitions %d; want no holder, 1 s, 3", h, d, tr)
	}

	// A failure is an error that names the Lease.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := component.ReleaseLease(cctx, leases, ns, name, ""); err == nil || !strings.Contains(err.Error(), ns+"/"+name) {
		t.Errorf("releasing with a cancelled context: %v; want an error naming the Lease", err)
	}
}
