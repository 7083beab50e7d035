//go:build linux

package routeagent

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-logr/logr"
	"github.com/vishvananda/netlink"

	"github.com/submariner-go/submariner/agents/netkit/iptables"
	"github.com/submariner-go/submariner/agents/netkit/route"
	"github.com/submariner-go/submariner/agents/netkit/vxlan"
)

// procSys is where the kernel's parameters are.
const procSys = "/proc/sys"

// NewKernel returns the real Kernel acting through h (whose network namespace it
// converges), running iptables-restore and iptables-save through runner. do runs a
// function in that network namespace (the sysctls under /proc/sys/net belong to
// the namespace of the thread that opens them); nil runs it in the calling
// thread's, which is right when h is the process's own namespace.
func NewKernel(h *netlink.Handle, runner iptables.Runner, do func(func() error) error) Kernel {
	if do == nil {
		do = func(fn func() error) error { return fn() }
	}
	return Kernel{
		Overlay:  vxlan.New(h, route.ProtocolRouteAgent),
		IPTables: iptables.New(runner, iptables.IPv4),
		System:   &netlinkSystem{h: h, do: do},
	}
}

// HostKernel returns the Kernel of the process's own network namespace: the
// agent's, which runs with hostNetwork.
func HostKernel() (Kernel, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return Kernel{}, fmt.Errorf("opening a netlink socket: %w", err)
	}
	return NewKernel(h, iptables.ExecRunner{}, nil), nil
}

// netlinkSystem is the real System.
type netlinkSystem struct {
	h  *netlink.Handle
	do func(func() error) error
}

// Links implements System.
func (s *netlinkSystem) Links(context.Context) ([]Link, error) {
	links, err := s.h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing interfaces: %w", err)
	}
	addrs, err := s.h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("listing IPv4 addresses: %w", err)
	}
	byIndex := map[int][]netip.Prefix{}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		byIndex[a.LinkIndex] = append(byIndex[a.LinkIndex], netip.PrefixFrom(ip.Unmap(), ones))
	}
	out := make([]Link, 0, len(links))
	for _, l := range links {
		attrs := l.Attrs()
		out = append(out, Link{Name: attrs.Name, MTU: attrs.MTU, Addrs: byIndex[attrs.Index]})
	}
	return out, nil
}

// Subscribe implements System.
func (s *netlinkSystem) Subscribe(ctx context.Context, changed func()) error {
	log := logr.FromContextOrDiscard(ctx)
	onError := func(err error) {
		log.Error(err, "Watching the host's interfaces; the periodic sync still picks changes up")
	}
	links := make(chan netlink.LinkUpdate, 64)
	addrs := make(chan netlink.AddrUpdate, 64)
	// The subscriptions' sockets belong to the namespace of the thread that opens
	// them.
	err := s.do(func() error {
		if err := netlink.LinkSubscribeWithOptions(links, ctx.Done(), netlink.LinkSubscribeOptions{ErrorCallback: onError}); err != nil {
			return fmt.Errorf("watching interfaces: %w", err)
		}
		if err := netlink.AddrSubscribeWithOptions(addrs, ctx.Done(), netlink.AddrSubscribeOptions{ErrorCallback: onError}); err != nil {
			return fmt.Errorf("watching addresses: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	go func() {
		for links != nil || addrs != nil {
			select {
			case u, ok := <-links:
				switch {
				case !ok:
					links = nil
				case ownLink(u.Attrs().Name):
				default:
					changed()
				}
			case u, ok := <-addrs:
				switch {
				case !ok:
					addrs = nil
				case ownAddr(u.LinkAddress.IP):
				default:
					changed()
				}
			}
		}
	}()
	return nil
}

// sysctlFile returns the file of a parameter, refusing paths that leave /proc/sys.
func sysctlFile(path string) (string, error) {
	if path == "" || strings.Contains(path, "..") || strings.HasPrefix(path, "/") {
		return "", fmt.Errorf("sysctl path %q is not a relative path under %s", path, procSys)
	}
	return filepath.Join(procSys, path), nil
}

// Sysctl implements System.
func (s *netlinkSystem) Sysctl(_ context.Context, path string) (string, error) {
	file, err := sysctlFile(path)
	if err != nil {
		return "", err
	}
	var data []byte
	err = s.do(func() (err error) {
		data, err = os.ReadFile(file)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("reading sysctl %s: %w", path, err)
	}
	return strings.TrimSpace(string(data)), nil
}

// SetSysctl implements System.
func (s *netlinkSystem) SetSysctl(_ context.Context, path, value string) error {
	file, err := sysctlFile(path)
	if err != nil {
		return err
	}
	if err := s.do(func() error { return os.WriteFile(file, []byte(value), 0o644) }); err != nil {
		return fmt.Errorf("setting sysctl %s to %s: %w", path, value, err)
	}
	return nil
}
