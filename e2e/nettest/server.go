package nettest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// ServerConfig says what a Server listens on and who it says it is.
type ServerConfig struct {
	Identity Identity
	// TCPAddr, UDPAddr and HTTPAddr are listen addresses ("host:port"; port 0 picks
	// a free one). An empty address leaves that protocol out.
	TCPAddr, UDPAddr, HTTPAddr string
	// Log receives one line per request and the server's start and stop lines.
	// Nil discards them.
	Log io.Writer
}

// shutdownGrace bounds how long Serve waits for HTTP requests in flight when it
// stops.
const shutdownGrace = 5 * time.Second

// Server answers TCP, UDP and HTTP with reply lines. Create it with Listen.
type Server struct {
	id   Identity
	log  *lineWriter
	tcp  net.Listener
	udp  net.PacketConn
	http net.Listener

	mu    sync.Mutex
	conns map[net.Conn]struct{} // open TCP connections, closed on shutdown
}

// Listen opens every listener of cfg, so that a bad or busy address fails before
// anything is served. On error nothing stays open.
func Listen(cfg ServerConfig) (*Server, error) {
	if !cfg.Identity.IP.IsValid() || cfg.Identity.Pod == "" {
		return nil, fmt.Errorf("server identity %+v is incomplete: want a pod name and an IP", cfg.Identity)
	}
	s := &Server{id: cfg.Identity, log: &lineWriter{w: cfg.Log}, conns: map[net.Conn]struct{}{}}
	var err error
	if cfg.TCPAddr != "" {
		if s.tcp, err = net.Listen("tcp", cfg.TCPAddr); err != nil {
			return nil, fmt.Errorf("listening on tcp %s: %w", cfg.TCPAddr, err)
		}
	}
	if cfg.UDPAddr != "" {
		if s.udp, err = net.ListenPacket("udp", cfg.UDPAddr); err != nil {
			s.closeListeners()
			return nil, fmt.Errorf("listening on udp %s: %w", cfg.UDPAddr, err)
		}
	}
	if cfg.HTTPAddr != "" {
		if s.http, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			s.closeListeners()
			return nil, fmt.Errorf("listening on http %s: %w", cfg.HTTPAddr, err)
		}
	}
	if s.tcp == nil && s.udp == nil && s.http == nil {
		return nil, errors.New("the server has nothing to listen on: give at least one of the TCP, UDP and HTTP addresses")
	}
	return s, nil
}

// TCPAddr returns the TCP listener's address; it is invalid when TCP is off.
func (s *Server) TCPAddr() netip.AddrPort { return addrPort(s.tcp) }

// UDPAddr returns the UDP socket's address; it is invalid when UDP is off.
func (s *Server) UDPAddr() netip.AddrPort {
	if s.udp == nil {
		return netip.AddrPort{}
	}
	return toAddrPort(s.udp.LocalAddr())
}

// HTTPAddr returns the HTTP listener's address; it is invalid when HTTP is off.
func (s *Server) HTTPAddr() netip.AddrPort { return addrPort(s.http) }

func addrPort(l net.Listener) netip.AddrPort {
	if l == nil {
		return netip.AddrPort{}
	}
	return toAddrPort(l.Addr())
}

// Serve answers requests until ctx is done, then closes the listeners and every
// open connection, waits for the handlers and returns. Call it once.
func (s *Server) Serve(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	var hs *http.Server
	if s.tcp != nil {
		s.log.printf("listening tcp %s", s.tcp.Addr())
		wg.Go(func() { errs <- s.serveTCP(&wg) })
	}
	if s.udp != nil {
		s.log.printf("listening udp %s", s.udp.LocalAddr())
		wg.Go(func() { errs <- s.serveUDP() })
	}
	if s.http != nil {
		s.log.printf("listening http %s", s.http.Addr())
		hs = &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
		wg.Go(func() {
			if err := hs.Serve(s.http); !errors.Is(err, http.ErrServerClosed) {
				errs <- fmt.Errorf("serving http: %w", err)
			}
		})
	}

	var err error
	select {
	case <-ctx.Done():
	case err = <-errs: // a listener failed: stop everything
	}
	if hs != nil {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		if serr := hs.Shutdown(sctx); serr != nil {
			hs.Close()
		}
		cancel()
	}
	s.closeListeners()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	wg.Wait()
	s.log.printf("stopped")
	return err
}

func (s *Server) closeListeners() {
	for _, c := range []io.Closer{s.tcp, s.udp, s.http} {
		if c != nil {
			c.Close()
		}
	}
}

// reply renders the reply line, newline included, for a client.
func (s *Server) reply(client net.Addr) []byte {
	return []byte(Reply{Pod: s.id.Pod, IP: s.id.IP, Client: toAddrPort(client)}.String() + "\n")
}

// serveTCP accepts connections until the listener is closed. Each connection gets
// the reply line and then its own input back until it half-closes.
func (s *Server) serveTCP(wg *sync.WaitGroup) error {
	for {
		conn, err := s.tcp.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("accepting tcp: %w", err)
		}
		s.mu.Lock()
		s.conns[conn] = struct{}{}
		s.mu.Unlock()
		wg.Go(func() {
			defer func() {
				s.mu.Lock()
				delete(s.conns, conn)
				s.mu.Unlock()
				conn.Close()
			}()
			s.log.printf("accepted tcp from %s", toAddrPort(conn.RemoteAddr()))
			if _, err := conn.Write(s.reply(conn.RemoteAddr())); err != nil {
				return
			}
			if _, err := io.Copy(conn, conn); err != nil {
				return
			}
			if tc, ok := conn.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
		})
	}
}

// serveUDP answers every datagram with the reply line until the socket is closed.
func (s *Server) serveUDP() error {
	buf := make([]byte, 64<<10)
	for {
		_, from, err := s.udp.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("reading udp: %w", err)
		}
		s.log.printf("udp from %s", toAddrPort(from))
		// A failed reply (say, no route back) loses one answer, as UDP does; the
		// client's timeout reports it.
		_, _ = s.udp.WriteTo(s.reply(from), from)
	}
}

func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(HealthPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, fmt.Sprintf("method %s is not allowed: nettest answers GET", r.Method), http.StatusMethodNotAllowed)
			return
		}
		client, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			http.Error(w, fmt.Sprintf("client address %q: %v", r.RemoteAddr, err), http.StatusInternalServerError)
			return
		}
		client = unmap(client)
		s.log.printf("http from %s", client)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, Reply{Pod: s.id.Pod, IP: s.id.IP, Client: client}.String()+"\n")
	})
	return mux
}

// lineWriter writes whole lines to w, one Write per line, from many goroutines.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) printf(format string, args ...any) {
	if l.w == nil {
		return
	}
	line := fmt.Sprintf(format, args...) + "\n"
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = io.WriteString(l.w, line)
}

// toAddrPort converts a TCP or UDP address; IPv4-mapped IPv6 addresses become
// IPv4, so a dual-stack socket reports 10.0.0.1 rather than ::ffff:10.0.0.1.
func toAddrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return unmap(a.AddrPort())
	case *net.UDPAddr:
		return unmap(a.AddrPort())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return unmap(ap)
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
