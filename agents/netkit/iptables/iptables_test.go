package iptables

// Test address plan (shared by the netkit packages):
//   cluster1 pods 10.1.0.0/16, services 100.1.0.0/16 (local)
//   cluster2 pods 10.2.0.0/16, services 100.2.0.0/16 (remote)
//   underlay 192.0.2.0/24 (RFC 5737); VTEPs 240.0.2.x; globalnet 242.0.0.0/8

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites the file with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file: %v (run `go test -update` to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got):\n%s", path, diff)
	}
}

// routeAgentOwner owns the route agent's chains.
var routeAgentOwner = Owner{Chains: []Chain{SubmarinerPostrouting, SubmarinerInput, SubmarinerForward}}

// globalnetOwner owns Globalnet's chains.
var globalnetOwner = Owner{Prefixes: []string{"SUBMARINER-GN-", GlobalnetPrefix}}

// routeAgentRules is what a route agent on a cluster1 node writes for cluster2,
// in the canonical form iptables-save prints.
func routeAgentRules(remote ...string) *Ruleset {
	rs := NewRuleset()
	local := []string{"10.1.0.0/16", "100.1.0.0/16"}
	for _, l := range local {
		for _, r := range remote {
			rs.Rule(TableNAT, SubmarinerPostrouting, "-s", l, "-d", r, "-j", "ACCEPT")
			rs.Rule(TableNAT, SubmarinerPostrouting, "-s", r, "-d", l, "-j", "ACCEPT")
		}
	}
	rs.Rule(TableNAT, SubmarinerPostrouting, "-s", "240.0.0.0/8", "-o", "vx-submariner", "-j", "SNAT", "--to-source", "10.1.0.1")
	rs.Rule(TableFilter, SubmarinerInput, "-p", "udp", "-m", "udp", "--dport", "4800", "-j", "ACCEPT")
	rs.Rule(TableFilter, SubmarinerForward, "-o", "vx-submariner", "-m", "comment", "--comment", "into the overlay", "-j", "ACCEPT")
	for _, r := range remote {
		rs.Rule(TableMangle, SubmarinerPostrouting, "-d", r, "-p", "tcp", "-m", "tcp", "--tcp-flags", "SYN,RST", "SYN", "-j", "TCPMSS", "--clamp-mss-to-pmtu")
	}
	rs.Jump(Jump{Table: TableNAT, From: ChainPostrouting, To: SubmarinerPostrouting, Position: First})
	rs.Jump(Jump{Table: TableMangle, From: ChainPostrouting, To: SubmarinerPostrouting, Position: First})
	rs.Jump(Jump{Table: TableFilter, From: ChainInput, To: SubmarinerInput, Match: []string{"-p", "udp"}, Position: Last})
	rs.Jump(Jump{Table: TableFilter, From: ChainForward, To: SubmarinerForward, Position: First})
	return rs
}

// foreignRules stands in for kube-proxy and the CNI: rules we must never touch.
const foreignRules = `*nat
:KUBE-POSTROUTING - [0:0]
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A POSTROUTING -s 10.1.0.0/16 ! -d 10.1.0.0/16 -j MASQUERADE
-A KUBE-POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE
COMMIT
*filter
-A INPUT -i lo -j ACCEPT
COMMIT
`

func TestRulesetPayload(t *testing.T) {
	rs := routeAgentRules("10.2.0.0/16", "100.2.0.0/16")
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	golden(t, "routeagent-payload.golden", rs.String())
	if got, want := rs.Len(), 13; got != want {
		t.Errorf("Len() = %d, want %d", got, want)
	}
	if diff := cmp.Diff([]Table{TableMangle, TableNAT, TableFilter}, rs.Tables()); diff != "" {
		t.Errorf("Tables() (-want +got):\n%s", diff)
	}
}

