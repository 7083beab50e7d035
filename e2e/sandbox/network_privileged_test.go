package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/submariner-go/submariner/agents/netkit/netns"
	"github.com/submariner-go/submariner/agents/netkit/netns/netnstest"
)

// takeLock takes the machine-wide sandbox lock for the test (waiting for other
// sandboxes, such as another test package's), after removing what a crashed
// sandbox left.
func takeLock(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	for {
		lock, err := WaitLock(ctx, func(reason error) { t.Logf("waiting for the sandbox lock: %v", reason) })
		if err != nil {
			t.Fatal(err)
		}
		left, err := Leftovers()
		if err != nil {
			t.Fatal(err)
		}
		if len(left) == 0 {
			t.Cleanup(func() { lock.Release() })
			return
		}
		lock.Release()
		t.Logf("removing leftovers of an earlier sandbox: %v", left)
		if err := Down(ctx, ""); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPrivilegedNetwork builds the sandbox's network alone (no Kubernetes), checks
// what the fabric forwards and what the leak guard stops, and that the teardown
// leaves the machine as it found it:
//
//	root netns 192.168.240.1 --veth-- sbx-fabric --br-c1-- c1-gw1 .21, c1-gw2 .22, c1-node1 .11
//	                                             \-br-c2-- c2-gw1 .21, c2-gw2 .22, c2-node1 .11
func TestPrivilegedNetwork(t *testing.T) {
	netnstest.RequirePrivileged(t)
	takeLock(t)
	ctx := context.Background()
	before, err := Footprint("")
	if err != nil {
		t.Fatal(err)
	}
	topo, err := Plan(2, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	root, err := netlink.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	t.Cleanup(func() {
		if err := tearDownNetwork(ctx); err != nil {
			t.Errorf("tearing down: %v", err)
		}
		if err := tearDownNetwork(ctx); err != nil {
			t.Errorf("tearing down a second time: %v", err)
		}
		after, err := Footprint("")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(before, after); diff != "" {
			t.Errorf("the machine differs after the teardown (-before +after):\n%s", diff)
		}
	})
	if err := (&network{topo: topo, root: root}).setUp(ctx); err != nil {
		t.Fatal(err)
	}
	node := func(name string) (Node, *netns.NS) {
		t.Helper()
		for _, n := range topo.Nodes() {
			if n.Name == name {
				ns, err := netns.Open(n.NetNS)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(ns.Close)
				return n, ns
			}
		}
		t.Fatalf("no node %s", name)
		return Node{}, nil
	}
	c1gw1, c1gw1NS := node("c1-gw1")
	c1node1, c1node1NS := node("c1-node1")
	c2gw2, c2gw2NS := node("c2-gw2")
	c2node1, c2node1NS := node("c2-node1")

	t.Run("root reaches every node", func(t *testing.T) {
		for _, n := range topo.Nodes() {
			ns, err := netns.Open(n.NetNS)
			if err != nil {
				t.Fatal(err)
			}
			addr := serveTCP(t, ns, n.IP)
			if got, err := dialTCP(nil, addr); err != nil || got != "hello from "+addr.String() {
				t.Errorf("root to %s at %s: got %q, %v", n.Name, addr, got, err)
			}
			ns.Close()
		}
	})
	t.Run("nodes reach the API servers' address", func(t *testing.T) {
		var ln net.Listener
		ln, err := net.Listen("tcp", netip.AddrPortFrom(RootAddr.Addr(), 0).String())
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go answer(ln)
		addr := netip.MustParseAddrPort(ln.Addr().String())
		for _, ns := range []*netns.NS{c1node1NS, c2gw2NS} {
			if got, err := dialTCP(ns, addr); err != nil || got != "hello from "+addr.String() {
				t.Errorf("%s to %s: got %q, %v", ns.Name, addr, got, err)
			}
		}
	})
	t.Run("nodes of a cluster reach each other", func(t *testing.T) {
		addr := serveTCP(t, c1gw1NS, c1gw1.IP)
		if got, err := dialTCP(c1node1NS, addr); err != nil || got != "hello from "+addr.String() {
			t.Errorf("c1-node1 to c1-gw1: got %q, %v", got, err)
		}
	})
	t.Run("gateways reach other clusters' gateways on the tunnel ports", func(t *testing.T) {
		for _, port := range []uint16{4500, 4490} {
			dst := netip.AddrPortFrom(c2gw2.IP, port)
			got, err := udpRoundTrip(t, c1gw1NS, c2gw2NS, dst)
			if err != nil || got != "ping" {
				t.Errorf("c1-gw1 to %s over UDP: got %q, %v", dst, got, err)
			}
		}
		if err := ping(c1gw1NS, c2gw2.IP); err != nil {
			t.Errorf("c1-gw1 pinging c2-gw2: %v", err)
		}
	})
	t.Run("everything else between clusters is refused", func(t *testing.T) {
		for _, tc := range []struct {
			from *netns.NS
			to   netip.AddrPort
			how  string
		}{
			{c1node1NS, netip.AddrPortFrom(c2node1.IP, 4500), "udp"},
			{c1node1NS, netip.AddrPortFrom(c2gw2.IP, 4500), "udp"},
			{c1gw1NS, netip.AddrPortFrom(c2gw2.IP, 4501), "udp"},
			{c1gw1NS, netip.AddrPortFrom(c2gw2.IP, 4500), "tcp"},
			{c2node1NS, netip.AddrPortFrom(c1node1.IP, 8080), "tcp"},
		} {
			var err error
			if tc.how == "tcp" {
				_, err = dialTCP(tc.from, tc.to)
			} else {
				_, err = udpRoundTrip(t, tc.from, nil, tc.to)
			}
			if !errors.Is(err, syscall.EHOSTUNREACH) {
				t.Errorf("%s from %s to %s: error %v, want %v (refused by the fabric)", tc.how, tc.from.Name, tc.to, err, syscall.EHOSTUNREACH)
			}
		}
	})
	t.Run("nodes reach nothing beyond the sandbox", func(t *testing.T) {
		for _, dst := range []string{"192.0.2.1:80", "8.8.8.8:53", "10.242.11.5:8080"} {
			_, err := dialTCP(c1node1NS, netip.MustParseAddrPort(dst))
			if !errors.Is(err, syscall.ENETUNREACH) && !errors.Is(err, syscall.EHOSTUNREACH) {
				t.Errorf("c1-node1 to %s: error %v, want unreachable (the fabric has no route)", dst, err)
			}
		}
	})
	t.Run("the root netns sends nothing to unassigned sandbox addresses", func(t *testing.T) {
		for _, dst := range []string{"10.241.99.9", "10.142.0.99", "10.140.3.3", "192.168.250.1", "242.1.2.3"} {
			c, err := net.Dial("udp", dst+":9")
			if err == nil {
				_, err = c.Write([]byte("leak?"))
				c.Close()
			}
			if !errors.Is(err, syscall.EINVAL) {
				t.Errorf("sending to %s from the root netns: error %v, want %v (blackhole route)", dst, err, syscall.EINVAL)
			}
		}
		// An unassigned address of a node network goes to the fabric, not the uplink.
		routes, err := root.RouteGet(net.ParseIP("192.168.241.200"))
		if err != nil || len(routes) != 1 {
			t.Fatalf("route to 192.168.241.200: %v, %v", routes, err)
		}
		link, err := root.LinkByIndex(routes[0].LinkIndex)
		if err != nil || link.Attrs().Name != RootVeth {
			t.Errorf("route to 192.168.241.200 leaves through %v (%v), want %s", link, err, RootVeth)
		}
	})
	t.Run("the root netns does not forward for the sandbox", func(t *testing.T) {
		for _, cmd := range iptablesFamilies {
			for _, rule := range [][]string{
				{"FORWARD", "-j", RootChain},
				{RootChain, "-i", RootVeth, "-m", "comment", "--comment", "submariner sandbox: no forwarding from the sandbox", "-j", "DROP"},
				{RootChain, "-o", RootVeth, "-m", "comment", "--comment", "submariner sandbox: no forwarding into the sandbox", "-j", "DROP"},
			} {
				if out, err := exec.Command(cmd, append([]string{"-w", "-C"}, rule...)...).CombinedOutput(); err != nil {
					t.Errorf("%s -C %s: %v: %s", cmd, strings.Join(rule, " "), err, out)
				}
			}
		}
	})
}

// ping sends one ICMP echo request from ns to dst and waits for the reply.
func ping(ns *netns.NS, dst netip.Addr) error {
	var c *icmp.PacketConn
	if err := ns.Do(func() (err error) {
		c, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: 0x5b, Seq: 1, Data: []byte("sandbox")}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Minute))
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return err
		}
		reply, err := icmp.ParseMessage(1, buf[:n])
		if err != nil {
			return err
		}
		if echo, ok := reply.Body.(*icmp.Echo); ok && reply.Type == ipv4.ICMPTypeEchoReply && echo.ID == 0x5b && from.String() == dst.String() {
			return nil
		}
	}
}

