package main

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/submariner-go/submariner/e2e/controlplane"
)

// TestKubernetesPlugin runs the stock kubernetes plugin of our build against a real
// API server: cluster.local from a Service, and clusterset.local from a
// ServiceImport through the plugin's `multicluster` option (the reference the
// lighthouse DNS benchmark compares against).
func TestKubernetesPlugin(t *testing.T) {
	plane := controlplane.Start(t, "cluster1")[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const ns, name = "demo", "web"
	if _, err := plane.Kube.CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc, err := plane.Kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.ClusterIP == "" {
		t.Fatal("the API server allocated no ClusterIP")
	}
	const clustersetIP = "10.99.0.10"
	si := &mcsv1beta1.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: mcsv1beta1.ServiceImportSpec{
			Type:  mcsv1beta1.ClusterSetIP,
			IPs:   []string{clustersetIP},
			Ports: []mcsv1beta1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}},
		},
	}
	if err := plane.Client.Create(ctx, si); err != nil {
		t.Fatal(err)
	}

	ready := freePort(t)
	srv := start(t, fmt.Sprintf(`
.:0 {
	bind 127.0.0.1
	ready %s
	kubernetes cluster.local clusterset.local {
		kubeconfig %s
		multicluster clusterset.local
	}
}
`, ready, plane.Kubeconfig))
	waitFor(ctx, t, "the kubernetes plugin to sync", func() (bool, string) {
		code, body := get(t, "http://"+ready+"/ready")
		return code == http.StatusOK, fmt.Sprintf("%d %s", code, body)
	})

	tests := []struct {
		name       string
		qname      string
		wantRcode  int
		wantAnswer []string
	}{
		{
			name:       "service",
			qname:      "web.demo.svc.cluster.local.",
			wantAnswer: []string{"web.demo.svc.cluster.local. 5 IN A " + svc.Spec.ClusterIP},
		},
		{
			name:       "service import",
			qname:      "web.demo.svc.clusterset.local.",
			wantAnswer: []string{"web.demo.svc.clusterset.local. 5 IN A " + clustersetIP},
		},
		{
			name:      "no such service",
			qname:     "nothere.demo.svc.cluster.local.",
			wantRcode: dns.RcodeNameError,
		},
		{
			name:      "no such import",
			qname:     "nothere.demo.svc.clusterset.local.",
			wantRcode: dns.RcodeNameError,
		},
	}
	for _, tc := range tests {
		for _, transport := range []string{"udp", "tcp"} {
			t.Run(tc.name+"/"+transport, func(t *testing.T) {
				resp, _ := exchange(t, transport, srv.addr(transport), new(dns.Msg).SetQuestion(tc.qname, dns.TypeA))
				if resp.Rcode != tc.wantRcode {
					t.Errorf("rcode = %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.wantRcode])
				}
				if diff := cmp.Diff(canonical(t, tc.wantAnswer), rrStrings(resp.Answer)); diff != "" {
					t.Errorf("answer (-want +got):\n%s", diff)
				}
			})
		}
	}
}
