package ipam

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// op is one call on a pool and what it must return.
type op struct {
	do      string // allocate, reserve, release
	owner   string
	n       int    // allocate
	ips     string // reserve: space-separated addresses
	want    string // the addresses returned (Range form), or the error's text
	wantErr error  // errors.Is target, when the call must fail
}

func TestPool(t *testing.T) {
	for _, tc := range []struct {
		name   string
		prefix string
		ops    []op
		want   string // the pool's text after the ops
	}{{
		name:   "singles from the top, blocks from the bottom",
		prefix: "242.0.0.0/28",
		ops: []op{
			{do: "allocate", owner: "giip/ns/a", n: 1, want: "242.0.0.14"},
			{do: "allocate", owner: "cgeip/cluster-egress", n: 8, want: "242.0.0.1-242.0.0.8"},
			{do: "allocate", owner: "giip/ns/b", n: 1, want: "242.0.0.13"},
			{do: "allocate", owner: "geip/ns/x", n: 2, want: "242.0.0.9-242.0.0.10"},
		},
		want: `
242.0.0.0/28: 14 usable, 12 allocated
242.0.0.1-242.0.0.8 cgeip/cluster-egress
242.0.0.9-242.0.0.10 geip/ns/x
242.0.0.13 giip/ns/b
242.0.0.14 giip/ns/a
`,
	}, {
		name:   "asking again returns the same addresses",
		prefix: "242.0.0.0/28",
		ops: []op{
			{do: "allocate", owner: "giip/ns/a", n: 1, want: "242.0.0.14"},
			{do: "allocate", owner: "giip/ns/a", n: 1, want: "242.0.0.14"},
			{do: "allocate", owner: "geip/ns/x", n: 3, want: "242.0.0.1-242.0.0.3"},
			{do: "allocate", owner: "geip/ns/x", n: 3, want: "242.0.0.1-242.0.0.3"},
		},
		want: `
242.0.0.0/28: 14 usable, 4 allocated
242.0.0.1-242.0.0.3 geip/ns/x
242.0.0.14 giip/ns/a
`,
	}, {
		name:   "a new size gives up the old block first",
		prefix: "242.0.0.0/28",
		ops: []op{
			{do: "allocate", owner: "geip/ns/x", n: 2, want: "242.0.0.1-242.0.0.2"},
			{do: "allocate", owner: "geip/ns/y", n: 2, want: "242.0.0.3-242.0.0.4"},
			{do: "allocate", owner: "geip/ns/x", n: 4, want: "242.0.0.5-242.0.0.8"},
			{do: "allocate", owner: "geip/ns/z", n: 2, want: "242.0.0.1-242.0.0.2"},
		},
		want: `
242.0.0.0/28: 14 usable, 8 allocated
242.0.0.1-242.0.0.2 geip/ns/z
242.0.0.3-242.0.0.4 geip/ns/y
242.0.0.5-242.0.0.8 geip/ns/x
`,
	}, {
		name:   "release and reuse",
		prefix: "242.0.0.0/29",
		ops: []op{
			{do: "allocate", owner: "giip/ns/a", n: 1, want: "242.0.0.6"},
			{do: "allocate", owner: "giip/ns/b", n: 1, want: "242.0.0.5"},
			{do: "release", owner: "giip/ns/a", want: "242.0.0.6"},
			{do: "release", owner: "giip/ns/a", want: ""},
			{do: "allocate", owner: "giip/ns/c", n: 1, want: "242.0.0.6"},
		},
		want: `
242.0.0.0/29: 6 usable, 2 allocated
242.0.0.5 giip/ns/b
242.0.0.6 giip/ns/c
`,
	}, {
		name:   "exhaustion: nothing is taken, and room comes back with a release",
		prefix: "242.0.0.0/29",
		ops: []op{
			{do: "allocate", owner: "cgeip/c", n: 4, want: "242.0.0.1-242.0.0.4"},
			{do: "allocate", owner: "giip/ns/a", n: 1, want: "242.0.0.6"},
			{do: "allocate", owner: "geip/ns/x", n: 2, wantErr: ErrExhausted,
				want: "allocating 2 contiguous global IPs for geip/ns/x from 242.0.0.0/29 (5 of 6 in use): global IP pool exhausted"},
			{do: "allocate", owner: "giip/ns/b", n: 1, want: "242.0.0.5"},
			{do: "allocate", owner: "giip/ns/c", n: 1, wantErr: ErrExhausted,
				want: "allocating 1 contiguous global IPs for giip/ns/c from 242.0.0.0/29 (6 of 6 in use): global IP pool exhausted"},
			{do: "release", owner: "giip/ns/a", want: "242.0.0.6"},
			{do: "allocate", owner: "giip/ns/c", n: 1, want: "242.0.0.6"},
		},
		want: `
242.0.0.0/29: 6 usable, 6 allocated
242.0.0.1-242.0.0.4 cgeip/c
242.0.0.5 giip/ns/b
242.0.0.6 giip/ns/c
`,
	}, {
		name:   "fragmented: free addresses but no contiguous block",
		prefix: "242.0.0.0/29",
		ops: []op{
			{do: "reserve", owner: "giip/ns/a", ips: "242.0.0.2"},
			{do: "reserve", owner: "giip/ns/b", ips: "242.0.0.4"},
			{do: "reserve", owner: "giip/ns/c", ips: "242.0.0.6"},
			{do: "allocate", owner: "geip/ns/x", n: 2, wantErr: ErrExhausted,
				want: "allocating 2 contiguous global IPs for geip/ns/x from 242.0.0.0/29 (3 of 6 in use): global IP pool exhausted"},
			{do: "allocate", owner: "geip/ns/y", n: 1, want: "242.0.0.5"},
		},
		want: `
242.0.0.0/29: 6 usable, 4 allocated
242.0.0.2 giip/ns/a
242.0.0.4 giip/ns/b
242.0.0.5 geip/ns/y
242.0.0.6 giip/ns/c
`,
	}, {
		name:   "restart: reserve what the status says, then allocate around it",
		prefix: "242.0.0.0/28",
		ops: []op{
			{do: "reserve", owner: "cgeip/cluster-egress", ips: "242.0.0.1 242.0.0.2 242.0.0.3 242.0.0.4 242.0.0.5 242.0.0.6 242.0.0.7 242.0.0.8"},
			{do: "reserve", owner: "giip/ns/a", ips: "242.0.0.14"},
			{do: "reserve", owner: "giip/ns/a", ips: "242.0.0.14"},
			{do: "allocate", owner: "giip/ns/a", n: 1, want: "242.0.0.14"},
			{do: "allocate", owner: "giip/ns/b", n: 1, want: "242.0.0.13"},
			{do: "allocate", owner: "cgeip/cluster-egress", n: 8, want: "242.0.0.1-242.0.0.8"},
		},
		want: `
242.0.0.0/28: 14 usable, 10 allocated
242.0.0.1-242.0.0.8 cgeip/cluster-egress
242.0.0.13 giip/ns/b
242.0.0.14 giip/ns/a
`,
	}, {
		name:   "reserve refuses what it cannot record",
		prefix: "242.0.0.0/29",
		ops: []op{
			{do: "reserve", owner: "giip/ns/a", ips: "242.0.0.5"},
			{do: "reserve", owner: "giip/ns/b", ips: "242.0.0.5", wantErr: ErrConflict,
				want: "reserving 242.0.0.5 for giip/ns/b: global IP held by another owner (giip/ns/a)"},
			{do: "reserve", owner: "geip/ns/x", ips: "242.0.0.4 242.0.0.5", wantErr: ErrConflict,
				want: "reserving 242.0.0.5 for geip/ns/x: global IP held by another owner (giip/ns/a)"},
			{do: "reserve", owner: "giip/ns/a", ips: "242.0.0.6",
				want: "reserving [242.0.0.6] for giip/ns/a: it already holds [242.0.0.5]"},
			{do: "reserve", owner: "giip/ns/c", ips: "242.0.0.0",
				want: "reserving 242.0.0.0 for giip/ns/c: not a usable address of 242.0.0.0/29"},
			{do: "reserve", owner: "giip/ns/c", ips: "242.0.0.7",
				want: "reserving 242.0.0.7 for giip/ns/c: not a usable address of 242.0.0.0/29"},
			{do: "reserve", owner: "giip/ns/c", ips: "242.1.0.1",
				want: "reserving 242.1.0.1 for giip/ns/c: not a usable address of 242.0.0.0/29"},
			{do: "reserve", owner: "geip/ns/y", ips: "242.0.0.1 242.0.0.3",
				want: "reserving [242.0.0.1 242.0.0.3] for geip/ns/y: the addresses are not contiguous and in order"},
			{do: "reserve", owner: "geip/ns/y", ips: "242.0.0.2 242.0.0.1",
				want: "reserving [242.0.0.2 242.0.0.1] for geip/ns/y: the addresses are not contiguous and in order"},
		},
		want: `
242.0.0.0/29: 6 usable, 1 allocated
242.0.0.5 giip/ns/a
`,
	}, {
		name:   "bad requests",
		prefix: "242.0.0.0/29",
		ops: []op{
			{do: "allocate", owner: "geip/ns/x", n: 0, want: "allocating 0 global IPs for geip/ns/x: ask for 1 to 64"},
			{do: "allocate", owner: "geip/ns/x", n: 65, want: "allocating 65 global IPs for geip/ns/x: ask for 1 to 64"},
			{do: "allocate", owner: "", n: 1, want: "allocating global IPs: the owner is empty"},
		},
		want: `
242.0.0.0/29: 6 usable, 0 allocated
`,
	}, {
		name:   "a /16 fills from both ends",
		prefix: "242.0.0.0/16",
		ops: []op{
			{do: "allocate", owner: "cgeip/c", n: 8, want: "242.0.0.1-242.0.0.8"},
			{do: "allocate", owner: "giip/ns/a", n: 1, want: "242.0.255.254"},
			{do: "allocate", owner: "geip/ns/x", n: 20, want: "242.0.0.9-242.0.0.28"},
			{do: "allocate", owner: "giip/ns/b", n: 1, want: "242.0.255.253"},
		},
		want: `
242.0.0.0/16: 65534 usable, 30 allocated
242.0.0.1-242.0.0.8 cgeip/c
242.0.0.9-242.0.0.28 geip/ns/x
242.0.255.253 giip/ns/b
242.0.255.254 giip/ns/a
`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(netip.MustParsePrefix(tc.prefix))
			if err != nil {
				t.Fatal(err)
			}
			for i, o := range tc.ops {
				got, err := apply(p, o)
				if err != nil {
					got = err.Error()
					if o.wantErr != nil && !errors.Is(err, o.wantErr) {
						t.Errorf("op %d (%s %s): error %v does not wrap %v", i+1, o.do, o.owner, err, o.wantErr)
					}
				} else if o.wantErr != nil {
					t.Errorf("op %d (%s %s): succeeded, want an error wrapping %v", i+1, o.do, o.owner, o.wantErr)
				}
				if got != o.want {
					t.Errorf("op %d (%s %s %d %s): got %q, want %q", i+1, o.do, o.owner, o.n, o.ips, got, o.want)
				}
			}
			if diff := cmp.Diff(strings.TrimPrefix(tc.want, "\n"), p.String()); diff != "" {
				t.Errorf("pool after the ops (-want +got):\n%s", diff)
			}
			checkInvariants(t, p)
		})
	}
}

