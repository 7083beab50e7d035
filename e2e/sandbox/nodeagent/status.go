package nodeagent

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Waiting and terminated reasons the agent reports, beside the kubelet's own
// (ContainerCreating, CrashLoopBackOff, Completed, Error).
const (
	// ReasonImageNotInCatalog is the waiting reason of a container whose image the
	// catalog does not know (the sandbox's ErrImageNeverPull).
	ReasonImageNotInCatalog = "ImageNotInCatalog"
	// ReasonImageBinaryMissing is the waiting reason of a container whose image is
	// in the catalog but whose binary has not been built.
	ReasonImageBinaryMissing = "ImageBinaryMissing"
	// ReasonCreateContainerConfigError is the kubelet's reason for a container whose
	// env or command cannot be computed (a missing ConfigMap key, say).
	ReasonCreateContainerConfigError = "CreateContainerConfigError"
	// ReasonRunContainerError is the kubelet's reason for a container whose
	// process could not be started.
	ReasonRunContainerError = "RunContainerError"

	reasonContainerCreating = "ContainerCreating"
	reasonPodInitializing   = "PodInitializing"
	reasonCrashLoopBackOff  = "CrashLoopBackOff"
	reasonCompleted         = "Completed"
	reasonError             = "Error"
)

// podRuntime is what the node knows about a pod, the input of podStatus.
type podRuntime struct {
	PodIPs  []netip.Addr
	HostIPs []netip.Addr
	// StartTime is when the agent first took the pod up.
	StartTime time.Time
	// SandboxReady is true while the pod's network namespace (or the node's) and
	// volumes are in place.
	SandboxReady bool
	// SandboxMessage explains why the sandbox is not ready.
	SandboxMessage string
	// InitContainers and Containers are in spec order, one per spec container.
	InitContainers []corev1.ContainerStatus
	Containers     []corev1.ContainerStatus
	// Phase, when set, is the final phase of a finished pod.
	Phase corev1.PodPhase
	// Now stamps condition transitions.
	Now time.Time
}

// podStatus computes the status the agent reports for pod from what it knows,
// keeping the conditions others own (readiness gates, DisruptionTarget) and the
// transition times of conditions whose status did not change.
func podStatus(pod *corev1.Pod, rt podRuntime) corev1.PodStatus {
	old := pod.Status
	s := corev1.PodStatus{
		QOSClass:              old.QOSClass,
		NominatedNodeName:     old.NominatedNodeName,
		InitContainerStatuses: rt.InitContainers,
		ContainerStatuses:     rt.Containers,
		ObservedGeneration:    pod.Generation,
	}
	if !rt.StartTime.IsZero() {
		t := metav1.NewTime(rt.StartTime.UTC().Truncate(time.Second))
		s.StartTime = &t
	}
	for i, ip := range rt.HostIPs {
		if i == 0 {
			s.HostIP = ip.String()
		}
		s.HostIPs = append(s.HostIPs, corev1.HostIP{IP: ip.String()})
	}
	for i, ip := range rt.PodIPs {
		if i == 0 {
			s.PodIP = ip.String()
		}
		s.PodIPs = append(s.PodIPs, corev1.PodIP{IP: ip.String()})
	}
	s.Phase = podPhase(pod, rt)

	initialized, pendingInit := initDone(pod, rt.InitContainers)
	terminal := s.Phase == corev1.PodSucceeded || s.Phase == corev1.PodFailed
	var unready []string
	for _, c := range rt.Containers {
		if !c.Ready {
			unready = append(unready, c.Name)
		}
	}
	for i, c := range rt.InitContainers {
		if isSidecar(&pod.Spec.InitContainers[i]) && !c.Ready {
			unready = append(unready, c.Name)
		}
	}

	conds := []corev1.PodCondition{}
	add := func(t corev1.PodConditionType, ok bool, reason, msg string) {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: reason, Message: msg}
		if ok {
			c.Status, c.Reason, c.Message = corev1.ConditionTrue, "", ""
		}
		conds = append(conds, c)
	}
	add(corev1.PodReadyToStartContainers, rt.SandboxReady && !terminal, "", "")
	if initialized {
		add(corev1.PodInitialized, true, "", "")
	} else {
		add(corev1.PodInitialized, false, "ContainersNotInitialized",
			fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(pendingInit, " ")))
	}
	switch {
	case terminal:
		add(corev1.ContainersReady, false, "PodCompleted", "")
		add(corev1.PodReady, false, "PodCompleted", "")
	case len(unready) > 0:
		msg := fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
		add(corev1.ContainersReady, false, "ContainersNotReady", msg)
		add(corev1.PodReady, false, "ContainersNotReady", msg)
	default:
		add(corev1.ContainersReady, true, "", "")
		if missing := unmetGates(pod); len(missing) > 0 {
			add(corev1.PodReady, false, "ReadinessGatesNotReady",
				fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist or is not True", missing[0]))
		} else {
			add(corev1.PodReady, true, "", "")
		}
	}
	owned := map[corev1.PodConditionType]bool{}
	for _, c := range conds {
		owned[c.Type] = true
	}
	scheduled := false
	var others []corev1.PodCondition
	for _, c := range old.Conditions {
		if c.Type == corev1.PodScheduled {
			scheduled = true
		}
		if !owned[c.Type] {
			others = append(others, c)
		}
	}
	if !scheduled {
		others = append(others, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue})
	}
	all := append(others, conds...)
	for i := range all {
		all[i].ObservedGeneration = pod.Generation
		prev := findCondition(old.Conditions, all[i].Type)
		switch {
		case prev != nil && prev.Status == all[i].Status:
			all[i].LastTransitionTime = prev.LastTransitionTime
			all[i].LastProbeTime = prev.LastProbeTime
		case all[i].LastTransitionTime.IsZero():
			all[i].LastTransitionTime = metav1.NewTime(rt.Now.UTC().Truncate(time.Second))
		}
	}
	s.Conditions = all
	return s
}