func TestRulesetRefusesBadInput(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(*Ruleset)
		want  string
	}{
		{"unknown table", func(rs *Ruleset) { rs.Chain("natt", "SM-GN-X") }, `unknown table "natt"`},
		{"long chain", func(rs *Ruleset) { rs.Chain(TableNAT, "SM-GN-THIS-NAME-IS-FAR-TOO-LONG") }, "at most 28"},
		{"chain with space", func(rs *Ruleset) { rs.Chain(TableNAT, "SM GN") }, "white space"},
		{"built-in chain", func(rs *Ruleset) { rs.Rule(TableNAT, ChainPostrouting, "-j", "ACCEPT") }, "built-in chains are not ours"},
		{"empty argument", func(rs *Ruleset) { rs.Rule(TableNAT, "SM-GN-X", "-s", "", "-j", "ACCEPT") }, "argument 2 is empty"},
		{"newline", func(rs *Ruleset) { rs.Rule(TableNAT, "SM-GN-X", "-j", "ACCEPT\n-A INPUT") }, "line break"},
		{"quote", func(rs *Ruleset) { rs.Rule(TableNAT, "SM-GN-X", "--comment", `a"b`) }, "double quote"},
		{"command given", func(rs *Ruleset) { rs.Rule(TableNAT, "SM-GN-X", "-A", "SM-GN-X", "-j", "ACCEPT") }, `command "-A"`},
		{"jump from user chain", func(rs *Ruleset) {
			rs.Jump(Jump{Table: TableNAT, From: "KUBE-POSTROUTING", To: GlobalnetEgress})
		}, "not a built-in chain"},
		{"jump twice", func(rs *Ruleset) {
			rs.Jump(Jump{Table: TableNAT, From: ChainPostrouting, To: GlobalnetEgress})
			rs.Jump(Jump{Table: TableNAT, From: ChainPostrouting, To: GlobalnetEgress, Position: Last})
		}, "declared twice"},
		{"undeclared target", func(rs *Ruleset) { rs.Rule(TableNAT, GlobalnetEgress, "-j", "SM-GN-MISSING") }, "does not declare"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := NewRuleset()
			tc.build(rs)
			err := rs.Err()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Err() = %v, want an error containing %q", err, tc.want)
			}
			// A writer refuses it before running anything.
			fake := NewFake()
			w, _ := NewWriter(fake, globalnetOwner)
			if _, err := w.Sync(context.Background(), rs); err == nil {
				t.Fatal("Sync accepted an invalid ruleset")
			}
			if n := len(fake.Restores()) + fake.Saves(); n != 0 {
				t.Errorf("Sync ran %d commands for an invalid ruleset, want none", n)
			}
		})
	}
}

func TestWriterRefusesChainsItDoesNotOwn(t *testing.T) {
	fake := NewFake()
	w, err := NewWriter(fake, globalnetOwner)
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Sync(context.Background(), routeAgentRules("10.2.0.0/16"))
	if err == nil || !strings.Contains(err.Error(), "not owned by this writer") {
		t.Fatalf("Sync = %v, want a not-owned error", err)
	}
	for _, o := range []Owner{{}, {Chains: []Chain{ChainInput}}, {Prefixes: []string{"POST"}}, {Prefixes: []string{"S"}}} {
		if _, err := NewWriter(fake, o); err == nil {
			t.Errorf("NewWriter(%+v) accepted an owner that would own too much or nothing", o)
		}
	}
}

