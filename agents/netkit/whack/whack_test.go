package whack

// Test address plan: gateways on 192.0.2.0/24 (RFC 5737), cluster1 10.1.0.0/16 and
// 100.1.0.0/16 behind 192.0.2.1, cluster2 10.2.0.0/16 and 100.2.0.0/16 behind
// 192.0.2.2; a NATed public address 198.51.100.2.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

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

func sample(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	pfx = netip.MustParsePrefix
	ip  = netip.MustParseAddr
)

func cluster1() Endpoint {
	return Endpoint{
		CableName: "submariner-cable-cluster1-192-0-2-1",
		PrivateIP: ip("192.0.2.1"), IP: ip("192.0.2.1"),
		Subnets: []netip.Prefix{pfx("10.1.0.0/16"), pfx("192.0.2.1/32"), pfx("100.1.0.0/16")},
		Port:    DefaultPort,
	}
}

func cluster2() Endpoint {
	return Endpoint{
		CableName: "submariner-cable-cluster2-192-0-2-2",
		PrivateIP: ip("192.0.2.2"), IP: ip("198.51.100.2"),
		Subnets: []netip.Prefix{pfx("10.2.0.0/16"), pfx("100.2.0.0/16")},
		Port:    DefaultPort,
	}
}

// local makes e the local side: IKE is sent from its private address.
func local(e Endpoint) Endpoint {
	e.IP = e.PrivateIP
	return e
}

// TestArgs pins the arguments of every invocation kind.
func TestArgs(t *testing.T) {
	conn := Connection{
		Name:        "submariner-cable-cluster2-192-0-2-2-0-0",
		Left:        End{ID: "192.0.2.1", Host: ip("192.0.2.1"), Client: pfx("10.1.0.0/16"), IKEPort: 4500},
		Right:       End{ID: "192.0.2.2", Host: ip("198.51.100.2"), Client: pfx("10.2.0.0/16"), IKEPort: 4500},
		ForceEncaps: true, DPDAction: DPDActionHold, DPDDelay: DefaultDPDDelay,
	}
	server := conn
	server.ForceEncaps = false
	server.Left.ID = "@192.0.2.1-0-0"
	server.Right = End{ID: "@192.0.2.2-0-0", AnyHost: true, Client: pfx("10.2.0.0/16")}
	noDPD := conn
	noDPD.DPDAction, noDPD.ForceEncaps = "", false
	var b strings.Builder
	for _, inv := range []struct {
		name string
		args []string
	}{
		{"listen", ListenArgs()},
		{"add (bidirectional, NAT)", conn.Args()},
		{"add (server)", server.Args()},
		{"add (no DPD, no NAT)", noDPD.Args()},
		{"route", RouteArgs(conn.Name)},
		{"initiate", InitiateArgs(conn.Name)},
		{"delete", DeleteArgs(conn.Name)},
		{"trafficstatus", TrafficStatusArgs()},
		{"status", StatusArgs()},
		{"showstates", ShowStatesArgs()},
		{"shutdown", ShutdownArgs()},
		{"debug", DebugArgs("base")},
	} {
		fmt.Fprintf(&b, "%s: whack %s\n", inv.name, strings.Join(inv.args, " "))
	}
	golden(t, "args.golden", b.String())
}

// TestTunnelConnections pins the connections of a tunnel in every mode, from both
// sides, and checks that the two sides agree on names' subnets and identities.
func TestTunnelConnections(t *testing.T) {
	var b strings.Builder
	for _, tc := range []struct {
		name          string
		local, remote Endpoint
		mode          Mode
		nat           bool
	}{
		{"cluster1 bidirectional, NAT", cluster1(), cluster2(), ModeBidirectional, true},
		{"cluster1 server", cluster1(), cluster2(), ModeServer, false},
		{"cluster2 client", local(cluster2()), cluster1(), ModeClient, false},
	} {
		conns, err := Tunnel{Local: tc.local, Remote: tc.remote, Mode: tc.mode, ForceEncaps: tc.nat}.Connections()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		fmt.Fprintf(&b, "# %s\n", tc.name)
		for _, c := range conns {
			fmt.Fprintf(&b, "whack %s\n", strings.Join(c.Args(), " "))
		}
	}
	golden(t, "tunnel-connections.golden", b.String())

	// The server's view of each subnet pair must mirror the client's.
	server, _ := Tunnel{Local: cluster1(), Remote: cluster2(), Mode: ModeServer}.Connections()
	client, _ := Tunnel{Local: local(cluster2()), Remote: cluster1(), Mode: ModeClient}.Connections()
	pairs := map[[2]netip.Prefix][2]string{}
	for _, c := range server {
		pairs[[2]netip.Prefix{c.Left.Client, c.Right.Client}] = [2]string{c.Left.ID, c.Right.ID}
	}
	for _, c := range client {
		s, ok := pairs[[2]netip.Prefix{c.Right.Client, c.Left.Client}]
		if !ok || s[0] != c.Right.ID || s[1] != c.Left.ID {
			t.Errorf("client connection %s (ids %s/%s) has no mirror on the server side (%v)", c.Name, c.Left.ID, c.Right.ID, s)
		}
	}
	if len(server) != 4 || len(client) != 4 {
		t.Errorf("got %d server and %d client connections, want 2x2 each (own /32 left out)", len(server), len(client))
	}
}

