package nodeagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"

	"github.com/submariner-go/submariner/agents/netkit/netns"
)

// resyncPeriod is how often a pod worker syncs without being woken (to retry
// what failed, such as a binary that has been built since).
const resyncPeriod = 10 * time.Second

// podRecord is what the state directory keeps of a pod, so that Cleanup can stop
// and remove everything after a crash.
type podRecord struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
	// NetNS is the pod's network namespace; empty for hostNetwork pods.
	NetNS string `json:"netns,omitempty"`
	// Processes are the running container processes and exec sessions.
	Processes map[string]procID `json:"processes,omitempty"`
}

const podRecordFile = "pod.json"

// podWorker runs one pod: its sandbox, volumes, containers, probes and status.
// One goroutine (run) makes every decision; process waiters and probes report
// to it through the mutex-guarded state and kick.
type podWorker struct {
	a   *agent
	uid types.UID
	log logr.Logger
	dir string

	wake   chan struct{}
	cancel context.CancelFunc

	mu      sync.Mutex
	pod     *corev1.Pod
	gone    bool
	wakeAt  time.Time
	started time.Time
	ns      *netns.NS
	podIP   netip.Addr
	sandbox bool
	sbxMsg  string
	volumes map[string]volumeSource
	files   podFiles
	tokens  map[string]tokenEntry
	// containers by name, init and regular.
	containers map[string]*container
	// terminal is the phase of a pod that has finished (Succeeded or Failed).
	terminal corev1.PodPhase
	record   podRecord
	recordMu sync.Mutex
}

func newPodWorker(a *agent, pod *corev1.Pod) *podWorker {
	w := &podWorker{
		a:          a,
		uid:        pod.UID,
		log:        a.log.WithValues("pod", pod.Namespace+"/"+pod.Name),
		dir:        filepath.Join(a.cfg.StateDir, "pods", string(pod.UID)),
		wake:       make(chan struct{}, 1),
		pod:        pod,
		tokens:     map[string]tokenEntry{},
		containers: map[string]*container{},
		record:     podRecord{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID), Processes: map[string]procID{}},
	}
	for i, c := range pod.Spec.InitContainers {
		w.containers[c.Name] = newContainer(c.Name, true, i)
	}
	for i, c := range pod.Spec.Containers {
		w.containers[c.Name] = newContainer(c.Name, false, i)
	}
	return w
}

func newContainer(name string, init bool, index int) *container {
	return &container{
		name: name, init: init, index: index,
		backoff: backoff{Initial: backoffInitial, Max: backoffMax},
		state:   corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reasonContainerCreating}},
	}
}

func (w *podWorker) name() string { return w.record.Namespace + "/" + w.record.Name }

// update hands the worker the latest pod object.
func (w *podWorker) update(pod *corev1.Pod) {
	w.mu.Lock()
	w.pod = pod
	w.mu.Unlock()
	w.kick()
}

// remove tells the worker its pod is gone from the API.
func (w *podWorker) remove() {
	w.mu.Lock()
	w.gone = true
	w.mu.Unlock()
	w.kick()
}

func (w *podWorker) kick() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// scheduleWake makes the worker sync at t at the latest. Called with w.mu held.
func (w *podWorker) scheduleWake(t time.Time) {
	if w.wakeAt.IsZero() || t.Before(w.wakeAt) {
		w.wakeAt = t
	}
}

func (w *podWorker) netNS() *netns.NS {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ns != nil {
		return w.ns
	}
	return w.a.nodeNS
}

// facts returns the node-side values of the pod.
func (w *podWorker) facts() podFacts {
	f := podFacts{HostIPs: []netip.Addr{w.a.cfg.NodeIP}, NodeAllocatable: w.a.allocatable}
	if w.podIP.IsValid() {
		f.PodIPs = []netip.Addr{w.podIP}
	}
	return f
}

// run syncs the pod until it is deleted or ctx ends, then stops it and removes
// what it made.
func (w *podWorker) run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			w.shutdown(context.WithoutCancel(ctx), false)
			return
		case <-w.wake:
		case <-timer.C:
		}
		w.mu.Lock()
		pod, gone := w.pod, w.gone
		w.wakeAt = time.Time{}
		w.mu.Unlock()
		if gone || pod.DeletionTimestamp != nil {
			w.shutdown(ctx, !gone)
			return
		}
		w.sync(ctx, pod)
		w.mu.Lock()
		next := time.Now().Add(resyncPeriod)
		if !w.wakeAt.IsZero() && w.wakeAt.Before(next) {
			next = w.wakeAt
		}
		w.mu.Unlock()
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(time.Until(next))
	}
}

