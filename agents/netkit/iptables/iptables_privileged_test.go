//go:build linux

package iptables

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/submariner-go/submariner/agents/netkit/netns/netnstest"
)

// TestPrivilegedWriter writes rulesets into the real tables of a fresh namespace
// and checks that the kernel ends up exactly as the fake says, that applying a state
// twice changes nothing, and that states applied in random order always give the
// same iptables-save text:
//
//	+------------------------------------------------+
//	| netns smtest-*: iptables (nf_tables), no links |
//	|   kube-proxy stand-in rules (foreignRules)     |
//	|   route agent writer  + Globalnet writer       |
//	+------------------------------------------------+
func TestPrivilegedWriter(t *testing.T) {
	netnstest.RequirePrivileged(t)
	requireTools(t)
	ctx := context.Background()
	ns := netnstest.New(t)
	kernel := New(ExecRunner{Netns: ns.Name}, IPv4)
	fake := NewFake()
	for _, ipt := range []Interface{kernel, fake} {
		if err := ipt.Restore(ctx, []byte(foreignRules)); err != nil {
			t.Fatal(err)
		}
	}
	foreignOnly := save(t, kernel)

	states := []struct {
		name string
		ra   *Ruleset
		gn   *Ruleset
	}{
		{"one remote", routeAgentRules("10.2.0.0/16"), globalnetRules(3, -1)},
		{"two remotes", routeAgentRules("10.2.0.0/16", "100.2.0.0/16"), globalnetRules(5, -1)},
		{"changed service", routeAgentRules("10.2.0.0/16", "100.2.0.0/16"), globalnetRules(5, 2)},
		{"no globalnet", routeAgentRules("10.3.0.0/16"), NewRuleset()},
		{"nothing", NewRuleset(), NewRuleset()},
	}
	raKernel := mustWriter(t, kernel, routeAgentOwner)
	gnKernel := mustWriter(t, kernel, globalnetOwner)
	raFake := mustWriter(t, fake, routeAgentOwner)
	gnFake := mustWriter(t, fake, globalnetOwner)
	// apply syncs state i with all four writers and returns what the kernel's
	// writers changed.
	apply := func(t *testing.T, i int) []Result {
		t.Helper()
		st := states[i]
		var results []Result
		for _, step := range []struct {
			w  *Writer
			rs *Ruleset
		}{{raKernel, st.ra}, {gnKernel, st.gn}, {raFake, st.ra}, {gnFake, st.gn}} {
			res, err := step.w.Sync(ctx, step.rs)
			if err != nil {
				t.Fatalf("state %q: %v", st.name, err)
			}
			results = append(results, res)
		}
		return results[:2]
	}

	want := make([]string, len(states))
	for i, st := range states {
		apply(t, i)
		want[i] = save(t, kernel)
		if diff := cmp.Diff(canonical(fake.String()), want[i]); diff != "" {
			t.Errorf("state %q: the kernel differs from the fake's model (-fake +kernel):\n%s", st.name, diff)
		}
		// Applying it again, incrementally and with a full read, changes nothing.
		// Applying it again with a full read finds everything in place (our rules
		// are written as iptables-save prints them) and writes nothing.
		for _, w := range []*Writer{raKernel, gnKernel} {
			w.Invalidate()
		}
		for _, res := range apply(t, i) {
			if !res.Full || res.Lines != 0 {
				t.Errorf("state %q applied again: full=%v, wrote %d lines (%v, deleted %v), want a full read that writes nothing",
					st.name, res.Full, res.Lines, res.Written, res.Deleted)
			}
		}
		if diff := cmp.Diff(want[i], save(t, kernel)); diff != "" {
			t.Errorf("state %q applied twice (-once +twice):\n%s", st.name, diff)
		}
	}
	if want[len(states)-1] != foreignOnly {
		t.Errorf("after the empty state the kernel is not back to the foreign rules alone (-want +got):\n%s",
			cmp.Diff(foreignOnly, want[len(states)-1]))
	}

	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 25; n++ {
		i := rng.IntN(len(states))
		if n%5 == 4 {
			raKernel.Invalidate()
			gnKernel.Invalidate()
		}
		apply(t, i)
		if diff := cmp.Diff(want[i], save(t, kernel)); diff != "" {
			t.Fatalf("step %d, state %q reached in random order (-first time +now):\n%s", n, states[i].name, diff)
		}
	}
}

