package cable

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Keys of an Endpoint's backend_config (Submariner's).
const (
	// ConfigUDPPort is the gateway's tunnel port.
	ConfigUDPPort = "udp-port"
	// ConfigNATTDiscoveryPort is the gateway's NAT discovery port.
	ConfigNATTDiscoveryPort = "natt-discovery-port"
	// ConfigPreferredServer is "true" when the gateway prefers to be the IPsec
	// server of its tunnels.
	ConfigPreferredServer = "preferred-server"
	// ConfigPublicKey is the gateway's WireGuard public key (base64).
	ConfigPublicKey = "publicKey"
	// ConfigInterfaceName is the WireGuard device's name.
	ConfigInterfaceName = "interface-name"
)

// Endpoint is a gateway as the drivers see it: a checked submv1.EndpointSpec with
// parsed addresses.
type Endpoint struct {
	ClusterID string
	CableName string
	Hostname  string
	// PrivateIP is the gateway's address on its node network.
	PrivateIP netip.Addr
	// PublicIP is its address outside a NAT; invalid when it has none.
	PublicIP netip.Addr
	// HealthCheckIP is the address the health checker probes; invalid when none.
	HealthCheckIP netip.Addr
	// Subnets are what is reachable through the gateway.
	Subnets    []netip.Prefix
	NATEnabled bool
	Backend    submv1.Backend
	// BackendConfig holds the driver settings the gateway published.
	BackendConfig map[string]string
	// Port is the gateway's tunnel port: backend_config udp-port, or
	// submv1.CablePort when it publishes none.
	Port uint16
}

// ParseEndpoint checks spec and returns it with parsed addresses. Every error names
// the field, the value and what is wrong with it.
func ParseEndpoint(spec submv1.EndpointSpec) (Endpoint, error) {
	e := Endpoint{
		ClusterID:     spec.ClusterID,
		CableName:     spec.CableName,
		Hostname:      spec.Hostname,
		NATEnabled:    spec.NATEnabled,
		Backend:       spec.Backend,
		BackendConfig: maps.Clone(spec.BackendConfig),
		Port:          submv1.CablePort,
	}
	var errs []error
	if err := submv1.ValidateClusterID(spec.ClusterID); err != nil {
		errs = append(errs, fmt.Errorf("cluster_id: %w", err))
	}
	if spec.CableName == "" {
		errs = append(errs, errors.New("cable_name is empty"))
	}
	var err error
	if e.PrivateIP, err = parseIPv4("private_ip", spec.PrivateIP, true); err != nil {
		errs = append(errs, err)
	}
	if e.PublicIP, err = parseIPv4("public_ip", spec.PublicIP, false); err != nil {
		errs = append(errs, err)
	}
	if e.HealthCheckIP, err = parseIPv4("healthCheckIP", spec.HealthCheckIP, false); err != nil {
		errs = append(errs, err)
	}
	if len(spec.Subnets) == 0 {
		errs = append(errs, errors.New("subnets is empty: the gateway publishes nothing to route to"))
	}
	for _, s := range spec.Subnets {
		p, err := submv1.ParseCIDR("subnet", s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !p.Addr().Is4() {
			errs = append(errs, fmt.Errorf("subnet %q is not IPv4: only IPv4 is routed between clusters", s))
			continue
		}
		e.Subnets = append(e.Subnets, p)
	}
	if _, err := submv1.ParseBackend(string(spec.Backend)); err != nil {
		errs = append(errs, fmt.Errorf("backend: %w", err))
	}
	if v, ok := spec.BackendConfig[ConfigUDPPort]; ok {
		p, err := strconv.ParseUint(v, 10, 16)
		if err != nil || p == 0 {
			errs = append(errs, fmt.Errorf("backend_config %s %q is not a UDP port (1-65535)", ConfigUDPPort, v))
		}
		e.Port = uint16(p)
	}
	if err := errors.Join(errs...); err != nil {
		return Endpoint{}, err
	}
	return e, nil
}

func parseIPv4(field, s string, required bool) (netip.Addr, error) {
	if s == "" {
		if required {
			return netip.Addr{}, fmt.Errorf("%s is empty", field)
		}
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%s %q is not an IP address", field, s)
	}
	if !a.Is4() {
		return netip.Addr{}, fmt.Errorf("%s %q is not IPv4: the tunnels are IPv4 only", field, s)
	}
	if !a.IsGlobalUnicast() {
		return netip.Addr{}, fmt.Errorf("%s %q is not a unicast address a gateway can have", field, s)
	}
	return a, nil
}

// Equal reports whether e and o describe the same gateway with the same settings.
func (e Endpoint) Equal(o Endpoint) bool {
	return e.ClusterID == o.ClusterID && e.CableName == o.CableName && e.Hostname == o.Hostname &&
		e.PrivateIP == o.PrivateIP && e.PublicIP == o.PublicIP && e.HealthCheckIP == o.HealthCheckIP &&
		slices.Equal(e.Subnets, o.Subnets) && e.NATEnabled == o.NATEnabled && e.Backend == o.Backend &&
		maps.Equal(e.BackendConfig, o.BackendConfig) && e.Port == o.Port
}

// Spec returns e as an EndpointSpec.
func (e Endpoint) Spec() submv1.EndpointSpec {
	s := submv1.EndpointSpec{
		ClusterID:     e.ClusterID,
		CableName:     e.CableName,
		Hostname:      e.Hostname,
		NATEnabled:    e.NATEnabled,
		Backend:       e.Backend,
		BackendConfig: maps.Clone(e.BackendConfig),
		Subnets:       []string{},
	}
	if e.PrivateIP.IsValid() {
		s.PrivateIP = e.PrivateIP.String()
	}
	if e.PublicIP.IsValid() {
		s.PublicIP = e.PublicIP.String()
	}
	if e.HealthCheckIP.IsValid() {
		s.HealthCheckIP = e.HealthCheckIP.String()
	}
	for _, p := range e.Subnets {
		s.Subnets = append(s.Subnets, p.String())
	}
	return s
}

// PreferredServer returns the gateway's preferred-server setting, and whether it
// published one.
func (e Endpoint) PreferredServer() (preferred, known bool) {
	v, ok := e.BackendConfig[ConfigPreferredServer]
	if !ok {
		return false, false
	}
	b, err := strconv.ParseBool(v)
	return err == nil && b, err == nil
}
