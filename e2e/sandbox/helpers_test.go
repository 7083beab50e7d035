package sandbox

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Eventually polls cond until it holds, for up to a minute (a safety net, not an
// assertion); the caller asserts afterwards.
func Eventually(t *testing.T, cond func() bool) {
	t.Helper()
	_ = wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return cond(), nil
	})
}
