package v1

// Names on the wire that every component agrees on. They are Submariner's, so that
// users' habits, docs and tooling carry over.
const (
	// BrokerNamespace holds the clusterset's shared objects on the broker.
	BrokerNamespace = "submariner-k8s-broker"
	// ComponentNamespace holds our components and the copies of remote objects in
	// each cluster.
	ComponentNamespace = "submariner-operator"

	// GatewayLabel marks the nodes that may run a gateway (value "true").
	GatewayLabel = "submariner.io/gateway"

	// ClusterIDLabel records, on every object the syncer copies, the cluster that
	// owns it.
	ClusterIDLabel = "submariner-io/clusterID"

	// GatewayLeaseName is the Lease the gateways of a cluster elect their leader with.
	GatewayLeaseName = "submariner-gateway-lock"
	// GlobalnetLeaseName is the Lease the Globalnet agents elect their leader with.
	GlobalnetLeaseName = "submariner-globalnet-lock"

	// CablePort is the UDP port of the tunnels: IKE and NAT-T for Libreswan, the
	// WireGuard listen port, and the VXLAN cable's port.
	CablePort = 4500
	// NATDiscoveryPort is the UDP port of NAT discovery.
	NATDiscoveryPort = 4490
)

// Names of the service-discovery objects, shared by the lighthouse agent (which
// writes them) and the lighthouse CoreDNS plugin (which reads them). The MCS API's own
// labels (multicluster.kubernetes.io/service-name and .../source-cluster) come from
// sigs.k8s.io/mcs-api/pkg/apis/v1beta1.
const (
	// LighthouseManagedBy is the endpointslice.kubernetes.io/managed-by value of the
	// EndpointSlices the lighthouse agent publishes (not the default controller's).
	LighthouseManagedBy = "lighthouse-agent.submariner.io"
	// LabelSourceNamespace records the namespace of the exported Service.
	LabelSourceNamespace = "lighthouse.submariner.io/sourceNamespace"
	// LabelIsHeadless is "true" on the slices of a headless Service.
	LabelIsHeadless = "lighthouse.submariner.io/is-headless"
	// AnnotationPublishNotReady mirrors the Service's publishNotReadyAddresses.
	AnnotationPublishNotReady = "lighthouse.submariner.io/publish-not-ready-addresses"
	// AnnotationGlobalnetEnabled is "true" when the slice carries global IPs.
	AnnotationGlobalnetEnabled = "lighthouse.submariner.io/globalnet-enabled"
)
