package globalnet

import (
	"time"

	"github.com/submariner-go/submariner/agents/netkit/iptables"
)

// Names and numbers of Globalnet.
const (
	// ComponentName names Globalnet in logs, metrics and --version.
	ComponentName = "submariner-globalnet"
	// DefaultMetricsAddr serves /metrics, /healthz and /readyz (Submariner's
	// Globalnet metrics port).
	DefaultMetricsAddr = ":32781"
	// LeaderIdentitySuffix follows the node name in the Lease's holder identity.
	LeaderIdentitySuffix = "-submariner-globalnet"
	// FieldManager is the server-side apply field manager of the internal Services.
	FieldManager = "submariner-globalnet"
)

// The nat chains Globalnet owns, besides iptables.GlobalnetIngress, GlobalnetEgress
// and GlobalnetMark.
const (
	// ChainClusterEgress SNATs the cluster's Pods (and the gateway host) to the
	// ClusterGlobalEgressIP's addresses.
	ChainClusterEgress iptables.Chain = iptables.GlobalnetPrefix + "EGRESS-CLUSTER"
	// IngressShardPrefix starts the shard chains holding one DNAT rule per global
	// ingress IP of a headless Pod or endpoint (SM-GN-IN-00 ... SM-GN-IN-63).
	IngressShardPrefix = iptables.GlobalnetPrefix + "IN-"
	// EgressShardPrefix starts the shard chains holding one SNAT rule per Pod (or
	// endpoint) with its own global egress IPs (SM-GN-EG-00 ... SM-GN-EG-63).
	EgressShardPrefix = iptables.GlobalnetPrefix + "EG-"
	// Shards is the number of shard chains per direction. A change rewrites one
	// shard, about 1/64 of the per-object rules; a full sync of 10,000 objects
	// stays well under a second (netkit/iptables/README.md measured the layout).
	// Changing it moves every rule to another chain.
	Shards = 64
)

// Owner names the chains Globalnet writes, so that its Writer never touches the
// route agent's, kube-proxy's or the CNI's.
var Owner = iptables.Owner{Prefixes: []string{"SUBMARINER-GN-", iptables.GlobalnetPrefix}}

// Defaults of the flags.
const (
	// DefaultResync is how often Globalnet re-reads the iptables tables without a
	// change, to repair rules others removed.
	DefaultResync = time.Minute
	// Leader election defaults, the gateway's (fast failover): a Globalnet that
	// stops being the gateway releases the Lease at once, so the new gateway's
	// takes over within a retry period; a dead node costs the lease duration, which
	// runs out about when the gateways' own Lease does.
	DefaultLeaseDuration = 5 * time.Second
	DefaultRenewDeadline = 3 * time.Second
	DefaultRetryPeriod   = 500 * time.Millisecond
	// API request limits: client-go's defaults (5/s, bursts of 10) would make the
	// first start of a cluster with 10,000 exported Services take hours.
	DefaultKubeQPS   = 200
	DefaultKubeBurst = 400
	// DefaultMemoryLimitMiB is the Go runtime's soft memory limit: with 10,000
	// exported Services the live heap is well below it, and the collector runs
	// before garbage doubles the footprint (README.md, "Memory").
	DefaultMemoryLimitMiB = 36
)

// Retry backoff of failed work items.
const (
	retryBase = 50 * time.Millisecond
	retryMax  = 30 * time.Second
	// syncTimeout bounds one iptables sync, so that a hung iptables-restore is
	// killed and retried instead of blocking the agent.
	syncTimeout = time.Minute
)
