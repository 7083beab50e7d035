package gateway

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/submariner-go/submariner/agents/gateway/cable"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Health checker defaults (Submariner's).
const (
	// DefaultHealthCheckInterval is how often every remote gateway is probed.
	DefaultHealthCheckInterval = time.Second
	// DefaultMaxPacketLoss is how many probes in a row may go unanswered before the
	// connection is in error.
	DefaultMaxPacketLoss = 5
	// RTTWindow is how many round-trip times the statistics cover.
	RTTWindow = 1000
	// pingerRestart is the pause before a pinger whose socket failed starts again.
	pingerRestart = 5 * time.Second
)

// HealthResult is what the health checker knows about one remote gateway.
type HealthResult struct {
	// Status is connected after a reply, error after more than the allowed
	// number of probes in a row went unanswered, "" before either.
	Status  submv1.ConnectionStatus
	Message string
	// RTT holds the round-trip statistics, nil before the first reply.
	RTT *submv1.LatencyRTT
}

// rttWindow keeps the last RTTWindow round-trip times.
type rttWindow struct {
	samples []time.Duration
	next    int
	last    time.Duration
}

func (w *rttWindow) add(d time.Duration) {
	w.last = d
	if len(w.samples) < RTTWindow {
		w.samples = append(w.samples, d)
		return
	}
	w.samples[w.next] = d
	w.next = (w.next + 1) % RTTWindow
}

// stats returns the window's statistics as Go duration strings, nil when empty.
// The standard deviation is the population's.
func (w *rttWindow) stats() *submv1.LatencyRTT {
	if len(w.samples) == 0 {
		return nil
	}
	lo, hi := w.samples[0], w.samples[0]
	var sum float64
	for _, s := range w.samples {
		lo, hi = min(lo, s), max(hi, s)
		sum += float64(s)
	}
	mean := sum / float64(len(w.samples))
	var sq float64
	for _, s := range w.samples {
		d := float64(s) - mean
		sq += d * d
	}
	std := math.Sqrt(sq / float64(len(w.samples)))
	return &submv1.LatencyRTT{
		Last:    w.last.String(),
		Min:     lo.String(),
		Average: time.Duration(math.Round(mean)).String(),
		Max:     hi.String(),
		StdDev:  time.Duration(math.Round(std)).String(),
	}
}

// probeState counts one remote gateway's probes and replies. It does no I/O and
// reads no clock.
type probeState struct {
	target  netip.Addr
	maxLoss int
	// unanswered counts the probes sent since the last reply.
	unanswered int
	replied    bool
	lastRTT    time.Duration
	window     rttWindow
}

func (s *probeState) sent() { s.unanswered++ }

func (s *probeState) reply(rtt time.Duration) {
	s.unanswered = 0
	s.replied = true
	s.lastRTT = rtt
	s.window.add(rtt)
}

func (s *probeState) result() HealthResult {
	r := HealthResult{RTT: s.window.stats()}
	switch {
	case s.unanswered > s.maxLoss:
		r.Status = submv1.ConnError
		r.Message = fmt.Sprintf("Failed to successfully ping the remote endpoint IP %s: no reply to the last %d probes", s.target, s.unanswered)
	case s.replied:
		r.Status = submv1.Connected
	}
	return r
}

// HealthTarget is a remote gateway to probe.
type HealthTarget struct {
	// CableName is the remote Endpoint's cable name; results are keyed by it.
	CableName string
	// Src is the local health-check address probes leave from; Dst the remote's.
	Src, Dst netip.Addr
}

// HealthChecker probes every remote gateway's health-check IP with ICMP echo
// requests from the local one, through the tunnels, and keeps for each the loss
// count and round-trip statistics. It needs a raw socket (CAP_NET_RAW).
type HealthChecker struct {
	host     *cable.Host
	interval time.Duration
	maxLoss  int
	log      logr.Logger

	mu      sync.Mutex
	pingers map[string]*pinger
}

// NewHealthChecker returns a checker that probes every interval from host's
// network namespace and declares an error after more than maxLoss unanswered
// probes in a row.
func NewHealthChecker(host *cable.Host, interval time.Duration, maxLoss int, log logr.Logger) *HealthChecker {
	return &HealthChecker{host: host, interval: interval, maxLoss: maxLoss, log: log, pingers: map[string]*pinger{}}
}

