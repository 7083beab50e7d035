//go:build linux

package whack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
)

// PlutoConfig configures a supervised pluto.
type PlutoConfig struct {
	// Dir is pluto's own directory (absolute): run/ (control socket, pid file, core
	// dumps), nss/ (NSS database), ipsec.d/ and ipsec.secrets are made in it. Nothing
	// of the host's /etc/ipsec* or /run/pluto is used.
	Dir string
	// Netns, when set, is the named network namespace pluto runs in.
	Netns string
	// PSK is the pre-shared key every connection authenticates with (Submariner
	// writes the join secret's key, base64-encoded). It must not contain double
	// quotes or line breaks.
	PSK string
	// Pluto, Whack and Certutil are the programs' paths; empty means look them up.
	Pluto, Whack, Certutil string
	// ExtraArgs are added to pluto's command line (for example "--leak-detective").
	ExtraArgs []string
	// StartTimeout bounds the wait for the control socket (default 60s).
	StartTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before a restart (default 1s, 30s);
	// it doubles with each quick death and resets after a minute of uptime.
	MinBackoff, MaxBackoff time.Duration
	// OnStart, if set, runs after each start once pluto answers (add the
	// connections there: a restarted pluto has none). Its error is logged.
	OnStart func(ctx context.Context, c *Client) error
	// OnExit, if set, is told about every unexpected exit of pluto (the outcome of
	// the shutdown at the context's end is Run's result). It must not block.
	OnExit func(Exit)
	// OnLog, if set, receives every line pluto writes. It must not block.
	OnLog func(line string)
}

// Exit reports how a pluto process ended.
type Exit struct {
	PID int
	// Err is how it ended (nil: exit status 0).
	Err error
	// Uptime is how long it ran.
	Uptime time.Duration
	// Restart says the supervisor starts it again, After the backoff.
	Restart bool
	After   time.Duration
}

func (e Exit) String() string {
	how := "exited"
	if e.Err != nil {
		how = e.Err.Error()
	}
	s := fmt.Sprintf("pluto (pid %d) %s after %s", e.PID, how, e.Uptime.Round(time.Millisecond))
	if e.Restart {
		s += fmt.Sprintf("; restarting in %s", e.After)
	}
	return s
}

// Pluto supervises one pluto: Run starts it, waits for its control socket, restarts
// it with backoff when it dies and shuts it down when the context ends.
type Pluto struct {
	cfg    PlutoConfig
	client *Client

	mu         sync.Mutex
	ready      chan struct{} // closed when the current pluto answers
	finished   chan struct{} // closed when Run returns
	runErr     error
	pid        int
	generation int
	logs       []string
}

// Layout of Dir.
const (
	runDir      = "run"
	nssDir      = "nss"
	ipsecDDir   = "ipsec.d"
	secretsFile = "ipsec.secrets"
	ctlSocket   = "pluto.ctl"
	pidFile     = "pluto.pid"
	keptLogs    = 2000
	// unixPathMax is the longest Unix socket path the kernel accepts.
	unixPathMax = 107
)

// NewPluto checks cfg and finds the programs. It starts nothing.
func NewPluto(cfg PlutoConfig) (*Pluto, error) {
	switch {
	case !filepath.IsAbs(cfg.Dir):
		return nil, fmt.Errorf("pluto directory %q is not an absolute path: give an absolute path", cfg.Dir)
	case len(filepath.Join(cfg.Dir, runDir, ctlSocket)) > unixPathMax:
		return nil, fmt.Errorf("pluto directory %q is too long: its control socket path must fit in %d bytes; use a shorter path", cfg.Dir, unixPathMax)
	case cfg.PSK == "":
		return nil, fmt.Errorf("no pre-shared key for pluto: set PSK from the join secret")
	case strings.ContainsAny(cfg.PSK, "\"\n\r\x00"):
		return nil, fmt.Errorf("the pre-shared key contains a double quote or a line break, which the secrets file cannot hold: base64-encode it")
	}
	var err error
	if cfg.Pluto == "" {
		if cfg.Pluto, err = LookPath("pluto"); err != nil {
			return nil, err
		}
	}
	if cfg.Whack == "" {
		if cfg.Whack, err = LookPath("whack"); err != nil {
			return nil, err
		}
	}
	if cfg.Certutil == "" {
		if cfg.Certutil, err = exec.LookPath("certutil"); err != nil {
			return nil, fmt.Errorf("NSS's certutil not found on PATH: install libnss3-tools (`make deps`)")
		}
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(30*time.Second, cfg.MinBackoff)
	}
	p := &Pluto{
		cfg:      cfg,
		ready:    make(chan struct{}),
		finished: make(chan struct{}),
	}
	p.client = &Client{Runner: ExecRunner{}, Whack: cfg.Whack, CtlSocket: p.CtlSocket(),
		Timeout: DefaultTimeout, Attempts: DefaultAttempts, Backoff: DefaultBackoff}
	return p, nil
}

