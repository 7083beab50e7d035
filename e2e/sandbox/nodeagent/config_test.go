package nodeagent

import (
	"crypto/tls"
	"crypto/x509"
	"net/netip"
	"testing"

	"k8s.io/client-go/rest"
)

func TestConfigValidate(t *testing.T) {
	good := func() Config {
		return Config{
			NodeName:    "c1-gw1",
			NodeIP:      netip.MustParseAddr("192.168.241.21"),
			PodCIDR:     netip.MustParsePrefix("10.241.21.0/24"),
			ClusterCIDR: netip.MustParsePrefix("10.241.0.0/16"),
			Labels:      map[string]string{"submariner.io/gateway": "true"},
			NetNS:       "sbx-c1-gw1",
			Kube:        &rest.Config{Host: "https://192.168.240.1:6441"},
			ServingCert: tls.Certificate{Certificate: [][]byte{{1}}},
			ClientCAs:   x509.NewCertPool(),
			Catalog:     DefaultCatalog("/opt/bin"),
			StateDir:    "/var/lib/sandbox/c1-gw1",
		}
	}
	for _, tc := range []struct {
		name    string
		change  func(*Config)
		wantErr string
	}{
		{"valid", func(*Config) {}, ""},
		{"bad name", func(c *Config) { c.NodeName = "Node_1" }, `node name "Node_1" is invalid: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},
		{"no node IP", func(c *Config) { c.NodeIP = netip.Addr{} }, "node c1-gw1: NodeIP is not set: give the node's IPv4 address on eth0 of its namespace"},
		{"host bits", func(c *Config) { c.PodCIDR = netip.MustParsePrefix("10.241.21.7/24") }, "node c1-gw1: PodCIDR 10.241.21.7/24 has host bits set: use 10.241.21.0/24"},
		{"pod CIDR outside the cluster", func(c *Config) { c.PodCIDR = netip.MustParsePrefix("10.242.21.0/24") }, "node c1-gw1: ClusterCIDR 10.241.0.0/16 must contain PodCIDR 10.242.21.0/24"},
		{"node IP in pod CIDR", func(c *Config) { c.NodeIP = netip.MustParseAddr("10.241.21.9") }, "node c1-gw1: NodeIP 10.241.21.9 lies in PodCIDR 10.241.21.0/24: pick addresses from different ranges"},
		{"forbidden label", func(c *Config) { c.Labels = map[string]string{"node-role.kubernetes.io/gateway": ""} },
			`node label "node-role.kubernetes.io/gateway": NodeRestriction forbids nodes to set kubernetes.io and k8s.io labels other than the kubelet's; use another prefix or set it with an administrator's client`},
		{"no client", func(c *Config) { c.Kube = nil }, "node c1-gw1: Kube is nil: give the node's client configuration (user system:node:c1-gw1)"},
		{"relative state dir", func(c *Config) { c.StateDir = "state" }, `node c1-gw1: StateDir "state" is not an absolute path`},
		{"empty catalog", func(c *Config) { c.Catalog = Catalog{} }, "node c1-gw1: the catalog is empty: use DefaultCatalog(binDir)"},
		{"bad port", func(c *Config) { c.KubeletPort = 70000 }, "node c1-gw1: KubeletPort 70000 is not a port number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good()
			tc.change(&cfg)
			err := cfg.validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.wantErr {
				t.Errorf("validate() = %q\nwant %q", got, tc.wantErr)
			}
			if err == nil && (cfg.KubeletPort != DefaultKubeletPort || cfg.ClusterDomain != "cluster.local") {
				t.Errorf("defaults not filled in: port %d, domain %q", cfg.KubeletPort, cfg.ClusterDomain)
			}
		})
	}
}
