package lighthouse

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// Merged is what the exports of one Service in several clusters add up to under
// the MCS conflict policy: the oldest export decides type and session affinity,
// the ports are the union, and every difference between the constituent exports
// is a conflict.
type Merged struct {
	// Winner is the cluster of the oldest export.
	Winner string
	// Type, Ports, SessionAffinity and SessionAffinityConfig are the
	// ServiceImport's spec: the winner's, ports the union over the exported
	// clusters, merged by name, then by protocol and number, oldest export first.
	Type                  mcsv1beta1.ServiceImportType
	Ports                 []mcsv1beta1.ServicePort
	SessionAffinity       corev1.ServiceAffinity
	SessionAffinityConfig *corev1.SessionAffinityConfig
	// Clusters are the exported clusters, sorted: those whose Service has the
	// winner's type. A cluster whose type conflicts is not exported.
	Clusters []string
	// Conflicts are the differences between the constituent exports, in the
	// order of the MCS reasons: PortConflict, TypeConflict,
	// SessionAffinityConflict, SessionAffinityConfigConflict.
	Conflicts []Conflict
}

// Conflict is one kind of difference between the constituent exports.
type Conflict struct {
	Reason  mcsv1beta1.ServiceExportConditionReason
	Message string
}

// Exported reports whether cluster's export takes part in the import.
func (m Merged) Exported(cluster string) bool {
	_, found := slices.BinarySearch(m.Clusters, cluster)
	return found
}

// Reasons returns the conflict reasons comma-joined, as the MCS API combines them.
func (m Merged) Reasons() string {
	rs := make([]string, len(m.Conflicts))
	for i, c := range m.Conflicts {
		rs[i] = string(c.Reason)
	}
	return strings.Join(rs, ",")
}

// Messages returns the conflict messages joined.
func (m Merged) Messages() string {
	ms := make([]string, len(m.Conflicts))
	for i, c := range m.Conflicts {
		ms[i] = c.Message
	}
	return strings.Join(ms, "; ")
}

// Merge merges the records of one Service's exports. It needs no particular
// order; the zero Merged is the result for no records.
func Merge(records []Record) Merged {
	if len(records) == 0 {
		return Merged{}
	}
	rs := slices.Clone(records)
	sortRecords(rs)
	w := rs[0]
	m := Merged{
		Winner:                w.Cluster,
		Type:                  w.Type,
		SessionAffinity:       w.SessionAffinity,
		SessionAffinityConfig: w.SessionAffinityConfig.DeepCopy(),
	}
	for _, r := range rs {
		if r.Type == w.Type {
			m.Clusters = append(m.Clusters, r.Cluster)
			m.Ports = unionPorts(m.Ports, r.Ports)
		}
	}
	slices.Sort(m.Clusters)

	describe := func(what func(Record) string) string {
		parts := make([]string, len(rs))
		for i, r := range rs {
			parts[i] = r.Cluster + " " + what(r)
		}
		return strings.Join(parts, ", ")
	}
	if differ(rs, func(a, b Record) bool { return samePorts(a.Ports, b.Ports) }) {
		m.Conflicts = append(m.Conflicts, Conflict{mcsv1beta1.ServiceExportReasonPortConflict,
			fmt.Sprintf("the exported Services' ports differ (%s): the ServiceImport has their union %s",
				describe(func(r Record) string { return formatPorts(r.Ports) }), formatPorts(m.Ports))})
	}
	if differ(rs, func(a, b Record) bool { return a.Type == b.Type }) {
		m.Conflicts = append(m.Conflicts, Conflict{mcsv1beta1.ServiceExportReasonTypeConflict,
			fmt.Sprintf("the exported Services' types differ (%s): the oldest export, in %s, makes the ServiceImport %s and the clusters of the other type are not exported",
				describe(func(r Record) string { return string(r.Type) }), w.Cluster, w.Type)})
	}
	if differ(rs, func(a, b Record) bool { return a.SessionAffinity == b.SessionAffinity }) {
		m.Conflicts = append(m.Conflicts, Conflict{mcsv1beta1.ServiceExportReasonSessionAffinityConflict,
			fmt.Sprintf("the exported Services' session affinity differs (%s): the ServiceImport has %s, from the oldest export, in %s",
				describe(func(r Record) string { return string(r.SessionAffinity) }), w.SessionAffinity, w.Cluster)})
	}
	if differ(rs, func(a, b Record) bool {
		return equality.Semantic.DeepEqual(a.SessionAffinityConfig, b.SessionAffinityConfig)
	}) {
		m.Conflicts = append(m.Conflicts, Conflict{mcsv1beta1.ServiceExportReasonSessionAffinityConfigConflict,
			fmt.Sprintf("the exported Services' session affinity configurations differ (%s): the ServiceImport has %s, from the oldest export, in %s",
				describe(func(r Record) string { return formatAffinityConfig(r.SessionAffinityConfig) }),
				formatAffinityConfig(w.SessionAffinityConfig), w.Cluster)})
	}
	return m
}

