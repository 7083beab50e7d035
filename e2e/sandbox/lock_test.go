package sandbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// useLockFile points the lock at a file of the test for its duration.
func useLockFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sandbox.lock")
	old := lockPath
	lockPath = path
	t.Cleanup(func() { lockPath = old })
	return path
}

func TestLock(t *testing.T) {
	useLockFile(t)
	if got := LastStateDir(); got != "" {
		t.Errorf("LastStateDir without a lock file = %q, want empty", got)
	}
	first, err := TryLock()
	if err != nil {
		t.Fatal(err)
	}
	if err := first.SetStateDir("/var/tmp/one"); err != nil {
		t.Fatal(err)
	}
	if got := LastStateDir(); got != "/var/tmp/one" {
		t.Errorf("LastStateDir = %q, want /var/tmp/one", got)
	}

	_, err = TryLock()
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second TryLock: %v, want ErrLocked", err)
	}
	want := "a sandbox is already up on this machine (state dir /var/tmp/one, lock " + lockPath + " held): run `sandbox down --state-dir /var/tmp/one` first"
	if err.Error() != want {
		t.Errorf("second TryLock error\n%q\nwant\n%q", err, want)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var notified error
	if _, err := WaitLock(ctx, func(reason error) { notified = reason }); err == nil {
		t.Error("WaitLock got a held lock")
	}
	if !errors.Is(notified, ErrLocked) {
		t.Errorf("WaitLock told %v while waiting, want ErrLocked", notified)
	}

	// A copy of the open file shares the lock (what the supervisor inherits).
	dup, err := os.Open(lockPath)
	if err != nil {
		t.Fatal(err)
	}
	defer dup.Close()
	if _, err := AdoptLock(dup); err == nil {
		t.Error("AdoptLock accepted a separately opened file while the lock is held")
	}
	inherited := os.NewFile(dupFD(t, first.File()), "inherited")
	adopted, err := AdoptLock(inherited)
	if err != nil {
		t.Fatalf("AdoptLock of a duplicate descriptor: %v", err)
	}

	// Released by both holders, the lock is free again.
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := TryLock(); !errors.Is(err, ErrLocked) {
		t.Errorf("TryLock while the adopted copy holds the lock: %v, want ErrLocked", err)
	}
	if err := adopted.Release(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	again, err := WaitLock(ctx, nil)
	if err != nil {
		t.Fatalf("WaitLock after release: %v", err)
	}
	if err := again.SetStateDir(""); err != nil {
		t.Fatal(err)
	}
	if got := LastStateDir(); got != "" {
		t.Errorf("LastStateDir after clearing = %q", got)
	}
	again.Release()
}
