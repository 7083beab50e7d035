package routeagent

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/submariner-go/submariner/agents/netkit/iptables"
	"github.com/submariner-go/submariner/agents/netkit/vxlan"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// fakes is a node's kernel made of the netkit fakes and FakeSystem.
type fakes struct {
	vx  *vxlan.Fake
	ipt *iptables.Fake
	sys *FakeSystem
}

func newFakes(rpFilter string, links ...Link) *fakes {
	return &fakes{vx: vxlan.NewFake(), ipt: iptables.NewFake(), sys: NewFakeSystem(rpFilter, links...)}
}

func (f *fakes) kernel() Kernel { return Kernel{Overlay: f.vx, IPTables: f.ipt, System: f.sys} }

// String renders the whole fake kernel: overlay, iptables-save, sysctls.
func (f *fakes) String() string {
	return "--- overlay\n" + f.vx.String() + "--- iptables-save\n" + f.ipt.String() + "--- sysctls\n" + f.sys.String()
}

func newTestAgent(t *testing.T, f *fakes) (*Agent, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	a, err := NewAgent(testConfig, f.kernel(), reg)
	if err != nil {
		t.Fatal(err)
	}
	return a, reg
}

func mustSync(t *testing.T, a *Agent, in Input) State {
	t.Helper()
	st, err := a.Sync(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestAgentConverges drives node1's agent through the states of a failover and
// checks, after each, the whole fake kernel against a golden file, and what each
// sync did: one overlay Apply, and an iptables restore only when the rules changed.
func TestAgentConverges(t *testing.T) {
	f := newFakes("1", hostLinks("11")...)
	a, _ := newTestAgent(t, f)
	in := Input{NodeName: "node1", Nodes: testNodes(), Links: hostLinks("11")}
	for _, step := range []struct {
		name      string
		endpoints []submv1.Endpoint
		events    []string // the fake overlay's events since the previous step
		restores  int      // iptables-restore runs in this step
	}{
		{name: "no-endpoints", events: nil, restores: 1},
		{name: "gateway-known", endpoints: []submv1.Endpoint{localGW1}, events: []string{"create vx-submariner"}, restores: 0},
		{name: "remote-added", endpoints: []submv1.Endpoint{localGW1, cluster2}, restores: 1},
		{name: "failover", endpoints: []submv1.Endpoint{localGW1, localGW2, cluster2},
			events: []string{"replace vx-submariner: remote 192.0.2.21, want 192.0.2.22"}, restores: 0},
		{name: "second-remote", endpoints: []submv1.Endpoint{localGW2, cluster2, cluster3}, restores: 1},
		{name: "remote-removed", endpoints: []submv1.Endpoint{localGW2, cluster3}, restores: 1},
		{name: "gateway-gone", endpoints: []submv1.Endpoint{cluster3}, events: []string{"delete vx-submariner"}, restores: 0},
	} {
		t.Run(step.name, func(t *testing.T) {
			events, restores := len(f.vx.Events()), len(f.ipt.Restores())
			in.Endpoints = step.endpoints
			mustSync(t, a, in)
			golden(t, filepath.Join("agent", step.name+".golden"), f.String())
			if diff := cmp.Diff(step.events, f.vx.Events()[events:], emptyIsNil); diff != "" {
				t.Errorf("overlay events (-want +got):\n%s", diff)
			}
			if got := len(f.ipt.Restores()) - restores; got != step.restores {
				t.Errorf("%d iptables restores, want %d", got, step.restores)
			}

			// The same inputs again change nothing at all.
			before := f.String()
			events, restores = len(f.vx.Events()), len(f.ipt.Restores())
			mustSync(t, a, in)
			if diff := cmp.Diff(before, f.String()); diff != "" {
				t.Errorf("second sync of the same inputs (-first +second):\n%s", diff)
			}
			if got := f.vx.Events()[events:]; len(got) != 0 {
				t.Errorf("second sync: overlay events %q, want none", got)
			}
			if got := len(f.ipt.Restores()) - restores; got != 0 {
				t.Errorf("second sync: %d iptables restores, want none", got)
			}
		})
	}
}

var emptyIsNil = cmp.Transformer("emptyIsNil", func(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
})

// TestAgentRestart: a new agent on a kernel that already holds its state (a
// restarted pod) reads the tables once and changes nothing.
func TestAgentRestart(t *testing.T) {
	f := newFakes("0", hostLinks("21")...)
	in := Input{NodeName: "gw1", Nodes: testNodes(), Links: hostLinks("21"), Endpoints: []submv1.Endpoint{localGW1, cluster2}}
	first, _ := newTestAgent(t, f)
	mustSync(t, first, in)
	before := f.String()
	restores, saves, events := len(f.ipt.Restores()), f.ipt.Saves(), len(f.vx.Events())

	second, reg := newTestAgent(t, f)
	mustSync(t, second, in)
	if diff := cmp.Diff(before, f.String()); diff != "" {
		t.Errorf("the restarted agent changed the kernel (-before +after):\n%s", diff)
	}
	if got := len(f.ipt.Restores()) - restores; got != 0 {
		t.Errorf("the restarted agent ran %d iptables restores, want none:\n%s", got, f.ipt.LastRestore())
	}
	if got := f.ipt.Saves() - saves; got != 1 {
		t.Errorf("the restarted agent read the tables %d times, want once (its first sync is full)", got)
	}
	if got := f.vx.Events()[events:]; len(got) != 0 {
		t.Errorf("the restarted agent's overlay events %q, want none", got)
	}
	for name, want := range map[string]float64{
		"submariner_routeagent_syncs_total":             1,
		"submariner_routeagent_sync_errors_total":       0,
		"submariner_routeagent_iptables_restores_total": 0,
		"submariner_routeagent_gateway":                 1,
		"submariner_routeagent_remote_subnets":          2,
	} {
		if got := gathered(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

// gathered returns the value of the metric called name in reg.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestAgentRPFilter: strict reverse-path filtering is loosened on the interfaces
// cross-cluster traffic enters by; filtering that is off stays off, and a loose
// "all" needs no change.
func TestAgentRPFilter(t *testing.T) {
	in := Input{NodeName: "node1", Nodes: testNodes(), Links: hostLinks("11"), Endpoints: []submv1.Endpoint{localGW1, cluster2}}
	for _, tc := range []struct {
		name    string
		initial string
		all     string
		want    []string
	}{
		{name: "strict", initial: "1", want: []string{
			"net/ipv4/ip_forward=1", "net/ipv4/conf/cni0/rp_filter=2", "net/ipv4/conf/eth0/rp_filter=2", "net/ipv4/conf/vx-submariner/rp_filter=2",
		}},
		{name: "off", initial: "0", want: []string{"net/ipv4/ip_forward=1"}},
		{name: "strict interfaces, loose all", initial: "1", all: "2", want: []string{"net/ipv4/conf/all/rp_filter=2", "net/ipv4/ip_forward=1"}},
		{name: "strict all, interfaces off", initial: "0", all: "1", want: []string{
			"net/ipv4/conf/all/rp_filter=1", "net/ipv4/ip_forward=1", "net/ipv4/conf/cni0/rp_filter=2", "net/ipv4/conf/eth0/rp_filter=2", "net/ipv4/conf/vx-submariner/rp_filter=2",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakes(tc.initial, hostLinks("11")...)
			if tc.all != "" {
				if err := f.sys.SetSysctl(context.Background(), sysctlRPFilterAll, tc.all); err != nil {
					t.Fatal(err)
				}
			}
			a, _ := newTestAgent(t, f)
			mustSync(t, a, in)
			mustSync(t, a, in)
			if diff := cmp.Diff(tc.want, f.sys.Writes()); diff != "" {
				t.Errorf("sysctl writes over two syncs (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAgentCleanup: Cleanup leaves no device, route, chain or jump of the agent,
// and leaves others' chains alone.
func TestAgentCleanup(t *testing.T) {
	f := newFakes("0", hostLinks("11")...)
	// A CNI's chain and jump, there before the agent.
	cni := "*nat\n:CNI-MASQ - [0:0]\n-A CNI-MASQ -s 10.1.11.0/24 ! -d 10.1.0.0/16 -j MASQUERADE\n-A POSTROUTING -j CNI-MASQ\nCOMMIT\n"
	if err := f.ipt.Restore(context.Background(), []byte(cni)); err != nil {
		t.Fatal(err)
	}
	before := f.String()
	a, _ := newTestAgent(t, f)
	mustSync(t, a, Input{NodeName: "node1", Nodes: testNodes(), Links: hostLinks("11"), Endpoints: []submv1.Endpoint{localGW1, cluster2}})
	if !strings.Contains(f.ipt.String(), "-A POSTROUTING -j SUBMARINER-POSTROUTING\n-A POSTROUTING -j CNI-MASQ") {
		t.Errorf("the agent's nat jump is not above the CNI's:\n%s", f.ipt)
	}
	// A restarted agent in cleanup mode has synced nothing itself.
	cleaner, _ := newTestAgent(t, f)
	if err := cleaner.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Sysctls stay (see Cleanup); everything else is as before.
	after := f.String()
	sysctls := strings.Index(after, "--- sysctls")
	if diff := cmp.Diff(withoutEmptyTables(before[:strings.Index(before, "--- sysctls")]), withoutEmptyTables(after[:sysctls])); diff != "" {
		t.Errorf("Cleanup left something behind (-before +after):\n%s", diff)
	}
	if err := cleaner.Cleanup(context.Background()); err != nil {
		t.Errorf("a second Cleanup: %v", err)
	}
}

// emptyTable is a table of iptables-save output with nothing but built-in chains:
// tables stay when the last rule goes, and are shared by every program.
var emptyTable = regexp.MustCompile(`\*[a-z]+\n(:[A-Z]+ ACCEPT \[\d+:\d+\]\n)+COMMIT\n`)

func withoutEmptyTables(s string) string { return emptyTable.ReplaceAllString(s, "") }

// TestAgentSyncError: a plan that fails changes nothing and counts as an error.
func TestAgentSyncError(t *testing.T) {
	f := newFakes("0", hostLinks("12")...)
	a, reg := newTestAgent(t, f)
	_, err := a.Sync(context.Background(), Input{NodeName: "node1", Nodes: testNodes(), Links: hostLinks("12"), Endpoints: []submv1.Endpoint{localGW1}})
	if err == nil || !strings.Contains(err.Error(), "planning node node1: node node1's InternalIP 192.0.2.11 is on none of this host's interfaces") {
		t.Errorf("Sync() = %v, want the planning error", err)
	}
	if got := len(f.ipt.Restores()) + len(f.vx.Events()) + len(f.sys.Writes()); got != 0 {
		t.Errorf("a failed plan changed the kernel:\n%s", f)
	}
	if got := gathered(t, reg, "submariner_routeagent_sync_errors_total"); got != 1 {
		t.Errorf("sync errors = %v, want 1", got)
	}
	if got := gathered(t, reg, "submariner_routeagent_syncs_total"); got != 1 {
		t.Errorf("syncs = %v, want 1", got)
	}
}
