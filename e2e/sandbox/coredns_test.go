package sandbox

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// TestCoreDNSObjects checks the cluster DNS objects where tools and our
// components look for them: kubeadm's names and labels, the .10 Service address
// of the cluster's range, the Corefile mounted where the args point.
func TestCoreDNSObjects(t *testing.T) {
	topo, err := Plan(2, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, obj := range coreDNSObjects(topo.Clusters[1]) {
		line := fmt.Sprintf("%T %s/%s labels=%v", obj, obj.GetNamespace(), obj.GetName(), obj.GetLabels())
		switch o := obj.(type) {
		case *corev1.Service:
			var ports []string
			for _, p := range o.Spec.Ports {
				ports = append(ports, fmt.Sprintf("%s:%d/%s", p.Name, p.Port, p.Protocol))
			}
			line += fmt.Sprintf(" clusterIP=%s selector=%v ports=%s", o.Spec.ClusterIP, o.Spec.Selector, strings.Join(ports, ","))
		case *appsv1.Deployment:
			c := o.Spec.Template.Spec.Containers[0]
			line += fmt.Sprintf(" replicas=%d sa=%s image=%s args=%v mount=%s configmap=%s ready=%s:%s",
				*o.Spec.Replicas, o.Spec.Template.Spec.ServiceAccountName, c.Image, c.Args, c.VolumeMounts[0].MountPath,
				o.Spec.Template.Spec.Volumes[0].ConfigMap.Name, c.ReadinessProbe.HTTPGet.Path, c.ReadinessProbe.HTTPGet.Port.String())
		case *corev1.ConfigMap:
			line += fmt.Sprintf(" keys=%d corefile=%t", len(o.Data), o.Data["Corefile"] == Corefile())
		case *rbacv1.ClusterRoleBinding:
			line += fmt.Sprintf(" role=%s subject=%s/%s", o.RoleRef.Name, o.Subjects[0].Namespace, o.Subjects[0].Name)
		}
		got = append(got, line)
	}
	want := []string{
		"*v1.ServiceAccount kube-system/coredns labels=map[]",
		"*v1.ClusterRole /system:coredns labels=map[]",
		"*v1.ClusterRoleBinding /system:coredns labels=map[] role=system:coredns subject=kube-system/coredns",
		"*v1.ConfigMap kube-system/coredns labels=map[] keys=1 corefile=true",
		"*v1.Deployment kube-system/coredns labels=map[k8s-app:kube-dns] replicas=2 sa=coredns image=registry.k8s.io/coredns/coredns:v1.15.0 args=[-conf /etc/coredns/Corefile] mount=/etc/coredns configmap=coredns ready=/ready:8181",
		"*v1.Service kube-system/kube-dns labels=map[k8s-app:kube-dns kubernetes.io/cluster-service:true kubernetes.io/name:CoreDNS] clusterIP=10.142.0.10 selector=map[k8s-app:kube-dns] ports=dns:53/UDP,dns-tcp:53/TCP,metrics:9153/TCP",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CoreDNS objects (-want +got):\n%s", diff)
	}
}