// TestWriterSequence drives one writer through a series of syncs against the fake
// kernel and pins each payload and the resulting tables.
func TestWriterSequence(t *testing.T) {
	ctx := context.Background()
	fake := NewFake()
	// A previous run left a stale chain, a duplicated jump and a misplaced jump;
	// kube-proxy and the CNI have their own rules.
	seed := foreignRules + `*nat
:SUBMARINER-POSTROUTING - [0:0]
:SUBMARINER-FORWARD - [0:0]
-A SUBMARINER-POSTROUTING -s 10.1.0.0/16 -d 10.9.0.0/16 -j ACCEPT
-A POSTROUTING -j SUBMARINER-POSTROUTING
-A POSTROUTING -j SUBMARINER-FORWARD
COMMIT
*filter
:SUBMARINER-INPUT - [0:0]
-A INPUT -p udp -j SUBMARINER-INPUT
-A INPUT -p udp -j SUBMARINER-INPUT
COMMIT
`
	if err := fake.Restore(ctx, []byte(seed)); err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(fake, routeAgentOwner)
	if err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name string
		rs   *Ruleset
		want Result
	}{
		{"first sync repairs", routeAgentRules("10.2.0.0/16", "100.2.0.0/16"), Result{
			Full:         true,
			Written:      []string{"mangle/SUBMARINER-POSTROUTING", "nat/SUBMARINER-POSTROUTING", "filter/SUBMARINER-FORWARD", "filter/SUBMARINER-INPUT"},
			Deleted:      []string{"nat/SUBMARINER-FORWARD"},
			JumpsAdded:   4,
			JumpsDeleted: 4,
		}},
		{"same again writes nothing", routeAgentRules("10.2.0.0/16", "100.2.0.0/16"), Result{}},
		{"one remote CIDR less", routeAgentRules("10.2.0.0/16"), Result{
			Written: []string{"mangle/SUBMARINER-POSTROUTING", "nat/SUBMARINER-POSTROUTING"},
		}},
		{"cleanup", nil, Result{
			Full:         true,
			Deleted:      []string{"mangle/SUBMARINER-POSTROUTING", "nat/SUBMARINER-POSTROUTING", "filter/SUBMARINER-FORWARD", "filter/SUBMARINER-INPUT"},
			JumpsDeleted: 4,
		}},
	}
	for i, st := range steps {
		before := len(fake.Restores())
		var res Result
		if st.rs == nil {
			res, err = w.Cleanup(ctx)
		} else {
			res, err = w.Sync(ctx, st.rs)
		}
		if err != nil {
			t.Fatalf("step %q: %v", st.name, err)
		}
		res.Lines, res.Bytes = 0, 0
		if diff := cmp.Diff(st.want, res); diff != "" {
			t.Errorf("step %q: Result (-want +got):\n%s", st.name, diff)
		}
		restored := fake.Restores()[before:]
		payload := strings.Join(restored, "")
		if st.want.Written == nil && st.want.Deleted == nil && st.want.JumpsAdded+st.want.JumpsDeleted == 0 && len(restored) != 0 {
			t.Errorf("step %q: restored %q, want no restore", st.name, payload)
		}
		golden(t, fmt.Sprintf("sequence-%d-payload.golden", i+1), payload)
		golden(t, fmt.Sprintf("sequence-%d-tables.golden", i+1), fake.String())
	}
	// After cleanup only the foreign rules remain, exactly as seeded.
	clean := NewFake()
	if err := clean.Restore(ctx, []byte(foreignRules)); err != nil {
		t.Fatal(err)
	}
	// The seed created empty tables the foreign rules did not mention; compare the
	// tables both have.
	if diff := cmp.Diff(clean.String(), dropEmptyTables(fake.String())); diff != "" {
		t.Errorf("after cleanup (-foreign only +got):\n%s", diff)
	}
}

// dropEmptyTables removes tables with no rules from iptables-save text.
func dropEmptyTables(s string) string {
	var out []string
	for _, block := range strings.SplitAfter(s, "COMMIT\n") {
		if strings.Contains(block, "\n-A ") {
			out = append(out, block)
		}
	}
	return strings.Join(out, "")
}

// TestWriterRepairsMovedJump: a program inserts its own rule above our First jump;
// the next full sync moves our jump back to the top without touching that rule,
// and an appended (Last) jump followed by other rules is left where it is.
func TestWriterRepairsMovedJump(t *testing.T) {
	ctx := context.Background()
	fake := NewFake()
	w, _ := NewWriter(fake, routeAgentOwner)
	rs := routeAgentRules("10.2.0.0/16")
	if _, err := w.Sync(ctx, rs); err != nil {
		t.Fatal(err)
	}
	if err := fake.Restore(ctx, []byte("*nat\n-I POSTROUTING 1 -j MASQUERADE\nCOMMIT\n*filter\n-A INPUT -j DROP\nCOMMIT\n")); err != nil {
		t.Fatal(err)
	}
	w.Invalidate()
	res, err := w.Sync(ctx, rs)
	if err != nil {
		t.Fatal(err)
	}
	if res.JumpsAdded != 1 || res.JumpsDeleted != 1 {
		t.Errorf("repair changed %d+%d jumps, want 1 deleted and 1 added", res.JumpsDeleted, res.JumpsAdded)
	}
	golden(t, "moved-jump-tables.golden", fake.String())
}

// TestWriterChangesCostChangedChains: with 10,000 per-service chains, changing one
// service writes that chain alone (and the parent chain when a service comes or
// goes), never the others.
func TestWriterChangesCostChangedChains(t *testing.T) {
	ctx := context.Background()
	const services = 10000
	build := func(changed int, drop int) *Ruleset {
		rs := NewRuleset()
		rs.Jump(Jump{Table: TableNAT, From: ChainPrerouting, To: GlobalnetIngress, Position: First})
		for i := 0; i < services; i++ {
			if i == drop {
				continue
			}
			c := HashedChain(GlobalnetPrefix, fmt.Sprintf("service/ns%d/svc%d", i%50, i))
			rs.Rule(TableNAT, GlobalnetIngress, "-d", fmt.Sprintf("242.0.%d.%d/32", i/250, i%250+1), "-j", string(c))
			target := fmt.Sprintf("100.1.%d.%d", i/250, i%250+1)
			if i == changed {
				target = "100.1.255.1"
			}
			rs.Rule(TableNAT, c, "-j", "DNAT", "--to-destination", target)
		}
		return rs
	}
	fake := NewFake()
	w, _ := NewWriter(fake, globalnetOwner)
	full, err := w.Sync(ctx, build(-1, -1))
	if err != nil {
		t.Fatal(err)
	}
	if len(full.Written) != services+1 {
		t.Fatalf("full sync wrote %d chains, want %d", len(full.Written), services+1)
	}

	one, err := w.Sync(ctx, build(1234, -1))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"nat/" + string(HashedChain(GlobalnetPrefix, "service/ns34/svc1234"))}
	if diff := cmp.Diff(want, one.Written); diff != "" || one.Full {
		t.Errorf("changing one service wrote (-want +got):\n%s (full=%v)", diff, one.Full)
	}
	if one.Lines > 5 || one.Lines*100 > full.Lines {
		t.Errorf("changing one service sent %d payload lines (full sync: %d)", one.Lines, full.Lines)
	}
	golden(t, "one-change-payload.golden", fake.LastRestore())

	gone, err := w.Sync(ctx, build(1234, 77))
	if err != nil {
		t.Fatal(err)
	}
	if len(gone.Written) != 1 || gone.Written[0] != "nat/SUBMARINER-GN-INGRESS" || len(gone.Deleted) != 1 {
		t.Errorf("removing one service wrote %v and deleted %v, want the parent chain written and one chain deleted", gone.Written, gone.Deleted)
	}
	if strings.Count(fake.String(), "\n:SM-GN-") != services-1 {
		t.Errorf("the fake kernel does not hold %d service chains after the removal", services-1)
	}
}

func TestRestoreErrorShowsContext(t *testing.T) {
	ctx := context.Background()
	fake := NewFake()
	w, _ := NewWriter(fake, globalnetOwner)
	rs := NewRuleset()
	for i := 1; i <= 6; i++ {
		rs.Rule(TableNAT, GlobalnetEgress, "-s", fmt.Sprintf("10.1.0.%d/32", i), "-j", "SNAT", "--to-source", fmt.Sprintf("242.0.0.%d", i))
	}
	rs.Rule(TableNAT, GlobalnetEgress, "-j", "KUBE-MARK-MASQ") // not ours and missing
	_, err := w.Sync(ctx, rs)
	var re *RestoreError
	if !errors.As(err, &re) {
		t.Fatalf("Sync = %v, want a *RestoreError", err)
	}
	golden(t, "restore-error.golden", err.Error()+"\n")
	if fake.String() != "" {
		t.Errorf("a failed restore changed the fake kernel:\n%s", fake.String())
	}
	// The failure forces the next sync to read the kernel again.
	rs2 := NewRuleset().Rule(TableNAT, GlobalnetEgress, "-j", "ACCEPT")
	res, err := w.Sync(ctx, rs2)
	if err != nil || !res.Full {
		t.Errorf("sync after a failure: full=%v err=%v, want a full sync", res.Full, err)
	}
}