// Set makes the checker probe exactly targets: pingers for new or changed targets
// start (under ctx), those for targets no longer listed stop, and those whose
// context ended start again under ctx.
func (h *HealthChecker) Set(ctx context.Context, targets []HealthTarget) {
	h.mu.Lock()
	defer h.mu.Unlock()
	want := map[string]HealthTarget{}
	for _, t := range targets {
		want[t.CableName] = t
	}
	for name, p := range h.pingers {
		// A pinger of an earlier context (an earlier term) is started anew.
		if t, ok := want[name]; !ok || t != p.target || p.ctx.Err() != nil {
			p.stop()
			delete(h.pingers, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if _, ok := h.pingers[name]; ok {
			continue
		}
		p := newPinger(want[name], h.maxLoss)
		h.pingers[name] = p
		pctx, cancel := context.WithCancel(ctx)
		p.ctx, p.cancel = pctx, cancel
		go p.run(pctx, h.host, h.interval, h.log.WithValues("cable", name, "ip", want[name].Dst.String()))
	}
}

// Result returns the state of the remote gateway of the cable, false when it is not
// probed.
func (h *HealthChecker) Result(cableName string) (HealthResult, bool) {
	h.mu.Lock()
	p, ok := h.pingers[cableName]
	h.mu.Unlock()
	if !ok {
		return HealthResult{}, false
	}
	return p.result(), true
}

// Stop stops every pinger.
func (h *HealthChecker) Stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for name, p := range h.pingers {
		p.stop()
		delete(h.pingers, name)
	}
}

// pinger probes one remote gateway.
type pinger struct {
	target HealthTarget
	id     uint16 // the echo identifier; changed by send, under mu
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	state probeState
	sends map[uint16]time.Time // sequence number -> send time, recent probes only
	seq   uint16
}

// randomID returns a random ICMP echo identifier.
func randomID() uint16 {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint16(b[:])
}

func newPinger(t HealthTarget, maxLoss int) *pinger {
	return &pinger{
		target: t,
		id:     randomID(),
		done:   make(chan struct{}),
		state:  probeState{target: t.Dst, maxLoss: maxLoss},
		sends:  map[uint16]time.Time{},
	}
}

func (p *pinger) stop() {
	p.cancel()
	<-p.done
}

func (p *pinger) result() HealthResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.result()
}

// run probes until ctx is done; a socket that fails is opened again after a pause.
func (p *pinger) run(ctx context.Context, host *cable.Host, interval time.Duration, log logr.Logger) {
	defer close(p.done)
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		if err := p.probe(ctx, host, interval); err != nil {
			log.Error(err, "Health check probing failed; restarting", "after", pingerRestart.String())
		}
	}, pingerRestart)
}

// probe opens a raw ICMP socket bound to the source address in the host's
// namespace, sends an echo request every interval and reads the replies, until
// ctx is done (nil) or the socket fails.
func (p *pinger) probe(ctx context.Context, host *cable.Host, interval time.Duration) error {
	var conn *icmp.PacketConn
	err := host.Do(func() error {
		var err error
		conn, err = icmp.ListenPacket("ip4:icmp", p.target.Src.String())
		return err
	})
	if err != nil {
		return fmt.Errorf("opening an ICMP socket on %s: %w", p.target.Src, err)
	}
	readErr := make(chan error, 1)
	go func() { readErr <- p.read(conn) }()
	defer func() {
		_ = conn.Close()
		<-readErr
	}()
	dst := &net.IPAddr{IP: p.target.Dst.AsSlice()}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		// A probe that cannot be sent (no route, say) counts as lost, like one
		// that gets no reply.
		_ = p.send(conn, dst)
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			readErr <- err
			return fmt.Errorf("reading ICMP replies: %w", err)
		case <-tick.C:
		}
	}
}

// echoWriter is where probes go: an ICMP socket.
type echoWriter interface {
	WriteTo(b []byte, dst net.Addr) (int, error)
}

func (p *pinger) send(conn echoWriter, dst net.Addr) error {
	p.mu.Lock()
	// After maxLoss probes without a reply, probe with a new identifier: the
	// kernel tracks an echo flow by it, and a conntrack entry made before the
	// routes and rules were in place (the probe masqueraded, say) would keep every
	// later probe of the same identifier on the wrong path for as long as they
	// keep coming.
	if u := p.state.unanswered; u > 0 && u%max(p.state.maxLoss, 1) == 0 {
		p.id = randomID()
	}
	p.seq++
	seq := p.seq
	p.sends[seq] = time.Now()
	delete(p.sends, seq-256) // replies later than 256 probes do not count
	id := p.id
	p.mu.Unlock()
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: int(id), Seq: int(seq), Data: []byte("submariner-health")}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.state.sent()
	p.mu.Unlock()
	_, err = conn.WriteTo(b, dst)
	return err
}

// read handles replies until the socket is closed (nil) or fails.
func (p *pinger) read(conn *icmp.PacketConn) error {
	buf := make([]byte, 1500)
	for {
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		now := time.Now()
		ip, ok := peer.(*net.IPAddr)
		if !ok || !ip.IP.Equal(p.target.Dst.AsSlice()) {
			continue
		}
		msg, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || msg.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		echo, ok := msg.Body.(*icmp.Echo)
		if !ok {
			continue
		}
		p.mu.Lock()
		if uint16(echo.ID) != p.id {
			p.mu.Unlock()
			continue
		}
		if at, ok := p.sends[uint16(echo.Seq)]; ok {
			delete(p.sends, uint16(echo.Seq))
			p.state.reply(now.Sub(at))
		}
		p.mu.Unlock()
	}
}
