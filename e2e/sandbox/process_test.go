package sandbox

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
)

func TestParseStartTime(t *testing.T) {
	for _, tc := range []struct {
		name, stat string
		want       uint64
		err        string
	}{
		{
			name: "plain",
			stat: "1234 (etcd) S 1 1234 1234 0 -1 4194560 2911 0 0 0 19 8 0 0 20 0 12 0 98765 1 2 3",
			want: 98765,
		},
		{
			name: "command name with spaces and parentheses",
			stat: "77 (a (weird) name) R 1 77 77 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 4242 0",
			want: 4242,
		},
		{name: "no command name", stat: "77 R 1", err: "no ')' after the command name"},
		{name: "truncated", stat: "77 (x) R 1 2 3", err: "4 fields after the command name, want at least 20"},
		{name: "not a number", stat: "1 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 soon 1", err: `malformed start time "soon"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStartTime(tc.stat)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("parseStartTime error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("parseStartTime = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

// TestRecordsTellProcessesApart starts a real process, records it, and checks that
// a record with another start time (a reused PID) is not taken for it.
func TestRecordsTellProcessesApart(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	st, err := startTime(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	rec := procRecord{Name: "sleep", PID: cmd.Process.Pid, StartTime: st}
	if !rec.Alive() {
		t.Fatalf("record %+v of a running process is not alive", rec)
	}
	impostor := rec
	impostor.StartTime++
	if impostor.Alive() {
		t.Error("a record with another start time is taken for the running process")
	}
	if killVerified(impostor, syscall.SIGKILL) {
		t.Error("killVerified signalled a process whose start time differs from the record")
	}
	if err := stopProcesses(context.Background(), []procRecord{rec}, time.Minute); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if rec.Alive() {
		t.Error("the process is alive after stopProcesses")
	}
}

// TestSupervisorRestartsAndStops runs a process that exits at once: the
// supervisor records it, restarts it, reports it as failed, and Stop leaves no
// record behind.
func TestSupervisorRestartsAndStops(t *testing.T) {
	l := Layout{Dir: t.TempDir()}
	for _, d := range []string{l.Logs(), l.PIDs()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s := newSupervisor(l, logr.Discard())
	if err := s.Start(procSpec{Name: "sleeper", Stage: stageEtcd, Path: "sleep", Args: []string{"60"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(procSpec{Name: "quitter", Stage: stageAPIServer, Path: "sh", Args: []string{"-c", "echo giving up; exit 3"}}); err != nil {
		t.Fatal(err)
	}
	var failure error
	Eventually(t, func() bool { failure = s.Failure(); return failure != nil })
	if failure == nil || !strings.Contains(failure.Error(), "quitter exited (exit status 3)") || !strings.Contains(failure.Error(), "giving up") {
		t.Errorf("Failure() = %v, want quitter's exit status and the end of its log", failure)
	}
	recs, err := readRecords(l.PIDs())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range recs {
		names = append(names, r.Name)
	}
	if diff := cmp.Diff([]string{"quitter", "sleeper"}, names); diff != "" {
		t.Errorf("process records (-want +got):\n%s", diff)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Name == "sleeper" && r.Alive() {
			t.Error("sleeper survives Stop")
		}
	}
	if recs, _ := readRecords(l.PIDs()); len(recs) != 0 {
		t.Errorf("records left after Stop: %+v", recs)
	}
	if err := s.Start(procSpec{Name: "late", Path: "true"}); err == nil {
		t.Error("Start after Stop succeeded")
	}
}

func TestTail(t *testing.T) {
	path := t.TempDir() + "/log"
	var b strings.Builder
	for i := 0; i < 3000; i++ {
		b.WriteString("line ")
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString("\n")
	}
	b.WriteString("the end\n")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got := strings.Split(tail(path, 3), "\n")
	if len(got) != 3 || got[2] != "the end" {
		t.Errorf("tail = %q, want 3 lines ending in %q", got, "the end")
	}
	if got := tail(t.TempDir()+"/missing", 3); !strings.HasPrefix(got, "(no log:") {
		t.Errorf("tail of a missing file = %q", got)
	}
}
