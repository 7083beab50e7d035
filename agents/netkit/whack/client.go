package whack

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Runner runs a program and returns its combined output. A program that exits
// non-zero returns its output and an error with an ExitCode() int method (as
// *exec.ExitError has).
type Runner interface {
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// ExecRunner runs programs with os/exec. whack talks to pluto over a Unix socket, so
// it needs no network namespace.
type ExecRunner struct{}

// Run implements Runner.
func (ExecRunner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}

// Where Libreswan installs its programs.
var libexecDirs = []string{"/usr/libexec/ipsec", "/usr/lib/ipsec", "/usr/local/libexec/ipsec"}

// LookPath finds one of Libreswan's programs (whack, pluto) in its libexec directory
// or on PATH.
func LookPath(program string) (string, error) {
	for _, d := range libexecDirs {
		p := filepath.Join(d, program)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if p, err := exec.LookPath(program); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("libreswan's %s not found in %s or on PATH: install libreswan (`make deps`)", program, strings.Join(libexecDirs, ", "))
}

// Defaults of a Client: Submariner's whack timeout and retries.
const (
	DefaultTimeout  = 5 * time.Second
	DefaultAttempts = 3
	DefaultBackoff  = time.Second
)

// Client runs whack against one pluto's control socket. Each call runs with Timeout;
// a call that timed out, or found pluto not (yet) listening, is tried again up to
// Attempts times, Backoff apart. Requests pluto refuses fail at once with an *Error.
type Client struct {
	Runner    Runner
	Whack     string // path of the whack program
	CtlSocket string // pluto's control socket
	Timeout   time.Duration
	Attempts  int
	Backoff   time.Duration
}

// NewClient returns a client of the pluto listening on ctlSocket, with the defaults.
func NewClient(ctlSocket string) (*Client, error) {
	w, err := LookPath("whack")
	if err != nil {
		return nil, err
	}
	return &Client{Runner: ExecRunner{}, Whack: w, CtlSocket: ctlSocket, Timeout: DefaultTimeout, Attempts: DefaultAttempts, Backoff: DefaultBackoff}, nil
}

// Error is a whack invocation that failed.
type Error struct {
	// Args are whack's arguments (without the control socket).
	Args []string
	// Code is pluto's status code for the request (whack's exit status, or the
	// first failure code in its output), or -1 when whack did not run to the end.
	Code int
	// Output is what whack printed.
	Output string
	// Err is the underlying error, if any.
	Err error
}

// pluto's status codes of refused requests (see its rc_type).
const (
	codeDuplicateName = 20
	codeUnknownName   = 21
	// Codes 20 to 99 are failures; below are comments and logs, from 100 up
	// progress reports.
	failureFloor, failureCeiling = 20, 100
)

// Errors that Error matches with errors.Is.
var (
	// ErrExists: a connection of that name exists already.
	ErrExists = errors.New("connection exists")
	// ErrUnknownConnection: pluto knows no connection of that name.
	ErrUnknownConnection = errors.New("unknown connection")
	// ErrNotRunning: nothing listens on the control socket.
	ErrNotRunning = errors.New("pluto is not running")
)

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "whack %s", strings.Join(e.Args, " "))
	if e.Code >= 0 {
		fmt.Fprintf(&b, ": pluto answered %d", e.Code)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if out := strings.TrimSpace(e.Output); out != "" {
		fmt.Fprintf(&b, ": %s", strings.ReplaceAll(out, "\n", "; "))
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Is matches ErrExists, ErrUnknownConnection and ErrNotRunning.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrExists:
		return e.Code == codeDuplicateName
	case ErrUnknownConnection:
		return e.Code == codeUnknownName || strings.Contains(e.Output, "no connection")
	case ErrNotRunning:
		return notRunning(e.Output)
	}
	return false
}

func notRunning(out string) bool {
	return strings.Contains(out, "Pluto is not running") || strings.Contains(out, "connect(pluto_ctl)")
}

// Run runs whack with args against the client's control socket and returns its
// output, retrying as the Client's doc says.
func (c *Client) Run(ctx context.Context, args ...string) ([]byte, error) {
	attempts := max(c.Attempts, 1)
	var last error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			t := time.NewTimer(c.Backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("%w (after: %v)", ctx.Err(), last)
			case <-t.C:
			}
		}
		out, retry, err := c.once(ctx, args)
		if err == nil || !retry {
			return out, err
		}
		last = err
	}
	return nil, last
}

