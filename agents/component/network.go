package component

import (
	"net/netip"

	"github.com/spf13/pflag"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// NetworkOptions are the cluster's address ranges, as `subctl join` configured them.
type NetworkOptions struct {
	ClusterCIDRs []string
	ServiceCIDRs []string
	GlobalCIDRs  []string
}

// AddFlags registers the network flags and returns the environment variables behind them.
func (n *NetworkOptions) AddFlags(fs *pflag.FlagSet) Env {
	fs.StringSliceVar(&n.ClusterCIDRs, "cluster-cidr", nil, "the cluster's Pod CIDRs, comma-separated (env SUBMARINER_CLUSTERCIDR)")
	fs.StringSliceVar(&n.ServiceCIDRs, "service-cidr", nil, "the cluster's Service CIDRs, comma-separated (env SUBMARINER_SERVICECIDR)")
	fs.StringSliceVar(&n.GlobalCIDRs, "global-cidr", nil, "the cluster's Globalnet CIDR; empty without Globalnet (env SUBMARINER_GLOBALCIDR)")
	return Env{"cluster-cidr": "SUBMARINER_CLUSTERCIDR", "service-cidr": "SUBMARINER_SERVICECIDR", "global-cidr": "SUBMARINER_GLOBALCIDR"}
}

// Networks are the parsed NetworkOptions.
type Networks struct {
	Cluster, Service, Global []netip.Prefix
}

// Parse parses and checks the CIDRs; the error names the flag and the value.
func (n *NetworkOptions) Parse() (Networks, error) {
	var out Networks
	var err error
	if out.Cluster, err = submv1.ParseCIDRs("--cluster-cidr", n.ClusterCIDRs); err != nil {
		return Networks{}, err
	}
	if out.Service, err = submv1.ParseCIDRs("--service-cidr", n.ServiceCIDRs); err != nil {
		return Networks{}, err
	}
	if out.Global, err = submv1.ParseCIDRs("--global-cidr", n.GlobalCIDRs); err != nil {
		return Networks{}, err
	}
	return out, nil
}

// Globalnet reports whether the cluster has a global CIDR.
func (n Networks) Globalnet() bool { return len(n.Global) > 0 }