func TestTunnelRefusesBadInput(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tunnel Tunnel
		want   string
	}{
		{"unknown mode", Tunnel{Local: cluster1(), Remote: cluster2(), Mode: "both"}, `unknown IPsec mode "both"`},
		{"no remote name", Tunnel{Local: cluster1(), Remote: Endpoint{PrivateIP: ip("192.0.2.2"), IP: ip("192.0.2.2")}, Mode: ModeClient}, "no remote cable name"},
		{"no subnets", Tunnel{Local: cluster1(), Remote: func() Endpoint { e := cluster2(); e.Subnets = []netip.Prefix{pfx("192.0.2.2/32")}; return e }(), Mode: ModeClient}, "no subnets on the remote side"},
		{"no IP", Tunnel{Local: Endpoint{CableName: "x", PrivateIP: ip("192.0.2.1")}, Remote: cluster2(), Mode: ModeClient}, "needs both PrivateIP and IP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.tunnel.Connections()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Connections() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestConnectionValidate(t *testing.T) {
	good := Connection{Name: "c", Left: End{ID: "192.0.2.1", Host: ip("192.0.2.1"), Client: pfx("10.1.0.0/16")},
		Right: End{ID: "192.0.2.2", Host: ip("192.0.2.2"), Client: pfx("10.2.0.0/16")}}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Connection)
		want   string
	}{
		{"name with space", func(c *Connection) { c.Name = "a b" }, "contains spaces"},
		{"no id", func(c *Connection) { c.Right.ID = "" }, "right id"},
		{"host and any", func(c *Connection) { c.Right.AnyHost = true }, "both 192.0.2.2 and %any"},
		{"no host", func(c *Connection) { c.Right.Host = netip.Addr{} }, "right host is missing"},
		{"left any", func(c *Connection) { c.Left.Host, c.Left.AnyHost = netip.Addr{}, true }, "left (local) host cannot be %any"},
		{"host bits", func(c *Connection) { c.Left.Client = pfx("10.1.2.3/16") }, "use 10.1.0.0/16"},
		{"DPD without delay", func(c *Connection) { c.DPDAction = DPDActionHold }, "needs a DPD delay"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.want)
			}
			r := &fakeRunner{}
			if err := (&Client{Runner: r}).Add(context.Background(), c); err == nil || len(r.calls) != 0 {
				t.Errorf("Add ran whack %d times for an invalid connection (err %v)", len(r.calls), err)
			}
		})
	}
}

func TestChooseMode(t *testing.T) {
	a := func(pref, known bool) Peer {
		return Peer{CableName: "submariner-cable-a-192-0-2-1", PreferredServer: pref, PreferenceKnown: known}
	}
	b := func(pref, known bool) Peer {
		return Peer{CableName: "submariner-cable-b-192-0-2-2", PreferredServer: pref, PreferenceKnown: known}
	}
	for _, tc := range []struct {
		name        string
		local, peer Peer
		want, other Mode
	}{
		{"neither prefers", a(false, true), b(false, true), ModeBidirectional, ModeBidirectional},
		{"remote unknown", a(true, true), b(false, false), ModeBidirectional, ModeBidirectional},
		{"local prefers", a(true, true), b(false, true), ModeServer, ModeClient},
		{"remote prefers", a(false, true), b(true, true), ModeClient, ModeServer},
		{"both prefer, greater name serves", a(true, true), b(true, true), ModeClient, ModeServer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ChooseMode(tc.local, tc.peer); got != tc.want {
				t.Errorf("ChooseMode(local) = %s, want %s", got, tc.want)
			}
			if tc.peer.PreferenceKnown && tc.local.PreferenceKnown {
				if got := ChooseMode(tc.peer, tc.local); got != tc.other {
					t.Errorf("ChooseMode(remote's view) = %s, want %s", got, tc.other)
				}
			}
		})
	}
	if _, err := ParseMode("server"); err != nil {
		t.Error(err)
	}
	if _, err := ParseMode("Server"); err == nil {
		t.Error("ParseMode accepted Server")
	}
}

