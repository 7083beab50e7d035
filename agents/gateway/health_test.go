package gateway

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/icmp"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

func ms(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }

func TestRTTWindow(t *testing.T) {
	for _, tc := range []struct {
		name    string
		samples []time.Duration
		want    *submv1.LatencyRTT
	}{
		{name: "empty", want: nil},
		{
			name:    "one sample",
			samples: []time.Duration{489822 * time.Nanosecond},
			want:    &submv1.LatencyRTT{Last: "489.822µs", Min: "489.822µs", Average: "489.822µs", Max: "489.822µs", StdDev: "0s"},
		},
		{
			// mean 5ms, population variance ((-3)²+(-1)²+1²+3²)/4 = 5 ms², stddev √5 ms.
			name:    "four samples",
			samples: []time.Duration{ms(2), ms(8), ms(4), ms(6)},
			want:    &submv1.LatencyRTT{Last: "6ms", Min: "2ms", Average: "5ms", Max: "8ms", StdDev: "2.236068ms"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w rttWindow
			for _, s := range tc.samples {
				w.add(s)
			}
			if diff := cmp.Diff(tc.want, w.stats()); diff != "" {
				t.Errorf("stats (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("the window keeps the last 1000 samples", func(t *testing.T) {
		var w rttWindow
		// 500 samples of 100ms that fall out of the window, then 1000 of 1..1000µs.
		for range 500 {
			w.add(100 * time.Millisecond)
		}
		for i := 1; i <= RTTWindow; i++ {
			w.add(time.Duration(i) * time.Microsecond)
		}
		got := w.stats()
		want := &submv1.LatencyRTT{Last: "1ms", Min: "1µs", Average: "500.5µs", Max: "1ms", StdDev: "288.675µs"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("stats (-want +got):\n%s", diff)
		}
		if len(w.samples) != RTTWindow {
			t.Errorf("window holds %d samples, want %d", len(w.samples), RTTWindow)
		}
	})
}

func TestProbeState(t *testing.T) {
	dst := netip.MustParseAddr("10.2.2.1")
	type event struct {
		sent  bool
		reply time.Duration
	}
	sent, reply := event{sent: true}, func(d time.Duration) event { return event{reply: d} }
	for _, tc := range []struct {
		name   string
		events []event
		want   HealthResult
	}{
		{name: "nothing sent yet: unknown", want: HealthResult{}},
		{name: "probes without a reply, within the allowed loss: unknown", events: []event{sent, sent, sent, sent, sent}, want: HealthResult{}},
		{
			name:   "more unanswered probes than allowed: error",
			events: []event{sent, sent, sent, sent, sent, sent},
			want:   HealthResult{Status: submv1.ConnError, Message: "Failed to successfully ping the remote endpoint IP 10.2.2.1: no reply to the last 6 probes"},
		},
		{
			name:   "a reply: connected, with the RTT",
			events: []event{sent, reply(ms(1))},
			want:   HealthResult{Status: submv1.Connected, RTT: &submv1.LatencyRTT{Last: "1ms", Min: "1ms", Average: "1ms", Max: "1ms", StdDev: "0s"}},
		},
		{
			name:   "replies stop after a while: error, the statistics stay",
			events: []event{sent, reply(ms(1)), sent, sent, sent, sent, sent, sent},
			want: HealthResult{
				Status:  submv1.ConnError,
				Message: "Failed to successfully ping the remote endpoint IP 10.2.2.1: no reply to the last 6 probes",
				RTT:     &submv1.LatencyRTT{Last: "1ms", Min: "1ms", Average: "1ms", Max: "1ms", StdDev: "0s"},
			},
		},
		{
			name:   "a reply after losses: connected again, the loss count resets",
			events: []event{sent, sent, sent, sent, sent, sent, sent, sent, reply(ms(3)), sent, sent, sent, sent, sent},
			want:   HealthResult{Status: submv1.Connected, RTT: &submv1.LatencyRTT{Last: "3ms", Min: "3ms", Average: "3ms", Max: "3ms", StdDev: "0s"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := probeState{target: dst, maxLoss: DefaultMaxPacketLoss}
			for _, e := range tc.events {
				if e.sent {
					s.sent()
				} else {
					s.reply(e.reply)
				}
			}
			if diff := cmp.Diff(tc.want, s.result()); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
		})
	}
}

// echoRecorder records the identifiers of the echo requests written to it.
type echoRecorder struct{ ids []int }

func (r *echoRecorder) WriteTo(b []byte, _ net.Addr) (int, error) {
	msg, err := icmp.ParseMessage(1, b)
	if err != nil {
		return 0, err
	}
	r.ids = append(r.ids, msg.Body.(*icmp.Echo).ID)
	return len(b), nil
}

// TestPingerNewIDAfterLosses: after maxLoss unanswered probes the pinger
// changes its echo identifier (a stale conntrack entry of the old one cannot
// hold the probes on a wrong path), and keeps it while replies come.
func TestPingerNewIDAfterLosses(t *testing.T) {
	p := newPinger(HealthTarget{Dst: netip.MustParseAddr("10.2.0.1")}, 3)
	rec := &echoRecorder{}
	dst := &net.IPAddr{IP: net.IPv4(10, 2, 0, 1)}
	for range 7 {
		if err := p.send(rec, dst); err != nil {
			t.Fatal(err)
		}
	}
	ids := rec.ids
	if ids[0] != ids[1] || ids[1] != ids[2] {
		t.Errorf("identifiers %v: the first 3 probes must share one", ids)
	}
	// Random identifiers may repeat by chance (1 in 65536); the pattern of
	// changes is what counts: at the 4th and 7th probe.
	changes := 0
	for i := 1; i < len(ids); i++ {
		if ids[i] != ids[i-1] {
			changes++
		}
	}
	if ids[3] == ids[2] && ids[6] == ids[5] || changes > 2 {
		t.Errorf("identifiers %v: want new ones at the 4th and 7th probe only", ids)
	}
	p.state.reply(time.Millisecond)
	before := len(rec.ids)
	for range 2 {
		_ = p.send(rec, dst)
	}
	if rec.ids[before] != rec.ids[before+1] {
		t.Errorf("identifiers %v: answered probes keep their identifier", rec.ids[before:])
	}
}
