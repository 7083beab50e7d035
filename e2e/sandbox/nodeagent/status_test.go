package nodeagent

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func running() corev1.ContainerState {
	return corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
}

func exited(code int32) corev1.ContainerState {
	return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code}}
}

func waiting(reason string) corev1.ContainerState {
	return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}
}

func cs(name string, state corev1.ContainerState, ready bool) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, State: state, Ready: ready, Started: ptr.To(state.Running != nil)}
}

func restarting(name string, lastCode int32) corev1.ContainerStatus {
	s := cs(name, waiting(reasonCrashLoopBackOff), false)
	s.LastTerminationState = exited(lastCode)
	return s
}

func TestPodPhase(t *testing.T) {
	pod := func(policy corev1.RestartPolicy, init ...corev1.Container) *corev1.Pod {
		return &corev1.Pod{Spec: corev1.PodSpec{RestartPolicy: policy, InitContainers: init,
			Containers: []corev1.Container{{Name: "a"}, {Name: "b"}}}}
	}
	sidecar := corev1.Container{Name: "side", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}
	for _, tc := range []struct {
		name       string
		pod        *corev1.Pod
		init, main []corev1.ContainerStatus
		want       corev1.PodPhase
	}{
		{"nothing started", pod(corev1.RestartPolicyAlways), nil,
			[]corev1.ContainerStatus{cs("a", waiting(reasonContainerCreating), false), cs("b", waiting(reasonContainerCreating), false)}, corev1.PodPending},
		{"one waiting", pod(corev1.RestartPolicyAlways), nil,
			[]corev1.ContainerStatus{cs("a", running(), true), cs("b", waiting(ReasonImageNotInCatalog), false)}, corev1.PodPending},
		{"all running", pod(corev1.RestartPolicyAlways), nil,
			[]corev1.ContainerStatus{cs("a", running(), true), cs("b", running(), false)}, corev1.PodRunning},
		{"crash loop is running", pod(corev1.RestartPolicyAlways), nil,
			[]corev1.ContainerStatus{restarting("a", 1), restarting("b", 1)}, corev1.PodRunning},
		{"never, one failed, one runs", pod(corev1.RestartPolicyNever), nil,
			[]corev1.ContainerStatus{cs("a", exited(1), false), cs("b", running(), true)}, corev1.PodRunning},
		{"never, all exited, one failed", pod(corev1.RestartPolicyNever), nil,
			[]corev1.ContainerStatus{cs("a", exited(1), false), cs("b", exited(0), false)}, corev1.PodFailed},
		{"never, all succeeded", pod(corev1.RestartPolicyNever), nil,
			[]corev1.ContainerStatus{cs("a", exited(0), false), cs("b", exited(0), false)}, corev1.PodSucceeded},
		{"on failure, all succeeded", pod(corev1.RestartPolicyOnFailure), nil,
			[]corev1.ContainerStatus{cs("a", exited(0), false), cs("b", exited(0), false)}, corev1.PodSucceeded},
		{"on failure, one restarting", pod(corev1.RestartPolicyOnFailure), nil,
			[]corev1.ContainerStatus{cs("a", exited(0), false), restarting("b", 2)}, corev1.PodRunning},
		{"init running", pod(corev1.RestartPolicyAlways, corev1.Container{Name: "i"}),
			[]corev1.ContainerStatus{cs("i", running(), false)},
			[]corev1.ContainerStatus{cs("a", waiting(reasonPodInitializing), false), cs("b", waiting(reasonPodInitializing), false)}, corev1.PodPending},
		{"init failed, never", pod(corev1.RestartPolicyNever, corev1.Container{Name: "i"}),
			[]corev1.ContainerStatus{cs("i", exited(3), false)},
			[]corev1.ContainerStatus{cs("a", waiting(reasonPodInitializing), false), cs("b", waiting(reasonPodInitializing), false)}, corev1.PodFailed},
		{"sidecar started counts as initialized", pod(corev1.RestartPolicyAlways, sidecar),
			[]corev1.ContainerStatus{cs("side", running(), true)},
			[]corev1.ContainerStatus{cs("a", running(), true), cs("b", running(), true)}, corev1.PodRunning},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := podPhase(tc.pod, podRuntime{InitContainers: tc.init, Containers: tc.main}); got != tc.want {
				t.Errorf("podPhase = %s, want %s", got, tc.want)
			}
		})
	}
	if got := podPhase(pod(corev1.RestartPolicyAlways), podRuntime{Phase: corev1.PodFailed}); got != corev1.PodFailed {
		t.Errorf("a finished pod keeps its phase, got %s", got)
	}
}

