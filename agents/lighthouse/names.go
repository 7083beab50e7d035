package lighthouse

import "time"

// Names and numbers of the lighthouse agent. The names it shares with the
// CoreDNS plugin (labels and annotations of the slices) are in crds/v1/names.go.
const (
	// ComponentName names the agent in logs, metrics and --version.
	ComponentName = "submariner-lighthouse-agent"
	// DefaultMetricsAddr serves /metrics, /healthz and /readyz (the Deployment's
	// metrics port).
	DefaultMetricsAddr = ":8082"
	// FieldManager is the field manager of every write the agent makes itself (the
	// syncers write as syncer.FieldManager).
	FieldManager = "lighthouse-agent"

	// LeasePrefix names each agent's liveness Lease on the broker:
	// lighthouse-<clusterID>, in the broker namespace.
	LeasePrefix = "lighthouse-"
	// DefaultLeaseDuration is how long a cluster counts as alive after it last
	// renewed its Lease. The agent renews every third of it.
	DefaultLeaseDuration = 60 * time.Second
	// MinLeaseDuration and MaxLeaseDuration bound --lease-duration.
	MinLeaseDuration = 3 * time.Second
	MaxLeaseDuration = time.Hour

	// AnnotationTimestampPrefix, followed by a cluster ID, is the annotation of the
	// aggregated ServiceImport on the broker that holds that cluster's
	// ServiceExport creationTimestamp in Unix nanoseconds: the oldest export wins
	// conflicts (Submariner's annotation).
	AnnotationTimestampPrefix = "timestamp.submariner.io/"
	// AnnotationExportPrefix, followed by a cluster ID, is the annotation of the
	// aggregated ServiceImport on the broker that holds what that cluster's export
	// contributes (Record, as JSON): its type, ports and session affinity. Every
	// agent computes the merged spec and the conflicts from these records, so all
	// of them agree on the outcome whoever writes last.
	AnnotationExportPrefix = "export.lighthouse.submariner.io/"

	// LabelKubeServiceName is the label the Kubernetes EndpointSlice controllers put
	// on the slices of a Service (discoveryv1.LabelServiceName).
	LabelKubeServiceName = "kubernetes.io/service-name"

	// DefaultKubeQPS and DefaultKubeBurst rate-limit the agent's requests to each
	// API server, per kind. An export costs two writes of the aggregated
	// ServiceImport on the broker (object and status); with client-go's defaults
	// (5 and 10) a burst of 100 exports would queue for tens of seconds, with 50
	// and 100 for two. The API servers' priority and fairness still protects them.
	DefaultKubeQPS   = 200
	DefaultKubeBurst = 400
	// DefaultWorkers is the number of objects each controller reconciles in parallel.
	DefaultWorkers = 4
)
