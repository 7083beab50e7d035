package nodeagent

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
)

// Kubelet-like timings and identities.
const (
	// KubeletVersion is the version the Node reports (that of our Kubernetes binaries).
	KubeletVersion = "v1.37.2"
	// DefaultKubeletPort is the kubelet API's port when Config.KubeletPort is zero.
	DefaultKubeletPort = 10250

	leaseNamespace      = "kube-node-lease"
	leaseDuration       = 40 * time.Second
	leaseRenewInterval  = 10 * time.Second
	nodeStatusInterval  = 10 * time.Second
	nodeStatusReportMax = time.Minute
)

// capacity is what the Node offers the scheduler: generous, since pods are
// processes without resource limits here.
func capacity() corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("16"),
		corev1.ResourceMemory:           resource.MustParse("32Gi"),
		corev1.ResourcePods:             resource.MustParse("110"),
		corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
	}
}

// nodeLabels are the labels the agent puts on its Node: cfg.Labels plus the
// well-known hostname, os and arch labels.
func nodeLabels(cfg *Config) map[string]string {
	l := map[string]string{
		corev1.LabelHostname:   cfg.NodeName,
		corev1.LabelOSStable:   "linux",
		corev1.LabelArchStable: runtime.GOARCH,
	}
	for k, v := range cfg.Labels {
		l[k] = v
	}
	return l
}

// checkNodeLabel refuses labels NodeRestriction forbids a node to set itself.
func checkNodeLabel(key string) error {
	ns, _, ok := strings.Cut(key, "/")
	if !ok {
		return nil
	}
	restricted := func(domain string) bool { return ns == domain || strings.HasSuffix(ns, "."+domain) }
	allowed := map[string]bool{
		corev1.LabelHostname: true, corev1.LabelTopologyZone: true, corev1.LabelTopologyRegion: true,
		corev1.LabelFailureDomainBetaZone: true, corev1.LabelFailureDomainBetaRegion: true,
		corev1.LabelInstanceType: true, corev1.LabelInstanceTypeStable: true, corev1.LabelOSStable: true,
		corev1.LabelArchStable: true, "beta.kubernetes.io/os": true, "beta.kubernetes.io/arch": true,
	}
	switch {
	case restricted("node-restriction.kubernetes.io"):
		return fmt.Errorf("node label %q: NodeRestriction forbids nodes to set node-restriction.kubernetes.io labels; set it with an administrator's client", key)
	case (restricted("kubernetes.io") || restricted("k8s.io")) && !allowed[key] &&
		!restricted("kubelet.kubernetes.io") && !restricted("node.kubernetes.io"):
		return fmt.Errorf("node label %q: NodeRestriction forbids nodes to set kubernetes.io and k8s.io labels other than the kubelet's; use another prefix or set it with an administrator's client", key)
	}
	return nil
}

// nodeObject renders the Node as the agent wants it (spec and metadata).
func (a *agent) nodeObject() *corev1.Node {
	cidr := a.cfg.PodCIDR.Masked().String()
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName, Labels: nodeLabels(&a.cfg)},
		Spec:       corev1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}},
	}
}

// nodeStatus renders the Node's status with a heartbeat at now.
func (a *agent) nodeStatus(old *corev1.NodeStatus, now time.Time) corev1.NodeStatus {
	kernel := ""
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(data))
	}
	boot := ""
	if data, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		boot = strings.TrimSpace(string(data))
	}
	hb := metav1.NewTime(now.Truncate(time.Second))
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		c := corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: hb, LastTransitionTime: hb}
		if old != nil {
			for _, o := range old.Conditions {
				if o.Type == t && o.Status == s {
					c.LastTransitionTime = o.LastTransitionTime
				}
			}
		}
		return c
	}
	return corev1.NodeStatus{
		Capacity:    capacity(),
		Allocatable: capacity(),
		Conditions: []corev1.NodeCondition{
			cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
			cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
			cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
			cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"),
		},
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: a.cfg.NodeIP.String()},
			{Type: corev1.NodeHostName, Address: a.cfg.NodeName},
		},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(a.port)}},
		NodeInfo: corev1.NodeSystemInfo{
			MachineID:               a.cfg.NodeName,
			SystemUUID:              a.cfg.NodeName,
			BootID:                  boot,
			KernelVersion:           kernel,
			OSImage:                 "submariner-go sandbox",
			ContainerRuntimeVersion: "sandbox://" + KubeletVersion,
			KubeletVersion:          KubeletVersion,
			OperatingSystem:         "linux",
			Architecture:            runtime.GOARCH,
		},
	}
}

