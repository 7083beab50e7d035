// Package nettest is our test workload, the `nettest` binary (cmd/nettest) that
// tests run as pods, like the netshoot and nettest images upstream tests use.
//
// A server (Serve) answers every TCP connection, UDP datagram and HTTP GET with one
// line naming itself and its client,
//
//	pod=<POD_NAME> ip=<pod IP> client=<client IP:port>
//
// so a test can tell which pod answered and whether the client's address survived
// the path (no SNAT across clusters). TCP connections then echo whatever the client
// sends until it closes its side. The server logs one line per request
// (`accepted tcp from <ip:port>`, `udp from <ip:port>`, `http from <ip:port>`), so
// the server side of a test can check what arrived.
//
// A client (Connect) makes one exchange and prints the reply; it fails with an
// error that says what went wrong (refused, timed out, no reply, wrong echo).
// Addresses lists the pod's addresses.
//
// The pod's name and IP come from the environment (POD_NAME, POD_IP, set through
// the downward API), falling back to the hostname and the first non-loopback IPv4
// address.
package nettest

import (
	"fmt"
	"net/netip"
	"strings"
)

// Environment variables the server reads its identity from.
const (
	EnvPodName = "POD_NAME"
	EnvPodIP   = "POD_IP"
)

// Default ports of `nettest serve`.
const (
	DefaultTCPPort  = 8080
	DefaultUDPPort  = 8080
	DefaultHTTPPort = 8081
)

// HealthPath is the HTTP path that answers 200 while the server runs.
const HealthPath = "/healthz"

// Identity is who a server says it is.
type Identity struct {
	Pod string
	IP  netip.Addr
}

// Reply is the line a server answers with.
type Reply struct {
	Pod string
	// IP is the server's pod IP, as the server knows it (not the address the client
	// dialled, which may be a Service's).
	IP netip.Addr
	// Client is the source address the server saw.
	Client netip.AddrPort
}

// String renders the reply line without its trailing newline.
func (r Reply) String() string {
	return fmt.Sprintf("pod=%s ip=%s client=%s", r.Pod, r.IP, r.Client)
}

// ParseReply parses a reply line; a trailing newline is allowed.
func ParseReply(line string) (Reply, error) {
	fields := strings.Fields(line)
	if len(fields) != 3 {
		return Reply{}, fmt.Errorf("reply %q: want three fields pod=NAME ip=IP client=IP:PORT", line)
	}
	var r Reply
	for i, key := range []string{"pod", "ip", "client"} {
		val, ok := strings.CutPrefix(fields[i], key+"=")
		if !ok {
			return Reply{}, fmt.Errorf("reply %q: field %d is %q, want %s=...", line, i+1, fields[i], key)
		}
		var err error
		switch key {
		case "pod":
			if val == "" {
				return Reply{}, fmt.Errorf("reply %q: empty pod name", line)
			}
			r.Pod = val
		case "ip":
			if r.IP, err = netip.ParseAddr(val); err != nil {
				return Reply{}, fmt.Errorf("reply %q: ip: %w", line, err)
			}
		case "client":
			if r.Client, err = netip.ParseAddrPort(val); err != nil {
				return Reply{}, fmt.Errorf("reply %q: client: %w", line, err)
			}
		}
	}
	return r, nil
}
