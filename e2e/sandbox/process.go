package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/wait"
)

// stopGrace is how long a process gets between SIGTERM and SIGKILL.
const stopGrace = 15 * time.Second

// procRecord identifies a process we started, in pids/<name>.json. The start time
// (field 22 of /proc/PID/stat, in clock ticks since boot) tells it apart from a
// later process that reuses the PID, so that down only ever signals our own.
type procRecord struct {
	Name      string `json:"name"`
	PID       int    `json:"pid"`
	StartTime uint64 `json:"startTime"`
	Command   string `json:"command"`
	// Restarts counts how often the supervisor restarted the process.
	Restarts int `json:"restarts,omitempty"`
}

// recordSelf returns the record of the calling process.
func recordSelf(name string) (procRecord, error) {
	st, err := startTime(os.Getpid())
	if err != nil {
		return procRecord{}, err
	}
	return procRecord{Name: name, PID: os.Getpid(), StartTime: st, Command: strings.Join(os.Args, " ")}, nil
}

// Alive reports whether the recorded process still runs (same PID and start time).
func (r procRecord) Alive() bool {
	if r.PID <= 0 {
		return false
	}
	st, err := startTime(r.PID)
	return err == nil && st == r.StartTime && !zombie(r.PID)
}

// startTime reads a process's start time from /proc/PID/stat.
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the start time of process %d: %w", pid, err)
	}
	return parseStartTime(string(b))
}

// parseStartTime extracts field 22 (starttime) from the text of /proc/PID/stat.
// The command name (field 2) is in parentheses and may hold spaces and ')'.
func parseStartTime(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc stat line %q: no ')' after the command name", stat)
	}
	fields := strings.Fields(stat[i+1:])
	// fields[0] is field 3 (state), so field 22 is fields[19].
	if len(fields) < 20 {
		return 0, fmt.Errorf("malformed /proc stat line %q: %d fields after the command name, want at least 20", stat, len(fields))
	}
	v, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("malformed start time %q in /proc stat line: %w", fields[19], err)
	}
	return v, nil
}

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || len(s) < i+3 || s[i+2] == 'Z' || s[i+2] == 'X'
}

// readRecords returns the process records in dir, sorted by name.
func readRecords(dir string) ([]procRecord, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing process records: %w", err)
	}
	var recs []procRecord
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading process record: %w", err)
		}
		var r procRecord
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("parsing process record %s: %w", e.Name(), err)
		}
		recs = append(recs, r)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Name < recs[j].Name })
	return recs, nil
}

// killVerified sends sig to the recorded process if it is still the same one.
func killVerified(r procRecord, sig syscall.Signal) bool {
	if !r.Alive() {
		return false
	}
	return syscall.Kill(r.PID, sig) == nil
}

// waitGone waits until none of the processes is alive, or ctx ends.
func waitGone(ctx context.Context, recs []procRecord) error {
	return wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
		for _, r := range recs {
			if r.Alive() {
				return false, nil
			}
		}
		return true, nil
	})
}

// stopProcesses sends SIGTERM to each live process, waits up to grace for them to
// exit, then sends SIGKILL to what remains and waits for it to go.
func stopProcesses(ctx context.Context, recs []procRecord, grace time.Duration) error {
	var live []procRecord
	for _, r := range recs {
		if killVerified(r, syscall.SIGTERM) {
			live = append(live, r)
		}
	}
	if len(live) == 0 {
		return nil
	}
	graceCtx, cancel := context.WithTimeout(ctx, grace)
	err := waitGone(graceCtx, live)
	cancel()
	if err == nil {
		return nil
	}
	for _, r := range live {
		killVerified(r, syscall.SIGKILL)
	}
	killCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := waitGone(killCtx, live); err != nil {
		var names []string
		for _, r := range live {
			if r.Alive() {
				names = append(names, fmt.Sprintf("%s (pid %d)", r.Name, r.PID))
			}
		}
		return fmt.Errorf("processes survive SIGKILL: %s", strings.Join(names, ", "))
	}
	return nil
}

