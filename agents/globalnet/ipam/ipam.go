// Package ipam hands out global IPs from a cluster's global CIDR. It is pure: no
// I/O, no clock, no randomness, so the same sequence of calls always gives the same
// addresses.
//
// Every allocation belongs to an owner (Globalnet uses "<kind>/<namespace>/<name>"),
// and an owner holds at most one allocation: asking again returns what it already
// has, so a retried reconcile can never take a second address for the same object.
// Each address has at most one owner. A restarted Globalnet first Reserves what the
// objects' status records, then allocates; so nothing recorded is ever handed out
// twice.
//
// The usable range is the CIDR without its network and broadcast addresses. Single
// addresses come from the top of the range, blocks of several contiguous addresses
// from the bottom, so that singles (one per exported Service) do not fragment the
// room that blocks (egress IPs) need.
package ipam

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"strings"
)

// ErrExhausted is returned (wrapped) when the pool has no room for a request.
var ErrExhausted = errors.New("global IP pool exhausted")

// ErrConflict is returned (wrapped) when an address to reserve belongs to another
// owner.
var ErrConflict = errors.New("global IP held by another owner")

// MaxBlock is the largest number of addresses one owner may hold.
const MaxBlock = 64

// Pool allocates addresses from one IPv4 CIDR. It is not safe for concurrent use:
// Globalnet calls it from its one reconcile worker.
type Pool struct {
	prefix netip.Prefix
	first  uint32 // first usable address
	size   int    // number of usable addresses
	used   []uint64
	owned  map[string]block
	inUse  int
}

// block is size addresses starting at usable index start.
type block struct {
	start, size int
}

// New returns an empty pool over prefix, which must be an IPv4 CIDR with at least
// two usable addresses (a /30 or larger).
func New(prefix netip.Prefix) (*Pool, error) {
	if !prefix.IsValid() || !prefix.Addr().Is4() {
		return nil, fmt.Errorf("global CIDR %s is not an IPv4 CIDR: Globalnet allocates IPv4 addresses, give one such as 242.0.0.0/16", prefix)
	}
	if prefix.Masked() != prefix {
		return nil, fmt.Errorf("global CIDR %s has host bits set: did you mean %s?", prefix, prefix.Masked())
	}
	if prefix.Bits() > 30 {
		return nil, fmt.Errorf("global CIDR %s is too small: it needs at least two usable addresses (a /30 or larger, normally a /16)", prefix)
	}
	total := 1 << (32 - prefix.Bits())
	size := total - 2
	return &Pool{
		prefix: prefix,
		first:  toUint(prefix.Addr()) + 1,
		size:   size,
		used:   make([]uint64, (size+63)/64),
		owned:  map[string]block{},
	}, nil
}

// Prefix returns the pool's CIDR.
func (p *Pool) Prefix() netip.Prefix { return p.prefix }

// Size returns the number of usable addresses.
func (p *Pool) Size() int { return p.size }

// Allocated returns the number of addresses held.
func (p *Pool) Allocated() int { return p.inUse }

// Free returns the number of addresses not held.
func (p *Pool) Free() int { return p.size - p.inUse }

// Contains reports whether a is a usable address of the pool.
func (p *Pool) Contains(a netip.Addr) bool {
	_, ok := p.index(a)
	return ok
}

// Owned returns owner's addresses in order, or nil.
func (p *Pool) Owned(owner string) []netip.Addr {
	b, ok := p.owned[owner]
	if !ok {
		return nil
	}
	return p.addrs(b)
}

// Holder returns the owner of a, or "". It looks through every allocation: for
// error messages and tests, not for hot paths.
func (p *Pool) Holder(a netip.Addr) string {
	i, ok := p.index(a)
	if !ok || p.used[i/64]&(1<<(i%64)) == 0 {
		return ""
	}
	return p.holderOf(i)
}

func (p *Pool) holderOf(i int) string {
	for o, b := range p.owned {
		if i >= b.start && i < b.start+b.size {
			return o
		}
	}
	return ""
}

// Owners returns every owner, sorted.
func (p *Pool) Owners() []string {
	out := make([]string, 0, len(p.owned))
	for o := range p.owned {
		out = append(out, o)
	}
	slices.Sort(out)
	return out
}

// Allocate gives owner n contiguous addresses (1 <= n <= MaxBlock) and returns them
// in order. An owner that already holds n addresses gets the same ones back; one
// that holds a different number gives them up first. When there is no room the
// error wraps ErrExhausted and the owner keeps nothing.
func (p *Pool) Allocate(owner string, n int) ([]netip.Addr, error) {
	if owner == "" {
		return nil, errors.New("allocating global IPs: the owner is empty")
	}
	if n < 1 || n > MaxBlock {
		return nil, fmt.Errorf("allocating %d global IPs for %s: ask for 1 to %d", n, owner, MaxBlock)
	}
	if b, ok := p.owned[owner]; ok {
		if b.size == n {
			return p.addrs(b), nil
		}
		p.Release(owner)
	}
	start := -1
	if n == 1 {
		start = p.highestFree()
	} else {
		start = p.lowestRun(n)
	}
	if start < 0 {
		return nil, fmt.Errorf("allocating %d contiguous global IPs for %s from %s (%d of %d in use): %w",
			n, owner, p.prefix, p.inUse, p.size, ErrExhausted)
	}
	b := block{start: start, size: n}
	p.take(owner, b)
	return p.addrs(b), nil
}