// serveTCP listens in ns on ip and greets every connection with "hello from ADDR".
func serveTCP(t *testing.T, ns *netns.NS, ip netip.Addr) netip.AddrPort {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go answer(ln)
	return netip.MustParseAddrPort(ln.Addr().String())
}

func answer(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		fmt.Fprintf(c, "hello from %s", ln.Addr())
		c.Close()
	}
}

// dialTCP connects from ns (the root netns when nil) and reads the greeting.
func dialTCP(ns *netns.NS, addr netip.AddrPort) (string, error) {
	var c net.Conn
	dial := func() (err error) {
		c, err = net.DialTimeout("tcp", addr.String(), time.Minute)
		return err
	}
	var err error
	if ns == nil {
		err = dial()
	} else {
		err = ns.Do(dial)
	}
	if err != nil {
		return "", err
	}
	defer c.Close()
	b, err := io.ReadAll(c)
	return string(b), err
}

// udpRoundTrip sends "ping" from a connected socket in from to dst and returns what
// a listener in to (nil: none) received, or the error the sender's socket got back
// (a refusal by the fabric arrives as an ICMP error on the connected socket).
func udpRoundTrip(t *testing.T, from, to *netns.NS, dst netip.AddrPort) (string, error) {
	t.Helper()
	var ln net.PacketConn
	if to != nil {
		if err := to.Do(func() (err error) {
			ln, err = net.ListenPacket("udp", dst.String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
	}
	var c net.Conn
	if err := from.Do(func() (err error) {
		c, err = net.Dial("udp", dst.String())
		return err
	}); err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		return "", err
	}
	if ln == nil {
		// Nothing listens: the only answer can be an ICMP error, which the read
		// returns (the deadline is a safety net, not the assertion).
		_ = c.SetReadDeadline(time.Now().Add(time.Minute))
		_, err := c.Read(make([]byte, 16))
		return "", err
	}
	_ = ln.SetReadDeadline(time.Now().Add(time.Minute))
	buf := make([]byte, 16)
	n, _, err := ln.ReadFrom(buf)
	return string(buf[:n]), err
}
