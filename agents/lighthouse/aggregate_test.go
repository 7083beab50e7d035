package lighthouse

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// rec returns the record of a ClusterIP export in cluster, age seconds after t0,
// with ports.
func rec(cluster string, age int, ports ...mcsv1beta1.ServicePort) Record {
	return Record{Cluster: cluster, Created: t0.Add(time.Duration(age) * time.Second), Type: mcsv1beta1.ClusterSetIP,
		SessionAffinity: corev1.ServiceAffinityNone, Ports: ports}
}

func headless(r Record) Record { r.Type = mcsv1beta1.Headless; return r }

func affinity(r Record, timeout int32) Record {
	r.SessionAffinity = corev1.ServiceAffinityClientIP
	r.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &timeout}}
	return r
}

// merged is the part of Merged the table compares, as text.
type merged struct {
	Winner, Type, Ports, Affinity, Clusters, Reasons string
	Messages                                         []string
}

func describeMerged(m Merged) merged {
	out := merged{Winner: m.Winner, Type: string(m.Type), Ports: formatPorts(m.Ports),
		Affinity: string(m.SessionAffinity) + " " + formatAffinityConfig(m.SessionAffinityConfig),
		Clusters: strings.Join(m.Clusters, ","), Reasons: m.Reasons()}
	for _, c := range m.Conflicts {
		out.Messages = append(out.Messages, c.Message)
	}
	return out
}