// TestPrivilegedWriterFailure: a payload the kernel refuses changes nothing and the
// error shows the blamed line and the line using the missing chain.
func TestPrivilegedWriterFailure(t *testing.T) {
	netnstest.RequirePrivileged(t)
	requireTools(t)
	ctx := context.Background()
	ns := netnstest.New(t)
	kernel := New(ExecRunner{Netns: ns.Name}, IPv4)
	w := mustWriter(t, kernel, globalnetOwner)
	if _, err := w.Sync(ctx, globalnetRules(2, -1)); err != nil {
		t.Fatal(err)
	}
	before := save(t, kernel)

	bad := globalnetRules(2, -1).Rule(TableNAT, GlobalnetMark, "-j", "KUBE-MARK-MASQ")
	_, err := w.Sync(ctx, bad)
	var re *RestoreError
	if !errors.As(err, &re) {
		t.Fatalf("Sync = %v, want a *RestoreError", err)
	}
	if !strings.Contains(re.Message, "Chain 'KUBE-MARK-MASQ' does not exist") ||
		!strings.Contains(re.Context, "first use of the missing chain:") ||
		!strings.Contains(re.Context, "-A SUBMARINER-GN-MARK -j KUBE-MARK-MASQ") {
		t.Errorf("error does not name the missing chain and the line using it:\n%v", err)
	}
	if diff := cmp.Diff(before, save(t, kernel)); diff != "" {
		t.Errorf("a refused payload changed the kernel (-before +after):\n%s", diff)
	}
}

// globalnetRules stands in for Globalnet: n services with a chain each, service
// `changed` pointing somewhere else.
func globalnetRules(n, changed int) *Ruleset {
	rs := NewRuleset()
	rs.Jump(Jump{Table: TableNAT, From: ChainPrerouting, To: GlobalnetIngress, Position: First})
	rs.Jump(Jump{Table: TableNAT, From: ChainPostrouting, To: GlobalnetEgress, Position: First})
	rs.Chain(TableNAT, GlobalnetMark)
	for i := 0; i < n; i++ {
		c := HashedChain(GlobalnetPrefix, "svc"+string(rune('a'+i)))
		rs.Rule(TableNAT, GlobalnetIngress, "-d", "242.0.0."+string(rune('1'+i))+"/32", "-j", string(c))
		dst := "100.1.0." + string(rune('1'+i))
		if i == changed {
			dst = "100.1.9.9"
		}
		rs.Rule(TableNAT, c, "-p", "tcp", "-j", "DNAT", "--to-destination", dst)
	}
	rs.Rule(TableNAT, GlobalnetEgress, "-s", "10.1.0.0/16", "-m", "mark", "--mark", GlobalnetMarkValue, "-j", "SNAT", "--to-source", "242.0.0.100-242.0.0.107")
	return rs
}

