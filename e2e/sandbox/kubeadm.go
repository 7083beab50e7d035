package sandbox

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// kubeadmConfig returns the kube-system/kubeadm-config ConfigMap that a kubeadm
// cluster carries, with the cluster's networking. Tools that discover a cluster's
// ranges (subctl join) read it, as they would in a kubeadm-built cluster; the
// sandbox has no kube-controller-manager pod whose --cluster-cidr they could read.
func kubeadmConfig(c Cluster) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "kubeadm-config", Namespace: kubeSystem},
		Data: map[string]string{"ClusterConfiguration": fmt.Sprintf(`apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
clusterName: %s
networking:
  dnsDomain: cluster.local
  podSubnet: %s
  serviceSubnet: %s
`, c.Name, c.PodCIDR, c.ServiceCIDR)},
	}
}

// publishKubeadmConfig creates kubeadmConfig; an existing one is left as it is.
func publishKubeadmConfig(ctx context.Context, cl client.Client, c Cluster) error {
	if err := cl.Create(ctx, kubeadmConfig(c)); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating kube-system/kubeadm-config in %s: %w", c.Name, err)
	}
	return nil
}