func TestMerge(t *testing.T) {
	http, https, metrics := tcp("http", 80), tcp("https", 443), tcp("metrics", 9090)
	tests := []struct {
		name    string
		records []Record
		want    merged
	}{
		{
			name:    "no exports",
			records: nil,
			want:    merged{Ports: "[]", Affinity: " none"},
		},
		{
			name:    "one export",
			records: []Record{rec("cluster2", 0, http)},
			want:    merged{Winner: "cluster2", Type: "ClusterSetIP", Ports: "[http/TCP/80]", Affinity: "None none", Clusters: "cluster2"},
		},
		{
			name:    "identical exports agree",
			records: []Record{rec("cluster2", 5, http, https), rec("cluster1", 0, https, http)},
			want: merged{Winner: "cluster1", Type: "ClusterSetIP", Ports: "[https/TCP/443 http/TCP/80]", Affinity: "None none",
				Clusters: "cluster1,cluster2"},
		},
		{
			name:    "ports are the union, oldest export first",
			records: []Record{rec("cluster1", 5, http, metrics), rec("cluster2", 0, http, https)},
			want: merged{Winner: "cluster2", Type: "ClusterSetIP", Ports: "[http/TCP/80 https/TCP/443 metrics/TCP/9090]",
				Affinity: "None none", Clusters: "cluster1,cluster2", Reasons: "PortConflict",
				Messages: []string{"the exported Services' ports differ (cluster2 [http/TCP/80 https/TCP/443], cluster1 [http/TCP/80 metrics/TCP/9090]): " +
					"the ServiceImport has their union [http/TCP/80 https/TCP/443 metrics/TCP/9090]"}},
		},
		{
			name: "a name taken with another number, and a number taken under another name: the older port stays",
			records: []Record{
				rec("cluster1", 0, http, tcp("", 53)),
				rec("cluster2", 1, tcp("http", 8080), tcp("web", 80), tcp("dns", 53), mcsv1beta1.ServicePort{Name: "dns-udp", Protocol: corev1.ProtocolUDP, Port: 53}),
			},
			want: merged{Winner: "cluster1", Type: "ClusterSetIP", Ports: "[http/TCP/80 TCP/53 dns-udp/UDP/53]",
				Affinity: "None none", Clusters: "cluster1,cluster2", Reasons: "PortConflict",
				Messages: []string{"the exported Services' ports differ (cluster1 [http/TCP/80 TCP/53], cluster2 [http/TCP/8080 web/TCP/80 dns/TCP/53 dns-udp/UDP/53]): " +
					"the ServiceImport has their union [http/TCP/80 TCP/53 dns-udp/UDP/53]"}},
		},
		{
			name:    "the app protocol counts as a difference",
			records: []Record{rec("cluster1", 0, http), rec("cluster2", 1, mcsv1beta1.ServicePort{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, AppProtocol: new("http2")})},
			want: merged{Winner: "cluster1", Type: "ClusterSetIP", Ports: "[http/TCP/80]", Affinity: "None none",
				Clusters: "cluster1,cluster2", Reasons: "PortConflict",
				Messages: []string{"the exported Services' ports differ (cluster1 [http/TCP/80], cluster2 [http/TCP/80/http2]): the ServiceImport has their union [http/TCP/80]"}},
		},
		{
			name:    "type conflict: the oldest export decides, the other type is not exported and adds no ports",
			records: []Record{rec("cluster1", 3, http), headless(rec("cluster2", 1, http)), headless(rec("cluster3", 2, https))},
			want: merged{Winner: "cluster2", Type: "Headless", Ports: "[http/TCP/80 https/TCP/443]", Affinity: "None none",
				Clusters: "cluster2,cluster3", Reasons: "PortConflict,TypeConflict",
				Messages: []string{
					"the exported Services' ports differ (cluster2 [http/TCP/80], cluster3 [https/TCP/443], cluster1 [http/TCP/80]): the ServiceImport has their union [http/TCP/80 https/TCP/443]",
					"the exported Services' types differ (cluster2 Headless, cluster3 Headless, cluster1 ClusterSetIP): the oldest export, in cluster2, makes the ServiceImport Headless and the clusters of the other type are not exported",
				}},
		},
		{
			name:    "session affinity and its configuration from the oldest export",
			records: []Record{affinity(rec("cluster1", 0, http), 300), affinity(rec("cluster2", 1, http), 600), rec("cluster3", 2, http)},
			want: merged{Winner: "cluster1", Type: "ClusterSetIP", Ports: "[http/TCP/80]", Affinity: "ClientIP clientIP timeout 300s",
				Clusters: "cluster1,cluster2,cluster3", Reasons: "SessionAffinityConflict,SessionAffinityConfigConflict",
				Messages: []string{
					"the exported Services' session affinity differs (cluster1 ClientIP, cluster2 ClientIP, cluster3 None): the ServiceImport has ClientIP, from the oldest export, in cluster1",
					"the exported Services' session affinity configurations differ (cluster1 clientIP timeout 300s, cluster2 clientIP timeout 600s, cluster3 none): the ServiceImport has clientIP timeout 300s, from the oldest export, in cluster1",
				}},
		},
		{
			name:    "exports of the same second: the cluster ID breaks the tie",
			records: []Record{headless(rec("cluster-b", 0, http)), rec("cluster-a", 0, http)},
			want: merged{Winner: "cluster-a", Type: "ClusterSetIP", Ports: "[http/TCP/80]", Affinity: "None none",
				Clusters: "cluster-a", Reasons: "TypeConflict",
				Messages: []string{"the exported Services' types differ (cluster-a ClusterSetIP, cluster-b Headless): the oldest export, in cluster-a, makes the ServiceImport ClusterSetIP and the clusters of the other type are not exported"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := describeMerged(Merge(tt.records))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Merge (-want +got):\n%s", diff)
			}
			// Every agent merges the same records in whatever order it finds them.
			rng := rand.New(rand.NewPCG(1, 2))
			for range 5 {
				shuffled := slices.Clone(tt.records)
				rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
				if diff := cmp.Diff(got, describeMerged(Merge(shuffled))); diff != "" {
					t.Errorf("Merge depends on the order of the records (-first +shuffled):\n%s", diff)
				}
			}
		})
	}
}

func TestMergeExported(t *testing.T) {
	m := Merge([]Record{rec("cluster1", 0), headless(rec("cluster2", 1)), rec("cluster3", 2)})
	for cluster, want := range map[string]bool{"cluster1": true, "cluster2": false, "cluster3": true, "cluster4": false} {
		if got := m.Exported(cluster); got != want {
			t.Errorf("Exported(%s) = %v, want %v", cluster, got, want)
		}
	}
}