// supervisor runs the sandbox's processes: it starts each from a spawner thread
// (so that the parent-death signal, which Linux ties to the thread, fires only when
// the whole supervisor dies), restarts those that exit with a backoff, records
// every PID with its start time and stops them in reverse order.
type supervisor struct {
	layout Layout
	log    logr.Logger
	spawn  chan spawnRequest

	mu     sync.Mutex
	procs  []*managedProc
	tasks  []*managedTask
	closed bool
}

type spawnRequest struct {
	cmd  *exec.Cmd
	done chan error
}

// managedProc is one supervised process.
type managedProc struct {
	spec   procSpec
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	cmd      *exec.Cmd
	record   procRecord
	restarts int
	lastExit string
}

// managedTask is a supervised goroutine (a node agent).
type managedTask struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	restarts int
	lastExit string
}

func newSupervisor(layout Layout, log logr.Logger) *supervisor {
	s := &supervisor{layout: layout, log: log, spawn: make(chan spawnRequest)}
	go s.spawner()
	return s
}

// spawner starts processes on one locked OS thread that never exits.
func (s *supervisor) spawner() {
	runtime.LockOSThread()
	for req := range s.spawn {
		req.done <- req.cmd.Start()
	}
}

// Start runs spec until Stop, restarting it when it exits.
func (s *supervisor) Start(spec procSpec) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("starting %s: the sandbox is stopping", spec.Name)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &managedProc{spec: spec, cancel: cancel, done: make(chan struct{})}
	s.procs = append(s.procs, p)
	started := make(chan error, 1)
	go s.run(ctx, p, started)
	return <-started
}

// run is the life of one process: start, wait, back off, start again.
func (s *supervisor) run(ctx context.Context, p *managedProc, started chan<- error) {
	defer close(p.done)
	backoff := wait.Backoff{Duration: time.Second, Factor: 2, Cap: 30 * time.Second, Steps: 100}
	first := true
	for {
		cmd, err := s.startOnce(p)
		if first {
			started <- err
			first = false
			if err != nil {
				return
			}
		}
		if err == nil {
			began := time.Now()
			err = cmd.Wait()
			if ctx.Err() != nil {
				_ = os.Remove(s.recordPath(p.spec.Name))
				return
			}
			if time.Since(began) > 2*time.Minute {
				backoff = wait.Backoff{Duration: time.Second, Factor: 2, Cap: 30 * time.Second, Steps: 100}
			}
		}
		p.mu.Lock()
		p.restarts++
		p.lastExit = fmt.Sprint(err)
		if err == nil {
			p.lastExit = "exited with status 0"
		}
		p.mu.Unlock()
		s.log.Info("process exited; restarting", "process", p.spec.Name, "exit", p.lastExit, "restarts", p.restarts)
		select {
		case <-ctx.Done():
			_ = os.Remove(s.recordPath(p.spec.Name))
			return
		case <-time.After(backoff.Step()):
		}
	}
}

// startOnce starts the process from the spawner thread and records it.
func (s *supervisor) startOnce(p *managedProc) (*exec.Cmd, error) {
	logFile, err := os.OpenFile(s.layout.Log(p.spec.Name), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the log of %s: %w", p.spec.Name, err)
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "=== %s starting: %s\n", time.Now().Format(time.RFC3339), p.spec)
	cmd := exec.Command(p.spec.Path, p.spec.Args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Dir = s.layout.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	done := make(chan error, 1)
	s.spawn <- spawnRequest{cmd: cmd, done: done}
	if err := <-done; err != nil {
		return nil, fmt.Errorf("starting %s: %w", p.spec.Name, err)
	}
	st, err := startTime(cmd.Process.Pid)
	if err != nil {
		// The process died at once; Wait reports why.
		st = 0
	}
	p.mu.Lock()
	restarts := p.restarts
	p.mu.Unlock()
	rec := procRecord{Name: p.spec.Name, PID: cmd.Process.Pid, StartTime: st, Command: p.spec.String(), Restarts: restarts}
	b, _ := json.Marshal(rec)
	if err := writeFile(s.recordPath(p.spec.Name), b); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, err
	}
	p.mu.Lock()
	p.cmd, p.record = cmd, rec
	p.mu.Unlock()
	return cmd, nil
}

