package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

// binDir holds the binary built by buildBinary; TestMain removes it.
var binDir string

// buildBinary builds this package the way `make build` does and returns the
// binary's path; the build is shared by the tests of one run.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "coredns-build-test-")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "coredns")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

func binary(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("skipped: the go command is not on PATH to build the binary")
	}
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestBinaryPlugins checks that `coredns -plugins` lists exactly our plugin set.
func TestBinaryPlugins(t *testing.T) {
	out, err := exec.Command(binary(t), "-plugins").Output()
	if err != nil {
		t.Fatalf("coredns -plugins: %v", err)
	}
	got := strings.Fields(string(out))
	want := slices.Sorted(slices.Values(directives))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("coredns -plugins (-want +got):\n%s", diff)
	}
}

// TestBinaryServes runs the built binary with -conf on a loopback port, queries it
// over UDP and TCP, edits the Corefile and sees the reload plugin pick the edit up,
// and stops it with SIGTERM.
func TestBinaryServes(t *testing.T) {
	bin := binary(t)
	dnsAddr, ready := freePort(t), freePort(t)
	dir := t.TempDir()
	corefile := filepath.Join(dir, "Corefile")
	render := func(ip string) {
		t.Helper()
		conf := fmt.Sprintf(`.:%s {
	bind 127.0.0.1
	ready %s
	reload 2s 1s
	hosts {
		%s db.example.test
	}
}
`, port(dnsAddr), ready, ip)
		if err := os.WriteFile(corefile, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	render("10.1.2.3")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "-conf", corefile)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	waitFor(ctx, t, "CoreDNS to be ready", func() (bool, string) {
		select {
		case <-exited:
			t.Fatalf("coredns exited early: %v\nstdout:\n%s\nstderr:\n%s", waitErr, &stdout, &stderr)
		default:
		}
		c := &http.Client{Timeout: time.Second}
		resp, err := c.Get("http://" + ready + "/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})

	answer := func(transport string) string {
		resp, _ := exchange(t, transport, dnsAddr, new(dns.Msg).SetQuestion("db.example.test.", dns.TypeA))
		return strings.Join(rrStrings(resp.Answer), "\n")
	}
	for _, transport := range []string{"udp", "tcp"} {
		want := canonical(t, []string{"db.example.test. 3600 IN A 10.1.2.3"})[0]
		if got := answer(transport); got != want {
			t.Errorf("over %s: answer %q, want %q", transport, got, want)
		}
	}

	render("10.4.5.6")
	want := canonical(t, []string{"db.example.test. 3600 IN A 10.4.5.6"})[0]
	waitFor(ctx, t, "the reload plugin to load the edited Corefile", func() (bool, string) {
		got := answer("udp")
		return got == want, got
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("coredns exited with %v after SIGTERM, want status 0\nstderr:\n%s", waitErr, &stderr)
		}
	case <-ctx.Done():
		t.Fatalf("coredns did not exit after SIGTERM")
	}
}

// TestBinaryMalformedCorefile checks that the binary refuses a bad Corefile with a
// non-zero status and an error naming the file, line and problem.
func TestBinaryMalformedCorefile(t *testing.T) {
	bin := binary(t)
	dir := t.TempDir()
	corefile := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(corefile, []byte(".:0 {\n\tbind 127.0.0.1\n\tkubernetes cluster.local {\n\t\tttl 99999\n\t}\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "-conf", corefile)
	cmd.Dir = dir
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("coredns with a malformed Corefile: %v, want a non-zero exit status", err)
	}
	for _, want := range []string{"plugin/kubernetes", corefile + ":4", "ttl must be in range [0, 3600]: 99999"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr %q does not contain %q", stderr.String(), want)
		}
	}
}

func port(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }
