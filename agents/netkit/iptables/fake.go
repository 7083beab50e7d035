package iptables

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Fake is an in-memory Interface for tests. It parses restore payloads the way
// iptables-restore --noflush does (declaring a chain flushes it; -A, -I, -D, -X, -F,
// -N; all or nothing), checks what the kernel would refuse (rules in missing chains,
// jumps to missing chains, deleting busy or built-in chains, deleting a rule that is
// not there), and renders its tables as iptables-save text without counters.
type Fake struct {
	mu       sync.Mutex
	tables   map[Table]*fakeTable
	restores []string
	saves    int
}

type fakeTable struct {
	chains map[Chain][][]string
}

// NewFake returns a Fake with no tables, like a fresh network namespace.
func NewFake() *Fake {
	return &Fake{tables: map[Table]*fakeTable{}}
}

// Restores returns every payload restored so far, including failed ones.
func (f *Fake) Restores() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.restores)
}

// LastRestore returns the last payload restored, or "".
func (f *Fake) LastRestore() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.restores) == 0 {
		return ""
	}
	return f.restores[len(f.restores)-1]
}

// Saves returns how many times Save was called.
func (f *Fake) Saves() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.saves
}

// Save implements Interface.
func (f *Fake) Save(context.Context) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.saves++
	return []byte(f.render()), nil
}

// String renders all tables as iptables-save does, without comments or counters.
func (f *Fake) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.render()
}