func (s *supervisor) recordPath(name string) string {
	return filepath.Join(s.layout.PIDs(), name+".json")
}

// Go runs fn (a node agent) until Stop, restarting it with a backoff when it
// returns before its context ends.
func (s *supervisor) Go(name string, fn func(ctx context.Context) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("starting %s: the sandbox is stopping", name)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &managedTask{name: name, cancel: cancel, done: make(chan struct{})}
	s.tasks = append(s.tasks, t)
	go func() {
		defer close(t.done)
		backoff := wait.Backoff{Duration: time.Second, Factor: 2, Cap: 30 * time.Second, Steps: 100}
		for {
			err := fn(ctx)
			if ctx.Err() != nil {
				return
			}
			t.mu.Lock()
			t.restarts++
			t.lastExit = fmt.Sprint(err)
			t.mu.Unlock()
			s.log.Info("task returned; restarting", "task", name, "error", fmt.Sprint(err))
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff.Step()):
			}
		}
	}()
	return nil
}

// Failure returns an error naming every process or task that has exited since it
// was started (with the end of its log), nil when all run. Up fails on it rather
// than waiting for a process that keeps crashing.
func (s *supervisor) Failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, p := range s.procs {
		p.mu.Lock()
		if p.restarts > 0 {
			errs = append(errs, fmt.Errorf("%s exited (%s); the end of %s:\n%s", p.spec.Name, p.lastExit, s.layout.Log(p.spec.Name), tail(s.layout.Log(p.spec.Name), 15)))
		}
		p.mu.Unlock()
	}
	for _, t := range s.tasks {
		t.mu.Lock()
		if t.restarts > 0 {
			errs = append(errs, fmt.Errorf("%s returned: %s", t.name, t.lastExit))
		}
		t.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Stop stops the tasks first (node agents stop their pods), then the processes by
// stage in stopOrder (kube-proxies and controllers before the API servers, etcd
// last), and stops the spawner.
func (s *supervisor) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	procs, tasks := s.procs, s.tasks
	s.mu.Unlock()

	var errs []error
	for _, t := range tasks {
		t.cancel()
	}
	for _, t := range tasks {
		select {
		case <-t.done:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("waiting for %s to stop: %w", t.name, ctx.Err()))
		}
	}
	// Stop in stages, clients before their servers; stages not in stopOrder first.
	order := []string{}
	known := map[string]bool{}
	for _, st := range stopOrder {
		known[st] = true
	}
	for _, p := range procs {
		if !known[p.spec.Stage] {
			known[p.spec.Stage] = true
			order = append(order, p.spec.Stage)
		}
	}
	order = append(order, stopOrder...)
	for _, stage := range order {
		var batch []*managedProc
		for _, p := range procs {
			if p.spec.Stage == stage {
				batch = append(batch, p)
			}
		}
		var recs []procRecord
		for _, p := range batch {
			p.cancel()
			p.mu.Lock()
			recs = append(recs, p.record)
			p.mu.Unlock()
		}
		if err := stopProcesses(ctx, recs, stopGrace); err != nil {
			errs = append(errs, err)
		}
		for _, p := range batch {
			select {
			case <-p.done:
			case <-ctx.Done():
				errs = append(errs, fmt.Errorf("waiting for %s to stop: %w", p.spec.Name, ctx.Err()))
			}
		}
	}
	close(s.spawn)
	return errors.Join(errs...)
}

// tail returns the last n lines of a file (at most its last 8 KiB).
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	const max = 8 << 10
	if st, err := f.Stat(); err == nil && st.Size() > max {
		_, _ = f.Seek(-max, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.TrimSpace([]byte(strings.Join(lines, "\n"))))
}
