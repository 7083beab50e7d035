package lighthouse

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// t0 is the creation time of the exports in the tests.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func service(mutate func(*corev1.Service)) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web"},
		Spec: corev1.ServiceSpec{
			Type:      corev1.ServiceTypeClusterIP,
			ClusterIP: "100.2.0.10",
			Ports:     []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}},
		},
	}
	if mutate != nil {
		mutate(svc)
	}
	return svc
}

func tcp(name string, port int32) mcsv1beta1.ServicePort {
	return mcsv1beta1.ServicePort{Name: name, Protocol: corev1.ProtocolTCP, Port: port}
}

func TestRecordFor(t *testing.T) {
	timeout := int32(300)
	clientIP := &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &timeout}}
	tests := []struct {
		name        string
		svc         *corev1.Service
		want        Record
		wantInvalid mcsv1beta1.ServiceExportConditionReason
	}{
		{
			name:        "no Service",
			wantInvalid: mcsv1beta1.ServiceExportReasonNoService,
		},
		{
			name: "ExternalName",
			svc: service(func(s *corev1.Service) {
				s.Spec.Type, s.Spec.ClusterIP, s.Spec.ExternalName = corev1.ServiceTypeExternalName, "", "example.com"
			}),
			wantInvalid: mcsv1beta1.ServiceExportReasonInvalidServiceType,
		},
		{
			name: "ClusterIP",
			svc:  service(nil),
			want: Record{Cluster: "cluster2", Created: t0, Type: mcsv1beta1.ClusterSetIP, SessionAffinity: corev1.ServiceAffinityNone,
				Ports: []mcsv1beta1.ServicePort{tcp("http", 80)}},
		},
		{
			name: "NodePort and LoadBalancer export as ClusterSetIP, ports in the Service's order, protocol defaulted",
			svc: service(func(s *corev1.Service) {
				s.Spec.Type = corev1.ServiceTypeLoadBalancer
				s.Spec.Ports = []corev1.ServicePort{
					{Name: "https", Port: 443, NodePort: 30443, AppProtocol: new("https")},
					{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53},
				}
			}),
			want: Record{Cluster: "cluster2", Created: t0, Type: mcsv1beta1.ClusterSetIP, SessionAffinity: corev1.ServiceAffinityNone,
				Ports: []mcsv1beta1.ServicePort{
					{Name: "https", Protocol: corev1.ProtocolTCP, Port: 443, AppProtocol: new("https")},
					{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53},
				}},
		},
		{
			name: "client IP affinity with its configuration",
			svc: service(func(s *corev1.Service) {
				s.Spec.SessionAffinity, s.Spec.SessionAffinityConfig = corev1.ServiceAffinityClientIP, clientIP
			}),
			want: Record{Cluster: "cluster2", Created: t0, Type: mcsv1beta1.ClusterSetIP, SessionAffinity: corev1.ServiceAffinityClientIP,
				SessionAffinityConfig: clientIP, Ports: []mcsv1beta1.ServicePort{tcp("http", 80)}},
		},
		{
			name: "headless: no affinity to compare",
			svc: service(func(s *corev1.Service) {
				s.Spec.ClusterIP = corev1.ClusterIPNone
				s.Spec.SessionAffinity, s.Spec.SessionAffinityConfig = corev1.ServiceAffinityClientIP, clientIP
			}),
			want: Record{Cluster: "cluster2", Created: t0, Type: mcsv1beta1.Headless, SessionAffinity: corev1.ServiceAffinityNone,
				Ports: []mcsv1beta1.ServicePort{tcp("http", 80)}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, invalid := RecordFor("cluster2", tt.svc, metav1.NewTime(t0), "demo", "web")
			if tt.wantInvalid != "" {
				if invalid == nil || invalid.Reason != tt.wantInvalid {
					t.Fatalf("RecordFor = %+v, %v; want invalid with reason %s", got, invalid, tt.wantInvalid)
				}
				if !strings.Contains(invalid.Message, "demo/web") {
					t.Errorf("message %q does not name the Service demo/web", invalid.Message)
				}
				return
			}
			if invalid != nil {
				t.Fatalf("RecordFor: unexpected invalid %v", invalid)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("RecordFor (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRecordAnnotations(t *testing.T) {
	r1 := Record{Cluster: "cluster1", Created: t0.Add(time.Second), Type: mcsv1beta1.ClusterSetIP,
		SessionAffinity: corev1.ServiceAffinityNone, Ports: []mcsv1beta1.ServicePort{tcp("http", 80)}}
	r2 := Record{Cluster: "cluster2", Created: t0, Type: mcsv1beta1.Headless, SessionAffinity: corev1.ServiceAffinityNone}
	annotations := map[string]string{mcsv1beta1.LabelServiceName: "web"}
	for _, r := range []Record{r1, r2} {
		ts, export, err := encodeRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		annotations[AnnotationTimestampPrefix+r.Cluster] = ts
		annotations[AnnotationExportPrefix+r.Cluster] = export
	}
	if got, want := annotations[AnnotationTimestampPrefix+"cluster2"], "1772366400000000000"; got != want {
		t.Errorf("timestamp annotation = %s, want the Unix nanoseconds %s", got, want)
	}
	// Records that cannot take part are reported and left out.
	annotations[AnnotationExportPrefix+"cluster3"] = `{"type":"ClusterSetIP"}` // no timestamp
	annotations[AnnotationExportPrefix+"cluster4"] = `{not json`
	annotations[AnnotationTimestampPrefix+"cluster4"] = "1"
	annotations[AnnotationExportPrefix+"cluster5"] = `{"type":"LoadBalancer"}`
	annotations[AnnotationTimestampPrefix+"cluster5"] = "1"

	got, errs := decodeRecords(annotations)
	if diff := cmp.Diff([]Record{r2, r1}, got); diff != "" {
		t.Errorf("decodeRecords: oldest first (-want +got):\n%s", diff)
	}
	var msgs []string
	for _, err := range errs {
		msgs = append(msgs, err.Error())
	}
	for i, want := range []string{"timestamp.submariner.io/cluster3", "export.lighthouse.submariner.io/cluster4", `"LoadBalancer"`} {
		if i >= len(msgs) || !strings.Contains(msgs[i], want) {
			t.Errorf("decodeRecords problem %d = %q, want it to name %s (all: %q)", i, at(msgs, i), want, msgs)
		}
	}
}

func at(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return ""
}
