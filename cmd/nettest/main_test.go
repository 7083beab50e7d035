package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/submariner-go/submariner/agents/netkit/netns"
	"github.com/submariner-go/submariner/agents/netkit/netns/netnstest"
	"github.com/submariner-go/submariner/e2e/nettest"
)

var (
	binDir string
	// buildBinary builds this command once per test run.
	buildBinary = sync.OnceValues(func() (string, error) {
		dir, err := os.MkdirTemp("", "nettest-test-")
		if err != nil {
			return "", err
		}
		binDir = dir
		bin := filepath.Join(dir, "nettest")
		if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build: %v\n%s", err, out)
		}
		return bin, nil
	})
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

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

// server is a running `nettest serve`.
type server struct {
	cmd            *exec.Cmd
	tcp, udp, http string // listening addresses from its log
	mu             sync.Mutex
	log            bytes.Buffer
	exited         chan struct{}
	waitErr        error
}

func (s *server) stdout() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// startServe starts cmd (a `nettest serve`), waits for its three "listening"
// lines and stops it with SIGKILL at the end of the test unless it has exited.
func startServe(t *testing.T, cmd *exec.Cmd) *server {
	t.Helper()
	s := &server{cmd: cmd, exited: make(chan struct{})}
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan string, 3)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			s.mu.Lock()
			s.log.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
			if rest, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
				listening <- rest
			}
		}
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			_ = cmd.Process.Kill()
			<-s.exited
		}
	})
	for range 3 {
		select {
		case l := <-listening:
			proto, addr, _ := strings.Cut(l, " ")
			switch proto {
			case "tcp":
				s.tcp = addr
			case "udp":
				s.udp = addr
			case "http":
				s.http = addr
			}
		case <-s.exited:
			t.Fatalf("nettest serve exited: %v\nstdout:\n%s\nstderr:\n%s", s.waitErr, s.stdout(), &stderr)
		}
	}
	return s
}

// terminate sends SIGTERM and returns the exit error.
func (s *server) terminate(t *testing.T) error {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-s.exited
	return s.waitErr
}

// run runs cmd and returns its stdout, stderr and exit status.
func run(t *testing.T, cmd *exec.Cmd) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), stderr.String(), 0
	case errors.As(err, &exit):
		return stdout.String(), stderr.String(), exit.ExitCode()
	}
	t.Fatalf("running %v: %v", cmd.Args, err)
	return "", "", 0
}

// environ is the test's environment without the downward-API variables, plus env.
func environ(env ...string) []string {
	out := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, nettest.EnvPodName+"=") || strings.HasPrefix(kv, nettest.EnvPodIP+"=")
	})
	return append(out, env...)
}

// TestBinary runs `nettest serve` and `nettest connect` as processes on loopback:
// the replies, the exit statuses and messages of failures, and SIGTERM.
func TestBinary(t *testing.T) {
	bin := binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	serve := exec.CommandContext(ctx, bin, "serve", "--address", "127.0.0.1", "--tcp-port", "0", "--udp-port", "0", "--http-port", "0")
	serve.Env = environ("POD_NAME=web-0", "POD_IP=10.241.1.5")
	srv := startServe(t, serve)

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := closed.Addr().String()
	closed.Close()

	tests := []struct {
		name       string
		args       []string
		wantStatus int
		wantOut    string // {client} stands for the client address in the reply
		wantErr    string
		wantLog    string // server log line, with {client}
	}{
		{
			name:    "tcp with echo",
			args:    []string{"--tcp", srv.tcp, "--send", "hello"},
			wantOut: "pod=web-0 ip=10.241.1.5 client={client}\nhello\n",
			wantLog: "accepted tcp from {client}",
		},
		{
			name:    "udp",
			args:    []string{"--udp", srv.udp, "--bind", "127.0.0.3"},
			wantOut: "pod=web-0 ip=10.241.1.5 client={client}\n",
			wantLog: "udp from {client}",
		},
		{
			name:    "http",
			args:    []string{"--http", "http://" + srv.http + "/"},
			wantOut: "pod=web-0 ip=10.241.1.5 client={client}\n",
			wantLog: "http from {client}",
		},
		{
			name:       "refused",
			args:       []string{"--tcp", refused, "--timeout", "2s"},
			wantStatus: exitFailure,
			wantErr:    "nettest: tcp " + refused + ": connection refused\n",
		},
		{
			name:       "usage",
			args:       []string{"--tcp", "10.0.0.1"},
			wantStatus: exitUsage,
			wantErr:    `nettest: tcp target "10.0.0.1" is not HOST:PORT: give a host and a port, such as 10.0.0.1:8080` + "\n",
		},
		{
			name:       "unknown flag",
			args:       []string{"--tcpp", srv.tcp},
			wantStatus: exitUsage,
			wantErr:    "nettest: unknown flag: --tcpp\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, status := run(t, exec.CommandContext(ctx, bin, append([]string{"connect"}, tc.args...)...))
			if status != tc.wantStatus || stderr != tc.wantErr {
				t.Fatalf("nettest connect %v: status %d stderr %q, want %d %q", tc.args, status, stderr, tc.wantStatus, tc.wantErr)
			}
			client := ""
			if tc.wantOut != "" {
				line, _, _ := strings.Cut(stdout, "\n")
				reply, err := nettest.ParseReply(line)
				if err != nil {
					t.Fatal(err)
				}
				client = reply.Client.String()
			}
			if want := strings.ReplaceAll(tc.wantOut, "{client}", client); stdout != want {
				t.Errorf("stdout %q, want %q", stdout, want)
			}
			if tc.wantLog != "" {
				if want := strings.ReplaceAll(tc.wantLog, "{client}", client) + "\n"; !strings.Contains(srv.stdout(), want) {
					t.Errorf("server log lacks %q:\n%s", want, srv.stdout())
				}
			}
		})
	}

	if err := srv.terminate(t); err != nil {
		t.Errorf("nettest serve exited with %v after SIGTERM, want status 0", err)
	}
	if !strings.HasSuffix(srv.stdout(), "stopped\n") {
		t.Errorf("server log does not end with \"stopped\":\n%s", srv.stdout())
	}
}

