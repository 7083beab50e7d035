package nettest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var testID = Identity{Pod: "web-0", IP: netip.MustParseAddr("10.241.1.5")}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testServer is a Server on loopback ports, serving until the test ends.
type testServer struct {
	*Server
	log    *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

func startServer(t *testing.T) *testServer {
	t.Helper()
	log := &syncBuffer{}
	s, err := Listen(ServerConfig{Identity: testID, TCPAddr: "127.0.0.1:0", UDPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{Server: s, log: log, cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- s.Serve(ctx) }()
	t.Cleanup(func() { ts.stop(t) })
	return ts
}

// stop stops the server and returns Serve's result; later calls return nil.
func (ts *testServer) stop(t *testing.T) error {
	t.Helper()
	ts.cancel()
	err, ok := <-ts.done
	if ok {
		close(ts.done)
	}
	return err
}

// TestServeAndConnect runs every kind of exchange between Connect and a Server on
// loopback and checks the reply line, the echo and the server's log.
func TestServeAndConnect(t *testing.T) {
	srv := startServer(t)
	tests := []struct {
		name      string
		proto     Proto
		target    string
		send      string
		bind      string
		logPrefix string
		wantEcho  string // the second output line, if any
	}{
		{name: "tcp", proto: ProtoTCP, target: srv.TCPAddr().String(), logPrefix: "accepted tcp from"},
		{name: "tcp with echo", proto: ProtoTCP, target: srv.TCPAddr().String(), send: "hello\nworld", logPrefix: "accepted tcp from", wantEcho: "hello\nworld\n"},
		{name: "tcp large echo", proto: ProtoTCP, target: srv.TCPAddr().String(), send: strings.Repeat("x", 200000), logPrefix: "accepted tcp from", wantEcho: strings.Repeat("x", 200000) + "\n"},
		{name: "tcp from a chosen source", proto: ProtoTCP, target: srv.TCPAddr().String(), bind: "127.0.0.7", logPrefix: "accepted tcp from"},
		{name: "udp", proto: ProtoUDP, target: srv.UDPAddr().String(), logPrefix: "udp from"},
		{name: "udp with payload from a chosen source", proto: ProtoUDP, target: srv.UDPAddr().String(), send: "ping", bind: "127.0.0.8", logPrefix: "udp from"},
		{name: "http", proto: ProtoHTTP, target: "http://" + srv.HTTPAddr().String() + "/any/path", logPrefix: "http from"},
		{name: "http from a chosen source", proto: ProtoHTTP, target: "http://" + srv.HTTPAddr().String() + "/", bind: "127.0.0.9", logPrefix: "http from"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ConnectConfig{Proto: tc.proto, Target: tc.target, Timeout: 10 * time.Second, Send: tc.send}
			if tc.bind != "" {
				cfg.Bind = netip.AddrPortFrom(netip.MustParseAddr(tc.bind), 0)
			}
			var out bytes.Buffer
			if err := Connect(context.Background(), cfg, &out); err != nil {
				t.Fatal(err)
			}
			first, echo, _ := strings.Cut(out.String(), "\n")
			reply, err := ParseReply(first)
			if err != nil {
				t.Fatal(err)
			}
			if reply.Pod != testID.Pod || reply.IP != testID.IP {
				t.Errorf("reply names pod %s ip %s, want %s %s", reply.Pod, reply.IP, testID.Pod, testID.IP)
			}
			wantClient := "127.0.0.1"
			if tc.bind != "" {
				wantClient = tc.bind
			}
			if got := reply.Client.Addr().String(); got != wantClient {
				t.Errorf("reply names client %s, want source %s", reply.Client, wantClient)
			}
			if echo != tc.wantEcho {
				t.Errorf("echo = %s, want %s", abbrev(echo), abbrev(tc.wantEcho))
			}
			// The server logged this very client (address and port).
			if logLine := tc.logPrefix + " " + reply.Client.String() + "\n"; !strings.Contains(srv.log.String(), logLine) {
				t.Errorf("server log lacks %q:\n%s", logLine, srv.log)
			}
		})
	}
}

func TestHTTPHandler(t *testing.T) {
	srv := startServer(t)
	base := "http://" + srv.HTTPAddr().String()
	tests := []struct {
		name, method, path string
		wantCode           int
		wantBody           string // prefix
		wantAllow          string
	}{
		{name: "health", method: http.MethodGet, path: HealthPath, wantCode: http.StatusOK, wantBody: "ok\n"},
		{name: "get", method: http.MethodGet, path: "/", wantCode: http.StatusOK, wantBody: "pod=web-0 ip=10.241.1.5 client=127.0.0.1:"},
		{name: "head", method: http.MethodHead, path: "/", wantCode: http.StatusOK},
		{name: "post", method: http.MethodPost, path: "/", wantCode: http.StatusMethodNotAllowed, wantBody: "method POST is not allowed", wantAllow: "GET, HEAD"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, base+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantCode || !strings.HasPrefix(string(body), tc.wantBody) {
				t.Errorf("%s %s = %d %q, want %d %q...", tc.method, tc.path, resp.StatusCode, body, tc.wantCode, tc.wantBody)
			}
			if got := resp.Header.Get("Allow"); got != tc.wantAllow {
				t.Errorf("Allow = %q, want %q", got, tc.wantAllow)
			}
		})
	}
	if strings.Contains(srv.log.String(), "healthz") || strings.Count(srv.log.String(), "http from") != 2 {
		t.Errorf("want one log line per GET and HEAD, none for %s or POST; log:\n%s", HealthPath, srv.log)
	}
}

// TestConnectFailures checks that every kind of failure is an error that says what
// happened, and that nothing is printed.
func TestConnectFailures(t *testing.T) {
	const timeout = 300 * time.Millisecond
	tests := []struct {
		name  string
		proto Proto
		send  string
		// peer starts whatever the client talks to and returns its address.
		peer       func(t *testing.T) string
		wantReason string
		wantIs     error
	}{
		{
			name: "tcp refused", proto: ProtoTCP, peer: closedTCPPort,
			wantReason: "connection refused", wantIs: syscall.ECONNREFUSED,
		},
		{
			name: "udp refused", proto: ProtoUDP, peer: closedUDPPort,
			wantReason: "connection refused", wantIs: syscall.ECONNREFUSED,
		},
		{
			name: "tcp server says nothing", proto: ProtoTCP,
			peer:       tcpPeer(func(c net.Conn) { io.Copy(io.Discard, c) }),
			wantReason: "no reply within 300ms",
		},
		{
			name: "tcp server hangs up", proto: ProtoTCP,
			peer:       tcpPeer(func(c net.Conn) { c.Close() }),
			wantReason: "the server closed the connection without a reply",
		},
		{
			name: "tcp echo differs", proto: ProtoTCP, send: "hello",
			peer: tcpPeer(func(c net.Conn) {
				io.WriteString(c, "pod=x ip=10.0.0.1 client=10.0.0.2:1\n")
				io.ReadAll(c)
				io.WriteString(c, "world!")
				c.Close()
			}),
			wantReason: `echo mismatch: sent 5 bytes "hello", got 6 bytes "world!"`,
		},
		{
			name: "tcp echo never ends", proto: ProtoTCP, send: "hello",
			peer: tcpPeer(func(c net.Conn) {
				io.WriteString(c, "pod=x ip=10.0.0.1 client=10.0.0.2:1\n")
				io.Copy(io.Discard, c) // and never echo
			}),
			wantReason: "no complete echo within 300ms",
		},
		{
			name: "udp server says nothing", proto: ProtoUDP, peer: silentUDP,
			wantReason: "no reply within 300ms",
		},
		{
			name: "http error status", proto: ProtoHTTP,
			peer: func(t *testing.T) string {
				hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
					http.Error(w, "boom\nmore", http.StatusInternalServerError)
				}))
				t.Cleanup(hs.Close)
				return hs.URL
			},
			wantReason: `status 500 Internal Server Error: "boom"`,
		},
		{
			name: "http server says nothing", proto: ProtoHTTP,
			peer: func(t *testing.T) string {
				return "http://" + tcpPeer(func(c net.Conn) { io.Copy(io.Discard, c) })(t) + "/"
			},
			wantReason: "no response within 300ms",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target := tc.peer(t)
			var out bytes.Buffer
			err := Connect(context.Background(), ConnectConfig{Proto: tc.proto, Target: target, Timeout: timeout, Send: tc.send}, &out)
			if err == nil {
				t.Fatalf("Connect succeeded with output %q; want %q", out.String(), tc.wantReason)
			}
			want := fmt.Sprintf("%s %s: %s", tc.proto, target, tc.wantReason)
			if err.Error() != want {
				t.Errorf("error = %q, want %q", err, want)
			}
			var ce *ConnectError
			if !errors.As(err, &ce) {
				t.Errorf("error %v is not a *ConnectError", err)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %v is not %v", err, tc.wantIs)
			}
			if out.Len() != 0 {
				t.Errorf("printed %q on failure, want nothing", out.String())
			}
		})
	}
}

