package nettest

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
)

func TestReply(t *testing.T) {
	r := Reply{Pod: "web-0", IP: netip.MustParseAddr("10.241.1.5"), Client: netip.MustParseAddrPort("10.242.1.7:40000")}
	const line = "pod=web-0 ip=10.241.1.5 client=10.242.1.7:40000"
	if got := r.String(); got != line {
		t.Errorf("String() = %q, want %q", got, line)
	}
	v6 := Reply{Pod: "p", IP: netip.MustParseAddr("fd00::1"), Client: netip.MustParseAddrPort("[fd00::2]:53")}
	if got, want := v6.String(), "pod=p ip=fd00::1 client=[fd00::2]:53"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	for _, in := range []string{line, line + "\n"} {
		got, err := ParseReply(in)
		if err != nil {
			t.Fatalf("ParseReply(%q): %v", in, err)
		}
		if got != r {
			t.Errorf("ParseReply(%q) = %+v, want %+v", in, got, r)
		}
	}
}

func TestParseReplyErrors(t *testing.T) {
	tests := []struct{ name, line, wantErr string }{
		{"empty", "", "want three fields"},
		{"missing field", "pod=a ip=10.0.0.1", "want three fields"},
		{"fields out of order", "ip=10.0.0.1 pod=a client=10.0.0.2:1", `field 1 is "ip=10.0.0.1", want pod=...`},
		{"empty pod", "pod= ip=10.0.0.1 client=10.0.0.2:1", "empty pod name"},
		{"bad ip", "pod=a ip=10.0.0.300 client=10.0.0.2:1", "ip:"},
		{"client without port", "pod=a ip=10.0.0.1 client=10.0.0.2", "client:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseReply(tc.line)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseReply(%q) error = %v, want one containing %q", tc.line, err, tc.wantErr)
			}
		})
	}
}

