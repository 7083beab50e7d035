package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// Interface is the kernel side of a Writer: iptables-restore and iptables-save.
// Implementations must be safe for concurrent use.
type Interface interface {
	// Restore applies payload with iptables-restore --noflush, so chains and rules the
	// payload does not mention are left alone. A payload is applied whole or not at
	// all; a failure is a *RestoreError naming the line the tool blamed.
	Restore(ctx context.Context, payload []byte) error
	// Save returns what iptables-save prints for every table.
	Save(ctx context.Context) ([]byte, error)
}

var (
	_ Interface = (*Exec)(nil) // runs iptables-restore and iptables-save
	_ Interface = (*Fake)(nil) // an in-memory model for tests
)

// Protocol selects iptables (IPv4) or ip6tables (IPv6).
type Protocol int

const (
	IPv4 Protocol = iota
	IPv6
)

func (p Protocol) String() string {
	if p == IPv6 {
		return "ip6tables"
	}
	return "iptables"
}

// Runner runs a program with stdin and returns its standard output. A failure
// returns an error carrying the program's standard error (see CommandError).
type Runner interface {
	Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error)
}

// ExecRunner runs programs with os/exec, in the named network namespace through
// `ip netns exec` when Netns is set, else in the calling process's namespace.
type ExecRunner struct {
	Netns string
}

// Run implements Runner.
func (r ExecRunner) Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	argv := append([]string{name}, args...)
	if r.Netns != "" {
		argv = append([]string{"ip", "netns", "exec", r.Netns}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &CommandError{Command: strings.Join(argv, " "), Stderr: strings.TrimSpace(stderr.String()), Err: err}
	}
	return stdout.Bytes(), nil
}

// CommandError is a program that failed, with what it said on standard error.
type CommandError struct {
	Command string
	Stderr  string
	Err     error
}

func (e *CommandError) Error() string {
	if e.Stderr == "" {
		return fmt.Sprintf("running %s: %v", e.Command, e.Err)
	}
	return fmt.Sprintf("running %s: %v: %s", e.Command, e.Err, e.Stderr)
}

func (e *CommandError) Unwrap() error { return e.Err }

// Exec is the real Interface: iptables-restore and iptables-save run through a Runner.
type Exec struct {
	runner Runner
	proto  Protocol
}

// New returns an Interface that runs the tools for proto through r.
func New(r Runner, proto Protocol) *Exec {
	return &Exec{runner: r, proto: proto}
}

// Restore implements Interface.
func (e *Exec) Restore(ctx context.Context, payload []byte) error {
	_, err := e.runner.Run(ctx, payload, e.proto.String()+"-restore", "--noflush", "--wait")
	if err != nil {
		stderr := err.Error()
		var ce *CommandError
		if errors.As(err, &ce) {
			stderr = ce.Stderr
		}
		return newRestoreError(e.proto.String()+"-restore", payload, stderr, err)
	}
	return nil
}

// Save implements Interface.
func (e *Exec) Save(ctx context.Context) ([]byte, error) {
	out, err := e.runner.Run(ctx, nil, e.proto.String()+"-save")
	if err != nil {
		return nil, fmt.Errorf("reading the %s tables: %w", e.proto, err)
	}
	return out, nil
}

// RestoreError is a failed restore, with the payload lines around the one the tool
// blamed, so that the log shows what was wrong without the whole payload.
type RestoreError struct {
	// Line is the 1-based payload line the tool blamed, 0 if it named none.
	Line int
	// Context holds numbered payload lines around Line (±3), the blamed one marked
	// with ">"; when the tool named a missing chain, also the first line using it.
	Context string
	// Message is what the tool said, trimmed.
	Message string
	Err     error
}

func (e *RestoreError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "restoring iptables payload")
	if e.Line > 0 {
		fmt.Fprintf(&b, " failed at line %d", e.Line)
	}
	fmt.Fprintf(&b, ": %s", e.Message)
	if e.Context != "" {
		b.WriteString("\n")
		b.WriteString(e.Context)
	}
	return strings.TrimRight(b.String(), "\n")
}

func (e *RestoreError) Unwrap() error { return e.Err }

var (
	lineRE         = regexp.MustCompile(`line:? (\d+)`)
	missingChainRE = regexp.MustCompile(`Chain '([^']+)' does not exist`)
	versionRE      = regexp.MustCompile(`^i?p?6?tables-restore( v[^:]*)?: *`)
)

// newRestoreError builds a RestoreError from the tool's standard error.
func newRestoreError(tool string, payload []byte, stderr string, err error) *RestoreError {
	lines := strings.Split(strings.TrimRight(string(payload), "\n"), "\n")
	re := &RestoreError{Err: err, Message: summarize(tool, stderr)}
	if m := lineRE.FindStringSubmatch(stderr); m != nil {
		re.Line, _ = strconv.Atoi(m[1])
	}
	var b strings.Builder
	if re.Line > 0 && re.Line <= len(lines) {
		writeContext(&b, lines, re.Line)
	}
	// nf_tables checks jump targets at COMMIT and blames that line: show the first
	// line that names the missing chain as well.
	if m := missingChainRE.FindStringSubmatch(stderr); m != nil {
		for i, l := range lines {
			toks, _ := tokenize(l)
			if jumpTarget(toks) == Chain(m[1]) && i+1 != re.Line {
				b.WriteString("first use of the missing chain:\n")
				writeContext(&b, lines, i+1)
				break
			}
		}
	}
	re.Context = b.String()
	return re
}

// summarize keeps the informative lines of the tool's message.
func summarize(tool, stderr string) string {
	var parts []string
	for _, l := range strings.Split(stderr, "\n") {
		l = strings.TrimSpace(versionRE.ReplaceAllString(strings.TrimSpace(l), ""))
		if l == "" || strings.HasPrefix(l, "Try `") {
			continue
		}
		parts = append(parts, l)
	}
	if len(parts) == 0 {
		return tool + " failed without a message"
	}
	return strings.Join(parts, "; ")
}

func writeContext(b *strings.Builder, lines []string, line int) {
	from, to := max(1, line-3), min(len(lines), line+3)
	for i := from; i <= to; i++ {
		mark := " "
		if i == line {
			mark = ">"
		}
		fmt.Fprintf(b, "%s %4d  %s\n", mark, i, lines[i-1])
	}
}