// differ reports whether some record is not the same as the first by same.
func differ(rs []Record, same func(a, b Record) bool) bool {
	for _, r := range rs[1:] {
		if !same(rs[0], r) {
			return true
		}
	}
	return false
}

// unionPorts adds to have the ports of add that it does not have yet: a named
// port whose name is taken, or a port whose protocol and number are taken, is
// left out (the older export's port stays).
func unionPorts(have, add []mcsv1beta1.ServicePort) []mcsv1beta1.ServicePort {
	for _, p := range add {
		taken := slices.ContainsFunc(have, func(q mcsv1beta1.ServicePort) bool {
			return (p.Name != "" && q.Name == p.Name) || (q.Protocol == p.Protocol && q.Port == p.Port)
		})
		if !taken {
			have = append(have, *p.DeepCopy())
		}
	}
	return have
}

// samePorts reports whether a and b hold the same ports, in any order.
func samePorts(a, b []mcsv1beta1.ServicePort) bool {
	if len(a) != len(b) {
		return false
	}
	sa, sb := sortedPorts(a), sortedPorts(b)
	return equality.Semantic.DeepEqual(sa, sb)
}

func sortedPorts(ps []mcsv1beta1.ServicePort) []mcsv1beta1.ServicePort {
	out := slices.Clone(ps)
	slices.SortFunc(out, func(a, b mcsv1beta1.ServicePort) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Port, b.Port),
			cmp.Compare(deref(a.AppProtocol), deref(b.AppProtocol)))
	})
	return out
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// formatPorts renders ports as [name/PROTO/port ...], an unnamed port as
// PROTO/port, with /appProtocol when set.
func formatPorts(ps []mcsv1beta1.ServicePort) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		s := fmt.Sprintf("%s/%d", p.Protocol, p.Port)
		if p.Name != "" {
			s = p.Name + "/" + s
		}
		if p.AppProtocol != nil {
			s += "/" + *p.AppProtocol
		}
		parts[i] = s
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func formatAffinityConfig(c *corev1.SessionAffinityConfig) string {
	if c == nil || c.ClientIP == nil || c.ClientIP.TimeoutSeconds == nil {
		return "none"
	}
	return fmt.Sprintf("clientIP timeout %ds", *c.ClientIP.TimeoutSeconds)
}

// Spec returns the ServiceImport spec of m, keeping the clusterset IPs of an
// existing import (ips; the agent allocates none).
func (m Merged) Spec(ips []string) mcsv1beta1.ServiceImportSpec {
	ports := m.Ports
	if ports == nil {
		ports = []mcsv1beta1.ServicePort{}
	}
	spec := mcsv1beta1.ServiceImportSpec{
		Type:                  m.Type,
		Ports:                 ports,
		IPs:                   ips,
		SessionAffinity:       m.SessionAffinity,
		SessionAffinityConfig: m.SessionAffinityConfig.DeepCopy(),
	}
	if spec.Type == mcsv1beta1.Headless {
		spec.IPs = nil
	}
	return spec
}

// Status returns the ServiceImport status of m: the exported clusters.
func (m Merged) Status() mcsv1beta1.ServiceImportStatus {
	var st mcsv1beta1.ServiceImportStatus
	for _, c := range m.Clusters {
		st.Clusters = append(st.Clusters, mcsv1beta1.ClusterStatus{Cluster: c})
	}
	return st
}