// registerNode creates the Node or brings an existing one (of an earlier run) to
// our labels and pod CIDR, then reports its status.
func (a *agent) registerNode(ctx context.Context) error {
	want := a.nodeObject()
	nodes := a.kube.CoreV1().Nodes()
	node, err := nodes.Create(ctx, want, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		node, err = nodes.Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading node %s: %w", a.cfg.NodeName, err)
		}
		if node.Spec.PodCIDR != "" && node.Spec.PodCIDR != want.Spec.PodCIDR {
			return fmt.Errorf("node %s already has pod CIDR %s, not %s: pod CIDRs cannot change; delete the Node or use its CIDR", a.cfg.NodeName, node.Spec.PodCIDR, want.Spec.PodCIDR)
		}
		changed := node.Spec.PodCIDR == ""
		node.Spec.PodCIDR, node.Spec.PodCIDRs = want.Spec.PodCIDR, want.Spec.PodCIDRs
		if node.Labels == nil {
			node.Labels = map[string]string{}
		}
		for k, v := range want.Labels {
			if node.Labels[k] != v {
				node.Labels[k] = v
				changed = true
			}
		}
		if changed {
			if node, err = nodes.Update(ctx, node, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("updating node %s: %w", a.cfg.NodeName, err)
			}
		}
	} else if err != nil {
		return fmt.Errorf("registering node %s: %w", a.cfg.NodeName, err)
	}
	node.Status = a.nodeStatus(&node.Status, time.Now())
	if _, err := nodes.UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("reporting the status of node %s: %w", a.cfg.NodeName, err)
	}
	a.log.Info("node registered", "podCIDR", want.Spec.PodCIDR, "nodeIP", a.cfg.NodeIP.String())
	return nil
}

// heartbeat reports the node's status every nodeStatusInterval when it changed,
// and at least every nodeStatusReportMax, until ctx ends.
func (a *agent) heartbeat(ctx context.Context) {
	var lastReport time.Time
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		node, err := a.kube.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			if ctx.Err() == nil {
				a.log.Error(err, "reading own node")
			}
			return
		}
		now := time.Now()
		status := a.nodeStatus(&node.Status, now)
		cmp := status.DeepCopy()
		for i := range cmp.Conditions {
			for _, o := range node.Status.Conditions {
				if o.Type == cmp.Conditions[i].Type {
					cmp.Conditions[i].LastHeartbeatTime = o.LastHeartbeatTime
				}
			}
		}
		if apiequality.Semantic.DeepEqual(*cmp, node.Status) && now.Sub(lastReport) < nodeStatusReportMax {
			return
		}
		node.Status = status
		if _, err := a.kube.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
			if ctx.Err() == nil {
				a.log.Error(err, "reporting node status")
			}
			return
		}
		lastReport = now
	}, nodeStatusInterval)
}

// renewLease keeps the node's Lease in kube-node-lease fresh, as the kubelet
// does, until ctx ends.
func (a *agent) renewLease(ctx context.Context, owner *metav1.OwnerReference) {
	leases := a.kube.CoordinationV1().Leases(leaseNamespace)
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		now := metav1.NewMicroTime(time.Now())
		lease, err := leases.Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			lease = &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName, Namespace: leaseNamespace},
				Spec: coordinationv1.LeaseSpec{
					HolderIdentity:       ptr.To(a.cfg.NodeName),
					LeaseDurationSeconds: ptr.To(int32(leaseDuration / time.Second)),
					RenewTime:            &now,
				},
			}
			if owner != nil {
				lease.OwnerReferences = []metav1.OwnerReference{*owner}
			}
			_, err = leases.Create(ctx, lease, metav1.CreateOptions{})
		case err == nil:
			lease.Spec.HolderIdentity = ptr.To(a.cfg.NodeName)
			lease.Spec.LeaseDurationSeconds = ptr.To(int32(leaseDuration / time.Second))
			lease.Spec.RenewTime = &now
			if len(lease.OwnerReferences) == 0 && owner != nil {
				lease.OwnerReferences = []metav1.OwnerReference{*owner}
			}
			_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
		}
		if err != nil && ctx.Err() == nil {
			a.log.Error(err, "renewing node lease")
		}
	}, leaseRenewInterval)
}

// nodeOwner returns the owner reference that ties the Lease to the Node, so it
// goes when the Node goes.
func (a *agent) nodeOwner(ctx context.Context) *metav1.OwnerReference {
	node, err := a.kube.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return &metav1.OwnerReference{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}
}
