package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Result
		ok   bool
	}{
		{"BenchmarkQPS-2   1   88000 lighthouse-QPS   44000 kubernetes-QPS   2.0 ratio", Result{Benchmark: "BenchmarkQPS",
			Metrics: map[string]float64{"lighthouse-QPS": 88000, "kubernetes-QPS": 44000, "ratio": 2}}, true},
		{"BenchmarkPrivilegedSync/sharded-8 \t 3 \t 120000000 ns/op \t 65 chains/op", Result{Benchmark: "BenchmarkPrivilegedSync/sharded",
			Metrics: map[string]float64{"ns/op": 120000000, "chains/op": 65}}, true},
		{"BenchmarkX", Result{}, false},
		{"BenchmarkX-2 1 abc ns/op", Result{}, false},
		{"    bench_test.go:12: BenchmarkX-2 1 2 ns/op", Result{}, false},
		{"ok  \tgithub.com/x\t1.2s", Result{}, false},
	} {
		got, ok := ParseLine(tc.line)
		if ok != tc.ok || (ok && !cmp.Equal(got, tc.want)) {
			t.Errorf("ParseLine(%q) = %+v, %v; want %+v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}
