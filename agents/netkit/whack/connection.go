package whack

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// The connection parameters Submariner uses.
const (
	// DefaultPort is the UDP port of IKE and NAT-T (they share one; port 500 is not
	// used).
	DefaultPort = 4500
	// DPDActionHold keeps the Child SA's policy when the peer stops answering, so
	// traffic is held rather than leaked in the clear.
	DPDActionHold = "hold"
	// DefaultDPDDelay is how often dead-peer detection probes.
	DefaultDPDDelay = 30 * time.Second
)

// End is one side of a connection.
type End struct {
	// ID is the side's IKE identity: an IP address or "@name".
	ID string
	// Host is the side's IKE address.
	Host netip.Addr
	// AnyHost accepts the peer from any address (%any), for the server side of a
	// server/client pair whose client may be behind NAT. Host must then be invalid.
	AnyHost bool
	// Client is the subnet behind this side.
	Client netip.Prefix
	// IKEPort is this side's IKE and NAT-T port; 0 leaves pluto's default.
	IKEPort uint16
}

// Connection is one IPsec connection as whack defines it: always IKEv2, always
// authenticated with the pre-shared key from the secrets file, always encrypting
// (ESP, tunnel mode). Left is the local side.
type Connection struct {
	Name        string
	Left, Right End
	// ForceEncaps encapsulates ESP in UDP even when no NAT is detected (set when NAT
	// discovery says the path has NAT).
	ForceEncaps bool
	// DPDAction is what to do when the peer is dead (DPDActionHold); "" omits DPD.
	DPDAction string
	// DPDDelay is the dead-peer detection interval (whole seconds).
	DPDDelay time.Duration
}

// Validate checks the connection; every error names the value and how to fix it.
func (c Connection) Validate() error {
	var errs []error
	if c.Name == "" || strings.ContainsAny(c.Name, " \t\n\"'") {
		errs = append(errs, fmt.Errorf("connection name %q is empty or contains spaces or quotes: use a name like <cable name>-0-0", c.Name))
	}
	for _, side := range []struct {
		name string
		end  End
	}{{"left", c.Left}, {"right", c.Right}} {
		e := side.end
		switch {
		case e.ID == "" || strings.ContainsAny(e.ID, " \t\n\"'"):
			errs = append(errs, fmt.Errorf("connection %s: %s id %q is empty or contains spaces or quotes: use an IP address or @name", c.Name, side.name, e.ID))
		case e.AnyHost && e.Host.IsValid():
			errs = append(errs, fmt.Errorf("connection %s: %s host is both %s and %%any: set one", c.Name, side.name, e.Host))
		case !e.AnyHost && !e.Host.IsValid():
			errs = append(errs, fmt.Errorf("connection %s: %s host is missing: set Host, or AnyHost for a server accepting any peer", c.Name, side.name))
		case !e.Client.IsValid():
			errs = append(errs, fmt.Errorf("connection %s: %s client subnet is missing: set Client to the subnet behind that side", c.Name, side.name))
		case e.Client != e.Client.Masked():
			errs = append(errs, fmt.Errorf("connection %s: %s client subnet %s has host bits set: use %s", c.Name, side.name, e.Client, e.Client.Masked()))
		}
	}
	if c.Left.AnyHost {
		errs = append(errs, fmt.Errorf("connection %s: the left (local) host cannot be %%any: set it to the gateway's private IP", c.Name))
	}
	if c.DPDAction != "" && c.DPDDelay < time.Second {
		errs = append(errs, fmt.Errorf("connection %s: DPD action %q needs a DPD delay of at least 1s (Submariner uses %s)", c.Name, c.DPDAction, DefaultDPDDelay))
	}
	return errors.Join(errs...)
}

