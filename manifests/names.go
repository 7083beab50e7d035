package manifests

// Names of the objects in the manifests that subctl refers to. manifests_test.go
// checks that the rendered manifests contain each of them.
const (
	// ConfigMapName is the components' configuration: its keys are environment
	// variables, read by every workload with envFrom.
	ConfigMapName = "submariner-config"
	// PSKSecretName holds the IPsec pre-shared key, key PSKSecretKey.
	PSKSecretName = "submariner-ipsec-psk"
	// PSKSecretKey is the pre-shared key's key in PSKSecretName (48 random bytes).
	PSKSecretKey = "psk"
	// PSKFileEnv names the file with the pre-shared key in the gateway container.
	PSKFileEnv = "CE_IPSEC_PSK_FILE"

	// The workloads.
	GatewayDaemonSet            = "submariner-gateway"
	RouteAgentDaemonSet         = "submariner-routeagent"
	GlobalnetDaemonSet          = "submariner-globalnet"
	LighthouseAgentDeployment   = "submariner-lighthouse-agent"
	LighthouseCoreDNSDeployment = "submariner-lighthouse-coredns"
	// LighthouseCoreDNSService is the Service the cluster's CoreDNS forwards
	// clusterset.local to.
	LighthouseCoreDNSService = "submariner-lighthouse-coredns"

	// UninstallEnv switches a component into its cleanup mode (docs/subctl.md).
	UninstallEnv = "SUBMARINER_UNINSTALL"

	// The broker's objects.
	BrokerClusterRole   = "submariner-k8s-broker-cluster"
	BrokerJoiner        = "submariner-k8s-broker-joiner"
	BrokerLeaveRole     = "submariner-k8s-broker-leave"
	ClusterIdentityName = "cluster-" // + the cluster ID: ServiceAccount and RoleBinding
)

// Images are the component images, by the component name that --image-override
// uses, without repository host and tag (repository/<name>:<version>).
var Images = []string{
	"submariner-gateway",
	"submariner-route-agent",
	"submariner-globalnet",
	"lighthouse-agent",
	"lighthouse-coredns",
}

// DefaultRepository is where the images live unless --repository says otherwise.
const DefaultRepository = "ghcr.io/submariner-go"

// ManifestTag is the image tag written in the manifests; subctl replaces it with
// the version it installs.
const ManifestTag = "dev"
