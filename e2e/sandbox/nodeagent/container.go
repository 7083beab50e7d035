package nodeagent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	vnetns "github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/submariner-go/submariner/agents/netkit/netns"
)

// container is the agent's state of one container of a pod, across its runs.
// Fields are guarded by the pod worker's mutex.
type container struct {
	name  string
	init  bool
	index int // in its list (init or regular)

	restarts int32
	state    corev1.ContainerState
	last     corev1.ContainerState
	id       string
	imageID  string
	ready    bool
	started  bool
	ran      bool // has been started at least once

	proc     *process
	backoff  backoff
	retryAt  time.Time
	stopping bool
	// spec is the shim spec of the current or last run, the base of exec sessions.
	spec *shimSpec
	// logs are the current run's log, nil before the first run.
	logs *logFile
	// liveFailed is set by a liveness or startup probe that killed the run.
	probeKilled bool
}

// process is one running container process or exec session.
type process struct {
	cmd  *exec.Cmd
	id   procID
	done chan struct{}
	// exit is valid after done is closed.
	exit exitInfo
}

// exitInfo describes how a process ended.
type exitInfo struct {
	Code   int32
	Signal syscall.Signal
	At     time.Time
}

func (e exitInfo) reason() string {
	if e.Code == 0 {
		return reasonCompleted
	}
	return reasonError
}

func exitOf(state *os.ProcessState) exitInfo {
	info := exitInfo{At: time.Now()}
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		info.Signal = ws.Signal()
		info.Code = 128 + int32(ws.Signal())
		return info
	}
	info.Code = int32(state.ExitCode())
	return info
}

// newToken returns a random string that tells apart holders of one process.
func newToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// newContainerID returns a random container ID in the runtime://id form.
func newContainerID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return "sandbox://" + hex.EncodeToString(b[:])
}

// imageIDs caches the digest of catalog binaries by path, size and time.
var imageIDs = struct {
	sync.Mutex
	m map[string]string
}{m: map[string]string{}}

// imageID returns "sandbox://<repository>@sha256:<digest of the binary>".
func imageID(img Image) (string, error) {
	st, err := os.Stat(img.Binary)
	if err != nil {
		return "", err
	}
	key := fmt.Sprintf("%s|%d|%d", img.Binary, st.Size(), st.ModTime().UnixNano())
	imageIDs.Lock()
	digest, ok := imageIDs.m[key]
	imageIDs.Unlock()
	if !ok {
		f, err := os.Open(img.Binary)
		if err != nil {
			return "", err
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("hashing %s: %w", img.Binary, err)
		}
		digest = hex.EncodeToString(h.Sum(nil))
		imageIDs.Lock()
		imageIDs.m[key] = digest
		imageIDs.Unlock()
	}
	return "sandbox://" + img.Repository + "@sha256:" + digest, nil
}

// startError is a container that could not start, with the waiting reason to
// show (a configuration problem) or, for RunContainerError, a failed run.
type startError struct {
	Reason string
	Err    error
}

func (e *startError) Error() string { return e.Err.Error() }

