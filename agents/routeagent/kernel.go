package routeagent

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/submariner-go/submariner/agents/netkit/iptables"
	"github.com/submariner-go/submariner/agents/netkit/vxlan"
)

// Kernel is the node's kernel as the agent uses it: the netkit convergers for the
// overlay and the packet filter, and System for what remains. NewKernel builds the
// real one; tests put the netkit fakes and FakeSystem in.
type Kernel struct {
	// Overlay converges vx-submariner with its FDB entries and the agent's routes
	// (route.ProtocolRouteAgent).
	Overlay vxlan.Interface
	// IPTables runs iptables-restore and iptables-save.
	IPTables iptables.Interface
	// System lists interfaces and reads and writes sysctls.
	System System
}

// System is what the agent needs from the host besides the overlay and iptables.
type System interface {
	// Links lists the host's interfaces with their IPv4 addresses.
	Links(ctx context.Context) ([]Link, error)
	// Sysctl reads a kernel parameter (path under /proc/sys, slash-separated); the
	// value comes without its trailing newline.
	Sysctl(ctx context.Context, path string) (string, error)
	// SetSysctl writes a kernel parameter.
	SetSysctl(ctx context.Context, path, value string) error
	// Subscribe calls changed, from another goroutine, whenever an interface or an
	// IPv4 address appears, goes or changes (but for vx-submariner and its VTEP,
	// which the agent itself makes), until ctx is done. It returns once the
	// subscription is in place.
	Subscribe(ctx context.Context, changed func()) error
}

var _ System = (*FakeSystem)(nil)

// FakeSystem is an in-memory System: interfaces as set with SetLinks, and sysctls
// in a map in which every interface's rp_filter starts out at the default value
// given to NewFakeSystem.
type FakeSystem struct {
	mu          sync.Mutex
	links       []Link
	sysctls     map[string]string
	rpFilter    string
	writes      []string
	subscribers map[int]func()
	nextID      int
}

// NewFakeSystem returns a FakeSystem with links, net/ipv4/conf/all/rp_filter and
// every interface's rp_filter set to rpFilter, and forwarding off.
func NewFakeSystem(rpFilter string, links ...Link) *FakeSystem {
	return &FakeSystem{
		links:       slices.Clone(links),
		sysctls:     map[string]string{sysctlForwarding: "0", sysctlRPFilterAll: rpFilter},
		rpFilter:    rpFilter,
		subscribers: map[int]func(){},
	}
}

// SetLinks replaces the interfaces and tells the subscribers.
func (f *FakeSystem) SetLinks(links ...Link) {
	f.mu.Lock()
	f.links = slices.Clone(links)
	subs := slices.Collect(maps.Values(f.subscribers))
	f.mu.Unlock()
	for _, changed := range subs {
		changed()
	}
}

// Subscribe implements System.
func (f *FakeSystem) Subscribe(ctx context.Context, changed func()) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.nextID
	f.nextID++
	f.subscribers[id] = changed
	go func() {
		<-ctx.Done()
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.subscribers, id)
	}()
	return nil
}

// Links implements System.
func (f *FakeSystem) Links(context.Context) ([]Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.links), nil
}

// Sysctl implements System.
func (f *FakeSystem) Sysctl(_ context.Context, path string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v, ok := f.sysctls[path]; ok {
		return v, nil
	}
	if strings.HasPrefix(path, "net/ipv4/conf/") && strings.HasSuffix(path, "/rp_filter") {
		return f.rpFilter, nil
	}
	return "", fmt.Errorf("reading /proc/sys/%s: no such parameter", path)
}

// SetSysctl implements System.
func (f *FakeSystem) SetSysctl(_ context.Context, path, value string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sysctls[path] = value
	f.writes = append(f.writes, path+"="+value)
	return nil
}

// Writes returns every write, in order, as path=value.
func (f *FakeSystem) Writes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.writes)
}

// String renders the sysctls set so far, sorted, one path = value per line.
func (f *FakeSystem) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(f.sysctls)) {
		fmt.Fprintf(&b, "sysctl %s = %s\n", k, f.sysctls[k])
	}
	return b.String()
}

// ownLink reports whether an interface is the agent's own: its changes come from
// the agent's syncs and need no further sync.
func ownLink(name string) bool { return name == vxlan.DeviceName }

// ownAddr reports whether an address is a vx-submariner VTEP (240.0.0.0/8).
func ownAddr(ip net.IP) bool {
	a, ok := netip.AddrFromSlice(ip)
	return ok && a.Unmap().Is4() && a.Unmap().As4()[0] == vxlan.VTEPFirstOctet
}
