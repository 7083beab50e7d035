package nettest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/spf13/pflag"
)

// DefaultTimeout bounds one attempt of `nettest connect`.
const DefaultTimeout = 5 * time.Second

// ServeOptions are the flags of `nettest serve`.
type ServeOptions struct {
	TCPPort, UDPPort, HTTPPort int
	// Address is the IP to listen on; empty means every address.
	Address string
}

// NewServeOptions returns the defaults.
func NewServeOptions() *ServeOptions {
	return &ServeOptions{TCPPort: DefaultTCPPort, UDPPort: DefaultUDPPort, HTTPPort: DefaultHTTPPort}
}

// AddFlags adds the options' flags to fs.
func (o *ServeOptions) AddFlags(fs *pflag.FlagSet) {
	fs.IntVar(&o.TCPPort, "tcp-port", o.TCPPort, "TCP port: each connection gets the reply line, then its input echoed until it closes (0 picks a free port)")
	fs.IntVar(&o.UDPPort, "udp-port", o.UDPPort, "UDP port: each datagram gets the reply line (0 picks a free port)")
	fs.IntVar(&o.HTTPPort, "http-port", o.HTTPPort, "HTTP port: GET answers the reply line, "+HealthPath+" answers 200 (0 picks a free port)")
	fs.StringVar(&o.Address, "address", o.Address, "IP address to listen on (default: all addresses)")
}

// Validate checks the options; the error names the bad value.
func (o *ServeOptions) Validate() error {
	for _, p := range []struct {
		flag string
		port int
	}{{"--tcp-port", o.TCPPort}, {"--udp-port", o.UDPPort}, {"--http-port", o.HTTPPort}} {
		if p.port < 0 || p.port > 65535 {
			return fmt.Errorf("%s %d is not a port: give 1 to 65535, or 0 for any free port", p.flag, p.port)
		}
	}
	if o.TCPPort != 0 && o.TCPPort == o.HTTPPort {
		return fmt.Errorf("--tcp-port and --http-port are both %d: give them different ports", o.TCPPort)
	}
	if o.Address != "" {
		if _, err := netip.ParseAddr(o.Address); err != nil {
			return fmt.Errorf("--address %q is not an IP address: give one such as 10.0.0.1, or leave it out to listen on all", o.Address)
		}
	}
	return nil
}

// Config returns the server configuration for the options, identity and log.
func (o *ServeOptions) Config(id Identity, log io.Writer) ServerConfig {
	addr := func(port int) string { return net.JoinHostPort(o.Address, strconv.Itoa(port)) }
	return ServerConfig{Identity: id, TCPAddr: addr(o.TCPPort), UDPAddr: addr(o.UDPPort), HTTPAddr: addr(o.HTTPPort), Log: log}
}

// ConnectOptions are the flags of `nettest connect`.
type ConnectOptions struct {
	TCP, UDP, HTTP string
	Timeout        time.Duration
	Send           string
	Retries        int
	Bind           string
}

// NewConnectOptions returns the defaults.
func NewConnectOptions() *ConnectOptions { return &ConnectOptions{Timeout: DefaultTimeout} }

// AddFlags adds the options' flags to fs.
func (o *ConnectOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.TCP, "tcp", o.TCP, "HOST:PORT to connect to over TCP; prints the reply line (and the echo of --send)")
	fs.StringVar(&o.UDP, "udp", o.UDP, "HOST:PORT to send a datagram to; prints the reply")
	fs.StringVar(&o.HTTP, "http", o.HTTP, "URL to GET; prints the body of a 200 reply")
	fs.DurationVar(&o.Timeout, "timeout", o.Timeout, "time allowed for each attempt, from connecting to the last byte")
	fs.StringVar(&o.Send, "send", o.Send, "TCP: text to send after the reply; the server's echo must match. UDP: the datagram (default \"nettest\\n\")")
	fs.IntVar(&o.Retries, "retries", o.Retries, "how many more attempts follow a failed one, with backoff")
	fs.StringVar(&o.Bind, "bind", o.Bind, "source address, IP or IP:PORT (default: the kernel chooses)")
}

// Config validates the options and returns the exchange they describe; log
// receives retry notices.
func (o *ConnectOptions) Config(log io.Writer) (ConnectConfig, error) {
	cfg := ConnectConfig{Timeout: o.Timeout, Send: o.Send, Retries: o.Retries, Log: log}
	n := 0
	for _, t := range []struct {
		proto  Proto
		target string
	}{{ProtoTCP, o.TCP}, {ProtoUDP, o.UDP}, {ProtoHTTP, o.HTTP}} {
		if t.target != "" {
			n++
			cfg.Proto, cfg.Target = t.proto, t.target
		}
	}
	if n != 1 {
		return ConnectConfig{}, errors.New("give exactly one of --tcp HOST:PORT, --udp HOST:PORT and --http URL")
	}
	if o.Bind != "" {
		bind, err := ParseBind(o.Bind)
		if err != nil {
			return ConnectConfig{}, err
		}
		cfg.Bind = bind
	}
	if err := cfg.Validate(); err != nil {
		return ConnectConfig{}, err
	}
	return cfg, nil
}

// ParseBind parses a source address: an IP, or IP:PORT ([IPv6]:PORT).
func ParseBind(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, 0), nil
	}
	return netip.AddrPort{}, fmt.Errorf("--bind %q is neither an IP nor IP:PORT: give one such as 10.0.0.5 or 10.0.0.5:40000", s)
}

// IPsOptions are the flags of `nettest ips`.
type IPsOptions struct {
	All bool
}

// AddFlags adds the options' flags to fs.
func (o *IPsOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.All, "all", o.All, "also list loopback and link-local addresses and interfaces that are down")
}