func apply(p *Pool, o op) (string, error) {
	switch o.do {
	case "allocate":
		ips, err := p.Allocate(o.owner, o.n)
		return Range(ips), err
	case "reserve":
		var ips []netip.Addr
		for _, s := range strings.Fields(o.ips) {
			ips = append(ips, netip.MustParseAddr(s))
		}
		return "", p.Reserve(o.owner, ips)
	case "release":
		return Range(p.Release(o.owner)), nil
	}
	panic("unknown op " + o.do)
}

// checkInvariants verifies the pool's bookkeeping from scratch: every held address
// has exactly one owner, the owners' blocks do not overlap and the counts add up.
func checkInvariants(t *testing.T, p *Pool) {
	t.Helper()
	seen := map[netip.Addr]string{}
	total := 0
	for _, o := range p.Owners() {
		ips := p.Owned(o)
		total += len(ips)
		for _, a := range ips {
			if prev, ok := seen[a]; ok {
				t.Fatalf("%s held by both %s and %s", a, prev, o)
			}
			seen[a] = o
			if h := p.Holder(a); h != o {
				t.Fatalf("Holder(%s) = %q, want %q", a, h, o)
			}
			if !p.Contains(a) {
				t.Fatalf("%s held by %s is not a usable address", a, o)
			}
		}
	}
	if total != p.Allocated() || p.Free() != p.Size()-total {
		t.Fatalf("counts: %d held by owners, Allocated %d, Free %d, Size %d", total, p.Allocated(), p.Free(), p.Size())
	}
}

