package lighthouse_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/submariner-go/submariner/e2e/controlplane"
)

var (
	benchServices = flag.Int("lighthouse.services", 100, "services per mode and round of BenchmarkExportToResolvable")
	benchJSON     = flag.String("lighthouse.json", "", "file BenchmarkExportToResolvable writes its figures to, as JSON")
)

// latencies are the export-to-resolvable times of one mode.
type latencies struct {
	Mode     string          `json:"mode"`
	Services int             `json:"services"`
	Samples  []time.Duration `json:"-"`
	P50      float64         `json:"p50_ms"`
	P90      float64         `json:"p90_ms"`
	P99      float64         `json:"p99_ms"`
	Max      float64         `json:"max_ms"`
	// Granularity is the longest a resolvable name could go unnoticed: the
	// longest round of DNS queries over the names still pending.
	Granularity float64 `json:"poll_granularity_ms"`
}

// summarize computes the percentiles (nearest rank) of the samples.
func (l *latencies) summarize() {
	s := slices.Clone(l.Samples)
	slices.Sort(s)
	l.Services = len(s)
	if len(s) == 0 {
		return
	}
	rank := func(p float64) float64 {
		i := int(p*float64(len(s))+0.999999) - 1
		return ms(s[min(max(i, 0), len(s)-1)])
	}
	l.P50, l.P90, l.P99, l.Max = rank(0.50), rank(0.90), rank(0.99), ms(s[len(s)-1])
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkExportToResolvable measures, over real API servers (a broker and two
// clusters) with the agents of both clusters running, the time from the
// creation of a ServiceExport in cluster2 until cluster1's real CoreDNS, with the
// lighthouse plugin, answers the service's name with cluster2's ClusterIP. The
// Services and their ready endpoints exist before; each export is timed from
// just before its Create call. Two modes:
//
//   - sequential: one export at a time, the next once the previous resolves;
//   - burst: all exports created back to back, every name polled until it
//     resolves.
//
// Run it with
//
//	make k8s-bins
//	go test ./agents/lighthouse -run '^$' -bench ExportToResolvable -benchtime 1x [-lighthouse.json FILE] [-lighthouse.services N]
//
// It reports p50 and p99 in milliseconds for both modes, and asserts no time:
// only that every export resolves, to the right address.
func BenchmarkExportToResolvable(b *testing.B) {
	b.StopTimer()
	f := startFleet(b, 0)
	c1, c2 := f.c("cluster1"), f.c("cluster2")
	f.startAgent(b, c1)
	f.startAgent(b, c2)
	startCoreDNS(b, c1)
	writer := fastClient(b, c2.plane)
	n := *benchServices

	seq, burst := &latencies{Mode: "sequential"}, &latencies{Mode: "burst"}
	for round := range b.N {
		ns := fmt.Sprintf("bench-%d", round)
		createNamespace(b, c1.plane, ns)
		createNamespace(b, c2.plane, ns)
		seqIPs := prepareServices(b, writer, ns, "seq", n)
		burstIPs := prepareServices(b, writer, ns, "burst", n)
		b.StartTimer()
		measureSequential(b, writer, c1.dns, ns, seqIPs, seq)
		measureBurst(b, writer, c1.dns, ns, burstIPs, burst)
		b.StopTimer()
	}
	// The writes behind the figures: the agents' own and their syncers'.
	for _, m := range []*member{c1, c2} {
		families, err := m.agent.registry.Gather()
		if err != nil {
			b.Fatal(err)
		}
		for _, mf := range families {
			if !strings.Contains(mf.GetName(), "writes_total") && !strings.Contains(mf.GetName(), "operations_total") && !strings.Contains(mf.GetName(), "rejected") {
				continue
			}
			for _, mm := range mf.GetMetric() {
				var ls []string
				for _, lp := range mm.GetLabel() {
					ls = append(ls, lp.GetName()+"="+lp.GetValue())
				}
				b.Logf("%s %s %v %v", m.id, mf.GetName(), ls, mm.GetCounter().GetValue())
			}
		}
	}
	var out []latencies
	for _, l := range []*latencies{seq, burst} {
		l.summarize()
		b.ReportMetric(l.P50, l.Mode+"-p50-ms")
		b.ReportMetric(l.P99, l.Mode+"-p99-ms")
		b.Logf("%-10s services=%d p50=%.1fms p90=%.1fms p99=%.1fms max=%.1fms poll-granularity=%.1fms",
			l.Mode, l.Services, l.P50, l.P90, l.P99, l.Max, l.Granularity)
		out = append(out, *l)
	}
	if *benchJSON != "" {
		data, err := json.MarshalIndent(map[string]any{
			"benchmark": "export-to-resolvable", "target": "p99 < 1000 ms over 100 services", "results": out,
		}, "", "  ")
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(*benchJSON, append(data, '\n'), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// fastClient returns a client of p without client-side rate limiting, so the
// benchmark's own writes do not queue.
func fastClient(b *testing.B, p *controlplane.Plane) client.Client {
	b.Helper()
	cfg := rest.CopyConfig(p.Config)
	cfg.QPS, cfg.Burst = 1000, 2000
	c, err := client.New(cfg, client.Options{Scheme: controlplane.Scheme()})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// prepareServices creates n Services <prefix>-<i> in ns of cluster2 with one
// ready endpoint each, not exported yet, and returns their ClusterIPs by name.
func prepareServices(b *testing.B, c client.Client, ns, prefix string, n int) map[string]string {
	b.Helper()
	ips := map[string]string{}
	for i := range n {
		name := fmt.Sprintf("%s-%d", prefix, i)
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{port("http", 80)}, Selector: map[string]string{"app": name}}}
		create(b, c, svc)
		ips[name] = svc.Spec.ClusterIP
		es := newSourceSlice(ns, name, name+"-src", podEndpoint{pod: name + "-0", addr: fmt.Sprintf("10.2.%d.%d", 100+i/250, 1+i%250), ready: true})
		create(b, c, es)
	}
	return ips
}

// measureSequential exports the services one at a time and waits for each to
// resolve before the next.
func measureSequential(b *testing.B, c client.Client, server, ns string, ips map[string]string, l *latencies) {
	b.Helper()
	for _, name := range sortedNames(ips) {
		start := time.Now()
		create(b, c, &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})
		var round time.Duration
		err := wait.PollUntilContextTimeout(context.Background(), time.Millisecond, convergeTimeout, true, func(context.Context) (bool, error) {
			q := time.Now()
			ok := resolved(server, name+"."+ns+".svc.clusterset.local", ips[name])
			round = max(round, time.Since(q)+time.Millisecond)
			return ok, nil
		})
		if err != nil {
			b.Fatalf("%s/%s did not resolve to %s: %v", ns, name, ips[name], err)
		}
		l.Samples = append(l.Samples, time.Since(start))
		l.Granularity = max(l.Granularity, ms(round))
	}
}

// measureBurst creates every export back to back while pollers query the
// pending names, each name timed from just before its own Create call.
func measureBurst(b *testing.B, c client.Client, server, ns string, ips map[string]string, l *latencies) {
	b.Helper()
	names := sortedNames(ips)
	var mu sync.Mutex
	created := map[string]time.Time{}
	done := map[string]time.Duration{}
	const pollers, pollInterval = 4, 10 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), convergeTimeout)
	defer cancel()
	var wg sync.WaitGroup
	var granularity time.Duration
	for p := range pollers {
		wg.Go(func() {
			var mine []string
			for i := p; i < len(names); i += pollers {
				mine = append(mine, names[i])
			}
			// A round of queries every pollInterval at most: polling flat out would
			// take the CPU from the API servers and agents being measured.
			tick := time.NewTicker(pollInterval)
			defer tick.Stop()
			for len(mine) > 0 && ctx.Err() == nil {
				roundStart := time.Now()
				var pending []string
				for _, name := range mine {
					mu.Lock()
					start, ok := created[name]
					mu.Unlock()
					if !ok || !resolved(server, name+"."+ns+".svc.clusterset.local", ips[name]) {
						pending = append(pending, name)
						continue
					}
					mu.Lock()
					done[name] = time.Since(start)
					mu.Unlock()
				}
				mine = pending
				mu.Lock()
				granularity = max(granularity, time.Since(roundStart)+pollInterval)
				mu.Unlock()
				select {
				case <-ctx.Done():
				case <-tick.C:
				}
			}
		})
	}
	for _, name := range names {
		mu.Lock()
		created[name] = time.Now()
		mu.Unlock()
		create(b, c, &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})
	}
	wg.Wait()
	if len(done) != len(names) {
		b.Fatalf("%d of %d exports in %s resolved before the timeout", len(done), len(names), ns)
	}
	for _, name := range names {
		l.Samples = append(l.Samples, done[name])
	}
	l.Granularity = max(l.Granularity, ms(granularity))
}

// resolved reports whether server answers name with exactly the address want.
func resolved(server, name, want string) bool {
	got, err := query(server, dns.TypeA, name)
	return err == nil && len(got) == 2 && got[0] == "NOERROR" && got[1] == want
}

func sortedNames(m map[string]string) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
