package nodeagent

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// nextFree picks a pod address from prefix, like CNI's host-local plugin: the
// first free address after last (wrapping around), never the network address,
// the gateway (the prefix's first host) or the broadcast address, so that a
// just-released address is not handed out again at once.
func nextFree(prefix netip.Prefix, used map[netip.Addr]bool, last netip.Addr) (netip.Addr, error) {
	prefix = prefix.Masked()
	first := prefix.Addr().Next().Next() // network, gateway
	lastHost := lastAddr(prefix).Prev()  // broadcast
	if !first.IsValid() || !lastHost.IsValid() || lastHost.Less(first) {
		return netip.Addr{}, fmt.Errorf("pod CIDR %s has no room for pods", prefix)
	}
	start := first
	if last.IsValid() && prefix.Contains(last) && !last.Less(first) && last.Less(lastHost) {
		start = last.Next()
	}
	a := start
	for {
		if !used[a] {
			return a, nil
		}
		a = a.Next()
		if lastHost.Less(a) {
			a = first
		}
		if a == start {
			return netip.Addr{}, fmt.Errorf("pod CIDR %s is full: every address is allocated", prefix)
		}
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// ipam keeps pod address allocations on disk, one file per address holding the
// pod UID (as host-local does), so they survive an agent restart and Cleanup can
// release them.
type ipam struct {
	dir    string
	prefix netip.Prefix
	mu     sync.Mutex
}

const ipamLastFile = "last_reserved_ip"

// allocate returns the pod's address, reusing the one it holds.
func (m *ipam) allocate(uid string) (netip.Addr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return netip.Addr{}, fmt.Errorf("creating %s: %w", m.dir, err)
	}
	used, err := m.read()
	if err != nil {
		return netip.Addr{}, err
	}
	for a, owner := range used {
		if owner == uid {
			return a, nil
		}
	}
	var last netip.Addr
	if data, err := os.ReadFile(filepath.Join(m.dir, ipamLastFile)); err == nil {
		last, _ = netip.ParseAddr(strings.TrimSpace(string(data)))
	}
	taken := make(map[netip.Addr]bool, len(used))
	for a := range used {
		taken[a] = true
	}
	a, err := nextFree(m.prefix, taken, last)
	if err != nil {
		return netip.Addr{}, err
	}
	if err := os.WriteFile(filepath.Join(m.dir, a.String()), []byte(uid), 0o600); err != nil {
		return netip.Addr{}, fmt.Errorf("recording address %s: %w", a, err)
	}
	if err := os.WriteFile(filepath.Join(m.dir, ipamLastFile), []byte(a.String()), 0o600); err != nil {
		return netip.Addr{}, fmt.Errorf("recording address %s: %w", a, err)
	}
	return a, nil
}

// release frees every address the pod holds; none is not an error.
func (m *ipam) release(uid string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	used, err := m.read()
	if err != nil {
		return err
	}
	for a, owner := range used {
		if owner == uid {
			if err := os.Remove(filepath.Join(m.dir, a.String())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("releasing address %s: %w", a, err)
			}
		}
	}
	return nil
}

func (m *ipam) read() (map[netip.Addr]string, error) {
	entries, err := os.ReadDir(m.dir)
	if errors.Is(err, os.ErrNotExist) {
		return map[netip.Addr]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", m.dir, err)
	}
	used := map[netip.Addr]string{}
	for _, e := range entries {
		a, err := netip.ParseAddr(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join(m.dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading allocation %s: %w", e.Name(), err)
		}
		used[a] = strings.TrimSpace(string(data))
	}
	return used, nil
}
