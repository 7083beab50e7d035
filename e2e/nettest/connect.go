package nettest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proto is the protocol of one exchange.
type Proto string

// The protocols Connect speaks.
const (
	ProtoTCP  Proto = "tcp"
	ProtoUDP  Proto = "udp"
	ProtoHTTP Proto = "http"
)

// DefaultUDPPayload is the datagram Connect sends over UDP when Send is empty.
const DefaultUDPPayload = "nettest\n"

// Backoff between attempts: it starts at retryDelay and doubles up to maxRetryDelay.
const (
	retryDelay    = 250 * time.Millisecond
	maxRetryDelay = 4 * time.Second
)

// maxHTTPBody bounds how much of an HTTP reply Connect reads.
const maxHTTPBody = 1 << 20

// ConnectConfig describes one exchange with a server.
type ConnectConfig struct {
	Proto Proto
	// Target is HOST:PORT for TCP and UDP and a URL for HTTP.
	Target string
	// Timeout bounds each attempt, from dialling to the last byte.
	Timeout time.Duration
	// Send is written after the reply line over TCP (the server echoes it back and
	// Connect checks the echo), or is the datagram over UDP.
	Send string
	// Retries is how many more attempts follow a failed one.
	Retries int
	// Bind is the source address; an unspecified address lets the kernel choose,
	// and port 0 any port.
	Bind netip.AddrPort
	// Log receives a line per failed attempt that is retried. Nil discards them.
	Log io.Writer
}

// Validate checks the configuration; the error names the bad value and says how
// to fix it.
func (c ConnectConfig) Validate() error {
	switch c.Proto {
	case ProtoTCP, ProtoUDP:
		host, port, err := net.SplitHostPort(c.Target)
		if err != nil || host == "" {
			return fmt.Errorf("%s target %q is not HOST:PORT: give a host and a port, such as 10.0.0.1:8080", c.Proto, c.Target)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%s target %q: port %q is not a number from 1 to 65535", c.Proto, c.Target, port)
		}
	case ProtoHTTP:
		u, err := url.Parse(c.Target)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("http target %q is not an http:// URL: give one such as http://10.0.0.1:8081/", c.Target)
		}
		if c.Send != "" {
			return errors.New("--send applies to --tcp and --udp, not --http: leave it out")
		}
	default:
		return fmt.Errorf("protocol %q is not one of tcp, udp, http", c.Proto)
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("timeout %s is not positive: give a duration such as 5s", c.Timeout)
	}
	if c.Retries < 0 {
		return fmt.Errorf("retries %d is negative: give 0 for a single attempt", c.Retries)
	}
	return nil
}

// ConnectError is a failed exchange.
type ConnectError struct {
	Proto  Proto
	Target string
	// Reason says what went wrong in words: "connection refused", "no reply
	// within 5s", ...
	Reason string
	Err    error
}

func (e *ConnectError) Error() string { return fmt.Sprintf("%s %s: %s", e.Proto, e.Target, e.Reason) }

func (e *ConnectError) Unwrap() error { return e.Err }

// Connect makes one exchange with a server and writes what it got to out: the
// reply line and, over TCP with Send, the echo. A failed attempt is retried, with
// backoff, up to Retries times; nothing is written unless an attempt succeeds.
// Connect returns when an attempt succeeds, when all fail, or when ctx is done.
func Connect(ctx context.Context, cfg ConnectConfig, out io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := &lineWriter{w: cfg.Log}
	attempts := cfg.Retries + 1
	delay := retryDelay
	for attempt := 1; ; attempt++ {
		result, err := connectOnce(ctx, cfg)
		if err == nil {
			_, werr := io.WriteString(out, result)
			return werr
		}
		if attempt == attempts || ctx.Err() != nil {
			if attempts > 1 {
				return giveUp(attempt, err)
			}
			return err
		}
		log.printf("attempt %d of %d failed: %v; retrying in %s", attempt, attempts, err, delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return giveUp(attempt, err)
		case <-t.C:
		}
		delay = min(2*delay, maxRetryDelay)
	}
}

func giveUp(attempts int, err error) error {
	if attempts == 1 {
		return fmt.Errorf("giving up after 1 attempt: %w", err)
	}
	return fmt.Errorf("giving up after %d attempts: %w", attempts, err)
}