// Args returns the whack arguments that add c. It performs no I/O.
func (c Connection) Args() []string {
	args := []string{"--psk", "--encrypt", "--ikev2"}
	if c.ForceEncaps {
		args = append(args, "--forceencaps")
	}
	args = append(args, "--name", c.Name)
	args = append(args, c.Left.args()...)
	args = append(args, "--to")
	args = append(args, c.Right.args()...)
	if c.DPDAction != "" {
		args = append(args, "--dpdaction="+c.DPDAction, "--dpddelay", strconv.Itoa(int(c.DPDDelay/time.Second)))
	}
	return args
}

func (e End) args() []string {
	host := "%any"
	if !e.AnyHost {
		host = e.Host.String()
	}
	args := []string{"--id", e.ID, "--host", host, "--client", e.Client.String()}
	if e.IKEPort != 0 {
		args = append(args, "--ikeport", strconv.Itoa(int(e.IKEPort)))
	}
	return args
}

// Arguments of the other invocations. They perform no I/O; Client adds the control
// socket.

// ListenArgs makes pluto (re)scan interfaces and reload secrets.
func ListenArgs() []string { return []string{"--listen"} }

// RouteArgs installs the connection's policy so that matching traffic triggers it.
func RouteArgs(name string) []string { return []string{"--route", "--name", name} }

// InitiateArgs starts negotiating without waiting for the outcome.
func InitiateArgs(name string) []string {
	return []string{"--initiate", "--asynchronous", "--name", name}
}

// DeleteArgs removes a connection and its SAs. Deleting an unknown name succeeds.
func DeleteArgs(name string) []string { return []string{"--delete", "--name", name} }

// TrafficStatusArgs lists established Child SAs with byte counters.
func TrafficStatusArgs() []string { return []string{"--trafficstatus"} }

// StatusArgs prints pluto's whole status: interfaces, connections, states.
func StatusArgs() []string { return []string{"--status"} }

// ShowStatesArgs prints the IKE and Child SA states.
func ShowStatesArgs() []string { return []string{"--showstates"} }

// ShutdownArgs stops pluto, deleting its SAs.
func ShutdownArgs() []string { return []string{"--shutdown"} }

// DebugArgs sets pluto's debug class (for example "base").
func DebugArgs(class string) []string { return []string{"--debug", class} }

// Mode is how the two gateways of a tunnel share the work of bringing it up.
type Mode string

const (
	// ModeBidirectional: both sides know each other's address and both route and
	// initiate.
	ModeBidirectional Mode = "bidirectional"
	// ModeServer: this side accepts the peer from any address and neither routes nor
	// initiates.
	ModeServer Mode = "server"
	// ModeClient: this side routes and initiates to a server.
	ModeClient Mode = "client"
)

// ParseMode returns the mode named s.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeBidirectional, ModeServer, ModeClient:
		return m, nil
	}
	return "", fmt.Errorf("unknown IPsec mode %q: use bidirectional, server or client", s)
}

// Initiates reports whether the side in mode m routes and initiates its connections.
func (m Mode) Initiates() bool { return m != ModeServer }

// Peer is what one gateway says about itself when the tunnel's mode is chosen.
type Peer struct {
	CableName string
	// PreferredServer is the gateway's preferred-server setting.
	PreferredServer bool
	// PreferenceKnown is false when the gateway did not publish the setting (an
	// older version); the tunnel is then bidirectional.
	PreferenceKnown bool
}

// ChooseMode applies Submariner's preferred-server rules from the local side's point
// of view: neither side preferring, or the remote's preference unknown, gives
// bidirectional; one side preferring makes it the server and the other the client;
// both preferring makes the side with the lexicographically greater cable name the
// server. Both sides reach complementary answers.
func ChooseMode(local, remote Peer) Mode {
	switch {
	case !remote.PreferenceKnown, !local.PreferredServer && !remote.PreferredServer:
		return ModeBidirectional
	case local.PreferredServer && !remote.PreferredServer:
		return ModeServer
	case !local.PreferredServer && remote.PreferredServer:
		return ModeClient
	case local.CableName > remote.CableName:
		return ModeServer
	default:
		return ModeClient
	}
}

