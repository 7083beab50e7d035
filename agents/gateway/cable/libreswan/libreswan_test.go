//go:build linux

package libreswan

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/submariner-go/submariner/agents/gateway/cable"
	"github.com/submariner-go/submariner/agents/netkit/route"
	"github.com/submariner-go/submariner/agents/netkit/whack"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Test address plan (keep in sync across the gateway's packages):
//   cluster1 pods 10.1.0.0/16, services 100.1.0.0/16; cluster2 pods 10.2.0.0/16,
//   services 100.2.0.0/16; gateway underlay 198.51.100.0/24, public 203.0.113.0/24

func endpoint(n, ip string, port uint16, preferred string) cable.Endpoint {
	e := cable.Endpoint{
		ClusterID: "cluster" + n, CableName: "submariner-cable-cluster" + n + "-" + strings.ReplaceAll(ip, ".", "-"),
		PrivateIP: netip.MustParseAddr(ip), Backend: submv1.BackendLibreswan, Port: port,
		Subnets:       []netip.Prefix{netip.MustParsePrefix("100." + n + ".0.0/16"), netip.MustParsePrefix("10." + n + ".0.0/16")},
		BackendConfig: map[string]string{},
	}
	if preferred != "" {
		e.BackendConfig[cable.ConfigPreferredServer] = preferred
	}
	return e
}

func TestWhackTunnel(t *testing.T) {
	local := endpoint("1", "198.51.100.1", 4500, "false")
	for _, tc := range []struct {
		name   string
		remote cable.Endpoint
		useIP  string
		nat    bool
		want   string
	}{
		{
			name: "bidirectional, private IPs", remote: endpoint("2", "198.51.100.2", 4500, "false"), useIP: "198.51.100.2",
			want: "bidirectional encaps=false 198.51.100.1:4500 -> 198.51.100.2@198.51.100.2:4500, 4 connections, first submariner-cable-cluster2-198-51-100-2-0-0",
		},
		{
			name:   "the remote prefers to serve: this side is the client; NAT: its public IP, encapsulated",
			remote: endpoint("2", "198.51.100.2", 4501, "true"), useIP: "203.0.113.2", nat: true,
			want: "client encaps=true 198.51.100.1:4500 -> 198.51.100.2@203.0.113.2:4501, 4 connections, first submariner-cable-cluster2-198-51-100-2-0-0",
		},
		{
			name: "a remote that does not say: bidirectional", remote: endpoint("2", "198.51.100.2", 4500, ""), useIP: "198.51.100.2",
			want: "bidirectional encaps=false 198.51.100.1:4500 -> 198.51.100.2@198.51.100.2:4500, 4 connections, first submariner-cable-cluster2-198-51-100-2-0-0",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wt := WhackTunnel(cable.Tunnel{Local: local, Remote: tc.remote, UseIP: netip.MustParseAddr(tc.useIP), UseNAT: tc.nat}, 4500)
			conns, err := wt.Connections()
			if err != nil {
				t.Fatal(err)
			}
			got := string(wt.Mode) + " encaps=" + map[bool]string{true: "true", false: "false"}[wt.ForceEncaps] + " " +
				wt.Local.IP.String() + ":" + itoa(wt.Local.Port) + " -> " + wt.Remote.PrivateIP.String() + "@" + wt.Remote.IP.String() + ":" + itoa(wt.Remote.Port) +
				", " + itoa(uint16(len(conns))) + " connections, first " + conns[0].Name
			if got != tc.want {
				t.Errorf("tunnel:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func itoa(i uint16) string { return strconv.Itoa(int(i)) }

func TestTunnelStatus(t *testing.T) {
	names := []string{"c-0-0", "c-0-1"}
	ikeUp := &whack.Status{States: []whack.State{{Serial: 1, Connection: "c-0-1", Name: "STATE_V2_ESTABLISHED_IKE_SA", Description: "established IKE SA"}}}
	refused := map[string]whack.KernelError{"c-0-0": {Connection: "c-0-0", Serial: 2, Operation: "Add SA esp.1@198.51.100.2", Reason: "Function not implemented", Errno: 38}}
	for _, tc := range []struct {
		name    string
		traffic []whack.Traffic
		status  *whack.Status
		refused map[string]whack.KernelError
		want    submv1.ConnectionStatus
		message string
		rx, tx  uint64
	}{
		{name: "nothing yet", status: &whack.Status{}, want: submv1.Connecting, message: "negotiating the IKE SA"},
		{name: "IKE up", status: ikeUp, want: submv1.Connecting, message: "IKE SA established; waiting for the Child SA"},
		{
			name: "IKE up, the kernel refused the Child SA", status: ikeUp, refused: refused, want: submv1.Connecting,
			message: `IKE SA established; the kernel refused the Child SA: ` + refused["c-0-0"].String(),
		},
		{
			name:    "a Child SA of one connection: connected, traffic summed over the tunnel's connections",
			traffic: []whack.Traffic{{Connection: "c-0-1", InBytes: 10, OutBytes: 20}, {Connection: "c-0-0", InBytes: 1, OutBytes: 2}, {Connection: "other-0-0", InBytes: 100}},
			status:  ikeUp, refused: refused, want: submv1.Connected, rx: 11, tx: 22,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, message, sum := TunnelStatus(names, tc.traffic, tc.status, tc.refused)
			if diff := cmp.Diff([]any{tc.want, tc.message, tc.rx, tc.tx}, []any{status, message, sum.InBytes, sum.OutBytes}); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRoutes(t *testing.T) {
	local := endpoint("1", "198.51.100.1", 4500, "false")
	remote := endpoint("2", "198.51.100.2", 4500, "false")
	ts := []tunnel{{
		cable: cable.Tunnel{Local: local, Remote: remote, UseIP: remote.PrivateIP},
		hop:   route.Route{Dev: "eth0", Gw: netip.MustParseAddr("198.51.100.254")},
	}}
	want := "route 10.2.0.0/16 via 198.51.100.254 dev eth0 table 100 src 10.1.1.1\nroute 100.2.0.0/16 via 198.51.100.254 dev eth0 table 100 src 10.1.1.1\nrule 100: from all lookup 100\n"
	if diff := cmp.Diff(want, Routes(ts, netip.MustParseAddr("10.1.1.1")).String()); diff != "" {
		t.Errorf("routes (-want +got):\n%s", diff)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	ok := cable.Config{PSK: []byte("k"), StateDir: "/run/pluto", LocalIP: netip.MustParseAddr("198.51.100.1"), Port: 4500}
	for _, tc := range []struct {
		name string
		edit func(*cable.Config)
		err  string
	}{
		{"no PSK", func(c *cable.Config) { c.PSK = nil }, "no pre-shared key: IPsec authenticates the gateways with the clusterset's pre-shared key; mount the Secret submariner-ipsec-psk (key psk) and point --psk-file (CE_IPSEC_PSK_FILE) at it"},
		{"relative directory", func(c *cable.Config) { c.StateDir = "pluto" }, `pluto's directory "pluto" is not an absolute path (--pluto-dir)`},
		{"no port", func(c *cable.Config) { c.Port = 0 }, "no tunnel port: set the udp-port (--nat-t-port)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.edit(&cfg)
			if _, err := newDriver(cfg, route.NewFake()); err == nil || err.Error() != tc.err {
				t.Errorf("error %v, want %s", err, tc.err)
			}
		})
	}
	d, err := newDriver(ok, route.NewFake())
	if err != nil {
		t.Fatal(err)
	}
	if d.psk != "aw==" {
		t.Errorf("pluto's secret %q, want the key base64-encoded", d.psk)
	}
}