func mustWriter(t *testing.T, ipt Interface, o Owner) *Writer {
	t.Helper()
	w, err := NewWriter(ipt, o)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func save(t *testing.T, ipt Interface) string {
	t.Helper()
	out, err := ipt.Save(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return canonical(string(out))
}

var countersRE = regexp.MustCompile(`\[\d+:\d+\]`)

// canonical normalises iptables-save text: no comments, zero counters, tables in
// a fixed order, tables with neither rules nor user chains left out.
func canonical(s string) string {
	blocks := map[string]string{}
	var names []string
	for _, block := range strings.SplitAfter(s, "COMMIT\n") {
		var lines []string
		for _, l := range strings.Split(block, "\n") {
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			lines = append(lines, countersRE.ReplaceAllString(l, "[0:0]"))
		}
		if len(lines) == 0 {
			continue
		}
		text := strings.Join(lines, "\n") + "\n"
		if !strings.Contains(text, "\n-A ") && !strings.Contains(text, " - [0:0]") {
			continue
		}
		names = append(names, lines[0])
		blocks[lines[0]] = text
	}
	slices.SortFunc(names, func(a, b string) int { return tableRank(Table(a[1:])) - tableRank(Table(b[1:])) })
	var b strings.Builder
	for _, n := range names {
		b.WriteString(blocks[n])
	}
	return b.String()
}

// serviceRules is a Globalnet-like ingress ruleset for n services with a chain per
// service (each reached by its own jump), service changed pointing elsewhere.
func serviceRules(n, changed int) *Ruleset {
	rs := NewRuleset()
	rs.Jump(Jump{Table: TableNAT, From: ChainPrerouting, To: GlobalnetIngress, Position: First})
	for i := 0; i < n; i++ {
		c := HashedChain(GlobalnetPrefix, "service/ns/svc"+strconv.Itoa(i))
		rs.Rule(TableNAT, GlobalnetIngress, "-d", fmt.Sprintf("242.0.%d.%d/32", i/250, i%250+1), "-j", string(c))
		rs.Rule(TableNAT, c, "-p", "tcp", "-j", "DNAT", "--to-destination", serviceTarget(i, changed))
	}
	return rs
}

// shardedServiceRules holds the same DNAT rules in 64 shard chains.
func shardedServiceRules(n, changed int) *Ruleset {
	const shards = 64
	rs := NewRuleset()
	rs.Jump(Jump{Table: TableNAT, From: ChainPrerouting, To: GlobalnetIngress, Position: First})
	for s := 0; s < shards; s++ {
		c := Chain(fmt.Sprintf("%sB%02d", GlobalnetPrefix, s))
		rs.Rule(TableNAT, GlobalnetIngress, "-j", string(c))
	}
	for i := 0; i < n; i++ {
		c := ShardedChain(GlobalnetPrefix+"B", "service/ns/svc"+strconv.Itoa(i), shards)
		rs.Rule(TableNAT, c, "-d", fmt.Sprintf("242.0.%d.%d/32", i/250, i%250+1), "-p", "tcp", "-j", "DNAT", "--to-destination", serviceTarget(i, changed))
	}
	return rs
}

func serviceTarget(i, changed int) string {
	if i == changed {
		return "100.1.255.1"
	}
	return fmt.Sprintf("100.1.%d.%d", i/250, i%250+1)
}

// BenchmarkPrivilegedSync measures syncs of 10,000 services' DNAT rules into a real
// kernel, laid out as one chain per service or as 64 shard chains: a full sync into
// empty tables (read them, write everything) and an incremental sync of one changed
// service. Run:
//
//	go test -run XXX -bench PrivilegedSync ./agents/netkit/iptables/
func BenchmarkPrivilegedSync(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("skipped: needs root to create network namespaces")
	}
	const services = 10000
	ctx := context.Background()
	for _, layout := range []struct {
		name  string
		build func(n, changed int) *Ruleset
	}{{"chain-per-service", serviceRules}, {"sharded-64", shardedServiceRules}} {
		b.Run(layout.name, func(b *testing.B) {
			ns := netnstest.New(b)
			w, err := NewWriter(New(ExecRunner{Netns: ns.Name}, IPv4), globalnetOwner)
			if err != nil {
				b.Fatal(err)
			}
			// Two states that differ in one service. A full sync starts from
			// empty tables (the cleanup is not timed) and writes everything.
			states := []*Ruleset{layout.build(services, -1), layout.build(services, 4321)}
			b.Run("full", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					if _, err := w.Cleanup(ctx); err != nil {
						b.Fatal(err)
					}
					w.Invalidate()
					b.StartTimer()
					if _, err := w.Sync(ctx, states[0]); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("one-change", func(b *testing.B) {
				var res Result
				for i := 0; b.Loop(); i++ {
					if res, err = w.Sync(ctx, states[(i+1)%2]); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(res.Written)), "chains/op")
				b.ReportMetric(float64(res.Lines), "lines/op")
			})
		})
	}
}

// requireTools skips the test when a program it runs is missing.
func requireTools(t *testing.T) {
	t.Helper()
	for _, p := range []string{"iptables-restore", "iptables-save"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("skipped: %s is not installed: run `make deps`", p)
		}
	}
}
