package iptables

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Owner names the chains one writer owns: it may create, rewrite and delete them,
// and nothing else. Two agents sharing a kernel (the route agent and Globalnet on a
// gateway) must own disjoint chains.
type Owner struct {
	// Chains are owned chain names, in whichever table they appear.
	Chains []Chain
	// Prefixes own every chain whose name starts with one of them.
	Prefixes []string
}

// Owns reports whether c belongs to o.
func (o Owner) Owns(c Chain) bool {
	if slices.Contains(o.Chains, c) {
		return true
	}
	for _, p := range o.Prefixes {
		if strings.HasPrefix(string(c), p) {
			return true
		}
	}
	return false
}

func (o Owner) validate() error {
	if len(o.Chains) == 0 && len(o.Prefixes) == 0 {
		return fmt.Errorf("owner names no chains: list the chains or chain-name prefixes the writer owns")
	}
	for _, c := range o.Chains {
		if err := validateChain(c); err != nil {
			return fmt.Errorf("owner: %w", err)
		}
		if isBuiltinName(c) {
			return fmt.Errorf("owner lists the built-in chain %s: built-in chains cannot be owned, only jumped from", c)
		}
	}
	for _, p := range o.Prefixes {
		if len(p) < 3 || strings.ContainsAny(p, " \t\n\"") {
			return fmt.Errorf("owner prefix %q is too short or contains white space: use a distinctive prefix such as %q", p, GlobalnetPrefix)
		}
		for _, b := range []Chain{ChainPrerouting, ChainInput, ChainForward, ChainOutput, ChainPostrouting} {
			if strings.HasPrefix(string(b), p) {
				return fmt.Errorf("owner prefix %q would own the built-in chain %s: use a distinctive prefix", p, b)
			}
		}
	}
	return nil
}

// Writer writes one owner's Ruleset into the kernel with one iptables-restore per
// sync. The first sync (and any sync after Invalidate or a failure) is full: it reads
// the tables, writes every chain whose rules differ from the wanted ones, deletes
// owned chains that are no longer wanted and makes every jump rule exist exactly once
// at its position. Later syncs write only
// the chains whose rules changed since the last successful write and delete the
// chains dropped since, so the cost of a sync grows with what changed, not with the
// size of the ruleset. A Writer is safe for concurrent use.
type Writer struct {
	ipt   Interface
	owner Owner

	mu     sync.Mutex
	synced bool
	last   map[chainKey]string // rules of each chain as last written
	jumps  []Jump              // jumps as last ensured
}

// NewWriter returns a writer of owner's chains through ipt.
func NewWriter(ipt Interface, owner Owner) (*Writer, error) {
	if err := owner.validate(); err != nil {
		return nil, err
	}
	owner.Chains = slices.Clone(owner.Chains)
	owner.Prefixes = slices.Clone(owner.Prefixes)
	return &Writer{ipt: ipt, owner: owner}, nil
}

// Result reports what a sync changed.
type Result struct {
	// Full is true when the sync read the tables and rewrote everything.
	Full bool
	// Written lists the chains written ("table/chain"), sorted.
	Written []string
	// Deleted lists the chains deleted ("table/chain"), sorted.
	Deleted []string
	// JumpsAdded and JumpsDeleted count jump rules changed in built-in chains.
	JumpsAdded, JumpsDeleted int
	// Lines and Bytes measure the payload; both are 0 when nothing needed writing
	// and no restore ran.
	Lines, Bytes int
}

// Invalidate makes the next Sync a full one, for periodic repair of changes made
// behind our back (another program deleting a rule or moving our jumps).
func (w *Writer) Invalidate() {
	w.mu.Lock()
	w.synced = false
	w.mu.Unlock()
}

// Cleanup removes every chain and jump rule the owner has in the kernel.
func (w *Writer) Cleanup(ctx context.Context) (Result, error) {
	w.Invalidate()
	return w.Sync(ctx, NewRuleset())
}

// Sync makes the owner's chains and jumps match rs. An invalid ruleset, or one with
// chains the owner does not own, is refused before anything changes.
func (w *Writer) Sync(ctx context.Context, rs *Ruleset) (Result, error) {
	if err := rs.Err(); err != nil {
		return Result{}, fmt.Errorf("refusing invalid iptables ruleset: %w", err)
	}
	for _, k := range rs.keys() {
		if !w.owner.Owns(k.chain) {
			return Result{}, fmt.Errorf("refusing iptables ruleset: chain %s in table %s is not owned by this writer (owner: chains %v, prefixes %q): add it to the Owner or drop it", k.chain, k.table, w.owner.Chains, w.owner.Prefixes)
		}
	}

	w.mu.Lock()
	defer w.mu.Unlock()

	full := !w.synced || !sameJumps(w.jumps, rs.jumps)
	var p payload
	if full {
		var err error
		if p, err = w.planFull(ctx, rs); err != nil {
			w.synced = false
			return Result{Full: true}, err
		}
	} else {
		p = w.planIncremental(rs)
	}

	res := Result{Full: full, JumpsAdded: len(p.jumpAdd), JumpsDeleted: len(p.jumpDel)}
	for _, k := range p.write {
		res.Written = append(res.Written, k.String())
	}
	for _, k := range p.delete {
		res.Deleted = append(res.Deleted, k.String())
	}
	if !p.empty() {
		data := p.render(rs)
		res.Bytes = len(data)
		res.Lines = strings.Count(string(data), "\n")
		if err := w.ipt.Restore(ctx, data); err != nil {
			// The kernel may hold anything now: read it again next time.
			w.synced = false
			return res, err
		}
	}
	w.last = make(map[chainKey]string, len(rs.chains))
	for _, k := range rs.keys() {
		w.last[k] = rs.body(k)
	}
	w.jumps = rs.Jumps()
	w.synced = true
	return res, nil
}

