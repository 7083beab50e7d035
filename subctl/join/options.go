// Package join implements `subctl join`: it checks everything first (the
// broker-info file, the cluster ID, the CIDRs, discovered when not given, against
// the clusters already joined, the cable driver, the nodes to label), then creates
// the cluster's identity on the broker, allocates its global CIDR with Globalnet,
// installs the CRDs, the component namespace, the Secrets, the configuration and
// the components (rendered from package manifests and applied server-side), makes
// the cluster's CoreDNS forward clusterset.local, and publishes the cluster.
// Re-running join with the same settings changes nothing; with new settings it
// updates what they affect and prunes what is no longer wanted.
package join

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/spf13/pflag"

	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/manifests"
	"github.com/submariner-go/submariner/subctl/broker"
	"github.com/submariner-go/submariner/subctl/brokerinfo"
	"github.com/submariner-go/submariner/subctl/cluster"
	"github.com/submariner-go/submariner/subctl/coredns"
	"github.com/submariner-go/submariner/subctl/globalnet"
	"github.com/submariner-go/submariner/subctl/render"
)

// Options are join's flags and argument.
type Options struct {
	// BrokerInfo is the broker-info file (the command's argument).
	BrokerInfo string
	Cluster    cluster.Options

	ClusterID            string
	CableDriver          string
	ClusterCIDRs         []string
	ServiceCIDRs         []string
	Globalnet            bool
	GlobalnetCIDR        string
	GlobalnetClusterSize int
	NATT                 bool
	LabelGateways        []string

	Repository     string
	Version        string
	ImageOverrides []string

	CorednsCustomConfigMap string
	BrokerURL              string
	TokenValidity          time.Duration
	RotateToken            bool

	// Set by Validate.
	info         *brokerinfo.Info
	backend      submv1.Backend
	clusterCIDRs []netip.Prefix
	serviceCIDRs []netip.Prefix
	globalCIDR   netip.Prefix
	images       map[string]string
	coredns      coredns.Target
}

// AddFlags registers the flags.
func (o *Options) AddFlags(fs *pflag.FlagSet, version string) {
	o.Cluster.AddFlags(fs, "the joining cluster's")
	fs.StringVar(&o.ClusterID, "clusterid", "", "this cluster's ID in the clusterset: an RFC 1123 label such as cluster1 (required)")
	fs.StringVar(&o.CableDriver, "cable-driver", string(submv1.BackendLibreswan), "the tunnel between the gateways: libreswan, wireguard or vxlan")
	fs.StringSliceVar(&o.ClusterCIDRs, "clustercidr", nil, "the cluster's Pod CIDRs, comma-separated (discovered when not given)")
	fs.StringSliceVar(&o.ServiceCIDRs, "servicecidr", nil, "the cluster's Service CIDRs, comma-separated (discovered when not given)")
	fs.BoolVar(&o.Globalnet, "globalnet", true, "use Globalnet when the broker has it; --globalnet=false opts this cluster out")
	fs.StringVar(&o.GlobalnetCIDR, "globalnet-cidr", "", "this cluster's global CIDR (default: allocated from the broker's range)")
	fs.IntVar(&o.GlobalnetClusterSize, "globalnet-cluster-size", 0, "addresses in this cluster's allocated global CIDR, a power of two (default the broker's)")
	fs.BoolVar(&o.NATT, "natt", true, "assume NAT between the clusters' gateways (NAT traversal); --natt=false when they reach each other directly (default false with --cable-driver vxlan)")
	fs.StringSliceVar(&o.LabelGateways, "label-gateway", nil, "label these nodes submariner.io/gateway=true, so that they run the gateway (repeatable)")
	fs.StringVar(&o.Repository, "repository", manifests.DefaultRepository, "the registry and path of the component images")
	fs.StringVar(&o.Version, "version", version, "the image tag of the components")
	fs.StringArrayVar(&o.ImageOverrides, "image-override", nil, "component=image: run this image for the component (repeatable; components: "+joinNames()+")")
	fs.StringVar(&o.CorednsCustomConfigMap, "coredns-custom-configmap", "", "namespace/name of a ConfigMap that CoreDNS imports: write the clusterset.local block there as lighthouse.server instead of editing kube-system/coredns")
	fs.StringVar(&o.BrokerURL, "broker-url", "", "reach the broker at this URL instead of the one in the broker-info file")
	fs.DurationVar(&o.TokenValidity, "token-validity", broker.DefaultTokenValidity, "how long the cluster's broker token stays valid; join renews it when less than a third is left")
	fs.BoolVar(&o.RotateToken, "rotate-token", false, "get a new broker token for the cluster even if the current one is still good")
}

