//go:build linux

package netns_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/vishvananda/netlink"

	"github.com/submariner-go/submariner/agents/netkit/netns"
	"github.com/submariner-go/submariner/agents/netkit/netns/netnstest"
)

// TestPrivilegedNamespaces checks that namespaces come up usable and go away leaving
// nothing behind:
//
//	+------------------+        veth         +------------------+
//	| a: 192.0.2.1/30  |---------------------| b: 192.0.2.2/30  |
//	|  TCP client      |                     |  TCP listener    |
//	+------------------+                     +------------------+
func TestPrivilegedNamespaces(t *testing.T) {
	netnstest.RequirePrivileged(t)
	before, err := netns.List()
	if err != nil {
		t.Fatal(err)
	}

	var names []string
	t.Run("use", func(t *testing.T) {
		a, b := netnstest.New(t), netnstest.New(t)
		names = []string{a.Name, b.Name}
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "va"}, PeerName: "vb", PeerNamespace: netlink.NsFd(b.Handle())}
		if err := a.Netlink.LinkAdd(veth); err != nil {
			t.Fatalf("adding veth pair: %v", err)
		}
		configure(t, a, "va", "192.0.2.1/30")
		configure(t, b, "vb", "192.0.2.2/30")

		out, err := a.Run(context.Background(), "ip", "-br", "addr", "show", "dev", "va")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), "192.0.2.1/30") {
			t.Errorf("ip addr in %s shows %q, want 192.0.2.1/30", a.Name, out)
		}

		var ln net.Listener
		if err := b.Do(func() (err error) { ln, err = net.Listen("tcp", "192.0.2.2:0"); return err }); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err == nil {
				_, _ = io.WriteString(c, "hello from b")
				c.Close()
			}
		}()
		var got []byte
		if err := a.Do(func() error {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				return err
			}
			defer c.Close()
			got, err = io.ReadAll(c)
			return err
		}); err != nil {
			t.Fatalf("connecting from %s to %s: %v", a.Name, ln.Addr(), err)
		}
		if string(got) != "hello from b" {
			t.Errorf("read %q across the veth, want %q", got, "hello from b")
		}
	})

	after, err := netns.List()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, after, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("namespaces left behind by %v (-before +after):\n%s", names, diff)
	}
	for _, name := range names {
		if err := netns.Remove(context.Background(), name); err != nil {
			t.Errorf("removing the already removed %s: %v", name, err)
		}
	}
}

func configure(t *testing.T, ns *netns.NS, dev, cidr string) {
	t.Helper()
	link, err := ns.Netlink.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	p := netip.MustParsePrefix(cidr)
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}
	if err := ns.Netlink.AddrAdd(link, addr); err != nil {
		t.Fatalf("adding %s to %s in %s: %v", cidr, dev, ns.Name, err)
	}
	if err := ns.Netlink.LinkSetUp(link); err != nil {
		t.Fatalf("bringing up %s in %s: %v", dev, ns.Name, err)
	}
}

func TestOpenRejectsBadNames(t *testing.T) {
	for _, name := range []string{"", "..", "a/b"} {
		if _, err := netns.Open(name); err == nil || !strings.Contains(err.Error(), "invalid network namespace name") {
			t.Errorf("Open(%q) = %v, want an invalid-name error", name, err)
		}
	}
}