// buildSpec computes the shim spec of one run of container c of the pod.
func (w *podWorker) buildSpec(ctx context.Context, pod *corev1.Pod, c *corev1.Container) (*shimSpec, Image, []plannedMount, error) {
	img, err := w.a.cfg.Catalog.Resolve(c.Image)
	if err != nil {
		return nil, img, nil, &startError{ReasonImageNotInCatalog, err}
	}
	if _, err := os.Stat(img.Binary); err != nil {
		return nil, img, nil, &startError{ReasonImageBinaryMissing,
			fmt.Errorf("image %q maps to %s, which does not exist: build it (make build)", c.Image, img.Binary)}
	}
	services := w.a.serviceVars(pod)
	env, err := resolveEnv(pod, c, services, podObjectSource{ctx: ctx, o: w.a.objects}, w.facts())
	if err != nil {
		return nil, img, nil, &startError{ReasonCreateContainerConfigError, err}
	}
	envMap := map[string]string{}
	var envList []string
	hasPath := false
	for _, e := range env {
		envMap[e.Name] = e.Value
		envList = append(envList, e.Name+"="+e.Value)
		hasPath = hasPath || e.Name == "PATH"
	}
	if !hasPath {
		envList = append([]string{"PATH=" + defaultPath}, envList...)
	}
	envList = append(envList, "HOSTNAME="+podHostname(pod, w.a.cfg.NodeName))
	cl, err := composeCommand(img, c, envMap)
	if err != nil {
		return nil, img, nil, &startError{ReasonCreateContainerConfigError, err}
	}
	caps, err := capabilitySet(c.SecurityContext)
	if err != nil {
		return nil, img, nil, &startError{ReasonCreateContainerConfigError, err}
	}
	w.mu.Lock()
	vols := w.volumes
	files := w.files
	w.mu.Unlock()
	plan, err := mountPlan(c, vols, files, envMap)
	if err != nil {
		return nil, img, nil, &startError{ReasonCreateContainerConfigError, err}
	}
	spec := &shimSpec{
		Path:     cl.Path,
		Argv:     cl.Argv,
		Env:      envList,
		Dir:      c.WorkingDir,
		Hostname: podHostname(pod, w.a.cfg.NodeName),
		Sysfs:    true,
		Caps:     caps,
	}
	for _, m := range plan {
		spec.Mounts = append(spec.Mounts, m.shimMount)
	}
	sc := c.SecurityContext
	psc := pod.Spec.SecurityContext
	spec.AllCaps = sc != nil && sc.Privileged != nil && *sc.Privileged
	if sc != nil && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		spec.NoNewPrivs = true
	}
	if sc != nil && sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		spec.ReadOnlyRoot = true
	}
	switch {
	case sc != nil && sc.RunAsUser != nil:
		spec.UID = sc.RunAsUser
	case psc != nil && psc.RunAsUser != nil:
		spec.UID = psc.RunAsUser
	}
	switch {
	case sc != nil && sc.RunAsGroup != nil:
		spec.GID = sc.RunAsGroup
	case psc != nil && psc.RunAsGroup != nil:
		spec.GID = psc.RunAsGroup
	}
	if psc != nil {
		for _, g := range psc.SupplementalGroups {
			spec.SupplGroups = append(spec.SupplGroups, int(g))
		}
		if psc.FSGroup != nil {
			spec.SupplGroups = append(spec.SupplGroups, int(*psc.FSGroup))
		}
	}
	return spec, img, plan, nil
}

// stdio is what a started process reads and writes.
type stdio struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// TTY is the terminal's follower side, used for all three (exec -t).
	TTY *os.File
}

// spawner starts processes from one OS thread that never exits: the kernel
// sends a child's parent-death signal (Pdeathsig) when the *thread* that forked
// it exits, so forking from borrowed threads (which the Go runtime may retire)
// could kill containers at random.
var spawner = struct {
	once sync.Once
	reqs chan spawnRequest
}{reqs: make(chan spawnRequest)}

type spawnRequest struct {
	ns   *netns.NS
	cmd  *exec.Cmd
	done chan error
}

// spawn starts cmd from the spawner thread, inside the network namespace ns.
func spawn(ns *netns.NS, cmd *exec.Cmd) error {
	spawner.once.Do(func() {
		go func() {
			// Locked for good: this thread must outlive its children. Between
			// requests it goes back to where it started, so it keeps no pod
			// namespace alive.
			runtime.LockOSThread()
			orig, origErr := vnetns.Get()
			for req := range spawner.reqs {
				if err := vnetns.Set(req.ns.Handle()); err != nil {
					req.done <- fmt.Errorf("entering network namespace %s: %w", req.ns.Name, err)
					continue
				}
				req.done <- req.cmd.Start()
				if origErr == nil {
					_ = vnetns.Set(orig) // the next request sets its namespace anyway
				}
			}
		}()
	})
	req := spawnRequest{ns: ns, cmd: cmd, done: make(chan error, 1)}
	spawner.reqs <- req
	return <-req.done
}

