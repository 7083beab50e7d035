package sandbox

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"
)

// The CLI's process model: `sandbox up` checks everything, takes the lock and
// starts `sandbox supervise` detached (own session, output to
// logs/supervisor.log), handing it the open lock file as fd 3 and a pipe as fd 4.
// The supervisor adopts the lock, runs Up and reports over the pipe, one JSON
// message per line (progress, then ready or an error); then it keeps the sandbox
// running until SIGTERM or SIGINT, when it takes it down. `up` returns once the
// supervisor reports, so the lock never has a moment without an owner.
const (
	supervisorLockFD   = 3
	supervisorReportFD = 4
)

// report is one message from the supervisor to `sandbox up`.
type report struct {
	Progress string `json:"progress,omitempty"`
	Ready    bool   `json:"ready,omitempty"`
	Error    string `json:"error,omitempty"`
	// Took is how long Up took, once ready.
	Took time.Duration `json:"took,omitempty"`
}

// UpDetached is `sandbox up`: it checks the options, root and the lock (waiting
// for it with opts.WaitForLock), and that nothing of an earlier sandbox is in the
// way, all before changing anything; then
// it starts exe (the sandbox binary) as the detached supervisor with args
// (["supervise", flags...]) and returns once the sandbox is up. progress receives
// the supervisor's steps. If ctx ends first, the supervisor is told to stop and
// takes down what it made.
func UpDetached(ctx context.Context, opts Options, exe string, progress func(string)) (time.Duration, error) {
	if err := RequireRoot(); err != nil {
		return 0, err
	}
	if err := opts.Validate(); err != nil {
		return 0, err
	}
	if err := checkTools(); err != nil {
		return 0, err
	}
	var lock *Lock
	var err error
	if opts.WaitForLock {
		lock, err = WaitLock(ctx, func(reason error) {
			if progress != nil {
				progress(fmt.Sprintf("waiting: %v", reason))
			}
		})
	} else {
		lock, err = TryLock()
	}
	if err != nil {
		return 0, err
	}
	// The supervisor holds its own copy of the lock from here on; ours goes when
	// this function returns.
	defer lock.Release()
	left, err := Leftovers()
	if err != nil {
		return 0, err
	}
	if len(left) > 0 {
		return 0, fmt.Errorf("leftovers of an earlier sandbox are in the way (%v): run `sandbox down --state-dir %s`", left, orDefault(LastStateDir(), DefaultStateDir))
	}
	l := Layout{Dir: filepath.Clean(opts.StateDir)}
	if err := prepareStateDir(l); err != nil {
		return 0, err
	}
	if err := lock.SetStateDir(l.Dir); err != nil {
		return 0, err
	}
	logFile, err := os.OpenFile(l.Log(supervisorLog), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, fmt.Errorf("opening the supervisor's log: %w", err)
	}
	defer logFile.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("creating the supervisor's report pipe: %w", err)
	}
	defer r.Close()
	cmd := exec.Command(exe, append([]string{"supervise"}, opts.Args()...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.ExtraFiles = []*os.File{lock.File(), w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	if err := cmd.Start(); err != nil {
		w.Close()
		return 0, fmt.Errorf("starting the supervisor %s: %w", exe, err)
	}
	w.Close()
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	stop := context.AfterFunc(ctx, func() { _ = cmd.Process.Signal(syscall.SIGTERM) })
	defer stop()

	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var m report
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			continue
		}
		switch {
		case m.Error != "":
			<-exited
			return 0, errors.New(m.Error)
		case m.Ready:
			return m.Took, nil
		case m.Progress != "" && progress != nil:
			progress(m.Progress)
		}
	}
	// The pipe closed without a verdict: the supervisor died.
	<-exited
	if ctx.Err() != nil {
		return 0, fmt.Errorf("interrupted; the supervisor took down what it had made: %w", ctx.Err())
	}
	return 0, fmt.Errorf("the supervisor exited before the sandbox was up (%s); the end of %s:\n%s",
		cmd.ProcessState, l.Log(supervisorLog), tail(l.Log(supervisorLog), 20))
}

// Supervise is `sandbox supervise`, the detached supervisor that UpDetached
// starts: it adopts the lock from fd 3, runs Up, reports over fd 4, and keeps the
// sandbox until ctx ends (SIGTERM, SIGINT); then it takes it down.
func Supervise(ctx context.Context, opts Options) error {
	reports := os.NewFile(supervisorReportFD, "report")
	enc := json.NewEncoder(reports)
	send := func(m report) { _ = enc.Encode(m) }
	lock, err := AdoptLock(os.NewFile(supervisorLockFD, LockPath))
	if err != nil {
		send(report{Error: err.Error()})
		return err
	}
	opts.Lock = lock
	opts.Progress = func(step string) {
		fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format(time.RFC3339), step)
		send(report{Progress: step})
	}
	opts.Log = stderrLogger()
	crlog.SetLogger(opts.Log)
	s, err := Up(ctx, opts)
	if err != nil {
		lock.Release()
		send(report{Error: err.Error()})
		reports.Close()
		return err
	}
	fmt.Fprintf(os.Stderr, "%s sandbox is up after %s\n", time.Now().Format(time.RFC3339), s.Took.Round(time.Millisecond))
	send(report{Ready: true, Took: s.Took})
	reports.Close()
	<-ctx.Done()
	fmt.Fprintf(os.Stderr, "%s taking the sandbox down\n", time.Now().Format(time.RFC3339))
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	if err := s.Close(closeCtx); err != nil {
		fmt.Fprintf(os.Stderr, "%s taking the sandbox down: %v\n", time.Now().Format(time.RFC3339), err)
		return err
	}
	return nil
}

func stderrLogger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		fmt.Fprintln(os.Stderr, time.Now().Format(time.RFC3339), prefix, args)
	}, funcr.Options{})
}