// Reserve records that owner holds ips (as found in an object's status when
// Globalnet starts). ips must be usable addresses of the pool, contiguous and in
// order. Reserving what the owner already holds is harmless; an owner holding other
// addresses, or an address held by another owner, is an error (the latter wraps
// ErrConflict) and nothing changes.
func (p *Pool) Reserve(owner string, ips []netip.Addr) error {
	if owner == "" {
		return errors.New("reserving global IPs: the owner is empty")
	}
	if len(ips) == 0 || len(ips) > MaxBlock {
		return fmt.Errorf("reserving %d global IPs for %s: give 1 to %d", len(ips), owner, MaxBlock)
	}
	start, ok := p.index(ips[0])
	if !ok {
		return fmt.Errorf("reserving %s for %s: not a usable address of %s", ips[0], owner, p.prefix)
	}
	for i, a := range ips {
		j, ok := p.index(a)
		if !ok {
			return fmt.Errorf("reserving %s for %s: not a usable address of %s", a, owner, p.prefix)
		}
		if j != start+i {
			return fmt.Errorf("reserving %v for %s: the addresses are not contiguous and in order", ips, owner)
		}
	}
	b := block{start: start, size: len(ips)}
	if have, ok := p.owned[owner]; ok {
		if have == b {
			return nil
		}
		return fmt.Errorf("reserving %v for %s: it already holds %v", ips, owner, p.addrs(have))
	}
	for i := b.start; i < b.start+b.size; i++ {
		if p.used[i/64]&(1<<(i%64)) != 0 {
			return fmt.Errorf("reserving %s for %s: %w (%s)", p.addr(i), owner, ErrConflict, p.holderOf(i))
		}
	}
	p.take(owner, b)
	return nil
}

// Release frees owner's addresses and returns them; nil when it held none.
func (p *Pool) Release(owner string) []netip.Addr {
	b, ok := p.owned[owner]
	if !ok {
		return nil
	}
	for i := b.start; i < b.start+b.size; i++ {
		p.used[i/64] &^= 1 << (i % 64)
	}
	delete(p.owned, owner)
	p.inUse -= b.size
	return p.addrs(b)
}

// String renders the pool as text: a summary line, then one line per owner in
// address order ("242.0.0.1-242.0.0.8 cgeip/cluster-egress.submariner.io").
func (p *Pool) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s: %d usable, %d allocated\n", p.prefix, p.size, p.inUse)
	type entry struct {
		b     block
		owner string
	}
	var es []entry
	for o, b := range p.owned {
		es = append(es, entry{b, o})
	}
	slices.SortFunc(es, func(x, y entry) int { return x.b.start - y.b.start })
	for _, e := range es {
		fmt.Fprintf(&sb, "%s %s\n", Range(p.addrs(e.b)), e.owner)
	}
	return sb.String()
}

// Range renders contiguous addresses as iptables writes a range: "a" for one,
// "first-last" for several, "" for none.
func Range(ips []netip.Addr) string {
	switch len(ips) {
	case 0:
		return ""
	case 1:
		return ips[0].String()
	}
	return ips[0].String() + "-" + ips[len(ips)-1].String()
}

func (p *Pool) take(owner string, b block) {
	for i := b.start; i < b.start+b.size; i++ {
		p.used[i/64] |= 1 << (i % 64)
	}
	p.owned[owner] = b
	p.inUse += b.size
}

// highestFree returns the highest free usable index, or -1.
func (p *Pool) highestFree() int {
	for w := len(p.used) - 1; w >= 0; w-- {
		free := ^p.used[w]
		if w == len(p.used)-1 && p.size%64 != 0 {
			free &= (1 << (p.size % 64)) - 1 // bits past the end are not addresses
		}
		if free != 0 {
			return w*64 + 63 - bits.LeadingZeros64(free)
		}
	}
	return -1
}

// lowestRun returns the lowest index starting n free contiguous addresses, or -1.
func (p *Pool) lowestRun(n int) int {
	run := 0
	for i := 0; i < p.size; i++ {
		if w := p.used[i/64]; i%64 == 0 && w == ^uint64(0) {
			run = 0
			i += 63 // a full word: skip it
			continue
		}
		if p.used[i/64]&(1<<(i%64)) != 0 {
			run = 0
			continue
		}
		run++
		if run == n {
			return i - n + 1
		}
	}
	return -1
}

func (p *Pool) index(a netip.Addr) (int, bool) {
	if !a.Is4() || !p.prefix.Contains(a) {
		return 0, false
	}
	i := int(toUint(a)) - int(p.first)
	if i < 0 || i >= p.size {
		return 0, false
	}
	return i, true
}

func (p *Pool) addr(i int) netip.Addr { return fromUint(p.first + uint32(i)) }

func (p *Pool) addrs(b block) []netip.Addr {
	out := make([]netip.Addr, b.size)
	for i := range out {
		out[i] = p.addr(b.start + i)
	}
	return out
}

func toUint(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func fromUint(u uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)})
}