// startShim starts the shim for spec inside the network namespace ns (the pod's,
// or the node's for hostNetwork) and waits until it has exec'd the binary or
// failed to. The process leads its own process group and is killed with the
// agent's thread that started it.
func (a *agent) startShim(ns *netns.NS, spec *shimSpec, sio stdio) (*process, error) {
	specR, specW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer specR.Close()
	defer specW.Close()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer statusR.Close()
	defer statusW.Close()

	cmd := exec.Command(a.exe, shimArg)
	cmd.Env = []string{}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = sio.Stdin, sio.Stdout, sio.Stderr
	// An exec session's stdin may stay open after the process exits.
	cmd.WaitDelay = time.Second
	cmd.ExtraFiles = []*os.File{specR, statusW}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS,
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
	}
	if sio.TTY != nil {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = sio.TTY, sio.TTY, sio.TTY
		cmd.SysProcAttr.Setpgid = false
		cmd.SysProcAttr.Setsid = true
		cmd.SysProcAttr.Setctty = true
		cmd.SysProcAttr.Ctty = 0
	}
	if err := spawn(ns, cmd); err != nil {
		return nil, fmt.Errorf("starting the container shim: %w", err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	p.id, _ = identify(cmd.Process.Pid)
	if p.id.PID == 0 {
		p.id = procID{PID: cmd.Process.Pid}
	}
	specR.Close()
	statusW.Close()
	go func() {
		_ = cmd.Wait()
		p.exit = exitOf(cmd.ProcessState)
		close(p.done)
	}()
	if err := json.NewEncoder(specW).Encode(spec); err != nil {
		_ = p.id.kill(syscall.SIGKILL)
		<-p.done
		return nil, fmt.Errorf("passing the spec to the container shim: %w", err)
	}
	specW.Close()
	msg, _ := io.ReadAll(statusR)
	if len(msg) > 0 {
		<-p.done
		return nil, errors.New(string(msg))
	}
	return p, nil
}

// startContainer starts one run of container c. Problems with the spec leave
// the container waiting with their reason; a failed start counts as a run that
// exited with code 128 (StartError), so restartPolicy and back-off apply.
func (w *podWorker) startContainer(ctx context.Context, pod *corev1.Pod, ct *container, c *corev1.Container) {
	spec, img, plan, err := w.buildSpec(ctx, pod, c)
	if err != nil {
		var se *startError
		if errors.As(err, &se) {
			w.mu.Lock()
			if ct.state.Waiting == nil || ct.state.Waiting.Reason != se.Reason || ct.state.Waiting.Message != se.Error() {
				w.a.event(pod, corev1.EventTypeWarning, "Failed", fmt.Sprintf("container %s: %s", c.Name, se.Error()))
				w.log.Info("container cannot start", "container", c.Name, "reason", se.Reason, "error", se.Err.Error())
			}
			ct.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: se.Reason, Message: se.Error()}}
			w.mu.Unlock()
		}
		return
	}
	imgID, err := imageID(img)
	if err != nil {
		imgID = "sandbox://" + img.Repository
	}
	w.mu.Lock()
	restarts := ct.restarts
	if ct.ran {
		restarts++
	}
	w.mu.Unlock()

	logDir := filepath.Join(w.dir, "logs", c.Name)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		w.failStart(pod, ct, c, restarts, fmt.Errorf("creating log directory: %w", err))
		return
	}
	// Keep this run's log and the previous one, as the kubelet does.
	if restarts >= 2 {
		_ = os.Remove(filepath.Join(logDir, logName(restarts-2)))
	}
	logs, err := createLogFile(filepath.Join(logDir, logName(restarts)))
	if err != nil {
		w.failStart(pod, ct, c, restarts, err)
		return
	}
	// The agent holds the new mount points until the container does.
	holder := w.a.self
	holder.Token = newToken()
	fail := func(err error) {
		logs.write(logRecord{Time: time.Now(), Stream: streamStderr, Content: []byte("sandbox: " + err.Error())})
		logs.close()
		if rerr := w.a.reg.release(holder); rerr != nil {
			w.log.Error(rerr, "releasing mount points", "container", c.Name)
		}
		w.failStart(pod, ct, c, restarts, err)
	}
	if err := w.ensureMountPoints(plan, holder); err != nil {
		fail(err)
		return
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		fail(err)
		return
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		fail(err)
		return
	}
	ns := w.netNS()
	p, err := w.a.startShim(ns, spec, stdio{Stdout: outW, Stderr: errW})
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		fail(err)
		return
	}
	if err := w.a.reg.handOver(holder, p.id); err != nil {
		w.log.Error(err, "recording mount point holder", "container", c.Name)
	}
	w.recordProcess("container/"+c.Name, p.id)
	var copiers sync.WaitGroup
	copiers.Go(func() { logs.copyFrom(outR, streamStdout); outR.Close() })
	copiers.Go(func() { logs.copyFrom(errR, streamStderr); errR.Close() })

	now := time.Now()
	id := newContainerID()
	probeCtx, stopProbes := context.WithCancel(ctx)
	w.mu.Lock()
	ct.restarts = restarts
	ct.ran = true
	ct.proc = p
	ct.spec = spec
	ct.logs = logs
	ct.id = id
	ct.imageID = imgID
	ct.ready = false
	ct.started = c.StartupProbe == nil
	ct.probeKilled = false
	ct.stopping = false
	ct.state = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(now.Truncate(time.Second))}}
	w.mu.Unlock()
	w.log.Info("container started", "container", c.Name, "pid", p.id.PID, "restarts", restarts)
	w.a.event(pod, corev1.EventTypeNormal, "Started", "Started container "+c.Name)
	w.startProbes(probeCtx, pod, ct, c, id)

	go func() {
		<-p.done
		copiers.Wait()
		stopProbes()
		logs.close()
		if err := w.a.reg.release(p.id); err != nil {
			w.log.Error(err, "releasing mount points", "container", c.Name)
		}
		w.forgetProcess("container/" + c.Name)
		w.containerExited(pod, ct, c, id, p.exit)
	}()
}