func findCondition(conds []corev1.PodCondition, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

func unmetGates(pod *corev1.Pod) []string {
	var missing []string
	for _, g := range pod.Spec.ReadinessGates {
		c := findCondition(pod.Status.Conditions, g.ConditionType)
		if c == nil || c.Status != corev1.ConditionTrue {
			missing = append(missing, string(g.ConditionType))
		}
	}
	return missing
}

// isSidecar reports whether an init container is a restartable sidecar.
func isSidecar(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

// initDone reports whether every init container has completed (sidecars: has
// started) and names those that have not.
func initDone(pod *corev1.Pod, statuses []corev1.ContainerStatus) (bool, []string) {
	var pending []string
	for i, c := range pod.Spec.InitContainers {
		if i >= len(statuses) {
			pending = append(pending, c.Name)
			continue
		}
		st := statuses[i]
		switch {
		case isSidecar(&c):
			if st.Started == nil || !*st.Started {
				pending = append(pending, c.Name)
			}
		case st.State.Terminated == nil || st.State.Terminated.ExitCode != 0:
			pending = append(pending, c.Name)
		}
	}
	return len(pending) == 0, pending
}

// podPhase follows the kubelet: Pending until initialized and every container has
// run once; Running while a container runs or will be restarted; Succeeded when
// all containers have exited 0 and none will restart; Failed when one failed and
// none will restart.
func podPhase(pod *corev1.Pod, rt podRuntime) corev1.PodPhase {
	if rt.Phase != "" {
		return rt.Phase
	}
	policy := pod.Spec.RestartPolicy
	if initialized, _ := initDone(pod, rt.InitContainers); !initialized {
		if policy == corev1.RestartPolicyNever {
			for i, st := range rt.InitContainers {
				if t := st.State.Terminated; t != nil && t.ExitCode != 0 && !isSidecar(&pod.Spec.InitContainers[i]) {
					return corev1.PodFailed
				}
			}
		}
		return corev1.PodPending
	}
	var waiting, running, stopped, succeeded int
	for _, st := range rt.Containers {
		switch {
		case st.State.Running != nil:
			running++
		case st.State.Terminated != nil:
			stopped++
			if st.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case st.LastTerminationState.Terminated != nil:
			stopped++
			if st.LastTerminationState.Terminated.ExitCode == 0 {
				succeeded++
			}
		default:
			waiting++
		}
	}
	switch {
	case waiting > 0:
		return corev1.PodPending
	case running > 0:
		return corev1.PodRunning
	case stopped > 0:
		switch {
		case policy == corev1.RestartPolicyAlways || policy == "":
			return corev1.PodRunning
		case stopped == succeeded:
			return corev1.PodSucceeded
		case policy == corev1.RestartPolicyNever:
			return corev1.PodFailed
		}
		return corev1.PodRunning
	}
	return corev1.PodPending
}

// shouldRestart applies a pod's restartPolicy (or a sidecar's, which is Always)
// to a container that exited with exitCode. An init container that succeeded is
// done; one that failed is retried unless the pod's policy is Never.
func shouldRestart(pod *corev1.Pod, c *corev1.Container, init bool, exitCode int32) bool {
	if init && !isSidecar(c) {
		return exitCode != 0 && pod.Spec.RestartPolicy != corev1.RestartPolicyNever
	}
	if c.RestartPolicy != nil {
		switch *c.RestartPolicy {
		case corev1.ContainerRestartPolicyAlways:
			return true
		case corev1.ContainerRestartPolicyOnFailure:
			return exitCode != 0
		case corev1.ContainerRestartPolicyNever:
			return false
		}
	}
	switch pod.Spec.RestartPolicy {
	case corev1.RestartPolicyNever:
		return false
	case corev1.RestartPolicyOnFailure:
		return exitCode != 0
	}
	return true
}

// backoff is the kubelet's container restart back-off: the first restart
// happens at once, the next waits Initial, each further one twice as long up to
// Max; a container that stayed up for more than twice Max starts over.
type backoff struct {
	Initial, Max time.Duration

	window time.Duration // the wait of the next restart
	delay  time.Duration // the wait of the restart just scheduled
	last   time.Time
}

// Kubelet defaults for the crash-loop back-off.
const (
	backoffInitial = 10 * time.Second
	backoffMax     = 300 * time.Second
)

// failed records an exit at now and returns when the container may start again.
func (b *backoff) failed(now time.Time) time.Time {
	if b.window == 0 || now.Sub(b.last) > 2*b.Max {
		b.delay, b.window = 0, b.Initial
	} else {
		b.delay = b.window
		b.window = min(2*b.window, b.Max)
	}
	b.last = now
	return now.Add(b.delay)
}

// Delay is the wait of the restart just scheduled.
func (b *backoff) Delay() time.Duration { return b.delay }
