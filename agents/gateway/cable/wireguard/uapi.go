package wireguard

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// The embedded userspace device is configured in-process through WireGuard's
// cross-platform configuration protocol (wireguard.com/xplatform): the same
// key=value lines that wg(8) sends over the UAPI socket. RenderUAPI and ParseUAPI
// translate between it and wgctrl's types, so the driver speaks wgtypes to both
// the kernel (through wgctrl) and the userspace device.

// RenderUAPI returns the "set" operation's lines for cfg, without the leading
// "set=1" and the terminating blank line. It performs no I/O.
func RenderUAPI(cfg wgtypes.Config) string {
	var b strings.Builder
	line := func(k, v string) { b.WriteString(k + "=" + v + "\n") }
	key := func(k wgtypes.Key) string { return hex.EncodeToString(k[:]) }
	if cfg.PrivateKey != nil {
		line("private_key", key(*cfg.PrivateKey))
	}
	if cfg.ListenPort != nil {
		line("listen_port", strconv.Itoa(*cfg.ListenPort))
	}
	if cfg.FirewallMark != nil {
		line("fwmark", strconv.Itoa(*cfg.FirewallMark))
	}
	if cfg.ReplacePeers {
		line("replace_peers", "true")
	}
	for _, p := range cfg.Peers {
		line("public_key", key(p.PublicKey))
		if p.Remove {
			line("remove", "true")
			continue
		}
		if p.UpdateOnly {
			line("update_only", "true")
		}
		if p.PresharedKey != nil {
			line("preshared_key", key(*p.PresharedKey))
		}
		if p.Endpoint != nil {
			line("endpoint", p.Endpoint.String())
		}
		if p.PersistentKeepaliveInterval != nil {
			line("persistent_keepalive_interval", strconv.Itoa(int(p.PersistentKeepaliveInterval.Seconds())))
		}
		if p.ReplaceAllowedIPs {
			line("replace_allowed_ips", "true")
		}
		for _, a := range p.AllowedIPs {
			line("allowed_ip", a.String())
		}
	}
	return b.String()
}

// ParseUAPI parses the "get" operation's lines into the device called name.
// Errors name the line.
func ParseUAPI(name, s string) (*wgtypes.Device, error) {
	d := &wgtypes.Device{Name: name, Type: wgtypes.Userspace}
	var peer *wgtypes.Peer
	var sec, nsec int64
	flush := func() {
		if peer == nil {
			return
		}
		if sec != 0 || nsec != 0 {
			peer.LastHandshakeTime = time.Unix(sec, nsec)
		}
		d.Peers = append(d.Peers, *peer)
		peer, sec, nsec = nil, 0, 0
	}
	sc := bufio.NewScanner(strings.NewReader(s))
	for n := 1; sc.Scan(); n++ {
		text := sc.Text()
		if text == "" {
			continue
		}
		k, v, ok := strings.Cut(text, "=")
		if !ok {
			return nil, fmt.Errorf("UAPI line %d %q is not key=value", n, text)
		}
		bad := func(err error) error { return fmt.Errorf("UAPI line %d %q: %w", n, text, err) }
		switch {
		case k == "errno":
			if v != "0" {
				return nil, fmt.Errorf("the device answered errno=%s", v)
			}
		case k == "private_key":
			key, err := hexKey(v)
			if err != nil {
				return nil, bad(err)
			}
			d.PrivateKey, d.PublicKey = key, key.PublicKey()
		case k == "listen_port":
			p, err := strconv.Atoi(v)
			if err != nil {
				return nil, bad(err)
			}
			d.ListenPort = p
		case k == "fwmark":
			m, err := strconv.Atoi(v)
			if err != nil {
				return nil, bad(err)
			}
			d.FirewallMark = m
		case k == "public_key":
			flush()
			key, err := hexKey(v)
			if err != nil {
				return nil, bad(err)
			}
			peer = &wgtypes.Peer{PublicKey: key}
		case peer == nil && peerKeys[k]:
			return nil, bad(fmt.Errorf("peer key %q before any public_key", k))
		case k == "preshared_key":
			key, err := hexKey(v)
			if err != nil {
				return nil, bad(err)
			}
			peer.PresharedKey = key
		case k == "endpoint":
			ap, err := netip.ParseAddrPort(v)
			if err != nil {
				return nil, bad(err)
			}
			peer.Endpoint = net.UDPAddrFromAddrPort(ap)
		case k == "last_handshake_time_sec", k == "last_handshake_time_nsec", k == "tx_bytes", k == "rx_bytes",
			k == "persistent_keepalive_interval", k == "protocol_version":
			i, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, bad(err)
			}
			switch k {
			case "last_handshake_time_sec":
				sec = i
			case "last_handshake_time_nsec":
				nsec = i
			case "tx_bytes":
				peer.TransmitBytes = i
			case "rx_bytes":
				peer.ReceiveBytes = i
			case "persistent_keepalive_interval":
				peer.PersistentKeepaliveInterval = time.Duration(i) * time.Second
			case "protocol_version":
				peer.ProtocolVersion = int(i)
			}
		case k == "allowed_ip":
			p, err := netip.ParsePrefix(v)
			if err != nil {
				return nil, bad(err)
			}
			peer.AllowedIPs = append(peer.AllowedIPs, net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())})
		}
		// Keys of newer protocol versions are skipped.
	}
	flush()
	return d, sc.Err()
}

// peerKeys are the keys that describe a peer.
var peerKeys = map[string]bool{
	"preshared_key": true, "endpoint": true, "last_handshake_time_sec": true, "last_handshake_time_nsec": true,
	"tx_bytes": true, "rx_bytes": true, "persistent_keepalive_interval": true, "protocol_version": true, "allowed_ip": true,
}

func hexKey(s string) (wgtypes.Key, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("key is not hexadecimal: %w", err)
	}
	return wgtypes.NewKey(b)
}
