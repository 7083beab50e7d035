package gateway

import "time"

// Names and numbers of the gateway.
const (
	// ComponentName names the gateway in logs, metrics and --version.
	ComponentName = "submariner-gateway"
	// DefaultMetricsAddr serves /metrics, /healthz and /readyz (Submariner's
	// gateway metrics port).
	DefaultMetricsAddr = ":32780"

	// LabelGatewayStatus on the gateway's pod is active or passive, so that a
	// Service (or a person) can select the active gateway.
	LabelGatewayStatus = "gateway.submariner.io/status"
	// AnnotationPublicIP on the gateway's Node (annotation or label; the annotation
	// wins) gives its public IP resolution methods, overriding --public-ip.
	AnnotationPublicIP = "gateway.submariner.io/public-ip"
	// AnnotationPreferredServer on the gateway's Node ("true") makes it prefer to
	// be the IPsec server of its tunnels, overriding --preferred-server.
	AnnotationPreferredServer = "gateway.submariner.io/preferred-server"
	// AnnotationUpdateTimestamp on a Gateway object is the Unix time of its last
	// update; the active gateway deletes Gateways whose timestamp is stale.
	AnnotationUpdateTimestamp = "update-timestamp"

	// LeaderIdentitySuffix follows the node name in the Lease's holder identity.
	LeaderIdentitySuffix = "-submariner-gateway"

	// DefaultPSKFile is where the gateway DaemonSet mounts the key "psk" of the
	// Secret submariner-ipsec-psk.
	DefaultPSKFile = "/run/secrets/submariner.io/submariner-ipsec-psk/psk"
	// DefaultPlutoDir is pluto's directory (an emptyDir in the libreswan overlay).
	DefaultPlutoDir = "/run/pluto"
)

// Timings.
const (
	// Leader election defaults, chosen for fast failover (README.md explains them):
	// a gateway that shuts down gracefully releases the Lease at once and a
	// candidate polls every DefaultRetryPeriod (plus up to 120% jitter); a dead
	// node costs DefaultLeaseDuration.
	DefaultLeaseDuration = 5 * time.Second
	DefaultRenewDeadline = 3 * time.Second
	DefaultRetryPeriod   = 500 * time.Millisecond

	// DefaultStatusPeriod is how often a gateway refreshes its Gateway object
	// (its update-timestamp) when nothing changed.
	DefaultStatusPeriod = 5 * time.Second
	// StaleFactor times the status period is when a Gateway that was not updated
	// counts as gone.
	StaleFactor = 3
	// DefaultResync is how often the active gateway checks its tunnels and
	// Endpoint without an event.
	DefaultResync = 30 * time.Second
	// PublicIPRefresh is how often the public IP is resolved again when a method
	// can change (dns:, api:).
	PublicIPRefresh = 60 * time.Second
	// statusTick is how often the status is recomputed to catch health changes.
	statusTick = time.Second
	// retryMin and retryMax bound the backoff of failed steps.
	retryMin = 100 * time.Millisecond
	retryMax = 30 * time.Second
)