// CtlSocket returns the path of pluto's control socket.
func (p *Pluto) CtlSocket() string { return filepath.Join(p.cfg.Dir, runDir, ctlSocket) }

// Client returns a whack client of this pluto.
func (p *Pluto) Client() *Client { return p.client }

// PID returns the current pluto's process ID, 0 when none runs.
func (p *Pluto) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

// Generation counts the starts that reached a listening control socket.
func (p *Pluto) Generation() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.generation
}

// Log returns the last lines pluto wrote (up to 2000).
func (p *Pluto) Log() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.logs...)
}

// WaitReady blocks until the current pluto answers on its control socket, Run ends
// (its error is returned, or an error saying pluto stopped) or ctx is done.
func (p *Pluto) WaitReady(ctx context.Context) error {
	p.mu.Lock()
	ready := p.ready
	p.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-p.finished:
		if p.runErr != nil {
			return p.runErr
		}
		return errors.New("pluto was stopped")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run prepares pluto's directory, starts pluto and supervises it until ctx is done;
// then it shuts pluto down and returns nil, or the error of an unclean shutdown. If
// the first start never reaches a listening control socket, Run returns that error
// (with pluto's last words) at once: the configuration is wrong. A pluto that dies
// later is restarted with backoff and reported to OnExit. Run may be called once.
func (p *Pluto) Run(ctx context.Context) (err error) {
	defer func() {
		p.mu.Lock()
		p.runErr = err
		p.mu.Unlock()
		close(p.finished)
	}()
	log := logr.FromContextOrDiscard(ctx).WithValues("dir", p.cfg.Dir)
	if err := p.prepare(ctx); err != nil {
		return err
	}
	backoff := p.cfg.MinBackoff
	for first := true; ; first = false {
		proc, err := p.start(ctx)
		if err != nil {
			return err
		}
		log.Info("Started pluto", "pid", proc.pid, "netns", p.cfg.Netns)
		if err := p.waitSocket(ctx, proc); err != nil {
			p.kill(proc)
			if ctx.Err() != nil {
				return nil
			}
			if first {
				return fmt.Errorf("starting pluto: %w; its last lines: %s", err, strings.Join(lastN(p.Log(), 5), " | "))
			}
		} else if err := p.client.Listen(ctx); err != nil && ctx.Err() == nil {
			// The socket answers before pluto has found its interfaces; --listen
			// makes it look now, so routing and initiating cannot find it deaf.
			p.kill(proc)
			if first {
				return fmt.Errorf("starting pluto: %w", err)
			}
		} else {
			p.markReady()
			if p.cfg.OnStart != nil {
				if err := p.cfg.OnStart(ctx, p.client); err != nil {
					log.Error(err, "Setting up pluto after its start failed")
				}
			}
			select {
			case <-ctx.Done():
				return p.shutdown(proc)
			case <-proc.done:
			}
		}
		uptime := time.Since(proc.started)
		if uptime > time.Minute {
			backoff = p.cfg.MinBackoff
		}
		exit := Exit{PID: proc.pid, Err: proc.err, Uptime: uptime, Restart: true, After: backoff}
		p.markGone()
		log.Info("Pluto exited", "exit", exit.String())
		if p.cfg.OnExit != nil {
			p.cfg.OnExit(exit)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, p.cfg.MaxBackoff)
	}
}

// prepare makes pluto's directory: run/, ipsec.d/, the NSS database (once) and the
// secrets file (every time, so a changed key takes effect).
func (p *Pluto) prepare(ctx context.Context) error {
	for _, d := range []string{runDir, nssDir, ipsecDDir} {
		if err := os.MkdirAll(filepath.Join(p.cfg.Dir, d), 0o700); err != nil {
			return fmt.Errorf("preparing pluto's directory: %w", err)
		}
	}
	nss := filepath.Join(p.cfg.Dir, nssDir)
	if _, err := os.Stat(filepath.Join(nss, "cert9.db")); errors.Is(err, os.ErrNotExist) {
		out, err := exec.CommandContext(ctx, p.cfg.Certutil, "-N", "-d", "sql:"+nss, "--empty-password").CombinedOutput()
		if err != nil {
			return fmt.Errorf("initialising pluto's NSS database in %s: %w: %s", nss, err, strings.TrimSpace(string(out)))
		}
	}
	secrets := filepath.Join(p.cfg.Dir, secretsFile)
	if err := os.WriteFile(secrets, []byte(`%any %any : PSK "`+p.cfg.PSK+"\"\n"), 0o600); err != nil {
		return fmt.Errorf("writing pluto's secrets file: %w", err)
	}
	return os.Chmod(secrets, 0o600)
}

type process struct {
	cmd     *exec.Cmd
	pid     int
	started time.Time
	done    chan struct{} // closed when the process has exited
	err     error         // how it exited; valid once done is closed
}

// start launches pluto after clearing a dead predecessor's pid file and socket.
func (p *Pluto) start(ctx context.Context) (*process, error) {
	run := filepath.Join(p.cfg.Dir, runDir)
	if pid, err := readPID(filepath.Join(run, pidFile)); err == nil && alive(pid) {
		return nil, fmt.Errorf("another pluto (pid %d) uses %s: stop it, or give this one another directory", pid, run)
	}
	for _, f := range []string{pidFile, ctlSocket} {
		if err := os.Remove(filepath.Join(run, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("removing a dead pluto's %s: %w", f, err)
		}
	}
	args := append([]string{"--nofork", "--stderrlog",
		"--rundir", run,
		"--nssdir", filepath.Join(p.cfg.Dir, nssDir),
		"--secretsfile", filepath.Join(p.cfg.Dir, secretsFile),
		"--ipsecdir", filepath.Join(p.cfg.Dir, ipsecDDir),
		"--dumpdir", run,
	}, p.cfg.ExtraArgs...)
	argv := append([]string{p.cfg.Pluto}, args...)
	if p.cfg.Netns != "" {
		argv = append([]string{"ip", "netns", "exec", p.cfg.Netns}, argv...)
	}
	// Not CommandContext: the context's end means a graceful shutdown, not a kill.
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("starting pluto: %w", err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("starting pluto (%s): %w", strings.Join(argv, " "), err)
	}
	w.Close()
	proc := &process{cmd: cmd, pid: cmd.Process.Pid, started: time.Now(), done: make(chan struct{})}
	p.mu.Lock()
	p.pid = proc.pid
	p.mu.Unlock()
	logsDone := make(chan struct{})
	go func() {
		defer close(logsDone)
		p.readLog(r)
	}()
	go func() {
		proc.err = cmd.Wait()
		// Let the log reader catch the last words (helpers of pluto may keep the
		// pipe open; do not wait for them long).
		select {
		case <-logsDone:
		case <-time.After(time.Second):
		}
		close(proc.done)
	}()
	return proc, nil
}

func (p *Pluto) readLog(r io.ReadCloser) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		p.logs = append(p.logs, line)
		if len(p.logs) > keptLogs {
			p.logs = p.logs[len(p.logs)-keptLogs:]
		}
		p.mu.Unlock()
		if p.cfg.OnLog != nil {
			p.cfg.OnLog(line)
		}
	}
}

