// Package cabletest builds, for privileged tests of the cable drivers and the
// gateway, two clusters' gateways in network namespaces joined by an underlay, each
// with a pod behind it, and checks TCP between the pods:
//
//	west pod (netns)        west gateway (netns)                      east gateway (netns)        east pod (netns)
//	eth0 10.1.1.2/24 ---veth--- cni0 10.1.1.1/24 (bridge)            cni0 10.2.1.1/24 (bridge) ---veth--- eth0 10.2.1.2/24
//	default via 10.1.1.1        eth0 198.51.100.1/24 <---veth---> eth0 198.51.100.2/24          default via 10.2.1.1
//	                            ip_forward=1                         ip_forward=1
//
// Cluster1 (west) has pods 10.1.0.0/16 and services 100.1.0.0/16, cluster2 (east)
// 10.2.0.0/16 and 100.2.0.0/16. Nothing routes between the clusters' pod networks
// but the cable under test: the gateways know only their own cni0 and the underlay
// /24. Every namespace is removed when the test ends.
package cabletest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/submariner-go/submariner/agents/gateway/cable"
	"github.com/submariner-go/submariner/agents/netkit/netns"
	"github.com/submariner-go/submariner/agents/netkit/netns/netnstest"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Side is one cluster of the topology.
type Side struct {
	ClusterID string
	// Gateway is the gateway's namespace, Pod the pod's.
	Gateway, Pod *netns.NS
	// Host is the gateway's namespace for the drivers.
	Host *cable.Host
	// IP is the gateway's underlay address, CNI its cni0 address, PodIP the pod's.
	IP, CNI, PodIP netip.Addr
	// Subnets are the cluster's service and pod CIDRs.
	Subnets []netip.Prefix
}

// Topology is the two clusters.
type Topology struct {
	West, East *Side
}

// New builds the topology.
func New(t *testing.T) *Topology {
	t.Helper()
	ctx := context.Background()
	west := &Side{
		ClusterID: "cluster1", Gateway: netnstest.New(t), Pod: netnstest.New(t),
		IP: netip.MustParseAddr("198.51.100.1"), CNI: netip.MustParseAddr("10.1.1.1"), PodIP: netip.MustParseAddr("10.1.1.2"),
		Subnets: []netip.Prefix{netip.MustParsePrefix("100.1.0.0/16"), netip.MustParsePrefix("10.1.0.0/16")},
	}
	east := &Side{
		ClusterID: "cluster2", Gateway: netnstest.New(t), Pod: netnstest.New(t),
		IP: netip.MustParseAddr("198.51.100.2"), CNI: netip.MustParseAddr("10.2.1.1"), PodIP: netip.MustParseAddr("10.2.1.2"),
		Subnets: []netip.Prefix{netip.MustParsePrefix("100.2.0.0/16"), netip.MustParsePrefix("10.2.0.0/16")},
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(veth(ctx, west.Gateway, east.Gateway, "eth0", "eth0"))
	must(addr(west.Gateway, "eth0", "198.51.100.1/24"))
	must(addr(east.Gateway, "eth0", "198.51.100.2/24"))
	for _, s := range []*Side{west, east} {
		s.Host = cable.NamespaceHost(s.Gateway)
		must(s.Gateway.Netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "cni0"}}))
		must(addr(s.Gateway, "cni0", s.CNI.String()+"/24"))
		must(veth(ctx, s.Pod, s.Gateway, "eth0", "veth-pod"))
		l, err := s.Gateway.Netlink.LinkByName("veth-pod")
		must(err)
		br, err := s.Gateway.Netlink.LinkByName("cni0")
		must(err)
		must(s.Gateway.Netlink.LinkSetMaster(l, br))
		must(addr(s.Pod, "eth0", s.PodIP.String()+"/24"))
		_, err = s.Pod.Run(ctx, "ip", "route", "add", "default", "via", s.CNI.String())
		must(err)
		_, err = s.Gateway.Run(ctx, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		must(err)
	}
	return &Topology{West: west, East: east}
}