// once runs whack one time and says whether a failure is worth another try.
func (c *Client) once(ctx context.Context, args []string) ([]byte, bool, error) {
	callCtx := ctx
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		callCtx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	full := append([]string{"--ctlsocket", c.CtlSocket}, args...)
	out, err := c.Runner.Run(callCtx, c.Whack, full...)
	switch {
	case ctx.Err() != nil:
		return out, false, &Error{Args: args, Code: -1, Output: string(out), Err: ctx.Err()}
	case callCtx.Err() != nil:
		return out, true, &Error{Args: args, Code: -1, Output: string(out), Err: fmt.Errorf("no answer within %s", c.Timeout)}
	case err != nil:
		var coded interface{ ExitCode() int }
		if !errors.As(err, &coded) || coded.ExitCode() < 0 {
			return out, false, &Error{Args: args, Code: -1, Output: string(out), Err: err}
		}
		return out, notRunning(string(out)), &Error{Args: args, Code: coded.ExitCode(), Output: string(out)}
	}
	// whack exits 0 for some refusals (initiating an unknown name): look at the codes.
	if code, ok := failureCode(out); ok {
		return out, false, &Error{Args: args, Code: code, Output: string(out)}
	}
	return out, false, nil
}

// failureCode returns the first failure status code in whack's output.
func failureCode(out []byte) (int, bool) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if len(line) < 4 || line[3] != ' ' {
			continue
		}
		code, err := strconv.Atoi(line[:3])
		if err == nil && code >= failureFloor && code < failureCeiling {
			return code, true
		}
	}
	return 0, false
}

// Listen makes pluto look for interfaces and reload its secrets.
func (c *Client) Listen(ctx context.Context) error {
	_, err := c.Run(ctx, ListenArgs()...)
	return err
}

// Add adds the connection. One of the same name is an error matching ErrExists.
func (c *Client) Add(ctx context.Context, conn Connection) error {
	if err := conn.Validate(); err != nil {
		return err
	}
	_, err := c.Run(ctx, conn.Args()...)
	return err
}

// Replace deletes the connection of that name, if any, and adds conn.
func (c *Client) Replace(ctx context.Context, conn Connection) error {
	if err := conn.Validate(); err != nil {
		return err
	}
	if err := c.Delete(ctx, conn.Name); err != nil {
		return err
	}
	return c.Add(ctx, conn)
}

// Route installs the connection's policy.
func (c *Client) Route(ctx context.Context, name string) error {
	_, err := c.Run(ctx, RouteArgs(name)...)
	return err
}

// Initiate starts negotiating the connection and returns without waiting.
func (c *Client) Initiate(ctx context.Context, name string) error {
	_, err := c.Run(ctx, InitiateArgs(name)...)
	return err
}

// Delete removes the connection and its SAs; an unknown name is not an error.
func (c *Client) Delete(ctx context.Context, name string) error {
	_, err := c.Run(ctx, DeleteArgs(name)...)
	if errors.Is(err, ErrUnknownConnection) {
		return nil
	}
	return err
}

// Connect sets up every connection of the tunnel: each is replaced (so changed
// parameters take effect), then routed and initiated unless this side is the server.
func (c *Client) Connect(ctx context.Context, t Tunnel) error {
	conns, err := t.Connections()
	if err != nil {
		return err
	}
	for _, conn := range conns {
		if err := c.Replace(ctx, conn); err != nil {
			return fmt.Errorf("connecting to %s: %w", t.Remote.CableName, err)
		}
		if !t.Mode.Initiates() {
			continue
		}
		if err := c.Route(ctx, conn.Name); err != nil {
			return fmt.Errorf("connecting to %s: %w", t.Remote.CableName, err)
		}
		if err := c.Initiate(ctx, conn.Name); err != nil {
			return fmt.Errorf("connecting to %s: %w", t.Remote.CableName, err)
		}
	}
	return nil
}

// Disconnect deletes every connection of the tunnel.
func (c *Client) Disconnect(ctx context.Context, t Tunnel) error {
	conns, err := t.Connections()
	if err != nil {
		return err
	}
	var errs []error
	for _, conn := range conns {
		if err := c.Delete(ctx, conn.Name); err != nil {
			errs = append(errs, fmt.Errorf("disconnecting from %s: %w", t.Remote.CableName, err))
		}
	}
	return errors.Join(errs...)
}

// TrafficStatus returns the established Child SAs with their byte counters.
func (c *Client) TrafficStatus(ctx context.Context) ([]Traffic, error) {
	out, err := c.Run(ctx, TrafficStatusArgs()...)
	if err != nil {
		return nil, err
	}
	return ParseTrafficStatus(out)
}

// Status returns pluto's connections and states.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	out, err := c.Run(ctx, StatusArgs()...)
	if err != nil {
		return nil, err
	}
	return ParseStatus(out)
}

// ShowStates returns pluto's IKE and Child SA states.
func (c *Client) ShowStates(ctx context.Context) ([]State, error) {
	out, err := c.Run(ctx, ShowStatesArgs()...)
	if err != nil {
		return nil, err
	}
	return ParseShowStates(out)
}

// Shutdown stops pluto.
func (c *Client) Shutdown(ctx context.Context) error {
	_, err := c.Run(ctx, ShutdownArgs()...)
	return err
}