func joinNames() string {
	s := ""
	for i, n := range manifests.Images {
		if i > 0 {
			s += ", "
		}
		s += n
	}
	return s
}

// Validate checks the flags and reads the broker-info file; it contacts nothing
// and changes nothing.
func (o *Options) Validate() error {
	var errs []error
	if o.BrokerInfo == "" {
		errs = append(errs, errors.New("no broker-info file: give the broker-info.subm that subctl deploy-broker wrote as the argument"))
	} else if info, err := brokerinfo.ReadFile(o.BrokerInfo); err != nil {
		errs = append(errs, err)
	} else {
		o.info = info
	}
	if err := submv1.ValidateClusterID(o.ClusterID); err != nil {
		errs = append(errs, fmt.Errorf("--clusterid: %w", err))
	}
	if b, err := submv1.ParseBackend(o.CableDriver); err != nil {
		errs = append(errs, fmt.Errorf("--cable-driver: %w", err))
	} else {
		o.backend = b
		if b == submv1.BackendVXLAN && o.NATT {
			errs = append(errs, errors.New("--cable-driver vxlan with --natt: VXLAN is unencrypted and cannot cross NAT; join with --natt=false when the gateways reach each other directly, or use libreswan or wireguard"))
		}
	}
	var err error
	if o.clusterCIDRs, err = parseIPv4CIDRs("--clustercidr", o.ClusterCIDRs); err != nil {
		errs = append(errs, err)
	}
	if o.serviceCIDRs, err = parseIPv4CIDRs("--servicecidr", o.ServiceCIDRs); err != nil {
		errs = append(errs, err)
	}
	if o.GlobalnetCIDR != "" {
		p, err := globalnet.ParseRange(o.GlobalnetCIDR)
		if err != nil {
			errs = append(errs, fmt.Errorf("--globalnet-cidr: %w", err))
		}
		o.globalCIDR = p
		if !o.Globalnet {
			errs = append(errs, errors.New("--globalnet-cidr with --globalnet=false: leave one of them out"))
		}
	}
	if o.GlobalnetClusterSize != 0 {
		if _, err := globalnet.PrefixBits(o.GlobalnetClusterSize); err != nil {
			errs = append(errs, fmt.Errorf("--globalnet-cluster-size: %w", err))
		}
	}
	for _, n := range o.LabelGateways {
		if n == "" {
			errs = append(errs, errors.New("--label-gateway has an empty node name"))
		}
	}
	overrides, err := render.ParseImageOverrides(o.ImageOverrides)
	if err != nil {
		errs = append(errs, err)
	} else if o.images, err = render.Images(o.Repository, o.Version, overrides); err != nil {
		errs = append(errs, err)
	}
	if o.Version == "" {
		errs = append(errs, errors.New("--version is empty: give the image tag to run"))
	}
	o.coredns = coredns.DefaultTarget
	if o.CorednsCustomConfigMap != "" {
		if o.coredns, err = coredns.ParseCustom(o.CorednsCustomConfigMap); err != nil {
			errs = append(errs, err)
		}
	}
	if o.BrokerURL != "" {
		if err := brokerinfo.ValidateURL(o.BrokerURL); err != nil {
			errs = append(errs, fmt.Errorf("--broker-url: %w", err))
		}
	}
	if o.TokenValidity < 10*time.Minute {
		errs = append(errs, fmt.Errorf("--token-validity %v is shorter than the API server's minimum of 10m", o.TokenValidity))
	}
	errs = append(errs, o.Cluster.Validate())
	return errors.Join(errs...)
}

// parseIPv4CIDRs parses CIDRs given by flag; Submariner carries IPv4 only.
func parseIPv4CIDRs(flag string, ss []string) ([]netip.Prefix, error) {
	ps, err := submv1.ParseCIDRs(flag, ss)
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		if !p.Addr().Is4() {
			return nil, fmt.Errorf("%s %s is IPv6: Submariner connects IPv4 ranges only", flag, p)
		}
	}
	return ps, nil
}

// brokerURL is the URL join reaches the broker at.
func (o *Options) brokerURL() string {
	if o.BrokerURL != "" {
		return o.BrokerURL
	}
	return o.info.BrokerURL
}
