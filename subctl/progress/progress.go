// Package progress prints what subctl is doing, one line per step: "✓ <step>" when
// it succeeded, "✗ <step>" when it failed (the command then ends with the error), "⚠ <warning>" for warnings. On a
// terminal a running step shows a spinner and its latest status on one line that is
// rewritten in place; elsewhere (logs, tests) each status change is its own line, so
// the output stays readable and deterministic.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Reporter writes progress lines to an output.
type Reporter struct {
	out io.Writer
	tty bool

	mu sync.Mutex
}

// New returns a Reporter writing to out; it animates when out is a terminal.
func New(out io.Writer) *Reporter {
	return &Reporter{out: out, tty: isTerminal(out)}
}

// Discard is a Reporter that prints nothing.
func Discard() *Reporter { return &Reporter{out: io.Discard} }

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Step is one running step.
type Step struct {
	r      *Reporter
	title  string
	status string
	stop   chan struct{}
	done   chan struct{}
}

var spinner = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

// Start begins a step titled title (for example "Waiting for the CRDs to be
// established"). End it with Done.
func (r *Reporter) Start(title string) *Step {
	s := &Step{r: r, title: title, stop: make(chan struct{}), done: make(chan struct{})}
	if !r.tty {
		close(s.done)
		return s
	}
	go func() {
		defer close(s.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			r.mu.Lock()
			fmt.Fprintf(r.out, "\r\033[K%s %s%s", spinner[i%len(spinner)], s.title, s.suffix())
			r.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *Step) suffix() string {
	if s.status == "" {
		return ""
	}
	return " (" + s.status + ")"
}

// Update sets the step's status (for example "2/3 nodes ready"). Off a terminal,
// each new status is printed on its own line.
func (s *Step) Update(status string) {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	if status == s.status {
		return
	}
	s.status = status
	if !s.r.tty {
		fmt.Fprintf(s.r.out, "  %s: %s\n", s.title, status)
	}
}

// Done ends the step: "✓ title" when err is nil, else "✗ title". It returns err,
// which the command reports once, at its end.
func (s *Step) Done(err error) error {
	if s.r.tty {
		close(s.stop)
	}
	<-s.done
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	clear := ""
	if s.r.tty {
		clear = "\r\033[K"
	}
	if err != nil {
		fmt.Fprintf(s.r.out, "%s✗ %s\n", clear, s.title)
	} else {
		fmt.Fprintf(s.r.out, "%s✓ %s\n", clear, s.title)
	}
	return err
}

// Run runs fn as a step titled title and returns its error.
func (r *Reporter) Run(title string, fn func(*Step) error) error {
	s := r.Start(title)
	return s.Done(fn(s))
}

// Warn prints a warning line.
func (r *Reporter) Warn(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.out, "⚠ %s\n", fmt.Sprintf(format, args...))
}

// Info prints a line of information.
func (r *Reporter) Info(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.out, "  %s\n", fmt.Sprintf(format, args...))
}