var vethCounter atomic.Int64

// veth joins a and b with a veth pair named aName in a and bName in b, both up.
func veth(ctx context.Context, a, b *netns.NS, aName, bName string) error {
	tmp := fmt.Sprintf("cabletest%d", vethCounter.Add(1))
	if err := a.Netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: aName}, PeerName: tmp, PeerNamespace: netlink.NsFd(b.Handle())}); err != nil {
		return fmt.Errorf("adding veth %s: %w", aName, err)
	}
	if _, err := b.Run(ctx, "ip", "link", "set", tmp, "name", bName, "up"); err != nil {
		return err
	}
	l, err := a.Netlink.LinkByName(aName)
	if err != nil {
		return err
	}
	return a.Netlink.LinkSetUp(l)
}

// addr adds prefix to dev in ns and brings dev up.
func addr(ns *netns.NS, dev, prefix string) error {
	l, err := ns.Netlink.LinkByName(dev)
	if err != nil {
		return err
	}
	a, err := netlink.ParseAddr(prefix)
	if err != nil {
		return err
	}
	if err := ns.Netlink.AddrAdd(l, a); err != nil {
		return fmt.Errorf("adding %s to %s: %w", prefix, dev, err)
	}
	return ns.Netlink.LinkSetUp(l)
}

// Config returns the driver configuration of the side's gateway.
func (s *Side) Config(psk []byte, dir string) cable.Config {
	return cable.Config{
		Host: s.Host, Port: submv1.CablePort, PSK: psk, RouteSrc: s.CNI, LocalIP: s.IP,
		StateDir: dir, WireGuardMode: "auto", WireGuardSocketDir: dir,
	}
}

// Endpoint returns the side's Endpoint for backend with the driver's config.
func (s *Side) Endpoint(backend submv1.Backend, driverConfig map[string]string) cable.Endpoint {
	bc := map[string]string{cable.ConfigUDPPort: fmt.Sprint(submv1.CablePort), cable.ConfigPreferredServer: "false"}
	for k, v := range driverConfig {
		bc[k] = v
	}
	return cable.Endpoint{
		ClusterID: s.ClusterID, CableName: "submariner-cable-" + s.ClusterID + "-" + strings.ReplaceAll(s.IP.String(), ".", "-"),
		Hostname: s.ClusterID + "-gw", PrivateIP: s.IP, HealthCheckIP: s.CNI, Subnets: s.Subnets,
		Backend: backend, BackendConfig: bc, Port: submv1.CablePort,
	}
}

// TCP connects from the west pod to a server in the east pod and exchanges a
// message, within timeout. The error says how far it got.
func (tp *Topology) TCP(timeout time.Duration) error {
	return TCP(tp.West.Pod, tp.East.Pod, tp.East.PodIP, timeout)
}

// TCP connects from client's namespace to a server it starts on ip in server's
// namespace, sends a line and expects it echoed, within timeout.
func TCP(client, server *netns.NS, ip netip.Addr, timeout time.Duration) error {
	var ln net.Listener
	if err := server.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
		return err
	}); err != nil {
		return fmt.Errorf("listening in %s: %w", server.Name, err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(timeout))
		_, _ = io.Copy(c, c)
	}()
	var c net.Conn
	if err := client.Do(func() error {
		var err error
		c, err = (&net.Dialer{Timeout: timeout}).Dial("tcp", ln.Addr().String())
		return err
	}); err != nil {
		return fmt.Errorf("connecting to %s: %w", ln.Addr(), err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	msg := "hello through the cable\n"
	if _, err := io.WriteString(c, msg); err != nil {
		return fmt.Errorf("sending: %w", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("reading the echo: %w", err)
	}
	if string(got) != msg {
		return errors.New("the echo differs: " + string(got))
	}
	return nil
}
