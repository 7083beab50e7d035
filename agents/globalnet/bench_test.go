package globalnet

import (
	"encoding/json"
	"os"
	"sort"
	"sync"
	"testing"
)

// BenchServices is the number of exported Services the benchmarks use (DESIGN.md
// section 7: 10,000).
const BenchServices = 10000

// BenchmarkPlan measures planning the rules of 10,000 exported headless Services
// (one Pod each: a DNAT and an SNAT rule) from scratch, without a kernel: what the
// first sync of a term costs in CPU.
func BenchmarkPlan(b *testing.B) {
	in := scaleInput(BenchServices, -1)
	var rules int
	for b.Loop() {
		rules = Plan(in).Rules.Len()
	}
	report(b, "plan-from-scratch", map[string]float64{"rules": float64(rules)})
}

// BenchmarkRulesOneChange measures what the engine does in CPU for one changed Pod
// among 10,000: set its rule and build the ruleset from the rules it keeps (only
// the changed shard is sorted again; every rule still goes into the Ruleset that
// Writer.Sync compares chain by chain).
func BenchmarkRulesOneChange(b *testing.B) {
	rl, in, changed := incrementalRules(b)
	var rules int
	for i := 0; b.Loop(); i++ {
		rl.SetIngress(in.GlobalCIDR, changed[i%2])
		rules = rl.Build(in).Rules.Len()
	}
	report(b, "rules-one-change-cpu", map[string]float64{"rules": float64(rules)})
}

// incrementalRules returns Rules holding 10,000 headless Pods' rules, the fixed
// input, and two versions of Pod 4321's ingress rule to alternate between.
func incrementalRules(b *testing.B) (*Rules, Input, [2]Ingress) {
	b.Helper()
	in := scaleInput(BenchServices, -1)
	rl := NewRules()
	for _, r := range in.Ingress {
		rl.SetIngress(in.GlobalCIDR, r)
	}
	for _, e := range in.Egress {
		rl.SetEgress(in.GlobalCIDR, e)
	}
	moved := scaleInput(BenchServices, 4321).Ingress[4321]
	return rl, in, [2]Ingress{moved, in.Ingress[4321]}
}

// benchResults collects the figures of one `go test -bench` run for
// GLOBALNET_BENCH_JSON.
var benchResults = struct {
	sync.Mutex
	m map[string]map[string]float64
}{m: map[string]map[string]float64{}}

// report attaches figures to the benchmark and, when GLOBALNET_BENCH_JSON names a
// file, writes every figure reported so far into it as JSON ({"<name>": {"<unit>":
// value}}), so that `make bench` can collect them.
func report(b *testing.B, name string, figures map[string]float64) {
	b.Helper()
	units := make([]string, 0, len(figures))
	for u := range figures {
		units = append(units, u)
	}
	sort.Strings(units)
	for _, u := range units {
		b.ReportMetric(figures[u], u)
	}
	path := os.Getenv("GLOBALNET_BENCH_JSON")
	if path == "" {
		return
	}
	benchResults.Lock()
	defer benchResults.Unlock()
	entry := map[string]float64{"ns/op": float64(b.Elapsed().Nanoseconds()) / float64(max(b.N, 1))}
	for u, v := range figures {
		entry[u] = v
	}
	benchResults.m[name] = entry
	data, err := json.MarshalIndent(benchResults.m, "", "  ")
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		b.Fatalf("writing GLOBALNET_BENCH_JSON: %v", err)
	}
}
