package globalnet

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/submariner-go/submariner/agents/netkit/iptables"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// Test address plan: cluster1 (local) pods 10.241.0.0/16 and services
// 10.141.0.0/16, global CIDR 242.0.0.0/16; cluster2 (remote) has the same pod and
// service CIDRs and the global CIDR 242.1.0.0/16; cluster3's is 242.2.0.0/16.

func addr(s string) netip.Addr     { return netip.MustParseAddr(s) }
func prefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = addr(s)
	}
	return out
}

func rangeOf(first string, n int) []netip.Addr {
	a := addr(first)
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = a
		a = a.Next()
	}
	return out
}

func baseInput() Input {
	return Input{
		GlobalCIDR:    prefix("242.0.0.0/16"),
		ClusterCIDRs:  []netip.Prefix{prefix("10.241.0.0/16")},
		RemoteSubnets: []netip.Prefix{prefix("242.1.0.0/16"), prefix("242.2.0.0/16")},
		ClusterEgress: rangeOf("242.0.0.1", 8),
		HealthCheck:   HealthCheck{GlobalIP: addr("242.0.255.254"), Target: addr("10.241.21.1")},
		Ingress: []Ingress{
			{GlobalIP: addr("242.0.255.252"), Target: addr("10.241.11.7"), Owner: "giip/db/pod.db-0"},
			{GlobalIP: addr("242.0.255.251"), Target: addr("10.241.12.4"), Owner: "giip/db/pod.db-1"},
		},
		Egress: []Egress{
			{Source: addr("10.241.11.7"), GlobalIPs: addrs("242.0.255.252"), Owner: "giip/db/pod.db-0"},
			{Source: addr("10.241.12.4"), GlobalIPs: addrs("242.0.255.251"), Owner: "giip/db/pod.db-1"},
			{Source: addr("10.241.11.9"), GlobalIPs: rangeOf("242.0.0.9", 2), Owner: "geip/web/web"},
		},
	}
}