// failStart records a run that could not start.
func (w *podWorker) failStart(pod *corev1.Pod, ct *container, c *corev1.Container, restarts int32, err error) {
	w.log.Info("container failed to start", "container", c.Name, "error", err.Error())
	w.a.event(pod, corev1.EventTypeWarning, "Failed", fmt.Sprintf("Error: container %s: %v", c.Name, err))
	now := time.Now()
	w.mu.Lock()
	ct.restarts = restarts
	ct.ran = true
	ct.id = newContainerID()
	ct.ready, ct.started = false, false
	term := &corev1.ContainerStateTerminated{
		ExitCode: 128, Reason: "StartError", Message: err.Error(),
		StartedAt: metav1.NewTime(now.Truncate(time.Second)), FinishedAt: metav1.NewTime(now.Truncate(time.Second)),
		ContainerID: ct.id,
	}
	w.afterExit(pod, ct, c, term, now)
	w.mu.Unlock()
	w.kick()
}

// containerExited records the end of run id.
func (w *podWorker) containerExited(pod *corev1.Pod, ct *container, c *corev1.Container, id string, exit exitInfo) {
	w.mu.Lock()
	if ct.id != id {
		w.mu.Unlock()
		return
	}
	started := exit.At
	if ct.state.Running != nil {
		started = ct.state.Running.StartedAt.Time
	}
	term := &corev1.ContainerStateTerminated{
		ExitCode:    exit.Code,
		Signal:      int32(exit.Signal),
		Reason:      exit.reason(),
		StartedAt:   metav1.NewTime(started),
		FinishedAt:  metav1.NewTime(exit.At.Truncate(time.Second)),
		ContainerID: id,
	}
	ct.proc = nil
	ct.ready = false
	w.log.Info("container exited", "container", c.Name, "exitCode", exit.Code, "restarts", ct.restarts)
	w.afterExit(pod, ct, c, term, exit.At)
	w.mu.Unlock()
	w.kick()
}