// TestBinaryServeRefusesBadInput checks that serve stops before listening when its
// flags or identity are bad.
func TestBinaryServeRefusesBadInput(t *testing.T) {
	bin := binary(t)
	tests := []struct {
		name       string
		args, env  []string
		wantStatus int
		wantErr    string
	}{
		{
			name: "bad POD_IP", args: []string{"--address", "127.0.0.1", "--tcp-port", "0", "--udp-port", "0", "--http-port", "0"},
			env: []string{"POD_IP=10.1.2"}, wantStatus: exitFailure,
			wantErr: `nettest: POD_IP="10.1.2" is not an IP address: set it to the pod's IP (the downward API's status.podIP)` + "\n",
		},
		{
			name: "bad port", args: []string{"--udp-port", "65536"}, wantStatus: exitUsage,
			wantErr: "nettest: --udp-port 65536 is not a port: give 1 to 65535, or 0 for any free port\n",
		},
		{
			name: "argument", args: []string{"8080"}, wantStatus: exitUsage,
			wantErr: `nettest: nettest serve takes flags, not arguments: got ["8080"] (see --help)` + "\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, append([]string{"serve"}, tc.args...)...)
			cmd.Env = environ(tc.env...)
			stdout, stderr, status := run(t, cmd)
			if status != tc.wantStatus || stderr != tc.wantErr || stdout != "" {
				t.Errorf("status %d stdout %q stderr %q, want %d \"\" %q", status, stdout, stderr, tc.wantStatus, tc.wantErr)
			}
		})
	}
}

// TestPrivilegedAcrossNamespaces runs the workload the way the sandbox does: each
// side a process in its own network namespace, no POD_NAME or POD_IP, so the
// server names itself by hostname and interface address.
//
//	+------------------------------+   veth    +------------------------------+
//	| a: nt-a 198.51.100.1/24      |-----------| b: nt-b 198.51.100.2/24      |
//	|    fd00:5100::1/64           |           |                              |
//	|    nettest serve, nettest ips|           |    nettest connect           |
//	+------------------------------+           +------------------------------+
func TestPrivilegedAcrossNamespaces(t *testing.T) {
	netnstest.RequirePrivileged(t)
	bin := binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	a, b := netnstest.New(t), netnstest.New(t)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "nt-a"}, PeerName: "nt-b", PeerNamespace: netlink.NsFd(b.Handle())}
	if err := a.Netlink.LinkAdd(veth); err != nil {
		t.Fatalf("adding the veth pair: %v", err)
	}
	configure(t, a, "nt-a", "198.51.100.1/24", "fd00:5100::1/64")
	configure(t, b, "nt-b", "198.51.100.2/24")

	stdout, stderr, status := run(t, a.Command(ctx, bin, "ips"))
	if want := "nt-a 198.51.100.1/24\nnt-a fd00:5100::1/64\n"; status != 0 || stdout != want {
		t.Errorf("nettest ips in %s: status %d stdout %q stderr %q, want 0 %q", a.Name, status, stdout, stderr, want)
	}

	serve := a.Command(ctx, bin, "serve")
	serve.Env = environ()
	srv := startServe(t, serve)
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range [][]string{
		{"--tcp", "198.51.100.1:8080", "--send", "across"},
		{"--udp", "198.51.100.1:8080"},
		{"--http", "http://198.51.100.1:8081/"},
	} {
		stdout, stderr, status := run(t, b.Command(ctx, bin, append([]string{"connect"}, target...)...))
		if status != 0 {
			t.Errorf("nettest connect %v from %s: status %d, stderr %q", target, b.Name, status, stderr)
			continue
		}
		line, echo, _ := strings.Cut(stdout, "\n")
		reply, err := nettest.ParseReply(line)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := fmt.Sprintf("%s %s %s", reply.Pod, reply.IP, reply.Client.Addr()), hostname+" 198.51.100.1 198.51.100.2"; got != want {
			t.Errorf("%v: reply names pod, ip, client %q, want %q", target, got, want)
		}
		if target[0] == "--tcp" && echo != "across\n" {
			t.Errorf("echo %q, want %q", echo, "across\n")
		}
	}
	if err := srv.terminate(t); err != nil {
		t.Errorf("nettest serve exited with %v after SIGTERM, want status 0", err)
	}
	for _, want := range []string{"listening tcp [::]:8080", "accepted tcp from 198.51.100.2:", "udp from 198.51.100.2:", "http from 198.51.100.2:", "stopped"} {
		if !strings.Contains(srv.stdout(), want) {
			t.Errorf("server log lacks %q:\n%s", want, srv.stdout())
		}
	}
}

// configure brings link up in ns with the given addresses (IPv6 without duplicate
// address detection, so it is usable at once).
func configure(t *testing.T, ns *netns.NS, link string, cidrs ...string) {
	t.Helper()
	l, err := ns.Netlink.LinkByName(link)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cidrs {
		addr, err := netlink.ParseAddr(c)
		if err != nil {
			t.Fatal(err)
		}
		if addr.IP.To4() == nil {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := ns.Netlink.AddrAdd(l, addr); err != nil {
			t.Fatalf("adding %s to %s in %s: %v", c, link, ns.Name, err)
		}
	}
	if err := ns.Netlink.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
}