func TestNewRefusesBadCIDRs(t *testing.T) {
	for _, tc := range []struct{ prefix, want string }{
		{"242.0.0.0/31", "global CIDR 242.0.0.0/31 is too small: it needs at least two usable addresses (a /30 or larger, normally a /16)"},
		{"242.0.0.1/16", "global CIDR 242.0.0.1/16 has host bits set: did you mean 242.0.0.0/16?"},
		{"fd00::/64", "global CIDR fd00::/64 is not an IPv4 CIDR: Globalnet allocates IPv4 addresses, give one such as 242.0.0.0/16"},
	} {
		_, err := New(netip.MustParsePrefix(tc.prefix))
		if err == nil || err.Error() != tc.want {
			t.Errorf("New(%s): got %v, want %q", tc.prefix, err, tc.want)
		}
	}
}

// TestPoolNeverDoubleAllocates runs long random sequences of allocations, releases
// and re-asks on a small pool and checks the invariants after every call, and that
// replaying the sequence gives the same addresses (determinism).
func TestPoolNeverDoubleAllocates(t *testing.T) {
	run := func(seed uint64) string {
		r := rand.New(rand.NewPCG(seed, 0))
		p, err := New(netip.MustParsePrefix("242.0.0.0/26"))
		if err != nil {
			t.Fatal(err)
		}
		var log strings.Builder
		for i := 0; i < 5000; i++ {
			owner := "o" + string(rune('a'+r.IntN(26)))
			switch r.IntN(3) {
			case 0, 1:
				ips, err := p.Allocate(owner, 1+r.IntN(6))
				if err != nil && !errors.Is(err, ErrExhausted) {
					t.Fatal(err)
				}
				log.WriteString(Range(ips) + ";")
			case 2:
				log.WriteString(Range(p.Release(owner)) + ";")
			}
			checkInvariants(t, p)
		}
		return log.String()
	}
	for seed := uint64(1); seed <= 3; seed++ {
		if a, b := run(seed), run(seed); a != b {
			t.Fatalf("seed %d: two runs of the same sequence differ", seed)
		}
	}
}
