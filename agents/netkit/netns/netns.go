// Package netns manages named network namespaces the way iproute2 does (bound under
// /run/netns, so `ip netns` sees them) and gives each a netlink handle bound to it, so
// one process can drive many namespaces without moving its own threads.
package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
)

// Dir is where iproute2 binds named network namespaces.
const Dir = "/run/netns"

// NS is a named network namespace with a netlink handle bound to it.
type NS struct {
	// Name is the namespace's name under Dir.
	Name string
	// Netlink is a netlink handle whose requests act inside the namespace.
	Netlink *netlink.Handle

	fd vnetns.NsHandle
}

// Create makes a new named network namespace with `ip netns add` (which also sets up
// the shared mount of Dir that keeps namespaces deletable when other mount namespaces
// exist) and opens it. The loopback device is brought up.
func Create(ctx context.Context, name string) (*NS, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, "ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("creating network namespace %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	ns, err := Open(name)
	if err != nil {
		_ = remove(context.WithoutCancel(ctx), name)
		return nil, err
	}
	lo, err := ns.Netlink.LinkByName("lo")
	if err == nil {
		err = ns.Netlink.LinkSetUp(lo)
	}
	if err != nil {
		ns.Close()
		_ = remove(context.WithoutCancel(ctx), name)
		return nil, fmt.Errorf("bringing up lo in network namespace %s: %w", name, err)
	}
	return ns, nil
}

// Open opens an existing named network namespace.
func Open(name string) (*NS, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	fd, err := vnetns.GetFromPath(filepath.Join(Dir, name))
	if err != nil {
		return nil, fmt.Errorf("opening network namespace %s: %w", name, err)
	}
	h, err := netlink.NewHandleAt(fd)
	if err != nil {
		fd.Close()
		return nil, fmt.Errorf("opening netlink handle in network namespace %s: %w", name, err)
	}
	return &NS{Name: name, Netlink: h, fd: fd}, nil
}

// Path returns the namespace's bind-mount path, for tools that take a netns file.
func (n *NS) Path() string { return filepath.Join(Dir, n.Name) }

// Handle returns the namespace's file handle, for netlink calls that move links
// into it. It stays valid until Close.
func (n *NS) Handle() vnetns.NsHandle { return n.fd }

// Command returns a command that runs inside the namespace through `ip netns exec`.
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Run runs a command inside the namespace and returns its combined output. A failure
// carries the command line and its output.
func (n *NS) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := n.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("running %s %s in network namespace %s: %w: %s",
			name, strings.Join(args, " "), n.Name, err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// Do runs fn on an OS thread that has entered the namespace, for code that opens
// sockets or calls libraries without a namespace option. The thread is returned to
// the original namespace afterwards, or retired if that fails.
func (n *NS) Do(fn func() error) error {
	runtime.LockOSThread()
	orig, err := vnetns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("reading current network namespace: %w", err)
	}
	defer orig.Close()
	if err := vnetns.Set(n.fd); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering network namespace %s: %w", n.Name, err)
	}
	fnErr := fn()
	if err := vnetns.Set(orig); err != nil {
		// Leave the thread locked: the runtime retires it when this goroutine exits.
		return errors.Join(fnErr, fmt.Errorf("leaving network namespace %s: %w", n.Name, err))
	}
	runtime.UnlockOSThread()
	return fnErr
}

// Close releases the handles without deleting the namespace.
func (n *NS) Close() {
	if n.Netlink != nil {
		n.Netlink.Close()
		n.Netlink = nil
	}
	if n.fd.IsOpen() {
		n.fd.Close()
		n.fd = vnetns.None()
	}
}

// Delete closes the handles and deletes the namespace. A namespace that is already
// gone is not an error.
func (n *NS) Delete(ctx context.Context) error {
	n.Close()
	return remove(ctx, n.Name)
}

// Remove deletes the named namespace; one that does not exist is not an error.
func Remove(ctx context.Context, name string) error {
	if err := validName(name); err != nil {
		return err
	}
	return remove(ctx, name)
}

func remove(ctx context.Context, name string) error {
	if _, err := os.Stat(filepath.Join(Dir, name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if out, err := exec.CommandContext(ctx, "ip", "netns", "delete", name).CombinedOutput(); err != nil {
		if _, statErr := os.Stat(filepath.Join(Dir, name)); errors.Is(statErr, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("deleting network namespace %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// List returns the names of all named network namespaces, sorted.
func List() ([]string, error) {
	entries, err := os.ReadDir(Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", Dir, err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, nil
}

func validName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || len(name) > 255 {
		return fmt.Errorf("invalid network namespace name %q: use a non-empty name without '/'", name)
	}
	return nil
}