// sync moves the pod one step towards its spec.
func (w *podWorker) sync(ctx context.Context, pod *corev1.Pod) {
	defer w.pushStatus(ctx)
	w.mu.Lock()
	terminal := w.terminal
	if w.started.IsZero() {
		w.started = time.Now()
	}
	w.mu.Unlock()
	if terminal != "" {
		return
	}
	if err := w.ensureSandbox(ctx, pod); err != nil {
		w.mu.Lock()
		w.sbxMsg = err.Error()
		w.scheduleWake(time.Now().Add(2 * time.Second))
		w.mu.Unlock()
		w.log.Info("pod sandbox not ready", "error", err.Error())
		return
	}
	w.a.objects.use(w.uid, podObjects(pod))
	vols, due, err := w.syncVolumes(ctx, pod)
	w.mu.Lock()
	if err != nil {
		if w.volumes == nil {
			w.sbxMsg = err.Error()
			w.scheduleWake(time.Now().Add(2 * time.Second))
			w.mu.Unlock()
			w.a.event(pod, corev1.EventTypeWarning, "FailedMount", err.Error())
			w.log.Info("volumes not ready", "error", err.Error())
			return
		}
		w.scheduleWake(time.Now().Add(2 * time.Second))
		w.log.Info("refreshing volumes", "error", err.Error())
	} else {
		w.volumes = vols
		w.sbxMsg = ""
		w.sandbox = true
		if !due.IsZero() {
			w.scheduleWake(due)
		}
	}
	w.mu.Unlock()

	initialized := w.syncInit(ctx, pod)
	now := time.Now()
	for i := range pod.Spec.Containers {
		if !initialized {
			break
		}
		c := &pod.Spec.Containers[i]
		w.mu.Lock()
		ct := w.containers[c.Name]
		start := ct.proc == nil && w.mayStart(pod, ct, c, now)
		w.mu.Unlock()
		if start {
			w.startContainer(ctx, pod, ct, c)
		}
	}
	w.mu.Lock()
	phase := podPhase(pod, w.runtime(pod))
	w.mu.Unlock()
	if phase == corev1.PodSucceeded || phase == corev1.PodFailed {
		w.finish(ctx, pod, phase)
	}
}

// mayStart reports whether a container that is not running starts now: it
// never ran, or it exited, will restart, and its back-off has passed. Called
// with w.mu held.
func (w *podWorker) mayStart(pod *corev1.Pod, ct *container, c *corev1.Container, now time.Time) bool {
	if !ct.ran {
		return true
	}
	if ct.state.Terminated != nil {
		return false // done for good
	}
	if now.Before(ct.retryAt) {
		w.scheduleWake(ct.retryAt)
		return false
	}
	return true
}

// syncInit runs the init containers in order and reports whether all are done
// (sidecars: started).
func (w *podWorker) syncInit(ctx context.Context, pod *corev1.Pod) bool {
	now := time.Now()
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		w.mu.Lock()
		ct := w.containers[c.Name]
		running := ct.proc != nil
		start := !running && w.mayStart(pod, ct, c, now)
		done := ct.state.Terminated != nil && ct.state.Terminated.ExitCode == 0 && !isSidecar(c)
		failed := ct.state.Terminated != nil && ct.state.Terminated.ExitCode != 0
		started := ct.started
		w.mu.Unlock()
		switch {
		case done:
			continue
		case failed:
			return false // restartPolicy Never: the pod fails
		case start:
			w.startContainer(ctx, pod, ct, c)
			if !isSidecar(c) {
				return false
			}
			w.mu.Lock()
			started = ct.proc != nil && ct.started
			w.mu.Unlock()
		}
		if isSidecar(c) && started {
			continue
		}
		return false
	}
	return true
}

// ensureSandbox allocates the pod's address and network namespace and writes
// its hosts, resolv.conf and hostname files, once.
func (w *podWorker) ensureSandbox(ctx context.Context, pod *corev1.Pod) error {
	w.mu.Lock()
	ready := w.files.Hosts != ""
	w.mu.Unlock()
	if ready {
		return nil
	}
	if err := os.MkdirAll(filepath.Join(w.dir, "etc"), 0o755); err != nil {
		return fmt.Errorf("creating pod directory: %w", err)
	}
	ip := w.a.cfg.NodeIP
	var ns *netns.NS
	if !pod.Spec.HostNetwork {
		var err error
		if ip, err = w.a.ipam.allocate(string(w.uid)); err != nil {
			return fmt.Errorf("allocating a pod address: %w", err)
		}
		w.setRecord(func(r *podRecord) { r.NetNS = podNetNSName(string(w.uid)) })
		if ns, err = w.a.cni.addPod(ctx, string(w.uid), ip); err != nil {
			return fmt.Errorf("setting up the pod network: %w", err)
		}
	}
	rc, err := podResolvConf(pod, w.a.dns)
	if err != nil {
		return err
	}
	hostname := podHostname(pod, w.a.cfg.NodeName)
	files := podFiles{
		Hosts:      filepath.Join(w.dir, "etc", "hosts"),
		ResolvConf: filepath.Join(w.dir, "etc", "resolv.conf"),
		Hostname:   filepath.Join(w.dir, "etc", "hostname"),
	}
	for path, content := range map[string]string{
		files.Hosts:      hostsFile(pod, ip, hostname, w.a.cfg.ClusterDomain),
		files.ResolvConf: rc.String(),
		files.Hostname:   hostname + "\n",
	} {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
	}
	w.mu.Lock()
	w.ns, w.podIP, w.files = ns, ip, files
	w.mu.Unlock()
	w.log.Info("pod sandbox ready", "podIP", ip.String(), "hostNetwork", pod.Spec.HostNetwork)
	return nil
}