func TestNewRestoreError(t *testing.T) {
	payload := []byte("*nat\n:SM-GN-A - [0:0]\n-A SM-GN-A -j ACCEPT\n-A SM-GN-A -s 10.1.0.0/33 -j ACCEPT\nCOMMIT\n")
	for _, tc := range []struct {
		name, stderr string
		line         int
		message      string
	}{
		{"nft parse error", "iptables-restore v1.8.9 (nf_tables): invalid mask `33' specified\nError occurred at line: 4\nTry `iptables-restore -h' or 'iptables-restore --help' for more information.", 4, "invalid mask `33' specified; Error occurred at line: 4"},
		{"chain delete", "iptables-restore v1.8.9 (nf_tables): \nline 2: CHAIN_DEL failed (Device or resource busy): chain SM-GN-A", 2, "line 2: CHAIN_DEL failed (Device or resource busy): chain SM-GN-A"},
		{"legacy", "iptables-restore: line 3 failed", 3, "line 3 failed"},
		{"no line", "Another app is currently holding the xtables lock.", 0, "Another app is currently holding the xtables lock."},
		{"silent", "", 0, "iptables-restore failed without a message"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			re := newRestoreError("iptables-restore", payload, tc.stderr, errors.New("exit status 2"))
			if re.Line != tc.line || re.Message != tc.message {
				t.Errorf("got line %d message %q, want line %d message %q", re.Line, re.Message, tc.line, tc.message)
			}
			if tc.line > 0 && !strings.Contains(re.Context, fmt.Sprintf(">    %d  ", tc.line)) {
				t.Errorf("context does not mark line %d:\n%s", tc.line, re.Context)
			}
		})
	}
}

func TestExecCommands(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		proto       Protocol
		restore     string
		save        string
		restoreArgs string
	}{
		{IPv4, "iptables-restore", "iptables-save", "--noflush --wait"},
		{IPv6, "ip6tables-restore", "ip6tables-save", "--noflush --wait"},
	} {
		t.Run(tc.proto.String(), func(t *testing.T) {
			r := &recordingRunner{out: "*nat\nCOMMIT\n"}
			e := New(r, tc.proto)
			if err := e.Restore(ctx, []byte("*nat\nCOMMIT\n")); err != nil {
				t.Fatal(err)
			}
			out, err := e.Save(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{tc.restore + " " + tc.restoreArgs + " <- *nat\nCOMMIT\n", tc.save + " <- "}
			if diff := cmp.Diff(want, r.calls); diff != "" {
				t.Errorf("commands (-want +got):\n%s", diff)
			}
			if string(out) != r.out {
				t.Errorf("Save returned %q, want the runner's output %q", out, r.out)
			}
		})
	}
	r := &recordingRunner{err: &CommandError{Command: "iptables-restore", Stderr: "iptables-restore v1.8.9 (nf_tables): unknown option \"--bogus\"\nError occurred at line: 1", Err: errors.New("exit status 2")}}
	err := New(r, IPv4).Restore(ctx, []byte("-A X --bogus\n"))
	var re *RestoreError
	if !errors.As(err, &re) || re.Line != 1 || !strings.Contains(re.Context, "-A X --bogus") {
		t.Errorf("Restore = %v, want a RestoreError at line 1 showing the line", err)
	}
}

type recordingRunner struct {
	calls []string
	out   string
	err   error
}

