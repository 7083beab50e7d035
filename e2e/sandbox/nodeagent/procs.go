package nodeagent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// procID identifies a process across PID reuse: its PID and its start time in
// clock ticks since boot (field 22 of /proc/PID/stat).
type procID struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
	// Token tells apart several holders that are the same process (the agent
	// while it starts containers); it plays no part in liveness.
	Token string `json:"token,omitempty"`
}

// procStat returns a process's start time and state letter from /proc/PID/stat.
func procStat(pid int) (start uint64, state byte, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name is in parentheses and may hold spaces: the fields that
	// follow start after the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(data[i+1:]))
	// fields[0] is field 3 (state); the start time is field 22.
	if len(fields) < 20 {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	start, err = strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("malformed start time in /proc/%d/stat: %w", pid, err)
	}
	return start, fields[0][0], nil
}

// identify returns the procID of a running process.
func identify(pid int) (procID, error) {
	start, _, err := procStat(pid)
	if err != nil {
		return procID{}, fmt.Errorf("reading start time of process %d: %w", pid, err)
	}
	return procID{PID: pid, Start: start}, nil
}

// alive reports whether the recorded process still runs (a zombie does not).
func (p procID) alive() bool {
	if p.PID <= 0 {
		return false
	}
	start, state, err := procStat(p.PID)
	return err == nil && start == p.Start && state != 'Z' && state != 'X'
}

// kill sends sig to the process group the recorded process leads (the agent starts
// every container process as a group leader), unless the PID now belongs to
// another process. A group whose leader has exited can still have members; its ID
// cannot be taken by a new process while they live.
func (p procID) kill(sig syscall.Signal) error {
	if p.PID <= 0 || p.reused() {
		return nil
	}
	err := syscall.Kill(-p.PID, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("signalling process group %d: %w", p.PID, err)
	}
	return nil
}

// reused reports whether the PID belongs to a process other than the recorded one.
func (p procID) reused() bool {
	start, _, err := procStat(p.PID)
	return err == nil && start != p.Start
}

// groupAlive reports whether any process is left in the recorded process's group.
func (p procID) groupAlive() bool {
	if p.alive() {
		return true
	}
	if p.PID <= 0 || p.reused() {
		return false
	}
	// Only zombies, or nothing, may be left: a group of zombies is gone for us.
	return groupHasLiving(p.PID)
}

// stopGroup sends SIGTERM to the group, waits up to grace for it to be gone,
// then sends SIGKILL and waits until it is gone or ctx ends.
func stopGroup(ctx context.Context, p procID, grace time.Duration) error {
	if !p.groupAlive() {
		return nil
	}
	if grace > 0 {
		if err := p.kill(syscall.SIGTERM); err != nil {
			return err
		}
		gctx, cancel := context.WithTimeout(ctx, grace)
		_ = waitGone(gctx, p)
		cancel()
	}
	if !p.groupAlive() {
		return nil
	}
	if err := p.kill(syscall.SIGKILL); err != nil {
		return err
	}
	return waitGone(ctx, p)
}

// waitGone polls until no process of the group is left.
func waitGone(ctx context.Context, p procID) error {
	err := wait.PollUntilContextCancel(ctx, 20*time.Millisecond, true, func(context.Context) (bool, error) {
		return !p.groupAlive(), nil
	})
	if err != nil {
		return fmt.Errorf("waiting for process group %d to exit: %w", p.PID, err)
	}
	return nil
}

// groupHasLiving reports whether a process that is not a zombie is in group pgid.
func groupHasLiving(pgid int) bool {
	if syscall.Kill(-pgid, 0) != nil {
		return false
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		// f[0] is the state (field 3), f[2] the process group (field 5).
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" && f[0] != "X" {
			return true
		}
	}
	return false
}
