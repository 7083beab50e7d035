package lighthouse

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Record is what one cluster's ServiceExport contributes to the aggregated
// ServiceImport: the properties of its Service that the MCS conflict policy
// compares, and the export's age, which decides who wins.
type Record struct {
	// Cluster is the exporting cluster's ID.
	Cluster string `json:"-"`
	// Created is the ServiceExport's creationTimestamp.
	Created time.Time `json:"-"`
	// Type is ClusterSetIP for a Service with a ClusterIP (ClusterIP, NodePort,
	// LoadBalancer), Headless for one without.
	Type mcsv1beta1.ServiceImportType `json:"type"`
	// Ports are the Service's ports, in the Service's order.
	Ports []mcsv1beta1.ServicePort `json:"ports,omitempty"`
	// SessionAffinity and SessionAffinityConfig are the Service's; None and nil
	// for a headless Service, which has no affinity to apply.
	SessionAffinity       corev1.ServiceAffinity        `json:"sessionAffinity,omitempty"`
	SessionAffinityConfig *corev1.SessionAffinityConfig `json:"sessionAffinityConfig,omitempty"`
}

// Invalid says why a ServiceExport cannot be exported: the condition Valid=False
// with Reason and Message.
type Invalid struct {
	Reason  mcsv1beta1.ServiceExportConditionReason
	Message string
}

func (e *Invalid) Error() string { return e.Message }

// RecordFor returns the record of the export of svc (nil: the Service does not
// exist) in cluster, created at created, or why it cannot be exported.
func RecordFor(cluster string, svc *corev1.Service, created metav1.Time, namespace, name string) (Record, *Invalid) {
	if svc == nil {
		return Record{}, &Invalid{Reason: mcsv1beta1.ServiceExportReasonNoService,
			Message: fmt.Sprintf("Service %s/%s does not exist: create it, and the export takes effect", namespace, name)}
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return Record{}, &Invalid{Reason: mcsv1beta1.ServiceExportReasonInvalidServiceType,
			Message: fmt.Sprintf("Service %s/%s is of type ExternalName, which the MCS API does not export: export a ClusterIP or headless Service", namespace, name)}
	}
	r := Record{Cluster: cluster, Created: created.Time, Type: mcsv1beta1.ClusterSetIP, SessionAffinity: corev1.ServiceAffinityNone}
	if svc.Spec.ClusterIP == corev1.ClusterIPNone {
		r.Type = mcsv1beta1.Headless
	} else if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		r.SessionAffinity = corev1.ServiceAffinityClientIP
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil {
			r.SessionAffinityConfig = c.DeepCopy()
		}
	}
	for _, p := range svc.Spec.Ports {
		r.Ports = append(r.Ports, importPort(p))
	}
	return r, nil
}

// importPort converts a Service port to a ServiceImport port; the protocol
// defaults to TCP as the API server's does.
func importPort(p corev1.ServicePort) mcsv1beta1.ServicePort {
	proto := p.Protocol
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	out := mcsv1beta1.ServicePort{Name: p.Name, Protocol: proto, Port: p.Port}
	if p.AppProtocol != nil {
		out.AppProtocol = new(*p.AppProtocol)
	}
	return out
}

// AggregateName is the name of the aggregated ServiceImport of Service
// namespace/name on the broker: <name>-<namespace>.
func AggregateName(name, namespace string) string { return name + "-" + namespace }

// aggregateOf returns the Service namespace and name that the aggregated
// ServiceImport si stands for, from its annotations; ok is false when it has
// none (not one of ours).
func aggregateOf(si metav1.Object) (namespace, name string, ok bool) {
	a := si.GetAnnotations()
	name, hasName := a[mcsv1beta1.LabelServiceName]
	namespace, hasNS := a[submv1.LabelSourceNamespace]
	return namespace, name, hasName && hasNS && name != "" && namespace != ""
}

// encodeRecord returns the two annotations that carry r: the timestamp and the
// export record.
func encodeRecord(r Record) (timestamp, export string, err error) {
	data, err := json.Marshal(r)
	if err != nil {
		return "", "", fmt.Errorf("encoding the export record of cluster %s: %w", r.Cluster, err)
	}
	return strconv.FormatInt(r.Created.UnixNano(), 10), string(data), nil
}

// decodeRecords returns the records in the annotations of an aggregated
// ServiceImport, oldest first (ties by cluster ID), and the problems with the
// annotations it had to skip: a record without a valid timestamp or that does
// not parse takes no part.
func decodeRecords(annotations map[string]string) ([]Record, []error) {
	var out []Record
	var errs []error
	for _, key := range sortedKeys(annotations) {
		cluster, ok := strings.CutPrefix(key, AnnotationExportPrefix)
		if !ok {
			continue
		}
		var r Record
		if err := json.Unmarshal([]byte(annotations[key]), &r); err != nil {
			errs = append(errs, fmt.Errorf("annotation %s is not an export record: %w", key, err))
			continue
		}
		ts, err := strconv.ParseInt(annotations[AnnotationTimestampPrefix+cluster], 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("annotation %s%s is not a timestamp in Unix nanoseconds: %w", AnnotationTimestampPrefix, cluster, err))
			continue
		}
		if r.Type != mcsv1beta1.ClusterSetIP && r.Type != mcsv1beta1.Headless {
			errs = append(errs, fmt.Errorf("annotation %s has type %q: want %s or %s", key, r.Type, mcsv1beta1.ClusterSetIP, mcsv1beta1.Headless))
			continue
		}
		r.Cluster, r.Created = cluster, time.Unix(0, ts).UTC()
		out = append(out, r)
	}
	sortRecords(out)
	return out, errs
}

// sortRecords sorts records oldest export first, ties by cluster ID.
func sortRecords(rs []Record) {
	slices.SortFunc(rs, func(a, b Record) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.Cluster, b.Cluster))
	})
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// isBookkeeping reports whether annotation key is one of the agent's per-cluster
// annotations of aggregated ServiceImports, which stay on the broker.
func isBookkeeping(key string) bool {
	return strings.HasPrefix(key, AnnotationTimestampPrefix) || strings.HasPrefix(key, AnnotationExportPrefix)
}