func TestSelectAddresses(t *testing.T) {
	pfx := netip.MustParsePrefix
	ifs := []iface{
		{name: "eth1", index: 3, up: true, prefixes: []netip.Prefix{pfx("fd00::5/64"), pfx("10.2.0.5/24"), pfx("fe80::1/64")}},
		{name: "lo", index: 1, up: true, loopback: true, prefixes: []netip.Prefix{pfx("127.0.0.1/8"), pfx("::1/128")}},
		{name: "eth0", index: 2, up: true, prefixes: []netip.Prefix{pfx("10.1.0.5/24")}},
		{name: "down0", index: 4, up: false, prefixes: []netip.Prefix{pfx("10.3.0.5/24")}},
	}
	render := func(as []Address) []string {
		out := []string{}
		for _, a := range as {
			out = append(out, a.String())
		}
		return out
	}
	tests := []struct {
		name string
		all  bool
		want []string
	}{
		{"pod addresses", false, []string{"eth0 10.1.0.5/24", "eth1 10.2.0.5/24", "eth1 fd00::5/64"}},
		{"all", true, []string{
			"lo 127.0.0.1/8", "lo ::1/128", "eth0 10.1.0.5/24",
			"eth1 10.2.0.5/24", "eth1 fd00::5/64", "eth1 fe80::1/64", "down0 10.3.0.5/24",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, render(selectAddresses(ifs, tc.all))); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestDetectIdentity(t *testing.T) {
	pfx := netip.MustParsePrefix
	hostOK := func() (string, error) { return "host-a", nil }
	addrsOK := func() ([]Address, error) {
		return []Address{{"eth0", pfx("fd00::5/64")}, {"eth0", pfx("10.1.0.5/24")}, {"eth1", pfx("10.2.0.5/24")}}, nil
	}
	tests := []struct {
		name     string
		env      map[string]string
		hostname func() (string, error)
		addrs    func() ([]Address, error)
		want     string // "POD IP"
		wantErr  string
	}{
		{name: "downward API", env: map[string]string{"POD_NAME": "web-0", "POD_IP": "10.241.1.5"}, want: "web-0 10.241.1.5"},
		{name: "IPv6 pod IP", env: map[string]string{"POD_NAME": "web-0", "POD_IP": "fd00::9"}, want: "web-0 fd00::9"},
		{name: "IPv4-mapped pod IP is unmapped", env: map[string]string{"POD_NAME": "w", "POD_IP": "::ffff:10.0.0.1"}, want: "w 10.0.0.1"},
		{name: "fallbacks: hostname and first IPv4", want: "host-a 10.1.0.5"},
		{name: "name from env, IP from interfaces", env: map[string]string{"POD_NAME": "web-1"}, want: "web-1 10.1.0.5"},
		{
			name: "bad POD_IP", env: map[string]string{"POD_IP": "10.0.0"},
			wantErr: `POD_IP="10.0.0" is not an IP address`,
		},
		{
			name: "POD_IP with zone", env: map[string]string{"POD_IP": "fe80::1%eth0"},
			wantErr: `POD_IP="fe80::1%eth0" has a zone`,
		},
		{
			name: "pod name with space", env: map[string]string{"POD_NAME": "a b"},
			wantErr: `pod name "a b" contains white space`,
		},
		{
			name: "no hostname", hostname: func() (string, error) { return "", errors.New("uname failed") },
			wantErr: "POD_NAME is not set and the hostname is unknown: uname failed",
		},
		{
			name:    "no IPv4 address",
			addrs:   func() ([]Address, error) { return []Address{{"eth0", pfx("fd00::5/64")}}, nil },
			wantErr: "POD_IP is not set and no interface that is up has a non-loopback IPv4 address",
		},
		{
			name:    "interfaces unreadable",
			addrs:   func() ([]Address, error) { return nil, errors.New("netlink: permission denied") },
			wantErr: "POD_IP is not set: netlink: permission denied",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.hostname == nil {
				tc.hostname = hostOK
			}
			if tc.addrs == nil {
				tc.addrs = addrsOK
			}
			id, err := detectIdentity(func(k string) string { return tc.env[k] }, tc.hostname, tc.addrs)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := id.Pod + " " + id.IP.String(); got != tc.want {
				t.Errorf("identity = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestServeOptions(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    ServerConfig // Identity and Log left out
		wantErr string
	}{
		{
			name: "defaults",
			want: ServerConfig{TCPAddr: ":8080", UDPAddr: ":8080", HTTPAddr: ":8081"},
		},
		{
			name: "address and ports",
			args: []string{"--address", "10.0.0.1", "--tcp-port", "9000", "--udp-port", "9001", "--http-port", "0"},
			want: ServerConfig{TCPAddr: "10.0.0.1:9000", UDPAddr: "10.0.0.1:9001", HTTPAddr: "10.0.0.1:0"},
		},
		{
			name: "IPv6 address",
			args: []string{"--address", "fd00::1"},
			want: ServerConfig{TCPAddr: "[fd00::1]:8080", UDPAddr: "[fd00::1]:8080", HTTPAddr: "[fd00::1]:8081"},
		},
		{name: "port too big", args: []string{"--udp-port", "70000"}, wantErr: "--udp-port 70000 is not a port"},
		{name: "negative port", args: []string{"--tcp-port", "-1"}, wantErr: "--tcp-port -1 is not a port"},
		{name: "tcp and http on one port", args: []string{"--http-port", "8080"}, wantErr: "--tcp-port and --http-port are both 8080"},
		{name: "bad address", args: []string{"--address", "eth0"}, wantErr: `--address "eth0" is not an IP address`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := NewServeOptions()
			fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
			o.AddFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			err := o.Validate()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Validate() = %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := o.Config(Identity{}, nil)
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("Config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConnectOptions(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    string // Proto Target Timeout Retries Bind Send
		wantErr string
	}{
		{name: "tcp", args: []string{"--tcp", "10.0.0.1:8080"}, want: `tcp 10.0.0.1:8080 5s 0 invalid AddrPort ""`},
		{
			name: "udp with everything",
			args: []string{"--udp", "svc.ns.svc.clusterset.local:8080", "--timeout", "2s", "--retries", "3", "--bind", "10.0.0.5", "--send", "x"},
			want: `udp svc.ns.svc.clusterset.local:8080 2s 3 10.0.0.5:0 "x"`,
		},
		{name: "http", args: []string{"--http", "http://10.0.0.1:8081/", "--bind", "[fd00::5]:4000"}, want: `http http://10.0.0.1:8081/ 5s 0 [fd00::5]:4000 ""`},
		{name: "no target", args: nil, wantErr: "give exactly one of --tcp"},
		{name: "two targets", args: []string{"--tcp", "a:1", "--udp", "a:1"}, wantErr: "give exactly one of --tcp"},
		{name: "target without port", args: []string{"--tcp", "10.0.0.1"}, wantErr: `tcp target "10.0.0.1" is not HOST:PORT`},
		{name: "target without host", args: []string{"--udp", ":53"}, wantErr: `udp target ":53" is not HOST:PORT`},
		{name: "port out of range", args: []string{"--tcp", "a:0"}, wantErr: `port "0" is not a number from 1 to 65535`},
		{name: "named port", args: []string{"--tcp", "a:http"}, wantErr: `port "http" is not a number`},
		{name: "not a URL", args: []string{"--http", "10.0.0.1:8081"}, wantErr: `http target "10.0.0.1:8081" is not an http:// URL`},
		{name: "send with http", args: []string{"--http", "http://a/", "--send", "x"}, wantErr: "--send applies to --tcp and --udp"},
		{name: "zero timeout", args: []string{"--tcp", "a:1", "--timeout", "0s"}, wantErr: "timeout 0s is not positive"},
		{name: "negative retries", args: []string{"--tcp", "a:1", "--retries", "-1"}, wantErr: "retries -1 is negative"},
		{name: "bad bind", args: []string{"--tcp", "a:1", "--bind", "eth0"}, wantErr: `--bind "eth0" is neither an IP nor IP:PORT`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := NewConnectOptions()
			fs := pflag.NewFlagSet("connect", pflag.ContinueOnError)
			o.AddFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			cfg, err := o.Config(nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Config() error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			bind := "invalid AddrPort"
			if cfg.Bind.IsValid() {
				bind = cfg.Bind.String()
			}
			got := strings.Join([]string{string(cfg.Proto), cfg.Target, cfg.Timeout.String(),
				strconv.Itoa(cfg.Retries), bind, `"` + cfg.Send + `"`}, " ")
			if got != tc.want {
				t.Errorf("Config() = %s, want %s", got, tc.want)
			}
		})
	}
}