// fakeRunner plays whack: each call gets the next scripted answer (the last one
// repeats), or blocks until its context ends when the answer says so.
type fakeRunner struct {
	mu      sync.Mutex
	answers []answer
	calls   []string
}

type answer struct {
	out   string
	code  int
	block bool
}

type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }
func (e exitCode) ExitCode() int { return int(e) }

func (r *fakeRunner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	r.mu.Lock()
	r.calls = append(r.calls, name+" "+strings.Join(args, " "))
	var a answer
	if n := len(r.calls); len(r.answers) > 0 {
		a = r.answers[min(n, len(r.answers))-1]
	}
	r.mu.Unlock()
	if a.block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if a.code != 0 {
		return []byte(a.out), exitCode(a.code)
	}
	return []byte(a.out), nil
}

func testClient(r *fakeRunner) *Client {
	return &Client{Runner: r, Whack: "whack", CtlSocket: "/run/test/pluto.ctl", Timeout: 50 * time.Millisecond, Attempts: 3}
}

func TestClientRetries(t *testing.T) {
	ctx := context.Background()
	notRunning := answer{out: string(sample(t, "whack-not-running.txt")), code: 33}
	for _, tc := range []struct {
		name    string
		answers []answer
		calls   int
		is      error
		wantErr string
	}{
		{"success", []answer{{out: "002 listening for IKE messages\n"}}, 1, nil, ""},
		{"pluto starting", []answer{notRunning, notRunning, {out: ""}}, 3, nil, ""},
		{"pluto never there", []answer{notRunning}, 3, ErrNotRunning, "Pluto is not running"},
		{"duplicate is final", []answer{{out: "020 attempt to redefine connection \"c\"\n", code: 20}}, 1, ErrExists, "pluto answered 20"},
		{"unknown name with exit 0", []answer{{out: string(sample(t, "whack-initiate-unknown.txt"))}}, 1, ErrUnknownConnection, "pluto answered 21"},
		{"no answer", []answer{{block: true}}, 3, nil, "no answer within 50ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &fakeRunner{answers: tc.answers}
			_, err := testClient(r).Run(ctx, "--initiate", "--asynchronous", "--name", "c")
			if len(r.calls) != tc.calls {
				t.Errorf("whack ran %d times, want %d", len(r.calls), tc.calls)
			}
			if want := "whack --ctlsocket /run/test/pluto.ctl --initiate --asynchronous --name c"; r.calls[0] != want {
				t.Errorf("call = %q, want %q", r.calls[0], want)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Run = %v, want success", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Run = %v, want an error containing %q", err, tc.wantErr)
			case tc.is != nil && !errors.Is(err, tc.is):
				t.Fatalf("Run = %v, want it to match %v", err, tc.is)
			}
		})
	}
}

func TestClientStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := &fakeRunner{answers: []answer{{block: true}}}
	c := testClient(r)
	c.Timeout, c.Backoff = time.Hour, time.Hour
	go cancel()
	if _, err := c.Run(ctx, StatusArgs()...); !errors.Is(err, context.Canceled) || len(r.calls) != 1 {
		t.Errorf("Run after cancel = %v after %d calls, want context.Canceled after 1", err, len(r.calls))
	}
}

// TestConnect pins the whack calls that set up and tear down a tunnel.
func TestConnect(t *testing.T) {
	ctx := context.Background()
	var b strings.Builder
	for _, mode := range []Mode{ModeBidirectional, ModeServer} {
		r := &fakeRunner{}
		c := testClient(r)
		tun := Tunnel{Local: cluster1(), Remote: cluster2(), Mode: mode}
		tun.Remote.Subnets = tun.Remote.Subnets[:1]
		if err := c.Connect(ctx, tun); err != nil {
			t.Fatal(err)
		}
		if err := c.Disconnect(ctx, tun); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "# %s\n%s\n", mode, strings.Join(r.calls, "\n"))
	}
	golden(t, "connect.golden", b.String())
}