// TestConnectRetries checks that failed attempts are retried as many times as
// asked and no more.
func TestConnectRetries(t *testing.T) {
	tests := []struct {
		name      string
		drop      int // datagrams the server ignores before it answers
		retries   int
		wantErr   string
		wantNotes []string
	}{
		{name: "first attempt answers", drop: 0, retries: 0},
		{
			name: "no retries", drop: 1, retries: 0,
			wantErr: "udp {target}: no reply within 200ms",
		},
		{
			name: "enough retries", drop: 2, retries: 2,
			wantNotes: []string{
				"attempt 1 of 3 failed: udp {target}: no reply within 200ms; retrying in 250ms",
				"attempt 2 of 3 failed: udp {target}: no reply within 200ms; retrying in 500ms",
			},
		},
		{
			name: "too few retries", drop: 3, retries: 1,
			wantErr: "giving up after 2 attempts: udp {target}: no reply within 200ms",
			wantNotes: []string{
				"attempt 1 of 2 failed: udp {target}: no reply within 200ms; retrying in 250ms",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target := droppingUDP(t, tc.drop)
			expand := func(s string) string { return strings.ReplaceAll(s, "{target}", target) }
			var out bytes.Buffer
			notes := &syncBuffer{}
			err := Connect(context.Background(), ConnectConfig{Proto: ProtoUDP, Target: target, Timeout: 200 * time.Millisecond, Retries: tc.retries, Log: notes}, &out)
			if tc.wantErr != "" {
				if err == nil || err.Error() != expand(tc.wantErr) {
					t.Errorf("error = %v, want %q", err, expand(tc.wantErr))
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if got, want := out.String(), "answer "+itoa(tc.drop+1)+"\n"; got != want {
					t.Errorf("output %q, want %q", got, want)
				}
			}
			var wantNotes []string
			for _, n := range tc.wantNotes {
				wantNotes = append(wantNotes, expand(n))
			}
			if diff := cmp.Diff(wantNotes, lines(notes.String())); diff != "" {
				t.Errorf("retry notes (-want +got):\n%s", diff)
			}
		})
	}
}

// TestConnectCancel checks that cancelling the context ends an attempt that is
// waiting, and says so.
func TestConnectCancel(t *testing.T) {
	accepted := make(chan struct{})
	target := tcpPeer(func(c net.Conn) { close(accepted); io.Copy(io.Discard, c) })(t)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-accepted; cancel() }()
	err := Connect(ctx, ConnectConfig{Proto: ProtoTCP, Target: target, Timeout: time.Hour, Retries: 5}, io.Discard)
	// Cancellation may land while connecting or while waiting for the reply.
	prefix := "giving up after 1 attempt: tcp " + target + ": "
	if err == nil || !strings.HasPrefix(err.Error(), prefix) || !strings.HasSuffix(err.Error(), ": cancelled") {
		t.Errorf("error = %v, want %q...%q", err, prefix, ": cancelled")
	}
}

