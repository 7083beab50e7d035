package nettest

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"unicode"
)

// Address is one address of one network interface.
type Address struct {
	Interface string
	Prefix    netip.Prefix
}

// String renders the address as `nettest ips` prints it: "IFACE ADDR/LEN".
func (a Address) String() string { return a.Interface + " " + a.Prefix.String() }

// iface is what Addresses needs to know about one interface.
type iface struct {
	name     string
	index    int
	up       bool
	loopback bool
	prefixes []netip.Prefix
}

// Addresses returns the addresses of the interfaces of the calling thread's
// network namespace, ordered by interface index and then address. Unless all is
// set it leaves out interfaces that are down or loopback, and link-local and
// loopback addresses.
func Addresses(all bool) ([]Address, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing network interfaces: %w", err)
	}
	var in []iface
	for _, nif := range ifs {
		addrs, err := nif.Addrs()
		if err != nil {
			return nil, fmt.Errorf("listing the addresses of %s: %w", nif.Name, err)
		}
		f := iface{name: nif.Name, index: nif.Index, up: nif.Flags&net.FlagUp != 0, loopback: nif.Flags&net.FlagLoopback != 0}
		for _, a := range addrs {
			ipnet, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipnet.IP)
			if !ok {
				continue
			}
			bits, _ := ipnet.Mask.Size()
			f.prefixes = append(f.prefixes, netip.PrefixFrom(ip.Unmap(), bits))
		}
		in = append(in, f)
	}
	return selectAddresses(in, all), nil
}

// selectAddresses orders and filters the addresses of ifs as Addresses documents.
func selectAddresses(ifs []iface, all bool) []Address {
	ifs = slices.Clone(ifs)
	slices.SortFunc(ifs, func(a, b iface) int { return cmp.Compare(a.index, b.index) })
	out := []Address{}
	for _, f := range ifs {
		if !all && (!f.up || f.loopback) {
			continue
		}
		prefixes := slices.Clone(f.prefixes)
		slices.SortFunc(prefixes, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		for _, p := range prefixes {
			a := p.Addr()
			if !all && (a.IsLoopback() || a.IsLinkLocalUnicast()) {
				continue
			}
			out = append(out, Address{Interface: f.name, Prefix: p})
		}
	}
	return out
}

// DetectIdentity returns the pod's name and IP: POD_NAME and POD_IP from the
// environment when set, else the hostname and the first IPv4 address Addresses
// reports. A value that would not fit the reply line is an error that names it.
func DetectIdentity() (Identity, error) {
	return detectIdentity(os.Getenv, os.Hostname, func() ([]Address, error) { return Addresses(false) })
}

func detectIdentity(getenv func(string) string, hostname func() (string, error), addrs func() ([]Address, error)) (Identity, error) {
	var id Identity
	id.Pod = getenv(EnvPodName)
	if id.Pod == "" {
		h, err := hostname()
		if err != nil {
			return Identity{}, fmt.Errorf("%s is not set and the hostname is unknown: %w", EnvPodName, err)
		}
		id.Pod = h
	}
	if strings.ContainsFunc(id.Pod, unicode.IsSpace) {
		return Identity{}, fmt.Errorf("pod name %q contains white space, which the reply line cannot carry: set %s to the pod's name", id.Pod, EnvPodName)
	}

	if s := getenv(EnvPodIP); s != "" {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return Identity{}, fmt.Errorf("%s=%q is not an IP address: set it to the pod's IP (the downward API's status.podIP)", EnvPodIP, s)
		}
		if ip.Zone() != "" {
			return Identity{}, fmt.Errorf("%s=%q has a zone: set it to the pod's IP without %%zone", EnvPodIP, s)
		}
		id.IP = ip.Unmap()
		return id, nil
	}
	list, err := addrs()
	if err != nil {
		return Identity{}, fmt.Errorf("%s is not set: %w", EnvPodIP, err)
	}
	for _, a := range list {
		if a.Prefix.Addr().Is4() {
			id.IP = a.Prefix.Addr()
			return id, nil
		}
	}
	return Identity{}, errors.New(EnvPodIP + " is not set and no interface that is up has a non-loopback IPv4 address: set " + EnvPodIP)
}
