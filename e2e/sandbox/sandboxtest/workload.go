package sandboxtest

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/submariner-go/submariner/e2e/nettest"
)

// NettestImage is the test workload's image; the sandbox's catalog maps it to
// _output/bin/nettest.
const NettestImage = "ghcr.io/submariner-go/nettest:latest"

// AppLabel is the label key the workload builders select their pods by.
const AppLabel = "app"

// Ports of the workload's servers (nettest serve's defaults).
const (
	TCPPort  = nettest.DefaultTCPPort
	UDPPort  = nettest.DefaultUDPPort
	HTTPPort = nettest.DefaultHTTPPort
)

// NettestPodSpec is a pod running `nettest serve` with its identity from the
// downward API and a readiness probe on /healthz. nodeName, when set, pins it to a
// node (through the scheduler, by the kubernetes.io/hostname label).
func NettestPodSpec(nodeName string) corev1.PodSpec {
	spec := corev1.PodSpec{
		TerminationGracePeriodSeconds: ptr.To[int64](5),
		Containers: []corev1.Container{{
			Name:  "nettest",
			Image: NettestImage,
			Args:  []string{"serve"},
			Env: []corev1.EnvVar{
				{Name: nettest.EnvPodName, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				{Name: nettest.EnvPodIP, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			},
			Ports: []corev1.ContainerPort{
				{Name: "tcp", ContainerPort: TCPPort, Protocol: corev1.ProtocolTCP},
				{Name: "udp", ContainerPort: UDPPort, Protocol: corev1.ProtocolUDP},
				{Name: "http", ContainerPort: HTTPPort, Protocol: corev1.ProtocolTCP},
			},
			ReadinessProbe: &corev1.Probe{
				ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: nettest.HealthPath, Port: intstr.FromInt32(HTTPPort)}},
				PeriodSeconds: 1,
			},
		}},
	}
	if nodeName != "" {
		spec.NodeSelector = map[string]string{corev1.LabelHostname: nodeName}
	}
	return spec
}

// NettestPod is a single nettest pod labelled app=name, on nodeName if set.
func NettestPod(namespace, name, nodeName string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{AppLabel: name}},
		Spec:       NettestPodSpec(nodeName),
	}
}

// NettestDeployment is a Deployment of nettest servers labelled app=name, on
// nodeName if set.
func NettestDeployment(namespace, name string, replicas int32, nodeName string) *appsv1.Deployment {
	labels := map[string]string{AppLabel: name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: NettestPodSpec(nodeName)},
		},
	}
}

// NettestDaemonSet is a DaemonSet of nettest servers labelled app=name.
func NettestDaemonSet(namespace, name string) *appsv1.DaemonSet {
	labels := map[string]string{AppLabel: name}
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: NettestPodSpec("")},
		},
	}
}

// NettestService is a ClusterIP Service for the nettest pods labelled app=name,
// with the TCP, UDP and HTTP ports.
func NettestService(namespace, name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{AppLabel: name}},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{AppLabel: name},
			Ports: []corev1.ServicePort{
				{Name: "tcp", Port: TCPPort, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("tcp")},
				{Name: "udp", Port: UDPPort, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromString("udp")},
				{Name: "http", Port: HTTPPort, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")},
			},
		},
	}
}

// HostPort joins a host and a port for nettest's --tcp and --udp.
func HostPort(host string, port int32) string { return fmt.Sprintf("%s:%d", host, port) }
