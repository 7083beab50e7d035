package iptables

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// Position says where a jump rule sits in its built-in chain.
type Position int

const (
	// First puts the jump at the top of the built-in chain: above every rule that is
	// not itself a jump into one of our chains (so the route agent's and Globalnet's
	// jumps can share the top without displacing each other on every sync).
	First Position = iota
	// Last appends the jump once. Rules others append later may follow it, so its
	// position is not enforced afterwards, only that it exists exactly once.
	Last
)

func (p Position) String() string {
	if p == Last {
		return "last"
	}
	return "first"
}

// Jump is a rule in a built-in chain that sends packets into one of our chains.
// These are the only rules we write outside our own chains.
type Jump struct {
	Table Table
	// From is the built-in chain holding the jump.
	From Chain
	// To is our chain.
	To Chain
	// Match holds extra match arguments (for example "-p", "udp"), written the way
	// iptables-save prints them.
	Match []string
	// Position is where the jump sits.
	Position Position
}

// spec returns the rule specification after the chain name.
func (j Jump) spec() []string {
	return append(slices.Clone(j.Match), "-j", string(j.To))
}

// String renders the jump as the iptables-restore line that adds it.
func (j Jump) String() string {
	if j.Position == Last {
		return "-A " + string(j.From) + " " + joinArgs(j.spec())
	}
	return "-I " + string(j.From) + " 1 " + joinArgs(j.spec())
}

type chainKey struct {
	table Table
	chain Chain
}

func (k chainKey) String() string { return string(k.table) + "/" + string(k.chain) }

func keyLess(a, b chainKey) int {
	if c := tableRank(a.table) - tableRank(b.table); c != 0 {
		return c
	}
	return strings.Compare(string(a.chain), string(b.chain))
}

func tableRank(t Table) int {
	if i := slices.Index(tableOrder, t); i >= 0 {
		return i
	}
	return len(tableOrder)
}

// Ruleset is the complete content of the chains one owner writes: every chain with its
// rules, and the jump rules that lead into them from built-in chains. Build it in a
// deterministic order (sorted inputs); chains are rendered sorted by table and name,
// rules in the order they were added.
//
// The builder records the first invalid input and reports it from Err, so that a
// Writer refuses the whole ruleset before anything in the kernel changes.
type Ruleset struct {
	chains map[chainKey]*chainRules
	sorted []chainKey // chain keys sorted; nil when a chain was added since
	jumps  []Jump
	err    error
}

// chainRules holds a chain's rules and their rendering, built as rules are added so
// that comparing a chain with what was last written costs one string comparison.
type chainRules struct {
	rules [][]string
	text  strings.Builder
}

// NewRuleset returns an empty ruleset. Writing an empty ruleset removes every chain
// and jump the owner had: it is how an agent cleans up.
func NewRuleset() *Ruleset {
	return &Ruleset{chains: map[chainKey]*chainRules{}}
}

// Chain declares a chain (possibly left empty). Declaring it again is harmless.
func (rs *Ruleset) Chain(t Table, c Chain) *Ruleset {
	if rs.err != nil {
		return rs
	}
	if _, ok := builtins[t]; !ok {
		rs.err = fmt.Errorf("declaring chain %s: unknown table %q: use one of filter, nat, mangle, raw", c, t)
		return rs
	}
	if err := validateChain(c); err != nil {
		rs.err = fmt.Errorf("declaring chain in table %s: %w", t, err)
		return rs
	}
	if isBuiltinName(c) {
		rs.err = fmt.Errorf("declaring chain %s in table %s: built-in chains are not ours to write; add a Jump from it instead", c, t)
		return rs
	}
	k := chainKey{t, c}
	if _, ok := rs.chains[k]; !ok {
		rs.chains[k] = &chainRules{}
		rs.sorted = nil
	}
	return rs
}

