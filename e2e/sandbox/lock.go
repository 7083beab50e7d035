package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/util/wait"
)

// LockPath is the machine-wide lock of the sandbox: its fixed names and addresses
// allow one sandbox per machine. Whoever owns the running sandbox holds an
// exclusive flock on it; the file's content names the state dir of the last
// sandbox brought up (cleared by a successful down).
const LockPath = "/run/submariner-sandbox.lock"

// lockPath is LockPath; tests of the lock itself point it elsewhere.
var lockPath = LockPath

// ErrLocked is wrapped by the error of TryLock when another process holds the lock.
var ErrLocked = errors.New("a sandbox is already up on this machine")

// Lock is the held machine-wide lock.
type Lock struct {
	f *os.File
}

// TryLock takes the lock or fails at once; the error then names the state dir of
// the running sandbox and says how to remove it.
func TryLock() (*Lock, error) {
	f, err := openLock()
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, lockedError()
		}
		return nil, fmt.Errorf("locking %s: %w", lockPath, err)
	}
	return &Lock{f: f}, nil
}

// WaitLock takes the lock, waiting while another process holds it, until ctx ends.
// notify, when not nil, is called once if it has to wait, with the reason.
func WaitLock(ctx context.Context, notify func(reason error)) (*Lock, error) {
	var lock *Lock
	notified := false
	err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(context.Context) (bool, error) {
		l, err := TryLock()
		if errors.Is(err, ErrLocked) {
			if !notified && notify != nil {
				notify(err)
				notified = true
			}
			return false, nil
		}
		if err != nil {
			return false, err
		}
		lock = l
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for the sandbox lock %s: %w", lockPath, err)
	}
	return lock, nil
}

// AdoptLock takes over a lock inherited as an open file (by the supervisor that
// `sandbox up` starts). It fails unless the file holds the lock.
func AdoptLock(f *os.File) (*Lock, error) {
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return nil, fmt.Errorf("the inherited file %s does not hold the sandbox lock: %w", f.Name(), err)
	}
	return &Lock{f: f}, nil
}

// File is the open lock file, to hand to a child process.
func (l *Lock) File() *os.File { return l.f }

// SetStateDir records the state dir of the sandbox that holds the lock.
func (l *Lock) SetStateDir(dir string) error {
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("truncating %s: %w", lockPath, err)
	}
	if _, err := l.f.WriteAt([]byte(dir+"\n"), 0); err != nil {
		return fmt.Errorf("writing %s: %w", lockPath, err)
	}
	return nil
}

// Release unlocks and closes the file. The lock is also released when every
// process holding the file exits.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// LastStateDir returns the state dir recorded in the lock file: the running
// sandbox's, or a crashed one's; "" when none.
func LastStateDir() string {
	b, err := os.ReadFile(lockPath)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func openLock() (*os.File, error) {
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the sandbox lock %s: %w", lockPath, err)
	}
	return f, nil
}

func lockedError() error {
	dir := LastStateDir()
	if dir == "" {
		dir = "unknown"
	}
	return fmt.Errorf("%w (state dir %s, lock %s held): run `sandbox down --state-dir %s` first", ErrLocked, dir, lockPath, dir)
}