// afterExit sets the state after a run ended: waiting in back-off when it will
// restart, terminated otherwise. Called with w.mu held.
func (w *podWorker) afterExit(pod *corev1.Pod, ct *container, c *corev1.Container, term *corev1.ContainerStateTerminated, now time.Time) {
	if !ct.stopping && shouldRestart(pod, c, ct.init, term.ExitCode) {
		ct.retryAt = ct.backoff.failed(now)
		ct.last = corev1.ContainerState{Terminated: term}
		if ct.backoff.Delay() == 0 {
			ct.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reasonContainerCreating}}
			return
		}
		ct.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
			Reason: reasonCrashLoopBackOff,
			Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)",
				ct.backoff.Delay(), c.Name, pod.Name, pod.Namespace, pod.UID),
		}}
		w.a.event(pod, corev1.EventTypeWarning, "BackOff", "Back-off restarting failed container "+c.Name)
		w.scheduleWake(ct.retryAt)
		return
	}
	if ct.state.Terminated != nil {
		ct.last = ct.state
	}
	ct.state = corev1.ContainerState{Terminated: term}
}

// stopContainer stops the container's process: SIGTERM, SIGKILL after grace.
func (w *podWorker) stopContainer(ctx context.Context, ct *container, grace time.Duration) {
	w.mu.Lock()
	p := ct.proc
	ct.stopping = true
	w.mu.Unlock()
	if p == nil {
		return
	}
	if err := stopGroup(ctx, p.id, grace); err != nil {
		w.log.Error(err, "stopping container", "container", ct.name)
	}
	select {
	case <-p.done:
	case <-ctx.Done():
	}
}

// ensureMountPoints creates the mount points of a run: inside the pod's own
// directories directly, on the host through the machine-wide registry.
func (w *podWorker) ensureMountPoints(plan []plannedMount, holder procID) error {
	var hostTargets []string
	isFile := map[string]bool{}
	for _, m := range plan {
		if within(m.HostTarget, w.dir) {
			if _, err := createPath(m.HostTarget, m.File); err != nil {
				return err
			}
			continue
		}
		hostTargets = append(hostTargets, m.HostTarget)
		isFile[m.HostTarget] = m.File
	}
	if len(hostTargets) == 0 {
		return nil
	}
	return w.a.reg.ensure(hostTargets, isFile, holder)
}

// execSpec derives the spec of an exec session (kubectl exec, exec probes) from
// the container's running spec: same mounts, namespaces, capabilities and env.
func (w *podWorker) execSpec(container string, argv []string) (*shimSpec, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ct, ok := w.containers[container]
	if !ok {
		return nil, fmt.Errorf("container %s not found in pod %s", container, w.name())
	}
	if ct.proc == nil || ct.spec == nil {
		return nil, fmt.Errorf("container %s of pod %s is not running", container, w.name())
	}
	if len(argv) == 0 {
		return nil, errors.New("no command given")
	}
	spec := *ct.spec
	spec.Argv = argv
	spec.Path = ""
	if w.image(container).runs(argv[0]) {
		spec.Path = w.image(container).Binary
	} else if filepath.IsAbs(argv[0]) {
		spec.Path = argv[0]
	}
	return &spec, nil
}

// image returns the catalog entry of a container's image (zero when unknown).
func (w *podWorker) image(container string) Image {
	c := findContainer(w.pod, container)
	if c == nil {
		return Image{}
	}
	img, _ := w.a.cfg.Catalog.Resolve(c.Image)
	return img
}

// runExec runs argv in the container with the given stdio until it exits or ctx
// ends (then its process group is killed), returning its exit code.
func (w *podWorker) runExec(ctx context.Context, container string, argv []string, sio stdio) (int32, error) {
	spec, err := w.execSpec(container, argv)
	if err != nil {
		return 0, err
	}
	p, err := w.a.startShim(w.netNS(), spec, sio)
	if err != nil {
		return 0, err
	}
	key := "exec/" + strconv.Itoa(p.id.PID)
	w.recordProcess(key, p.id)
	defer w.forgetProcess(key)
	select {
	case <-p.done:
	case <-ctx.Done():
		_ = p.id.kill(syscall.SIGKILL)
		<-p.done
		return 0, ctx.Err()
	}
	return p.exit.Code, nil
}