func (r *recordingRunner) Run(_ context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	r.calls = append(r.calls, strings.Join(append([]string{name}, args...), " ")+" <- "+string(stdin))
	return []byte(r.out), r.err
}

func TestParseSaveCaptured(t *testing.T) {
	// Captured from iptables-save v1.8.9 (nf_tables) in a network namespace.
	data, err := os.ReadFile("testdata/iptables-save-nft.txt")
	if err != nil {
		t.Fatal(err)
	}
	d, err := parseSave(data)
	if err != nil {
		t.Fatal(err)
	}
	got := d[TableFilter].rules[ChainInput]
	want := [][]string{
		{"-p", "udp", "-j", "SUBMARINER-INPUT"},
		{"-p", "udp", "-m", "comment", "--comment", "hello world", "-j", "ACCEPT"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("filter/INPUT rules (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]Chain{ChainPrerouting, ChainInput, ChainOutput, ChainPostrouting, "SM-GN-A", SubmarinerPostrouting}, d[TableNAT].chains); diff != "" {
		t.Errorf("nat chains (-want +got):\n%s", diff)
	}
}

func TestNormalize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"-p udp --dport 4800 -j ACCEPT", "-p udp -m udp --dport 4800 -j ACCEPT"},
		{"-p udp -m udp --dport 4800 -j ACCEPT", "-p udp -m udp --dport 4800 -j ACCEPT"},
		{"-p udp -j SUBMARINER-INPUT", "-p udp -j SUBMARINER-INPUT"},
		{"-s 10.1.0.5 -d 2001:db8::1 -j ACCEPT", "-s 10.1.0.5/32 -d 2001:db8::1/128 -j ACCEPT"},
		{"--source 10.1.0.0/16 --destination 10.2.0.0/16 -j ACCEPT", "-s 10.1.0.0/16 -d 10.2.0.0/16 -j ACCEPT"},
	} {
		toks, err := tokenize(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(normalize(toks), " "); got != tc.want {
			t.Errorf("normalize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestTokenize(t *testing.T) {
	got, err := tokenize(`-A X -m comment --comment "a \"quoted\" word"  -j ACCEPT`)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"-A", "X", "-m", "comment", "--comment", `a "quoted" word`, "-j", "ACCEPT"}, got); diff != "" {
		t.Errorf("tokenize (-want +got):\n%s", diff)
	}
	if _, err := tokenize(`-A X --comment "open`); err == nil {
		t.Error("tokenize accepted an unterminated quote")
	}
}

func TestHashedChain(t *testing.T) {
	a := HashedChain(GlobalnetPrefix, "service/default/nginx")
	if len(a) > MaxChainLen || !strings.HasPrefix(string(a), GlobalnetPrefix) {
		t.Errorf("HashedChain = %q: want the prefix and at most %d characters", a, MaxChainLen)
	}
	if a != HashedChain(GlobalnetPrefix, "service/default/nginx") || a == HashedChain(GlobalnetPrefix, "service/default/nginy") {
		t.Errorf("HashedChain is not a stable, distinguishing function of its key")
	}
	if err := validateChain(HashedChain("SUBMARINER-GN-INGRESS-", "x")); err != nil {
		t.Errorf("HashedChain with a long prefix gave an invalid name: %v", err)
	}
}

func TestShardedChain(t *testing.T) {
	seen := map[Chain]int{}
	for i := 0; i < 1000; i++ {
		c := ShardedChain("SM-GN-B", fmt.Sprintf("service/ns/svc%d", i), 64)
		if err := validateChain(c); err != nil || len(c) != len("SM-GN-B00") {
			t.Fatalf("ShardedChain gave %q (%v)", c, err)
		}
		seen[c]++
	}
	if len(seen) != 64 {
		t.Errorf("1000 keys landed in %d of 64 shards", len(seen))
	}
	if a, b := ShardedChain("SM-GN-B", "k", 64), ShardedChain("SM-GN-B", "k", 64); a != b {
		t.Errorf("ShardedChain is not stable: %q then %q", a, b)
	}
}