// Endpoint is one gateway of a tunnel.
type Endpoint struct {
	// CableName names the gateway's cable (submariner-cable-<cluster>-<ip dashes>).
	CableName string
	// PrivateIP is the gateway's private address, its IKE identity.
	PrivateIP netip.Addr
	// IP is the address IKE uses: for the local side the address to send from, for
	// the remote side the address to reach it at (public or private, as NAT
	// discovery decided).
	IP netip.Addr
	// Subnets are the cluster's CIDRs behind the gateway.
	Subnets []netip.Prefix
	// Port is the gateway's IKE and NAT-T port (DefaultPort).
	Port uint16
}

// Tunnel is the IPsec tunnel from the local gateway to a remote one.
type Tunnel struct {
	Local, Remote Endpoint
	Mode          Mode
	// ForceEncaps is set when NAT discovery found NAT on the path.
	ForceEncaps bool
}

// Connections returns the tunnel's connections: one per (local subnet, remote subnet)
// pair, named <remote cable name>-<i>-<j>, leaving out each side's own <private IP>/32.
// In bidirectional mode the identities are the private IPs; in server/client mode
// they are @<private IP>-<own subnet index>-<peer subnet index>, so both sides derive
// the same pair of identities for the same subnets, and the server accepts the client
// from any address.
func (t Tunnel) Connections() ([]Connection, error) {
	if _, err := ParseMode(string(t.Mode)); err != nil {
		return nil, fmt.Errorf("tunnel to %s: %w", t.Remote.CableName, err)
	}
	if t.Remote.CableName == "" {
		return nil, fmt.Errorf("tunnel has no remote cable name: set Remote.CableName")
	}
	for _, e := range []Endpoint{t.Local, t.Remote} {
		if !e.PrivateIP.IsValid() || !e.IP.IsValid() {
			return nil, fmt.Errorf("tunnel to %s: endpoint %q needs both PrivateIP and IP", t.Remote.CableName, e.CableName)
		}
	}
	local, remote := subnets(t.Local), subnets(t.Remote)
	if len(local) == 0 || len(remote) == 0 {
		return nil, fmt.Errorf("tunnel to %s: no subnets on the %s side: each side needs at least one cluster CIDR besides its own address", t.Remote.CableName, map[bool]string{true: "local", false: "remote"}[len(local) == 0])
	}
	var conns []Connection
	for i, ls := range local {
		for j, rs := range remote {
			c := Connection{
				Name:        fmt.Sprintf("%s-%d-%d", t.Remote.CableName, i, j),
				Left:        End{ID: t.Local.PrivateIP.String(), Host: t.Local.IP, Client: ls, IKEPort: t.Local.Port},
				Right:       End{ID: t.Remote.PrivateIP.String(), Host: t.Remote.IP, Client: rs, IKEPort: t.Remote.Port},
				ForceEncaps: t.ForceEncaps,
				DPDAction:   DPDActionHold,
				DPDDelay:    DefaultDPDDelay,
			}
			if t.Mode != ModeBidirectional {
				c.Left.ID = fmt.Sprintf("@%s-%d-%d", t.Local.PrivateIP, i, j)
				c.Right.ID = fmt.Sprintf("@%s-%d-%d", t.Remote.PrivateIP, j, i)
			}
			if t.Mode == ModeServer {
				c.Right.Host, c.Right.AnyHost, c.Right.IKEPort = netip.Addr{}, true, 0
			}
			if err := c.Validate(); err != nil {
				return nil, err
			}
			conns = append(conns, c)
		}
	}
	return conns, nil
}

// subnets returns e's subnets without its own address as a host route.
func subnets(e Endpoint) []netip.Prefix {
	own := netip.PrefixFrom(e.PrivateIP, e.PrivateIP.BitLen())
	var out []netip.Prefix
	for _, s := range e.Subnets {
		if s.Masked() != own {
			out = append(out, s.Masked())
		}
	}
	return out
}
