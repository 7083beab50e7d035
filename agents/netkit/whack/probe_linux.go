package whack

import (
	"fmt"
	"net"
	"strings"

	"github.com/vishvananda/netlink"
)

// ProbeESP asks the kernel behind h to install, then removes, a throwaway ESP
// tunnel-mode SA between two documentation addresses (192.0.2.1 -> 192.0.2.2), once
// with AES-GCM (what pluto negotiates first) and once with AES-CBC and HMAC-SHA256.
// It returns nil if the kernel accepted either, or the kernel's answers: a gateway
// can tell its operator why no tunnel will carry traffic before any peer is tried.
// Run it in a network namespace of its own: the SA exists for a moment.
func ProbeESP(h *netlink.Handle) error {
	src, dst := net.ParseIP("192.0.2.1").To4(), net.ParseIP("192.0.2.2").To4()
	key := func(n int) []byte {
		k := make([]byte, n)
		for i := range k {
			k[i] = byte(i + 1)
		}
		return k
	}
	tries := []struct {
		name  string
		state netlink.XfrmState
	}{
		{"rfc4106(gcm(aes))", netlink.XfrmState{
			Src: src, Dst: dst, Proto: netlink.XFRM_PROTO_ESP, Mode: netlink.XFRM_MODE_TUNNEL, Spi: 0x5ec0001,
			Aead: &netlink.XfrmStateAlgo{Name: "rfc4106(gcm(aes))", Key: key(20), ICVLen: 128},
		}},
		{"cbc(aes) with hmac(sha256)", netlink.XfrmState{
			Src: src, Dst: dst, Proto: netlink.XFRM_PROTO_ESP, Mode: netlink.XFRM_MODE_TUNNEL, Spi: 0x5ec0002,
			Crypt: &netlink.XfrmStateAlgo{Name: "cbc(aes)", Key: key(16)},
			Auth:  &netlink.XfrmStateAlgo{Name: "hmac(sha256)", Key: key(32), TruncateLen: 128},
		}},
	}
	var errs []string
	for _, t := range tries {
		st := t.state
		if err := h.XfrmStateAdd(&st); err != nil {
			errs = append(errs, fmt.Sprintf("adding an ESP SA with %s: %v", t.name, err))
			continue
		}
		if err := h.XfrmStateDel(&st); err != nil {
			return fmt.Errorf("removing the probe's ESP SA: %w", err)
		}
		return nil
	}
	return fmt.Errorf("the kernel cannot install ESP SAs: %s", strings.Join(errs, "; "))
}