// finish ends a pod that reached Succeeded or Failed: sidecars are stopped and
// the network namespace and address are released; the status stays.
func (w *podWorker) finish(ctx context.Context, pod *corev1.Pod, phase corev1.PodPhase) {
	w.mu.Lock()
	w.terminal = phase
	w.mu.Unlock()
	w.stopAll(ctx, gracePeriod(pod))
	w.log.Info("pod finished")
	w.releaseSandbox(ctx)
}

// gracePeriod is the pod's termination grace period: the deletion's, else the
// spec's, else the API default of 30 s.
func gracePeriod(pod *corev1.Pod) time.Duration {
	switch {
	case pod.DeletionGracePeriodSeconds != nil:
		return time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	case pod.Spec.TerminationGracePeriodSeconds != nil:
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

// stopAll stops every running container in parallel.
func (w *podWorker) stopAll(ctx context.Context, grace time.Duration) {
	w.mu.Lock()
	var running []*container
	for _, ct := range w.containers {
		ct.stopping = true
		if ct.proc != nil {
			running = append(running, ct)
		}
	}
	w.mu.Unlock()
	var wg sync.WaitGroup
	for _, ct := range running {
		wg.Go(func() { w.stopContainer(ctx, ct, grace) })
	}
	wg.Wait()
}

// shutdown stops the pod and removes its sandbox. For a deleted pod (final) it
// reports the final status and deletes the object, as the kubelet does.
func (w *podWorker) shutdown(ctx context.Context, final bool) {
	w.mu.Lock()
	pod := w.pod
	w.mu.Unlock()
	grace := gracePeriod(pod)
	w.log.Info("stopping pod", "gracePeriod", grace.String(), "deleted", final)
	if final {
		w.a.event(pod, corev1.EventTypeNormal, "Killing", "Stopping the pod's containers")
	}
	w.stopAll(ctx, grace)
	w.a.objects.forget(w.uid)
	w.releaseSandbox(ctx)
	if final {
		w.pushStatus(ctx)
		zero := int64(0)
		err := w.a.kube.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: &zero,
			Preconditions:      &metav1.Preconditions{UID: &pod.UID},
		})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			w.log.Error(err, "deleting pod")
		}
	}
	if err := w.removeFiles(final); err != nil {
		w.log.Error(err, "removing pod files")
	}
}

// releaseSandbox removes the pod's network namespace, veth and address.
func (w *podWorker) releaseSandbox(ctx context.Context) {
	w.mu.Lock()
	ns := w.ns
	w.ns = nil
	w.mu.Unlock()
	if ns != nil {
		ns.Close()
	}
	if ns != nil || podNetNSExists(string(w.uid)) {
		if err := removePodNetwork(ctx, w.a.nodeNS, string(w.uid)); err != nil {
			w.log.Error(err, "removing the pod network")
		}
	}
	if err := w.a.ipam.release(string(w.uid)); err != nil {
		w.log.Error(err, "releasing the pod address")
	}
	w.setRecord(func(r *podRecord) { r.NetNS = "" })
}

