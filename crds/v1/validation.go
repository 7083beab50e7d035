package v1

import (
	"fmt"
	"net/netip"
	"regexp"
)

// MaxClusterIDLength is the longest cluster ID: an RFC 1123 label.
const MaxClusterIDLength = 63

var rfc1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// ValidateClusterID reports why id cannot be a cluster ID, in words a user can act
// on, or nil. The API server enforces the same rule on Cluster and Endpoint.
func ValidateClusterID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("the cluster ID is empty: give one with --clusterid, for example cluster1")
	case len(id) > MaxClusterIDLength:
		return fmt.Errorf("cluster ID %q has %d characters: use at most %d", id, len(id), MaxClusterIDLength)
	case !rfc1123Label.MatchString(id):
		return fmt.Errorf("cluster ID %q is not an RFC 1123 label: use lower-case letters, digits and '-', starting and ending with a letter or digit, for example cluster-1", id)
	}
	return nil
}

// ParseCIDR parses a CIDR in canonical form ("10.0.0.0/16", not "10.0.0.1/16"),
// naming what (for example "cluster CIDR") in its error.
func ParseCIDR(what, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%s %q is not a CIDR: write it as address/prefix, for example 10.0.0.0/16", what, s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%s %q has host bits set: did you mean %s?", what, s, p.Masked())
	}
	return p, nil
}

// ParseCIDRs parses each of ss with ParseCIDR.
func ParseCIDRs(what string, ss []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		p, err := ParseCIDR(what, s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// ParseBackend returns the cable driver named s, or an error listing the valid ones.
func ParseBackend(s string) (Backend, error) {
	for _, b := range Backends {
		if string(b) == s {
			return b, nil
		}
	}
	return "", fmt.Errorf("unknown cable driver %q: use one of libreswan, wireguard, vxlan", s)
}