// planIncremental writes the chains whose rules changed and deletes dropped ones.
func (w *Writer) planIncremental(rs *Ruleset) payload {
	var p payload
	for _, k := range rs.keys() {
		if body, ok := w.last[k]; !ok || body != rs.body(k) {
			p.write = append(p.write, k)
		}
	}
	for k := range w.last {
		if _, ok := rs.chains[k]; !ok {
			p.delete = append(p.delete, k)
		}
	}
	slices.SortFunc(p.delete, keyLess)
	return p
}

// planFull reads the tables and plans a rewrite of everything the owner has.
func (w *Writer) planFull(ctx context.Context, rs *Ruleset) (payload, error) {
	out, err := w.ipt.Save(ctx)
	if err != nil {
		return payload{}, err
	}
	d, err := parseSave(out)
	if err != nil {
		return payload{}, err
	}
	// Write every chain whose rules in the kernel differ from the wanted ones; a
	// chain that already holds them (after a restart, say) is left alone, counters
	// and all.
	var p payload
	for _, k := range rs.keys() {
		td := d[k.table]
		if td != nil && td.has[k.chain] && sameRules(td.rules[k.chain], rs.chains[k].rules) {
			continue
		}
		p.write = append(p.write, k)
	}

	for _, t := range tableOrder {
		td := d[t]
		if td == nil {
			continue
		}
		for _, c := range td.chains {
			if isBuiltin(t, c) || !w.owner.Owns(c) {
				continue
			}
			if _, ok := rs.chains[chainKey{t, c}]; !ok {
				p.delete = append(p.delete, chainKey{t, c})
			}
		}
		// Jumps: every rule in a built-in chain that leads into an owned chain is
		// either the one wanted jump, in place, or goes.
		for _, from := range builtins[t] {
			rules := td.rules[from]
			for i, r := range rules {
				to := jumpTarget(r)
				if to == "" || !w.owner.Owns(to) {
					continue
				}
				j, wanted := findJump(rs.jumps, t, from, to)
				if wanted && w.jumpInPlace(j, rules, i) {
					continue
				}
				p.jumpDel = append(p.jumpDel, deletion{table: t, chain: from, spec: r})
			}
		}
	}
	for _, j := range rs.jumps {
		var rules [][]string
		if td := d[j.Table]; td != nil {
			rules = td.rules[j.From]
		}
		present := false
		for i, r := range rules {
			if jumpTarget(r) == j.To && w.jumpInPlace(j, rules, i) {
				present = true
			}
		}
		if !present {
			p.jumpAdd = append(p.jumpAdd, j)
		}
	}
	return p, nil
}

// jumpInPlace reports whether rules[i] is jump j, written as wanted, the only rule
// of its chain leading into j.To, and at j's position.
func (w *Writer) jumpInPlace(j Jump, rules [][]string, i int) bool {
	if !slices.Equal(normalize(rules[i]), normalize(j.spec())) {
		return false
	}
	for k, r := range rules {
		if k != i && jumpTarget(r) == j.To {
			return false
		}
	}
	if j.Position == First {
		for _, r := range rules[:i] {
			if t := jumpTarget(r); t == "" || !ours(t) {
				return false
			}
		}
	}
	return true
}

// sameRules reports whether the kernel's rules (as iptables-save prints them) are the
// wanted ones.
func sameRules(kernel, want [][]string) bool {
	return slices.EqualFunc(kernel, want, func(k, w []string) bool {
		return slices.Equal(normalize(k), normalize(w))
	})
}

func findJump(js []Jump, t Table, from, to Chain) (Jump, bool) {
	for _, j := range js {
		if j.Table == t && j.From == from && j.To == to {
			return j, true
		}
	}
	return Jump{}, false
}

func sameJumps(a, b []Jump) bool {
	return slices.EqualFunc(a, b, func(x, y Jump) bool {
		return x.Table == y.Table && x.From == y.From && x.To == y.To && x.Position == y.Position && slices.Equal(x.Match, y.Match)
	})
}