// removeFiles deletes the pod's directory; logs stay unless the pod was deleted.
func (w *podWorker) removeFiles(all bool) error {
	if all {
		return os.RemoveAll(w.dir)
	}
	entries, err := os.ReadDir(w.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if e.Name() == "logs" {
			continue
		}
		if err := os.RemoveAll(filepath.Join(w.dir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// runtime snapshots what podStatus needs. Called with w.mu held.
func (w *podWorker) runtime(pod *corev1.Pod) podRuntime {
	rt := podRuntime{
		HostIPs:        []netip.Addr{w.a.cfg.NodeIP},
		StartTime:      w.started,
		SandboxReady:   w.sandbox && (w.ns != nil || pod.Spec.HostNetwork),
		SandboxMessage: w.sbxMsg,
		Phase:          w.terminal,
		Now:            time.Now(),
	}
	if w.podIP.IsValid() {
		rt.PodIPs = []netip.Addr{w.podIP}
	}
	for _, c := range pod.Spec.InitContainers {
		rt.InitContainers = append(rt.InitContainers, w.containerStatus(pod, c))
	}
	for _, c := range pod.Spec.Containers {
		rt.Containers = append(rt.Containers, w.containerStatus(pod, c))
	}
	return rt
}

// containerStatus renders a container's status. Called with w.mu held.
func (w *podWorker) containerStatus(pod *corev1.Pod, c corev1.Container) corev1.ContainerStatus {
	ct := w.containers[c.Name]
	if ct == nil {
		ct = newContainer(c.Name, false, 0)
	}
	st := corev1.ContainerStatus{
		Name:                 c.Name,
		Image:                c.Image,
		ImageID:              ct.imageID,
		ContainerID:          ct.id,
		RestartCount:         ct.restarts,
		State:                *ct.state.DeepCopy(),
		LastTerminationState: *ct.last.DeepCopy(),
	}
	if st.State.Waiting != nil && st.State.Waiting.Reason == reasonContainerCreating {
		if w.sbxMsg != "" {
			st.State.Waiting.Message = w.sbxMsg
		} else if ct.init || !w.initialized(pod) {
			st.State.Waiting.Reason = reasonPodInitializing
			if ct.init {
				st.State.Waiting.Reason = reasonContainerCreating
			}
		}
	}
	running := st.State.Running != nil
	started := running && ct.started
	st.Started = &started
	st.Ready = running && started && ct.ready
	if running && c.ReadinessProbe == nil {
		st.Ready = started
	}
	if ct.init && !isSidecar(&c) {
		st.Ready = st.State.Terminated != nil && st.State.Terminated.ExitCode == 0
	}
	return st
}

func (w *podWorker) initialized(pod *corev1.Pod) bool {
	for _, c := range pod.Spec.InitContainers {
		ct := w.containers[c.Name]
		if ct == nil {
			return false
		}
		if isSidecar(&c) {
			if ct.proc == nil || !ct.started {
				return false
			}
			continue
		}
		if ct.state.Terminated == nil || ct.state.Terminated.ExitCode != 0 {
			return false
		}
	}
	return true
}

// pushStatus patches the pod's status when it differs from what the API holds.
func (w *podWorker) pushStatus(ctx context.Context) {
	w.mu.Lock()
	pod := w.pod
	if w.gone {
		w.mu.Unlock()
		return
	}
	status := podStatus(pod, w.runtime(pod))
	w.mu.Unlock()
	if apiequality.Semantic.DeepEqual(pod.Status, status) {
		return
	}
	oldJSON, err := json.Marshal(corev1.Pod{Status: pod.Status})
	if err != nil {
		return
	}
	newJSON, err := json.Marshal(corev1.Pod{Status: status})
	if err != nil {
		return
	}
	patch, err := strategicpatch.CreateTwoWayMergePatch(oldJSON, newJSON, corev1.Pod{})
	if err != nil {
		w.log.Error(err, "computing status patch")
		return
	}
	var p map[string]any
	if err := json.Unmarshal(patch, &p); err != nil {
		return
	}
	// The UID makes the patch fail on a new pod of the same name.
	p["metadata"] = map[string]any{"uid": string(pod.UID)}
	patch, _ = json.Marshal(p)
	updated, err := w.a.kube.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		if !apierrors.IsNotFound(err) && ctx.Err() == nil {
			w.log.Error(err, "updating pod status")
			w.mu.Lock()
			w.scheduleWake(time.Now().Add(time.Second))
			w.mu.Unlock()
		}
		return
	}
	w.mu.Lock()
	if w.pod.ResourceVersion == pod.ResourceVersion {
		w.pod = updated
	}
	w.mu.Unlock()
}

// setRecord changes the pod's record and writes it to the state directory.
func (w *podWorker) setRecord(fn func(*podRecord)) {
	w.recordMu.Lock()
	defer w.recordMu.Unlock()
	fn(&w.record)
	if err := writeJSON(filepath.Join(w.dir, podRecordFile), &w.record); err != nil {
		w.log.Error(err, "writing the pod record")
	}
}

func (w *podWorker) recordProcess(key string, id procID) {
	w.setRecord(func(r *podRecord) { r.Processes[key] = id })
}

func (w *podWorker) forgetProcess(key string) {
	w.setRecord(func(r *podRecord) { delete(r.Processes, key) })
}

// writeJSON writes v to path atomically.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