// connectOnce makes one attempt and returns the text to print.
func connectOnce(ctx context.Context, cfg ConnectConfig) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	fail := func(reason string, err error) error {
		return &ConnectError{Proto: cfg.Proto, Target: cfg.Target, Reason: reason, Err: err}
	}
	d := net.Dialer{}
	if cfg.Bind.IsValid() {
		switch cfg.Proto {
		case ProtoUDP:
			d.LocalAddr = net.UDPAddrFromAddrPort(cfg.Bind)
		default:
			d.LocalAddr = net.TCPAddrFromAddrPort(cfg.Bind)
		}
	}

	if cfg.Proto == ProtoHTTP {
		return getHTTP(ctx, cfg, &d, fail)
	}

	conn, err := d.DialContext(ctx, string(cfg.Proto), cfg.Target)
	if err != nil {
		return "", fail(describe(ctx, err, "no connection", cfg.Timeout), err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	// Closing the connection when ctx ends also unblocks reads on cancellation.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	if cfg.Proto == ProtoUDP {
		payload := cfg.Send
		if payload == "" {
			payload = DefaultUDPPayload
		}
		if _, err := io.WriteString(conn, payload); err != nil {
			return "", fail(describe(ctx, err, "sending", cfg.Timeout), err)
		}
		buf := make([]byte, 64<<10)
		n, err := conn.Read(buf)
		if err != nil {
			return "", fail(describe(ctx, err, "no reply", cfg.Timeout), err)
		}
		return withNewline(string(buf[:n])), nil
	}

	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil && (line == "" || !errors.Is(err, io.EOF)) {
		if errors.Is(err, io.EOF) {
			return "", fail("the server closed the connection without a reply", err)
		}
		return "", fail(describe(ctx, err, "no reply", cfg.Timeout), err)
	}
	result := withNewline(line)
	if cfg.Send == "" {
		return result, nil
	}
	if _, err := io.WriteString(conn, cfg.Send); err != nil {
		return "", fail(describe(ctx, err, "sending", cfg.Timeout), err)
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		return "", fail(describe(ctx, err, "closing the sending side", cfg.Timeout), err)
	}
	echo, err := io.ReadAll(r)
	if err != nil {
		return "", fail(describe(ctx, err, "no complete echo", cfg.Timeout), err)
	}
	if string(echo) != cfg.Send {
		return "", fail(fmt.Sprintf("echo mismatch: sent %d bytes %s, got %d bytes %s",
			len(cfg.Send), abbrev(cfg.Send), len(echo), abbrev(string(echo))), nil)
	}
	return result + withNewline(string(echo)), nil
}

func getHTTP(ctx context.Context, cfg ConnectConfig, d *net.Dialer, fail func(string, error) error) (string, error) {
	client := &http.Client{Transport: &http.Transport{
		// No proxy from the environment: test traffic goes straight to the target.
		Proxy:             nil,
		DialContext:       d.DialContext,
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Target, nil)
	if err != nil {
		return "", fail("building the request", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fail(describe(ctx, err, "no response", cfg.Timeout), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody))
	if err != nil {
		return "", fail(describe(ctx, err, "reading the body", cfg.Timeout), err)
	}
	if resp.StatusCode != http.StatusOK {
		first, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
		return "", fail(fmt.Sprintf("status %s: %s", resp.Status, abbrev(first)), nil)
	}
	return withNewline(string(body)), nil
}

// describe turns a network error of an attempt whose context is ctx into the
// reason a ConnectError gives: refused, unreachable, what did not happen within
// the timeout, cancelled, or the error itself.
func describe(ctx context.Context, err error, what string, timeout time.Duration) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "unreachable: " + err.Error()
	case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("%s within %s", what, timeout)
	case ctx.Err() != nil:
		return what + ": cancelled"
	}
	return what + ": " + err.Error()
}

func withNewline(s string) string {
	if strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}

// abbrev quotes s, shortened to its first 64 bytes.
func abbrev(s string) string {
	const n = 64
	if len(s) > n {
		return strconv.Quote(s[:n]) + "..."
	}
	return strconv.Quote(s)
}