func TestPodStatusConditions(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	t1 := t0.Add(time.Minute)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Generation: 2},
		Spec: corev1.PodSpec{
			Containers:     []corev1.Container{{Name: "a"}, {Name: "b"}},
			ReadinessGates: []corev1.PodReadinessGate{{ConditionType: "example.com/gate"}},
		},
		Status: corev1.PodStatus{
			QOSClass: corev1.PodQOSBestEffort,
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(t0)},
				{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(t0)},
				{Type: "example.com/gate", Status: corev1.ConditionFalse, LastTransitionTime: metav1.NewTime(t0)},
			},
		},
	}
	rt := podRuntime{
		PodIPs: []netip.Addr{netip.MustParseAddr("10.1.0.4")}, HostIPs: []netip.Addr{netip.MustParseAddr("192.168.1.2")},
		StartTime: t0, SandboxReady: true, Now: t1,
		Containers: []corev1.ContainerStatus{cs("a", running(), true), cs("b", running(), false)},
	}
	cond := func(typ corev1.PodConditionType, status corev1.ConditionStatus, reason, msg string, at time.Time) corev1.PodCondition {
		return corev1.PodCondition{Type: typ, Status: status, Reason: reason, Message: msg, LastTransitionTime: metav1.NewTime(at), ObservedGeneration: 2}
	}
	got := podStatus(pod, rt)
	want := []corev1.PodCondition{
		cond(corev1.PodScheduled, corev1.ConditionTrue, "", "", t0),
		cond("example.com/gate", corev1.ConditionFalse, "", "", t0),
		cond(corev1.PodReadyToStartContainers, corev1.ConditionTrue, "", "", t1),
		cond(corev1.PodInitialized, corev1.ConditionTrue, "", "", t0),
		cond(corev1.ContainersReady, corev1.ConditionFalse, "ContainersNotReady", "containers with unready status: [b]", t1),
		cond(corev1.PodReady, corev1.ConditionFalse, "ContainersNotReady", "containers with unready status: [b]", t1),
	}
	if diff := cmp.Diff(want, got.Conditions); diff != "" {
		t.Errorf("conditions (-want +got):\n%s", diff)
	}
	if got.Phase != corev1.PodRunning || got.PodIP != "10.1.0.4" || got.HostIP != "192.168.1.2" || got.QOSClass != corev1.PodQOSBestEffort ||
		len(got.PodIPs) != 1 || got.StartTime == nil || !got.StartTime.Time.Equal(t0) {
		t.Errorf("status fields: %+v", got)
	}

	// All containers ready, but the readiness gate is not: Ready stays False.
	rt.Containers[1].Ready = true
	got = podStatus(pod, rt)
	if c := findCondition(got.Conditions, corev1.PodReady); c.Status != corev1.ConditionFalse || c.Reason != "ReadinessGatesNotReady" {
		t.Errorf("Ready with an unmet gate: %+v", c)
	}
	if c := findCondition(got.Conditions, corev1.ContainersReady); c.Status != corev1.ConditionTrue {
		t.Errorf("ContainersReady: %+v", c)
	}
	pod.Status.Conditions[2].Status = corev1.ConditionTrue
	got = podStatus(pod, rt)
	if c := findCondition(got.Conditions, corev1.PodReady); c.Status != corev1.ConditionTrue {
		t.Errorf("Ready with the gate met: %+v", c)
	}
}

func TestShouldRestart(t *testing.T) {
	always := ptr.To(corev1.ContainerRestartPolicyAlways)
	for _, tc := range []struct {
		name   string
		policy corev1.RestartPolicy
		c      corev1.Container
		init   bool
		code   int32
		want   bool
	}{
		{"always, success", corev1.RestartPolicyAlways, corev1.Container{}, false, 0, true},
		{"always, failure", corev1.RestartPolicyAlways, corev1.Container{}, false, 1, true},
		{"on failure, success", corev1.RestartPolicyOnFailure, corev1.Container{}, false, 0, false},
		{"on failure, failure", corev1.RestartPolicyOnFailure, corev1.Container{}, false, 1, true},
		{"never", corev1.RestartPolicyNever, corev1.Container{}, false, 1, false},
		{"init succeeded", corev1.RestartPolicyAlways, corev1.Container{}, true, 0, false},
		{"init failed", corev1.RestartPolicyAlways, corev1.Container{}, true, 1, true},
		{"init failed, never", corev1.RestartPolicyNever, corev1.Container{}, true, 1, false},
		{"sidecar", corev1.RestartPolicyNever, corev1.Container{RestartPolicy: always}, true, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{Spec: corev1.PodSpec{RestartPolicy: tc.policy}}
			if got := shouldRestart(pod, &tc.c, tc.init, tc.code); got != tc.want {
				t.Errorf("shouldRestart = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{Initial: 10 * time.Second, Max: 300 * time.Second}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	var delays []time.Duration
	for range 8 {
		at := b.failed(now)
		delays = append(delays, at.Sub(now))
		now = at.Add(time.Second) // crashes a second after each restart
	}
	want := []time.Duration{0, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 300 * time.Second, 300 * time.Second}
	if diff := cmp.Diff(want, delays); diff != "" {
		t.Errorf("back-off delays (-want +got):\n%s", diff)
	}
	// A container that stayed up longer than twice the maximum starts over.
	later := now.Add(11 * time.Minute)
	if d := b.failed(later).Sub(later); d != 0 {
		t.Errorf("after a long run the restart waits %s, want none", d)
	}
	if d := b.failed(later.Add(time.Second)).Sub(later.Add(time.Second)); d != 10*time.Second {
		t.Errorf("the next crash waits %s, want 10s", d)
	}
}

func TestTokenRefresh(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if got, want := tokenRefresh(now, now.Add(time.Hour)), now.Add(48*time.Minute); !got.Equal(want) {
		t.Errorf("one-hour token renewed at %s, want %s", got, want)
	}
	if got, want := tokenRefresh(now, now.Add(365*24*time.Hour)), now.Add(24*time.Hour); !got.Equal(want) {
		t.Errorf("one-year token renewed at %s, want %s", got, want)
	}
}

func TestProbeCounter(t *testing.T) {
	c := &probeCounter{t: timings(&corev1.Probe{SuccessThreshold: 2, FailureThreshold: 3})}
	var got []int
	for _, ok := range []bool{false, false, true, true, false, false, false, true} {
		got = append(got, c.observe(ok))
	}
	if diff := cmp.Diff([]int{0, 0, 0, 1, 0, 0, -1, 0}, got); diff != "" {
		t.Errorf("verdicts (-want +got):\n%s", diff)
	}
	d := timings(&corev1.Probe{})
	if d.Period != 10*time.Second || d.Timeout != time.Second || d.Success != 1 || d.Failure != 3 {
		t.Errorf("defaults: %+v", d)
	}
}