func (f *Fake) render() string {
	var b strings.Builder
	for _, t := range tableOrder {
		ft := f.tables[t]
		if ft == nil {
			continue
		}
		fmt.Fprintf(&b, "*%s\n", t)
		order := fakeChainOrder(t, ft)
		for _, c := range order {
			if isBuiltin(t, c) {
				fmt.Fprintf(&b, ":%s ACCEPT [0:0]\n", c)
			} else {
				fmt.Fprintf(&b, ":%s - [0:0]\n", c)
			}
		}
		for _, c := range order {
			for _, r := range ft.chains[c] {
				fmt.Fprintf(&b, "-A %s %s\n", c, joinArgs(r))
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

// fakeChainOrder lists built-in chains first, then user chains sorted, as
// iptables-save does.
func fakeChainOrder(t Table, ft *fakeTable) []Chain {
	order := slices.Clone(builtins[t])
	var user []Chain
	for c := range ft.chains {
		if !isBuiltin(t, c) {
			user = append(user, c)
		}
	}
	slices.Sort(user)
	return append(order, user...)
}

// Restore implements Interface.
func (f *Fake) Restore(_ context.Context, payload []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.restores = append(f.restores, string(payload))

	// Work on a copy: a payload applies whole or not at all.
	work := map[Table]*fakeTable{}
	for t, ft := range f.tables {
		work[t] = ft.clone()
	}
	if msg := applyRestore(work, string(payload)); msg != "" {
		stderr := "iptables-restore v1.8.9 (fake): " + msg
		return newRestoreError("iptables-restore", payload, stderr, fmt.Errorf("exit status 1"))
	}
	f.tables = work
	return nil
}

func (ft *fakeTable) clone() *fakeTable {
	c := &fakeTable{chains: make(map[Chain][][]string, len(ft.chains))}
	for name, rules := range ft.chains {
		c.chains[name] = slices.Clone(rules)
	}
	return c
}

func newFakeTable(t Table) *fakeTable {
	ft := &fakeTable{chains: map[Chain][][]string{}}
	for _, c := range builtins[t] {
		ft.chains[c] = nil
	}
	return ft
}

// standardTargets are targets that are not chains.
var standardTargets = map[string]bool{
	"ACCEPT": true, "DROP": true, "RETURN": true, "QUEUE": true, "REJECT": true, "SNAT": true,
	"DNAT": true, "MASQUERADE": true, "REDIRECT": true, "NETMAP": true, "MARK": true,
	"CONNMARK": true, "TCPMSS": true, "LOG": true, "NFLOG": true, "NOTRACK": true, "CT": true,
	"TPROXY": true, "CLASSIFY": true, "DSCP": true, "TOS": true, "TTL": true, "TRACE": true,
	"AUDIT": true, "CHECKSUM": true, "SET": true,
}

// applyRestore applies a payload to tables and returns the tool's error message, or "".
func applyRestore(tables map[Table]*fakeTable, payload string) string {
	var cur *fakeTable
	var curName Table
	lines := strings.Split(strings.TrimRight(payload, "\n"), "\n")
	for i, raw := range lines {
		n := i + 1
		line := strings.TrimSpace(raw)
		failed := func(what string) string { return fmt.Sprintf("line %d failed: %s", n, what) }
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case strings.HasPrefix(line, "*"):
			if cur != nil {
				return failed("table " + string(curName) + " has no COMMIT")
			}
			t, err := ParseTable(line[1:])
			if err != nil {
				return failed(err.Error())
			}
			curName = t
			if tables[t] == nil {
				tables[t] = newFakeTable(t)
			}
			cur = tables[t]
			continue
		case cur == nil:
			return failed("not inside a table")
		case line == "COMMIT":
			for _, c := range fakeChainOrder(curName, cur) {
				for _, r := range cur.chains[c] {
					target := jumpTarget(r)
					if target == "" || standardTargets[string(target)] {
						continue
					}
					if _, ok := cur.chains[target]; !ok {
						return fmt.Sprintf("Chain '%s' does not exist\nError occurred at line: %d", target, n)
					}
				}
			}
			cur = nil
			continue
		case strings.HasPrefix(line, ":"):
			fields := strings.Fields(line[1:])
			c := Chain(fields[0])
			if isBuiltin(curName, c) {
				continue // policy line; --noflush leaves built-in chains' rules alone
			}
			if err := validateChain(c); err != nil {
				return failed(err.Error())
			}
			cur.chains[c] = nil
			continue
		}

		toks, err := tokenize(line)
		if err != nil || len(toks) < 2 {
			return failed("cannot parse the line")
		}
		cmd, c, args := toks[0], Chain(toks[1]), toks[2:]
		if cmd == "-N" {
			if _, ok := cur.chains[c]; ok {
				return failed("Chain already exists")
			}
			cur.chains[c] = nil
			continue
		}
		rules, ok := cur.chains[c]
		if !ok {
			return fmt.Sprintf("Chain '%s' does not exist\nError occurred at line: %d", c, n)
		}
		switch cmd {
		case "-A":
			cur.chains[c] = append(rules, args)
		case "-I":
			pos := 1
			if len(args) > 0 {
				if p, err := strconv.Atoi(args[0]); err == nil {
					pos, args = p, args[1:]
				}
			}
			if pos < 1 || pos > len(rules)+1 {
				return failed("Index of insertion too big")
			}
			cur.chains[c] = slices.Insert(rules, pos-1, args)
		case "-D":
			idx := -1
			if len(args) == 1 {
				if p, err := strconv.Atoi(args[0]); err == nil {
					idx = p - 1
				}
			}
			if idx < 0 {
				want := normalize(args)
				idx = slices.IndexFunc(rules, func(r []string) bool { return slices.Equal(normalize(r), want) })
			}
			if idx < 0 || idx >= len(rules) {
				return fmt.Sprintf("line %d failed: Bad rule (does a matching rule exist in that chain?).", n)
			}
			cur.chains[c] = slices.Delete(rules, idx, idx+1)
		case "-F":
			cur.chains[c] = nil
		case "-X":
			if isBuiltin(curName, c) {
				return fmt.Sprintf("line %d: CHAIN_DEL failed (Operation not permitted): chain %s", n, c)
			}
			busy := len(rules) > 0
			for _, other := range cur.chains {
				for _, r := range other {
					if jumpTarget(r) == c {
						busy = true
					}
				}
			}
			if busy {
				return fmt.Sprintf("line %d: CHAIN_DEL failed (Device or resource busy): chain %s", n, c)
			}
			delete(cur.chains, c)
		default:
			return failed("unknown command " + cmd)
		}
	}
	if cur != nil {
		return fmt.Sprintf("line %d failed: COMMIT expected for table %s", len(lines), curName)
	}
	return ""
}