// Rule appends a rule to chain c of table t, declaring the chain if needed. args are
// the rule's arguments after "-A <chain>", one token each (no quoting needed).
func (rs *Ruleset) Rule(t Table, c Chain, args ...string) *Ruleset {
	if rs.Chain(t, c); rs.err != nil {
		return rs
	}
	cr := rs.chains[chainKey{t, c}]
	if err := validateArgs(args); err != nil {
		rs.err = fmt.Errorf("rule %d of chain %s in table %s: %w", len(cr.rules)+1, c, t, err)
		return rs
	}
	cr.rules = append(cr.rules, slices.Clone(args))
	cr.text.WriteString("-A ")
	cr.text.WriteString(string(c))
	cr.text.WriteByte(' ')
	cr.text.WriteString(joinArgs(args))
	cr.text.WriteByte('\n')
	return rs
}

// Jump adds a jump rule from a built-in chain into one of the ruleset's chains.
func (rs *Ruleset) Jump(j Jump) *Ruleset {
	if rs.err != nil {
		return rs
	}
	if _, ok := builtins[j.Table]; !ok {
		rs.err = fmt.Errorf("jump to %s: unknown table %q: use one of filter, nat, mangle, raw", j.To, j.Table)
		return rs
	}
	if !isBuiltin(j.Table, j.From) {
		rs.err = fmt.Errorf("jump to %s: %s is not a built-in chain of table %s: jumps lead from built-in chains (%v)", j.To, j.From, j.Table, builtins[j.Table])
		return rs
	}
	if err := validateArgs(j.Match); err != nil {
		rs.err = fmt.Errorf("jump from %s to %s in table %s: %w", j.From, j.To, j.Table, err)
		return rs
	}
	for _, o := range rs.jumps {
		if o.Table == j.Table && o.From == j.From && o.To == j.To {
			rs.err = fmt.Errorf("jump from %s to %s in table %s is declared twice: declare each jump once", j.From, j.To, j.Table)
			return rs
		}
	}
	if rs.Chain(j.Table, j.To); rs.err != nil {
		return rs
	}
	j.Match = slices.Clone(j.Match)
	rs.jumps = append(rs.jumps, j)
	return rs
}

// Err returns the first invalid input given to the builder, or nil.
func (rs *Ruleset) Err() error {
	if rs.err != nil {
		return rs.err
	}
	// Every jump from one of our rules into one of our chains must find the chain
	// declared, or the restore would fail halfway through a sync.
	for _, k := range rs.keys() {
		for i, r := range rs.chains[k].rules {
			target := jumpTarget(r)
			if target == "" || !ours(target) {
				continue
			}
			if _, ok := rs.chains[chainKey{k.table, target}]; !ok {
				return fmt.Errorf("rule %d of chain %s in table %s jumps to %s, which the ruleset does not declare: declare it with Chain", i+1, k.chain, k.table, target)
			}
		}
	}
	return nil
}

// Tables returns the tables the ruleset writes into, in payload order.
func (rs *Ruleset) Tables() []Table {
	var ts []Table
	for _, k := range rs.keys() {
		if !slices.Contains(ts, k.table) {
			ts = append(ts, k.table)
		}
	}
	return ts
}

// Chains returns the chains of table t, sorted.
func (rs *Ruleset) Chains(t Table) []Chain {
	var cs []Chain
	for _, k := range rs.keys() {
		if k.table == t {
			cs = append(cs, k.chain)
		}
	}
	return cs
}

// Jumps returns the ruleset's jump rules in the order they were added.
func (rs *Ruleset) Jumps() []Jump { return slices.Clone(rs.jumps) }

// Len returns the number of rules in the ruleset's chains.
func (rs *Ruleset) Len() int {
	n := 0
	for _, cr := range rs.chains {
		n += len(cr.rules)
	}
	return n
}

// keys returns the chain keys sorted. The slice is shared: do not modify it.
func (rs *Ruleset) keys() []chainKey {
	if rs.sorted == nil {
		ks := make([]chainKey, 0, len(rs.chains))
		for k := range rs.chains {
			ks = append(ks, k)
		}
		slices.SortFunc(ks, keyLess)
		rs.sorted = ks
	}
	return rs.sorted
}

// body renders the rules of one chain, one "-A" line each, as written in payloads.
func (rs *Ruleset) body(k chainKey) string {
	return rs.chains[k].text.String()
}

