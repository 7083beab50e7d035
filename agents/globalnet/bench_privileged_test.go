//go:build linux

package globalnet

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/submariner-go/submariner/agents/netkit/iptables"
	"github.com/submariner-go/submariner/agents/netkit/netns/netnstest"
)

// BenchmarkPrivilegedRules measures Globalnet's rules for 10,000 exported headless
// Services with one Pod each (a DNAT and an SNAT rule per Service: the most rules
// any export makes; an exported ClusterIP Service adds none, kube-proxy translates
// its global IP) in the real kernel of a fresh network namespace, through the same
// Plan and Writer.Sync the engine runs:
//
//   - full: plan and sync into empty tables (the tables are emptied untimed);
//   - one-change: set the moved Pod's rule, build and sync, as the engine does
//     (alternating two states), with the chains written and the payload size
//     proving that one change rewrites one shard, not the ruleset;
//   - no-change: build and sync with nothing changed: no iptables-restore runs.
//
// Run: go test -run '^$' -bench PrivilegedRules ./agents/globalnet/
func BenchmarkPrivilegedRules(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("skipped: needs root to create network namespaces")
	}
	ns := netnstest.New(b)
	w, err := iptables.NewWriter(iptables.New(iptables.ExecRunner{Netns: ns.Name}, iptables.IPv4), Owner)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	states := []Input{scaleInput(BenchServices, -1), scaleInput(BenchServices, 4321)}
	sync := func(p Planned) iptables.Result {
		res, err := w.Sync(ctx, p.Rules)
		if err != nil {
			b.Fatal(err)
		}
		return res
	}
	rl, fixed, changed := incrementalRules(b)

	b.Run("full", func(b *testing.B) {
		var res iptables.Result
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			if _, err := w.Cleanup(ctx); err != nil {
				b.Fatal(err)
			}
			w.Invalidate()
			b.StartTimer()
			res = sync(Plan(states[0]))
		}
		report(b, "rules-full-sync", map[string]float64{"payload-bytes": float64(res.Bytes), "payload-lines": float64(res.Lines),
			"chains-written": float64(len(res.Written)), "services": BenchServices})
	})
	b.Run("one-change", func(b *testing.B) {
		var res iptables.Result
		var build, write time.Duration
		n := 0
		for i := 0; b.Loop(); i++ {
			start := time.Now()
			rl.SetIngress(fixed.GlobalCIDR, changed[i%2])
			p := rl.Build(fixed)
			built := time.Now()
			res = sync(p)
			build, write, n = build+built.Sub(start), write+time.Since(built), n+1
		}
		if res.Full || len(res.Written) != 1 {
			b.Fatalf("one change: full %v, chains written %v, want one shard", res.Full, res.Written)
		}
		report(b, "rules-one-change", map[string]float64{"payload-bytes": float64(res.Bytes), "payload-lines": float64(res.Lines),
			"chains-written": float64(len(res.Written)), "services": BenchServices,
			"build-ms": float64(build.Microseconds()) / 1000 / float64(n), "restore-ms": float64(write.Microseconds()) / 1000 / float64(n)})
	})
	b.Run("no-change", func(b *testing.B) {
		var res iptables.Result
		for b.Loop() {
			res = sync(rl.Build(fixed))
		}
		if res.Bytes != 0 {
			b.Fatalf("a sync without a change wrote %d bytes", res.Bytes)
		}
		report(b, "rules-no-change", map[string]float64{"payload-bytes": float64(res.Bytes), "services": BenchServices})
	})
}

// BenchmarkPrivilegedAgent runs the real globalnet binary (built from cmd/globalnet)
// against a real API server holding 10,000 exported ClusterIP Services, with its
// rules in a fresh network namespace (the API server is reached through a loopback
// port forwarded into it), and measures:
//
//   - initial-allocation: from start to all 10,000 GlobalIngressIPs allocated (each
//     with its internal Service and status), and the payload of its full sync;
//   - rss: the agent's resident memory then (VmRSS) and its peak (VmHWM);
//   - one-export / one-unexport: from one more export to its GlobalIngressIP being
//     allocated, and from its unexport to the address being released;
//   - restart: from a restart to ready, with the number of iptables-restore runs
//     (0: the rules were in place) and the resident memory after it.
//
// GLOBALNET_BENCH_SERVICES overrides the number of Services (for a quick run).
// Run: go test -run '^$' -bench PrivilegedAgent -benchtime 1x -timeout 30m ./agents/globalnet/
func BenchmarkPrivilegedAgent(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("skipped: needs root to create network namespaces")
	}
	n := BenchServices
	if v := os.Getenv("GLOBALNET_BENCH_SERVICES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("GLOBALNET_BENCH_SERVICES=%q is not a positive number", v)
		}
	}
	ab := newAgentBench(b, n)
	defer ab.stop()

	start := time.Now()
	ab.start()
	ab.waitMetric("submariner_global_ingress_IP_allocated", float64(n), 20*time.Minute)
	initial := time.Since(start)
	rss, hwm := ab.memory()
	report(b, "agent-initial-allocation", map[string]float64{"services": float64(n), "initial-seconds": initial.Seconds(),
		"full-sync-payload-bytes": ab.metric("submariner_globalnet_last_sync_payload_bytes")})
	report(b, "agent-rss", map[string]float64{"services": float64(n), "rss-MiB": rss, "peak-rss-MiB": hwm,
		"go-heap-inuse-MiB": ab.metric("go_memstats_heap_inuse_bytes") / (1 << 20), "go-sys-MiB": ab.metric("go_memstats_sys_bytes") / (1 << 20)})

	one := time.Now()
	ab.export("bench-extra", "one")
	ab.waitMetric("submariner_global_ingress_IP_allocated", float64(n+1), time.Minute)
	exportLatency := time.Since(one)
	one = time.Now()
	ab.unexport("bench-extra", "one")
	ab.waitMetric("submariner_global_ingress_IP_allocated", float64(n), time.Minute)
	report(b, "agent-one-change", map[string]float64{"services": float64(n), "export-ms": float64(exportLatency.Milliseconds()),
		"unexport-ms": float64(time.Since(one).Milliseconds())})

	ab.kill()
	restart := time.Now()
	ab.start()
	ab.waitReady(10 * time.Minute)
	restarted := time.Since(restart)
	rss, hwm = ab.memory()
	report(b, "agent-restart", map[string]float64{"services": float64(n), "restart-seconds-to-ready": restarted.Seconds(),
		"restart-iptables-restores": ab.metric("submariner_globalnet_iptables_restores_total"), "restart-rss-MiB": rss, "restart-peak-rss-MiB": hwm,
		"restart-allocated": ab.metric("submariner_global_ingress_IP_allocated")})
}