// TestPlanGolden pins the payload of a first sync into empty tables for each input.
func TestPlanGolden(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input func() Input
		notes []string
	}{{
		name: "nothing allocated yet",
		input: func() Input {
			return Input{GlobalCIDR: prefix("242.0.0.0/16"), ClusterCIDRs: []netip.Prefix{prefix("10.241.0.0/16")}}
		},
	}, {
		name: "cluster egress only",
		input: func() Input {
			in := baseInput()
			in.Ingress, in.Egress, in.HealthCheck = nil, nil, HealthCheck{}
			return in
		},
	}, {
		name:  "headless pods egress IPs and health check",
		input: baseInput,
	}, {
		name: "bad and duplicate inputs are left out",
		input: func() Input {
			in := baseInput()
			in.Ingress = append(in.Ingress,
				Ingress{GlobalIP: addr("242.0.255.252"), Target: addr("10.241.13.1"), Owner: "giip/db/pod.db-2"},
				Ingress{GlobalIP: addr("242.9.0.1"), Target: addr("10.241.13.2"), Owner: "giip/db/pod.db-3"},
				Ingress{GlobalIP: addr("242.0.255.254"), Target: addr("10.241.13.3"), Owner: "giip/db/pod.db-4"},
				Ingress{GlobalIP: addr("242.0.255.250"), Target: addr("fd00::1"), Owner: "giip/db/pod.db-5"})
			in.Egress = append(in.Egress,
				Egress{Source: addr("10.241.11.7"), GlobalIPs: addrs("242.0.0.20"), Owner: "geip/db/late"},
				Egress{Source: addr("10.241.14.1"), Owner: "geip/db/empty"},
				Egress{Source: addr("10.241.14.2"), GlobalIPs: addrs("10.0.0.1"), Owner: "geip/db/outside"})
			return in
		},
		notes: []string{
			"egress of geip/db/empty for 10.241.14.1: no global IPs",
			"egress of geip/db/outside for 10.241.14.2: 10.0.0.1 is not in the global CIDR 242.0.0.0/16",
			"egress of giip/db/pod.db-0 for 10.241.11.7: the source already leaves as geip/db/late",
			"ingress 242.0.255.250 of giip/db/pod.db-5: target fd00::1 is not an IPv4 address",
			"ingress 242.0.255.252 of giip/db/pod.db-2: the address is already translated for giip/db/pod.db-0",
			"ingress 242.0.255.254 of giip/db/pod.db-4: the address is the gateway's health check IP",
			"ingress 242.9.0.1 of giip/db/pod.db-3: not in the global CIDR 242.0.0.0/16",
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			p := Plan(tc.input())
			if err := p.Rules.Err(); err != nil {
				t.Fatalf("invalid ruleset: %v", err)
			}
			golden(t, filepath.Join("plan", strings.ReplaceAll(tc.name, " ", "-")+".golden"), p.Rules.String())
			if diff := cmp.Diff(tc.notes, p.Notes); diff != "" {
				t.Errorf("notes (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPlanIsDeterministic plans the same input in shuffled orders and demands the
// same payload each time.
func TestPlanIsDeterministic(t *testing.T) {
	in := baseInput()
	for i := 0; i < 40; i++ {
		in.Ingress = append(in.Ingress, Ingress{GlobalIP: addr(fmt.Sprintf("242.0.200.%d", i+1)), Target: addr(fmt.Sprintf("10.241.50.%d", i+1)), Owner: fmt.Sprintf("giip/ns/pod.p%d", i)})
		in.Egress = append(in.Egress, Egress{Source: addr(fmt.Sprintf("10.241.60.%d", i+1)), GlobalIPs: rangeOf("242.0.1.1", 4), Owner: "geip/ns/x"})
	}
	want := Plan(in).Rules.String()
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20; i++ {
		s := in
		s.Ingress = shuffled(r, in.Ingress)
		s.Egress = shuffled(r, in.Egress)
		s.RemoteSubnets = shuffled(r, in.RemoteSubnets)
		if got := Plan(s).Rules.String(); got != want {
			t.Fatalf("shuffle %d changed the payload:\n%s", i, cmp.Diff(want, got))
		}
	}
}

func shuffled[T any](r *rand.Rand, s []T) []T {
	out := append([]T(nil), s...)
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// TestPlanOneChangeRewritesOneShard syncs 10,000 headless Pods through a Writer into
// the fake kernel, changes one Pod's address, and checks that the second sync writes
// exactly the one shard chain holding it.
func TestPlanOneChangeRewritesOneShard(t *testing.T) {
	fake := iptables.NewFake()
	w, err := iptables.NewWriter(fake, Owner)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	in := scaleInput(10000, -1)
	res, err := w.Sync(ctx, Plan(in).Rules)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Full || len(res.Written) != 2*Shards+4 {
		t.Fatalf("first sync: full %v, %d chains written, want a full sync of %d chains", res.Full, len(res.Written), 2*Shards+4)
	}
	in = scaleInput(10000, 4321)
	res, err = w.Sync(ctx, Plan(in).Rules)
	if err != nil {
		t.Fatal(err)
	}
	shard := fmt.Sprintf("nat/%s%02d", IngressShardPrefix, Shard(in.Ingress[4321].GlobalIP))
	if diff := cmp.Diff([]string{shard}, res.Written); diff != "" || res.Full || len(res.Deleted) != 0 {
		t.Errorf("one changed Pod: full %v, deleted %v, written (-want +got):\n%s", res.Full, res.Deleted, diff)
	}
	if res.Lines > 2*10000/Shards {
		t.Errorf("one changed Pod wrote %d payload lines; a shard holds about %d rules", res.Lines, 10000/Shards)
	}
}

// scaleInput has n headless Pods, each with an ingress and an egress rule; Pod
// `changed` has moved to another address.
func scaleInput(n, changed int) Input {
	in := baseInput()
	in.Ingress, in.Egress = nil, nil
	g := addr("242.0.255.254")
	for i := 0; i < n; i++ {
		g = g.Prev()
		target := addr(fmt.Sprintf("10.241.%d.%d", i/250, i%250+1))
		if i == changed {
			target = addr("10.241.250.1")
		}
		in.Ingress = append(in.Ingress, Ingress{GlobalIP: g, Target: target})
		in.Egress = append(in.Egress, Egress{Source: addr(fmt.Sprintf("10.241.%d.%d", i/250, i%250+1)), GlobalIPs: []netip.Addr{g}})
	}
	return in
}

func TestResolveEgress(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sel := func(s string) labels.Selector {
		l, err := labels.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	pods := []PodAddr{
		{Name: "web-1", IP: addr("10.241.1.1"), Labels: labels.Set{"app": "web"}},
		{Name: "db-0", IP: addr("10.241.1.2"), Labels: labels.Set{"app": "db"}},
		{Name: "db-1", IP: addr("10.241.1.3"), Labels: labels.Set{"app": "db", "tier": "gold"}},
		{Name: "other", IP: addr("10.241.1.4"), Labels: labels.Set{"app": "other"}},
	}
	headless := []HeadlessAddr{
		{Name: "pod.db-0", IP: addr("10.241.1.2"), GlobalIP: addr("242.0.255.250"), Pod: true},
		{Name: "pod.db-1", IP: addr("10.241.1.3"), GlobalIP: addr("242.0.255.249"), Pod: true},
		{Name: "ep.192-168-1-1", IP: addr("192.168.1.1"), GlobalIP: addr("242.0.255.248")},
		{Name: "ep.10-241-1-3", IP: addr("10.241.1.3"), GlobalIP: addr("242.0.255.247")},
	}
	render := func(es []Egress) []string {
		var out []string
		for _, e := range es {
			out = append(out, fmt.Sprintf("%s -> %v (%s)", e.Source, e.GlobalIPs, e.Owner))
		}
		return out
	}
	for _, tc := range []struct {
		name string
		ns   NamespaceEgress
		want []string
	}{{
		name: "nothing chosen: the cluster's egress applies",
		ns:   NamespaceEgress{Namespace: "a", Pods: pods},
	}, {
		name: "namespace-wide",
		ns: NamespaceEgress{Namespace: "a", Pods: pods, Selectors: []EgressSelector{
			{Name: "ns", Created: t0, GlobalIPs: rangeOf("242.0.0.9", 2)},
		}},
		want: []string{
			"10.241.1.1 -> [242.0.0.9 242.0.0.10] (geip/a/ns)",
			"10.241.1.2 -> [242.0.0.9 242.0.0.10] (geip/a/ns)",
			"10.241.1.3 -> [242.0.0.9 242.0.0.10] (geip/a/ns)",
			"10.241.1.4 -> [242.0.0.9 242.0.0.10] (geip/a/ns)",
		},
	}, {
		name: "pod selector > headless pod > headless endpoint > namespace",
		ns: NamespaceEgress{Namespace: "a", Pods: pods, Headless: headless, Selectors: []EgressSelector{
			{Name: "ns", Created: t0, GlobalIPs: rangeOf("242.0.0.9", 2)},
			{Name: "gold", Created: t0, Selector: sel("tier=gold"), GlobalIPs: addrs("242.0.0.11")},
		}},
		want: []string{
			"10.241.1.1 -> [242.0.0.9 242.0.0.10] (geip/a/ns)",
			"10.241.1.2 -> [242.0.255.250] (giip/a/pod.db-0)",
			"10.241.1.3 -> [242.0.0.11] (geip/a/gold)",
			"10.241.1.4 -> [242.0.0.9 242.0.0.10] (geip/a/ns)",
			"192.168.1.1 -> [242.0.255.248] (giip/a/ep.192-168-1-1)",
		},
	}, {
		name: "oldest selector wins, selectors without addresses do not count",
		ns: NamespaceEgress{Namespace: "a", Pods: pods, Selectors: []EgressSelector{
			{Name: "b-new", Created: t0.Add(time.Second), Selector: sel("app=db"), GlobalIPs: addrs("242.0.0.12")},
			{Name: "a-empty", Created: t0.Add(-time.Second), Selector: sel("app=db")},
			{Name: "c-old", Created: t0, Selector: sel("app=db"), GlobalIPs: addrs("242.0.0.13")},
			{Name: "z-ns-empty", Created: t0.Add(-time.Hour)},
			{Name: "z-ns", Created: t0, GlobalIPs: addrs("242.0.0.14")},
		}},
		want: []string{
			"10.241.1.1 -> [242.0.0.14] (geip/a/z-ns)",
			"10.241.1.2 -> [242.0.0.13] (geip/a/c-old)",
			"10.241.1.3 -> [242.0.0.13] (geip/a/c-old)",
			"10.241.1.4 -> [242.0.0.14] (geip/a/z-ns)",
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := render(ResolveEgress(tc.ns))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("egress (-want +got):\n%s", diff)
			}
			r := rand.New(rand.NewPCG(3, 4))
			for i := 0; i < 10; i++ {
				ns := tc.ns
				ns.Pods, ns.Selectors, ns.Headless = shuffled(r, ns.Pods), shuffled(r, ns.Selectors), shuffled(r, ns.Headless)
				if again := render(ResolveEgress(ns)); !cmp.Equal(got, again) {
					t.Fatalf("shuffled input changed the result:\n%s", cmp.Diff(got, again))
				}
			}
		})
	}
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got):\n%s", path, diff)
	}
}

// TestRulesIncrementalMatchesPlan applies random sequences of changes to one Rules,
// as the engine does between syncs, and demands after each step the payload that
// Plan computes from scratch for the same state.
func TestRulesIncrementalMatchesPlan(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	base := baseInput()
	base.Ingress, base.Egress = nil, nil
	rl := NewRules()
	ingress := map[string]Ingress{} // owner -> rule
	egress := map[string]Egress{}
	for step := 0; step < 400; step++ {
		n := r.IntN(30)
		owner := fmt.Sprintf("o%d", n)
		switch r.IntN(4) {
		case 0:
			in := Ingress{GlobalIP: addr(fmt.Sprintf("242.0.1.%d", 1+r.IntN(20))), Target: addr(fmt.Sprintf("10.241.1.%d", 1+r.IntN(250))), Owner: owner}
			if old, ok := ingress[owner]; ok {
				rl.DeleteIngress(old.GlobalIP, owner)
			}
			ingress[owner] = in
			rl.SetIngress(base.GlobalCIDR, in)
		case 1:
			if old, ok := ingress[owner]; ok {
				rl.DeleteIngress(old.GlobalIP, owner)
				delete(ingress, owner)
			}
		case 2:
			eg := Egress{Source: addr(fmt.Sprintf("10.241.2.%d", 1+r.IntN(20))), GlobalIPs: rangeOf(fmt.Sprintf("242.0.0.%d", 1+r.IntN(9)), 1+r.IntN(3)), Owner: owner}
			if old, ok := egress[owner]; ok {
				rl.DeleteEgress(old.Source, owner)
			}
			egress[owner] = eg
			rl.SetEgress(base.GlobalCIDR, eg)
		case 3:
			if old, ok := egress[owner]; ok {
				rl.DeleteEgress(old.Source, owner)
				delete(egress, owner)
			}
		}
		in := base
		for _, i := range ingress {
			in.Ingress = append(in.Ingress, i)
		}
		for _, e := range egress {
			in.Egress = append(in.Egress, e)
		}
		want := Plan(in)
		got := rl.Build(base)
		if diff := cmp.Diff(want.Rules.String(), got.Rules.String()); diff != "" {
			t.Fatalf("step %d: incremental rules differ from a plan from scratch (-plan +incremental):\n%s", step, diff)
		}
		if diff := cmp.Diff(want.Notes, got.Notes); diff != "" {
			t.Fatalf("step %d: notes (-plan +incremental):\n%s", step, diff)
		}
	}
}