func TestParseStatusEstablished(t *testing.T) {
	s, err := ParseStatus(sample(t, "status-west-established.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Status{
		Connections: []ConnectionStatus{{
			Name:    "cable-east-0-0",
			Spec:    "10.1.0.0/16===192.0.2.1:4500[+S?C]...192.0.2.2:4500[+S?C]===10.2.0.0/16",
			Routing: "prospective erouted",
			Policy:  "IKEv2+PSK+ENCRYPT+TUNNEL+UP",
			OurID:   "192.0.2.1", TheirID: "192.0.2.2",
			Encaps:    "yes",
			DPDAction: "hold", DPDDelay: 30 * time.Second,
			NewestIKESA: 1,
		}},
		States: []State{{
			Serial: 1, Connection: "cable-east-0-0", Port: 4500,
			Name: "STATE_V2_ESTABLISHED_IKE_SA", Description: "established IKE SA",
			Details: "REKEY in 27967s; REPLACE in 28798s; newest; idle;",
		}},
		IKESAs: 1,
	}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("ParseStatus (-want +got):\n%s", diff)
	}
	if !s.IKEEstablished("cable-east-0-0") || s.ChildEstablished("cable-east-0-0") || s.IKEEstablished("other") {
		t.Errorf("IKEEstablished/ChildEstablished misread the states %+v", s.States)
	}
}