// waitSocket waits until pluto accepts connections on its control socket.
func (p *Pluto) waitSocket(ctx context.Context, proc *process) error {
	deadline := time.NewTimer(p.cfg.StartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if c, err := net.DialTimeout("unix", p.CtlSocket(), time.Second); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-proc.done:
			return fmt.Errorf("pluto exited before it listened on %s: %v", p.CtlSocket(), proc.err)
		case <-deadline.C:
			return fmt.Errorf("pluto did not listen on %s within %s", p.CtlSocket(), p.cfg.StartTimeout)
		case <-tick.C:
		}
	}
}

func (p *Pluto) markReady() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.generation++
	close(p.ready)
}

func (p *Pluto) markGone() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pid = 0
	select {
	case <-p.ready:
		p.ready = make(chan struct{})
	default:
	}
}

// shutdown stops pluto with whack --shutdown (which deletes its SAs and policies),
// then SIGTERM, then SIGKILL, each after a grace period.
func (p *Pluto) shutdown(proc *process) error {
	ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
	defer cancel()
	c := *p.client
	c.Attempts = 1
	shutErr := c.Shutdown(ctx)
	for _, step := range []struct {
		sig   syscall.Signal
		grace time.Duration
	}{{0, 10 * time.Second}, {syscall.SIGTERM, 5 * time.Second}, {syscall.SIGKILL, 5 * time.Second}} {
		if step.sig != 0 {
			_ = syscall.Kill(-proc.pid, step.sig)
		} else if shutErr != nil {
			continue
		}
		t := time.NewTimer(step.grace)
		select {
		case <-proc.done:
			t.Stop()
			p.markGone()
			if step.sig != 0 {
				return fmt.Errorf("pluto (pid %d) ignored whack --shutdown (%v) and was stopped with %s", proc.pid, shutErr, step.sig)
			}
			return nil
		case <-t.C:
		}
	}
	return fmt.Errorf("pluto (pid %d) survived SIGKILL", proc.pid)
}

// kill stops a pluto that never became ready.
func (p *Pluto) kill(proc *process) {
	_ = syscall.Kill(-proc.pid, syscall.SIGKILL)
	<-proc.done
	p.markGone()
}

func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// alive reports whether pid is a running pluto (a dead pluto's pid may have been
// reused by another program).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.TrimSpace(string(comm)) == "pluto"
}

func lastN(lines []string, n int) []string {
	if len(lines) > n {
		return lines[len(lines)-n:]
	}
	return lines
}
