package sandbox

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Cluster DNS, named and labelled as kubeadm deploys it, so that tools and our own
// components (subctl join patches the Corefile in ConfigMap kube-system/coredns)
// find it where they would on a real cluster.
const (
	// CoreDNSImage is the cluster DNS image; the catalog maps it to CoreDNS built by
	// coredns-build.
	CoreDNSImage = "registry.k8s.io/coredns/coredns:v1.15.0"
	// CoreDNSName names the Deployment, ConfigMap and ServiceAccount.
	CoreDNSName = "coredns"
	// DNSServiceName is the cluster DNS Service.
	DNSServiceName = "kube-dns"
	// DNSAppLabel is the label key and value of the DNS pods and Service.
	DNSAppLabel      = "k8s-app"
	DNSAppLabelValue = "kube-dns"
	// CoreDNSReplicas is kubeadm's replica count.
	CoreDNSReplicas = 2
	// coreDNSClusterRole is kubeadm's name for CoreDNS's ClusterRole and binding.
	coreDNSClusterRole = "system:coredns"
	kubeSystem         = "kube-system"
)

// Corefile is the cluster DNS configuration: kubeadm's, without
// `forward . /etc/resolv.conf`, since the sandbox has no upstream resolver (and must
// not reach one). Names outside cluster.local and the reverse zones get SERVFAIL.
// It reloads every 2 s (CoreDNS's default is 30 s), so the clusterset.local block
// that subctl join adds works within seconds.
func Corefile() string {
	return `.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes ` + ClusterDomain + ` in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    cache 30 {
       disable success ` + ClusterDomain + `
       disable denial ` + ClusterDomain + `
    }
    loop
    reload 2s
    loadbalance
}
`
}

// coreDNSObjects returns the cluster DNS objects of a cluster, in creation order.
func coreDNSObjects(c Cluster) []client.Object {
	labels := map[string]string{DNSAppLabel: DNSAppLabelValue}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: CoreDNSName, Namespace: kubeSystem}}
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: coreDNSClusterRole},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"endpoints", "services", "pods", "namespaces"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
		},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: coreDNSClusterRole},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: coreDNSClusterRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: CoreDNSName, Namespace: kubeSystem}},
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: CoreDNSName, Namespace: kubeSystem},
		Data:       map[string]string{"Corefile": Corefile()},
	}
	probe := func(path string, port int32) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(port), Scheme: corev1.URISchemeHTTP}}}
	}
	liveness := probe("/health", 8080)
	liveness.InitialDelaySeconds, liveness.TimeoutSeconds, liveness.SuccessThreshold, liveness.FailureThreshold = 60, 5, 1, 5
	readiness := probe("/ready", 8181)
	readiness.PeriodSeconds = 1
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: CoreDNSName, Namespace: kubeSystem, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](CoreDNSReplicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{
				Type:          appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: ptr.To(intstr.FromInt32(1))},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					PriorityClassName:  "system-cluster-critical",
					ServiceAccountName: CoreDNSName,
					DNSPolicy:          corev1.DNSDefault,
					NodeSelector:       map[string]string{corev1.LabelOSStable: "linux"},
					Tolerations:        []corev1.Toleration{{Key: "CriticalAddonsOnly", Operator: corev1.TolerationOpExists}},
					Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
						PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
							Weight: 100,
							PodAffinityTerm: corev1.PodAffinityTerm{
								LabelSelector: &metav1.LabelSelector{MatchLabels: labels},
								TopologyKey:   corev1.LabelHostname,
							},
						}},
					}},
					Containers: []corev1.Container{{
						Name:            CoreDNSName,
						Image:           CoreDNSImage,
						ImagePullPolicy: corev1.PullIfNotPresent,
						Args:            []string{"-conf", "/etc/coredns/Corefile"},
						Resources: corev1.ResourceRequirements{
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("170Mi")},
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("70Mi")},
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "config-volume", MountPath: "/etc/coredns", ReadOnly: true}},
						Ports: []corev1.ContainerPort{
							{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
							{Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP},
							{Name: "metrics", ContainerPort: 9153, Protocol: corev1.ProtocolTCP},
						},
						LivenessProbe:  liveness,
						ReadinessProbe: readiness,
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false),
							// As kubeadm: nothing but binding port 53.
							Capabilities: &corev1.Capabilities{
								Drop: []corev1.Capability{"ALL"},
								Add:  []corev1.Capability{"NET_BIND_SERVICE"},
							},
							ReadOnlyRootFilesystem: ptr.To(true),
						},
					}},
					Volumes: []corev1.Volume{{
						Name: "config-volume",
						VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: CoreDNSName},
							Items:                []corev1.KeyToPath{{Key: "Corefile", Path: "Corefile"}},
						}},
					}},
				},
			},
		},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name:      DNSServiceName,
			Namespace: kubeSystem,
			Labels: map[string]string{
				DNSAppLabel:                     DNSAppLabelValue,
				"kubernetes.io/cluster-service": "true",
				"kubernetes.io/name":            "CoreDNS",
			},
			Annotations: map[string]string{"prometheus.io/port": "9153", "prometheus.io/scrape": "true"},
		},
		Spec: corev1.ServiceSpec{
			Selector:  labels,
			ClusterIP: c.DNSServiceIP().String(),
			Ports: []corev1.ServicePort{
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(53)},
				{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(53)},
				{Name: "metrics", Port: 9153, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(9153)},
			},
		},
	}
	return []client.Object{sa, role, binding, cm, deploy, svc}
}

// deployCoreDNS creates the cluster DNS objects; existing ones are left as they are.
func deployCoreDNS(ctx context.Context, cl client.Client, c Cluster) error {
	for _, obj := range coreDNSObjects(c) {
		if err := cl.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %T %s in %s: %w", obj, client.ObjectKeyFromObject(obj), c.Name, err)
		}
	}
	return nil
}