// TestServeShutdown checks that Serve returns when its context ends, closing open
// connections and listeners.
func TestServeShutdown(t *testing.T) {
	srv := startServer(t)
	conn, err := net.Dial("tcp", srv.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	// The connection now waits in the echo loop.
	if err := srv.stop(t); err != nil {
		t.Errorf("Serve returned %v, want nil", err)
	}
	if rest, err := io.ReadAll(r); err != nil || len(rest) != 0 {
		t.Errorf("open connection after shutdown: read %q, %v; want a clean EOF", rest, err)
	}
	for _, addr := range []string{srv.TCPAddr().String(), srv.HTTPAddr().String()} {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after shutdown", addr)
		}
	}
	if log := srv.log.String(); !strings.HasSuffix(log, "stopped\n") {
		t.Errorf("log does not end with \"stopped\":\n%s", log)
	}
}

func TestListenErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name    string
		cfg     ServerConfig
		wantErr string
	}{
		{
			name:    "port in use",
			cfg:     ServerConfig{Identity: testID, UDPAddr: "127.0.0.1:0", HTTPAddr: busy.Addr().String()},
			wantErr: "listening on http " + busy.Addr().String() + ": ",
		},
		{
			name:    "no identity",
			cfg:     ServerConfig{TCPAddr: "127.0.0.1:0"},
			wantErr: "server identity",
		},
		{
			name:    "nothing to listen on",
			cfg:     ServerConfig{Identity: testID},
			wantErr: "the server has nothing to listen on",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Listen(tc.cfg)
			if err == nil {
				s.closeListeners()
				t.Fatalf("Listen succeeded, want an error containing %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error = %q, want one containing %q", err, tc.wantErr)
			}
		})
	}
	// The failed Listen left its UDP socket closed: the port can be bound again.
	s, err := Listen(ServerConfig{Identity: testID, UDPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	s.closeListeners()
}

// closedTCPPort returns a loopback address where nothing listens any more.
func closedTCPPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func closedUDPPort(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := c.LocalAddr().String()
	c.Close()
	return addr
}

// tcpPeer returns a peer that hands every accepted connection to handle; the
// listener and the connections are closed when the test ends.
func tcpPeer(handle func(net.Conn)) func(t *testing.T) string {
	return func(t *testing.T) string {
		t.Helper()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var conns []net.Conn
		t.Cleanup(func() {
			l.Close()
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns {
				c.Close()
			}
		})
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				go handle(c)
			}
		}()
		return l.Addr().String()
	}
}

// silentUDP returns the address of a UDP socket that never answers.
func silentUDP(t *testing.T) string { return droppingUDP(t, 1<<30) }

// droppingUDP returns the address of a UDP peer that ignores the first drop
// datagrams and answers each later one with "answer N" (N counting from 1).
func droppingUDP(t *testing.T, drop int) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 64<<10)
		for n := 1; ; n++ {
			_, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			if n > drop {
				c.WriteTo([]byte("answer "+itoa(n)+"\n"), from)
			}
		}
	}()
	return c.LocalAddr().String()
}

func itoa(n int) string { return fmt.Sprint(n) }

func lines(s string) []string {
	var out []string
	for l := range strings.Lines(s) {
		out = append(out, strings.TrimSuffix(l, "\n"))
	}
	return out
}