func TestParseStatusAdded(t *testing.T) {
	s, err := ParseStatus(sample(t, "status-east-added.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range s.Connections {
		got = append(got, fmt.Sprintf("%s routing=%q policy=%s ids=%s/%s encaps=%s", c.Name, c.Routing, c.Policy, c.OurID, c.TheirID, c.Encaps))
	}
	want := []string{
		`cable-any-0-0 routing="unrouted" policy=IKEv2+PSK+ENCRYPT+TUNNEL ids=@192.0.2.2-0-0/@192.0.2.9-0-0 encaps=no`,
		`cable-west-0-0 routing="unrouted" policy=IKEv2+PSK+ENCRYPT+TUNNEL ids=192.0.2.2/192.0.2.1 encaps=yes`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("connections (-want +got):\n%s", diff)
	}
	if len(s.States) != 0 || s.IKESAs != 0 {
		t.Errorf("states %v, IKE SAs %d: want none", s.States, s.IKESAs)
	}
	c, ok := s.Connection("cable-any-0-0")
	if !ok || !strings.Contains(c.Spec, "...%any[@192.0.2.9-0-0,+S?C]") {
		t.Errorf("server connection spec %q does not show the %%any peer", c.Spec)
	}

	deleted, err := ParseStatus(sample(t, "status-west-deleted.txt"))
	if err != nil || len(deleted.Connections) != 0 || len(deleted.States) != 0 {
		t.Errorf("status after delete: %+v, %v; want no connections or states", deleted, err)
	}
}

func TestParseShowStates(t *testing.T) {
	for _, f := range []string{"showstates-west.txt", "showstates-east.txt"} {
		states, err := ParseShowStates(sample(t, f))
		if err != nil {
			t.Fatal(err)
		}
		if len(states) != 1 || !states[0].IKEEstablished() || states[0].ChildEstablished() || states[0].Serial != 1 {
			t.Errorf("%s: %+v, want one established IKE SA #1", f, states)
		}
	}
	in := `000 #4: "c-any"[2] 198.51.100.7:4500 STATE_V2_ESTABLISHED_CHILD_SA (established Child SA); REKEY in 27000s; newest; eroute owner; IKE SA #3
000 #3: "c-any"[2] 198.51.100.7:4500 STATE_V2_ESTABLISHED_IKE_SA (established IKE SA); REKEY in 27000s; newest; idle;
`
	states, err := ParseShowStates([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []State{
		{Serial: 4, Connection: "c-any", Instance: "[2] 198.51.100.7", Port: 4500, Name: "STATE_V2_ESTABLISHED_CHILD_SA", Description: "established Child SA", Details: "REKEY in 27000s; newest; eroute owner; IKE SA #3"},
		{Serial: 3, Connection: "c-any", Instance: "[2] 198.51.100.7", Port: 4500, Name: "STATE_V2_ESTABLISHED_IKE_SA", Description: "established IKE SA", Details: "REKEY in 27000s; newest; idle;"},
	}
	if diff := cmp.Diff(want, states); diff != "" {
		t.Errorf("instance states (-want +got):\n%s", diff)
	}
	if _, err := ParseShowStates([]byte("000 something else\n")); err == nil {
		t.Error("ParseShowStates accepted a line that is not a state")
	}
}

func TestParseTrafficStatus(t *testing.T) {
	empty, err := ParseTrafficStatus(sample(t, "trafficstatus-west.txt"))
	if err != nil || len(empty) != 0 {
		t.Errorf("captured (empty) trafficstatus: %v, %v", empty, err)
	}
	ts, err := ParseTrafficStatus(sample(t, "trafficstatus-documented.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Traffic{
		{Serial: 3, Connection: "submariner-cable-cluster2-192-0-2-2-0-0", Type: "ESP", AddTime: time.Unix(1764175319, 0).UTC(), InBytes: 5040, OutBytes: 4704, ID: "192.0.2.2"},
		{Serial: 5, Connection: "submariner-cable-cluster2-192-0-2-2-0-1", Type: "ESP", AddTime: time.Unix(1764175320, 0).UTC(), OutBytes: 84, ID: "192.0.2.2"},
		{Serial: 8, Connection: "submariner-cable-cluster3-192-0-2-3-0-0", Instance: "[1] 198.51.100.7", Type: "ESP", AddTime: time.Unix(1764175400, 0).UTC(), InBytes: 168, OutBytes: 168, ID: "@192.0.2.3-0-0"},
		{Serial: 9, Connection: "dn-peer", Type: "ESP", AddTime: time.Unix(1764175401, 0).UTC(), InBytes: 1, OutBytes: 2, ID: "C=CA, O=Example, CN=east"},
	}
	if diff := cmp.Diff(want, ts); diff != "" {
		t.Errorf("ParseTrafficStatus (-want +got):\n%s", diff)
	}
	got := Summarize(ts, "submariner-cable-cluster2-192-0-2-2-0-0", "submariner-cable-cluster2-192-0-2-2-0-1", "submariner-cable-cluster2-192-0-2-2-1-0")
	if diff := cmp.Diff(Summary{Connected: true, SAs: 2, InBytes: 5040, OutBytes: 4788}, got); diff != "" {
		t.Errorf("Summarize (-want +got):\n%s", diff)
	}
	if s := Summarize(ts, "submariner-cable-cluster4-0-0"); s.Connected {
		t.Errorf("Summarize of a tunnel without SAs = %+v, want not connected", s)
	}
	if _, err := ParseTrafficStatus([]byte("006 #3: \"c\", inBytes=many\n")); err == nil {
		t.Error("ParseTrafficStatus accepted inBytes=many")
	}
}

func TestParseKernelError(t *testing.T) {
	var got []KernelError
	for _, f := range []string{"pluto-east.log", "pluto-west.log"} {
		for _, line := range strings.Split(string(sample(t, f)), "\n") {
			if e, ok := ParseKernelError(line); ok {
				got = append(got, e)
			}
		}
	}
	want := []KernelError{{Connection: "cable-west-0-0", Serial: 2, Operation: "Add SA esp.87d8bc20@192.0.2.1", Reason: "Function not implemented", Errno: 38}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("kernel errors in the captured logs (-want +got):\n%s", diff)
	}
	if s := got[0].String(); s != "connection cable-west-0-0 #2: the kernel refused Add SA esp.87d8bc20@192.0.2.1: Function not implemented (errno 38)" {
		t.Errorf("String() = %q", s)
	}
}

func TestFailureCodes(t *testing.T) {
	for _, tc := range []struct {
		file string
		code int
		ok   bool
	}{
		{"whack-add.txt", 0, false},
		{"whack-initiate.txt", 0, false},
		{"whack-delete.txt", 0, false},
		{"whack-add-duplicate.txt", 20, true},
		{"whack-initiate-unknown.txt", 21, true},
		{"whack-route-unknown.txt", 25, true},
	} {
		code, ok := failureCode(sample(t, tc.file))
		if code != tc.code || ok != tc.ok {
			t.Errorf("%s: failureCode = %d, %v; want %d, %v", tc.file, code, ok, tc.code, tc.ok)
		}
	}
}

func TestLookPath(t *testing.T) {
	if _, err := LookPath("no-such-libreswan-program"); err == nil || !strings.Contains(err.Error(), "install libreswan") {
		t.Errorf("LookPath of a missing program = %v, want an install hint", err)
	}
	if _, err := exec.LookPath("ipsec"); err != nil {
		t.Skip("skipped: libreswan is not installed (run `make deps`)")
	}
	if _, err := LookPath("whack"); err != nil {
		t.Error(err)
	}
}
