//go:build linux

package wireguard

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/submariner-go/submariner/agents/gateway/cable"
)

// kernelDevice is a WireGuard device of the kernel, configured through wgctrl.
type kernelDevice struct {
	name   string
	host   *cable.Host
	client *wgctrl.Client
}

// newKernelDevice creates the kernel device name (replacing one left behind) with
// mtu. It returns errNoKernelWireGuard when the kernel has no WireGuard.
func newKernelDevice(h *cable.Host, name string, mtu int) (*kernelDevice, error) {
	if err := deleteLink(h, name); err != nil {
		return nil, err
	}
	err := h.Netlink.LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}})
	if errors.Is(err, unix.EOPNOTSUPP) || err != nil && strings.Contains(err.Error(), "not supported") {
		return nil, fmt.Errorf("%w: %v", errNoKernelWireGuard, err)
	}
	if err != nil {
		return nil, fmt.Errorf("creating the WireGuard device %s: %w", name, err)
	}
	var c *wgctrl.Client
	// wgctrl's generic netlink socket talks to the namespace it is opened in.
	if err := h.Do(func() error {
		var err error
		c, err = wgctrl.New()
		return err
	}); err != nil {
		_ = deleteLink(h, name)
		return nil, fmt.Errorf("opening wgctrl: %w", err)
	}
	return &kernelDevice{name: name, host: h, client: c}, nil
}

func (k *kernelDevice) Kind() string { return "kernel" }

func (k *kernelDevice) Configure(cfg wgtypes.Config) error {
	return k.client.ConfigureDevice(k.name, cfg)
}

func (k *kernelDevice) Device() (*wgtypes.Device, error) { return k.client.Device(k.name) }

func (k *kernelDevice) Close() error {
	return errors.Join(k.client.Close(), deleteLink(k.host, k.name))
}

// deleteLink deletes the interface called name in h's namespace, if any.
func deleteLink(h *cable.Host, name string) error {
	l, err := h.Netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("looking up %s: %w", name, err)
	}
	if err := h.Netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("deleting %s: %w", name, err)
	}
	return nil
}

// userspaceDevice is an embedded wireguard-go device on a TUN interface, for
// kernels without WireGuard. It lives as long as the process (or Close).
type userspaceDevice struct {
	name string
	dev  *device.Device
	uapi net.Listener
	sock string
	wg   sync.WaitGroup
}

// newUserspaceDevice creates the TUN interface name with mtu in h's namespace and
// runs wireguard-go on it. Its UAPI socket, <socketDir>/<name>.sock, serves wg(8)
// and wgctrl; when another live device holds that path the socket is skipped (the
// driver configures the device in-process either way).
func newUserspaceDevice(h *cable.Host, name string, mtu int, socketDir string, log logr.Logger) (*userspaceDevice, error) {
	var t tun.Device
	if err := h.Do(func() error {
		var err error
		t, err = tun.CreateTUN(name, mtu)
		return err
	}); err != nil {
		return nil, fmt.Errorf("creating the TUN device %s for the userspace WireGuard device: %w", name, err)
	}
	if socketDir == "" {
		socketDir = DefaultSocketDir
	}
	return newUserspace(name, &nsTUN{Device: t, host: h}, &nsBind{Bind: conn.NewDefaultBind(), host: h}, socketDir, log), nil
}

// newUserspace runs wireguard-go on t and bind, serving its UAPI socket in
// socketDir unless that is empty.
func newUserspace(name string, t tun.Device, bind conn.Bind, socketDir string, log logr.Logger) *userspaceDevice {
	logger := &device.Logger{
		Verbosef: func(format string, args ...any) { log.V(4).Info(fmt.Sprintf(format, args...)) },
		// Its errors are per packet (a peer unreachable, say) and repeat every second
		// while they last: the tunnel's status tells the lasting ones.
		Errorf: func(format string, args ...any) { log.V(2).Info("wireguard-go: " + fmt.Sprintf(format, args...)) },
	}
	u := &userspaceDevice{name: name, dev: device.NewDevice(t, bind, logger)}
	if socketDir != "" {
		if err := u.serveUAPI(socketDir); err != nil {
			log.Info("Not serving the WireGuard UAPI socket; wg(8) will not see the device", "reason", err.Error())
		}
	}
	return u
}

func (u *userspaceDevice) Kind() string { return "userspace" }

// serveUAPI listens on the device's UAPI socket.
func (u *userspaceDevice) serveUAPI(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("making %s: %w", dir, err)
	}
	path := filepath.Join(dir, u.name+".sock")
	if c, err := net.Dial("unix", path); err == nil {
		_ = c.Close()
		return fmt.Errorf("%s is served by another WireGuard device (another gateway sharing this directory?)", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing the stale socket %s: %w", path, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = l.Close()
		return fmt.Errorf("restricting %s to root: %w", path, err)
	}
	u.uapi, u.sock = l, path
	u.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go u.dev.IpcHandle(c)
		}
	})
	return nil
}

func (u *userspaceDevice) Configure(cfg wgtypes.Config) error {
	if err := u.dev.IpcSet(RenderUAPI(cfg)); err != nil {
		return fmt.Errorf("configuring the userspace WireGuard device %s: %w", u.name, err)
	}
	return u.dev.Up()
}

func (u *userspaceDevice) Device() (*wgtypes.Device, error) {
	s, err := u.dev.IpcGet()
	if err != nil {
		return nil, fmt.Errorf("reading the userspace WireGuard device %s: %w", u.name, err)
	}
	return ParseUAPI(u.name, s)
}

func (u *userspaceDevice) Close() error {
	if u.uapi != nil {
		_ = u.uapi.Close()
		u.wg.Wait()
		_ = os.Remove(u.sock)
	}
	u.dev.Close() // closes the TUN, which removes the interface
	return nil
}

// nsTUN reads the TUN's MTU inside its namespace (wireguard-go asks by name
// through a socket of the calling thread's namespace).
type nsTUN struct {
	tun.Device
	host *cable.Host
}

func (t *nsTUN) MTU() (int, error) {
	var mtu int
	err := t.host.Do(func() error {
		var err error
		mtu, err = t.Device.MTU()
		return err
	})
	return mtu, err
}

// nsBind opens wireguard-go's UDP sockets inside the host's namespace, whichever
// goroutine brings the device up.
type nsBind struct {
	conn.Bind
	host *cable.Host
}

func (b *nsBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	var (
		fns    []conn.ReceiveFunc
		actual uint16
	)
	err := b.host.Do(func() error {
		var err error
		fns, actual, err = b.Bind.Open(port)
		return err
	})
	return fns, actual, err
}
