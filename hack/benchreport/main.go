// Command benchreport reads the `go test -bench` outputs that hack/bench.sh keeps
// in a directory (one NAME.txt per group), prints every benchmark's metrics as a
// table and writes them as JSON (results.json in the same directory).
//
//	go run ./hack/benchreport _output/bench
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Result is one benchmark's metrics in one group.
type Result struct {
	Group     string             `json:"group"`
	Benchmark string             `json:"benchmark"`
	Metrics   map[string]float64 `json:"metrics"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: benchreport DIR (the directory of hack/bench.sh's NAME.txt files)")
		os.Exit(2)
	}
	results, err := read(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "GROUP\tBENCHMARK\tMETRIC\tVALUE")
	for _, r := range results {
		units := make([]string, 0, len(r.Metrics))
		for u := range r.Metrics {
			units = append(units, u)
		}
		sort.Strings(units)
		for _, u := range units {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", r.Group, r.Benchmark, u, strconv.FormatFloat(r.Metrics[u], 'g', 6, 64))
		}
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
	out := filepath.Join(os.Args[1], "results.json")
	data, err := json.MarshalIndent(results, "", "  ")
	if err == nil {
		err = os.WriteFile(out, append(data, '\n'), 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
	fmt.Printf("\nJSON: %s\n", out)
}

// read parses every NAME.txt in dir.
func read(dir string) ([]Result, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no benchmark outputs (*.txt) in %s: run make bench first", dir)
	}
	var results []Result
	for _, f := range files {
		group := strings.TrimSuffix(filepath.Base(f), ".txt")
		rs, err := parseFile(f, group)
		if err != nil {
			return nil, err
		}
		results = append(results, rs...)
	}
	return results, nil
}

func parseFile(path, group string) ([]Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var results []Result
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if r, ok := ParseLine(sc.Text()); ok {
			r.Group = group
			results = append(results, r)
		}
	}
	return results, sc.Err()
}

// ParseLine parses a benchmark result line, "BenchmarkName-N ITERATIONS (VALUE
// UNIT)...", into its name (without the -N suffix) and metrics.
func ParseLine(line string) (Result, bool) {
	f := strings.Fields(line)
	if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
		return Result{}, false
	}
	if _, err := strconv.Atoi(f[1]); err != nil {
		return Result{}, false
	}
	name := f[0]
	if i := strings.LastIndex(name, "-"); i > 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			name = name[:i]
		}
	}
	r := Result{Benchmark: name, Metrics: map[string]float64{}}
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return Result{}, false
		}
		r.Metrics[f[i+1]] = v
	}
	return r, true
}