// Bytes renders the whole ruleset as an iptables-restore --noflush payload: every chain
// declared (which flushes it) and filled, jumps inserted unconditionally. It is the
// payload of a first sync into empty tables; a Writer adds the removal of stale chains
// and duplicate jumps from what it observes.
func (rs *Ruleset) Bytes() []byte {
	p := payload{write: rs.keys()}
	for _, j := range rs.jumps {
		p.jumpAdd = append(p.jumpAdd, j)
	}
	return p.render(rs)
}

// String returns Bytes as a string.
func (rs *Ruleset) String() string { return string(rs.Bytes()) }

// payload is what one restore changes.
type payload struct {
	write   []chainKey // chains declared (so flushed) and filled
	delete  []chainKey // stale chains flushed and deleted
	jumpDel []deletion // jump rules removed from built-in chains
	jumpAdd []Jump     // jump rules added to built-in chains
}

type deletion struct {
	table Table
	chain Chain
	spec  []string
}

func (p payload) empty() bool {
	return len(p.write) == 0 && len(p.delete) == 0 && len(p.jumpDel) == 0 && len(p.jumpAdd) == 0
}

// render writes the payload table by table: chain declarations, jump deletions, rules,
// jump additions, chain deletions, COMMIT. Declaring a chain flushes it, so a chain
// is written whole; stale chains are declared (flushed) before they are deleted, and
// deleted last, after the rules that jumped to them are gone.
func (p payload) render(rs *Ruleset) []byte {
	var b bytes.Buffer
	for _, t := range tableOrder {
		write := filterKeys(p.write, t)
		del := filterKeys(p.delete, t)
		var jd []deletion
		for _, d := range p.jumpDel {
			if d.table == t {
				jd = append(jd, d)
			}
		}
		var ja []Jump
		for _, j := range p.jumpAdd {
			if j.Table == t {
				ja = append(ja, j)
			}
		}
		if len(write)+len(del)+len(jd)+len(ja) == 0 {
			continue
		}
		fmt.Fprintf(&b, "*%s\n", t)
		for _, k := range write {
			fmt.Fprintf(&b, ":%s - [0:0]\n", k.chain)
		}
		for _, k := range del {
			fmt.Fprintf(&b, ":%s - [0:0]\n", k.chain)
		}
		for _, d := range jd {
			fmt.Fprintf(&b, "-D %s %s\n", d.chain, joinArgs(d.spec))
		}
		for _, k := range write {
			b.WriteString(rs.body(k))
		}
		for _, j := range ja {
			b.WriteString(j.String())
			b.WriteByte('\n')
		}
		for _, k := range del {
			fmt.Fprintf(&b, "-X %s\n", k.chain)
		}
		b.WriteString("COMMIT\n")
	}
	return b.Bytes()
}

func filterKeys(ks []chainKey, t Table) []chainKey {
	var out []chainKey
	for _, k := range ks {
		if k.table == t {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, keyLess)
	return out
}

// validateArgs checks rule arguments: tokens iptables-restore can read back as given.
func validateArgs(args []string) error {
	for i, a := range args {
		switch {
		case a == "":
			return fmt.Errorf("argument %d is empty: drop it or give it a value", i+1)
		case strings.ContainsAny(a, "\n\r\x00"):
			return fmt.Errorf("argument %d (%q) contains a line break: iptables-restore reads one rule per line", i+1, a)
		case strings.ContainsRune(a, '"'):
			return fmt.Errorf("argument %d (%q) contains a double quote: iptables-restore cannot read it back", i+1, a)
		}
	}
	if len(args) > 0 {
		switch args[0] {
		case "-A", "-I", "-D", "-X", "-F", "-N", "-R", "-P", "-Z", "-E":
			return fmt.Errorf("argument 1 is the command %q: give only the rule specification, the writer adds the command", args[0])
		}
	}
	return nil
}

// joinArgs renders tokens for a restore line, quoting those with spaces.
func joinArgs(args []string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		if strings.ContainsAny(a, " \t") {
			b.WriteByte('"')
			b.WriteString(a)
			b.WriteByte('"')
		} else {
			b.WriteString(a)
		}
	}
	return b.String()
}

// jumpTarget returns the chain or target a rule's -j/-g names, or "".
func jumpTarget(args []string) Chain {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-j" || args[i] == "-g" || args[i] == "--jump" || args[i] == "--goto" {
			return Chain(args[i+1])
		}
	}
	return ""
}
