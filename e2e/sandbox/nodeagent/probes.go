package nodeagent

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// probeKind tells the three probes apart.
type probeKind string

const (
	probeStartup   probeKind = "startup"
	probeLiveness  probeKind = "liveness"
	probeReadiness probeKind = "readiness"
)

// probeTimings are a probe's periods and thresholds with the API's defaults
// filled in for zero values.
type probeTimings struct {
	Delay, Period, Timeout time.Duration
	Success, Failure       int32
}

func timings(p *corev1.Probe) probeTimings {
	t := probeTimings{
		Delay:   time.Duration(p.InitialDelaySeconds) * time.Second,
		Period:  time.Duration(p.PeriodSeconds) * time.Second,
		Timeout: time.Duration(p.TimeoutSeconds) * time.Second,
		Success: p.SuccessThreshold,
		Failure: p.FailureThreshold,
	}
	if t.Period <= 0 {
		t.Period = 10 * time.Second
	}
	if t.Timeout <= 0 {
		t.Timeout = time.Second
	}
	if t.Success <= 0 {
		t.Success = 1
	}
	if t.Failure <= 0 {
		t.Failure = 3
	}
	return t
}

// probeCounter applies success and failure thresholds to a run of results.
type probeCounter struct {
	t                   probeTimings
	successes, failures int32
}

// observe records one result and returns the verdict once a threshold is
// reached: +1 success, -1 failure, 0 undecided.
func (c *probeCounter) observe(ok bool) int {
	if ok {
		c.failures = 0
		c.successes++
		if c.successes >= c.t.Success {
			return 1
		}
		return 0
	}
	c.successes = 0
	c.failures++
	if c.failures >= c.t.Failure {
		return -1
	}
	return 0
}

// startProbes runs the container's startup probe, then its liveness and
// readiness probes, for the run with container ID id until ctx ends.
func (w *podWorker) startProbes(ctx context.Context, pod *corev1.Pod, ct *container, c *corev1.Container, id string) {
	startedCh := make(chan struct{})
	if c.StartupProbe == nil {
		close(startedCh)
	} else {
		go w.runProbe(ctx, pod, ct, c, id, probeStartup, c.StartupProbe, func(ok bool) bool {
			if ok {
				w.setProbeResult(ct, id, func() { ct.started = true })
				close(startedCh)
				return false // a startup probe stops at its first success
			}
			w.failRun(ctx, pod, ct, c, id, "startup")
			return false
		})
	}
	if c.LivenessProbe != nil {
		go func() {
			select {
			case <-startedCh:
			case <-ctx.Done():
				return
			}
			w.runProbe(ctx, pod, ct, c, id, probeLiveness, c.LivenessProbe, func(ok bool) bool {
				if !ok {
					w.failRun(ctx, pod, ct, c, id, "liveness")
					return false
				}
				return true
			})
		}()
	}
	if c.ReadinessProbe != nil {
		go func() {
			select {
			case <-startedCh:
			case <-ctx.Done():
				return
			}
			w.runProbe(ctx, pod, ct, c, id, probeReadiness, c.ReadinessProbe, func(ok bool) bool {
				w.setProbeResult(ct, id, func() { ct.ready = ok })
				return true
			})
		}()
	}
}

// setProbeResult changes the run's state if it is still the current run.
func (w *podWorker) setProbeResult(ct *container, id string, fn func()) {
	w.mu.Lock()
	changed := ct.id == id
	if changed {
		fn()
	}
	w.mu.Unlock()
	if changed {
		w.kick()
	}
}

// failRun kills a run whose liveness or startup probe failed; restartPolicy
// decides what follows.
func (w *podWorker) failRun(ctx context.Context, pod *corev1.Pod, ct *container, c *corev1.Container, id, which string) {
	w.mu.Lock()
	p := ct.proc
	current := ct.id == id && p != nil
	if current {
		ct.probeKilled = true
	}
	w.mu.Unlock()
	if !current {
		return
	}
	msg := fmt.Sprintf("Container %s failed %s probe, will be restarted", c.Name, which)
	w.log.Info("probe failed: restarting container", "container", c.Name, "probe", which)
	w.a.event(pod, corev1.EventTypeWarning, "Unhealthy", msg)
	if err := stopGroup(ctx, p.id, gracePeriod(pod)); err != nil {
		w.log.Error(err, "stopping container after a failed probe", "container", c.Name)
	}
}

// runProbe probes every period after the initial delay and hands each verdict
// to report, which returns whether to go on.
func (w *podWorker) runProbe(ctx context.Context, pod *corev1.Pod, ct *container, c *corev1.Container, id string, kind probeKind, p *corev1.Probe, report func(bool) bool) {
	t := timings(p)
	counter := &probeCounter{t: t}
	if t.Delay > 0 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(t.Delay):
		}
	}
	ticker := time.NewTicker(t.Period)
	defer ticker.Stop()
	for {
		err := w.probeOnce(ctx, pod, c, p, t.Timeout)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			w.log.V(1).Info("probe failed", "container", c.Name, "probe", string(kind), "error", err.Error())
		}
		if verdict := counter.observe(err == nil); verdict != 0 {
			if !report(verdict > 0) {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// probeOnce runs one probe with its timeout; nil is success.
func (w *podWorker) probeOnce(ctx context.Context, pod *corev1.Pod, c *corev1.Container, p *corev1.Probe, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	host := w.podAddr()
	switch {
	case p.Exec != nil:
		code, err := w.runExec(ctx, c.Name, p.Exec.Command, stdio{Stdout: io.Discard, Stderr: io.Discard})
		if err != nil {
			return err
		}
		if code != 0 {
			return fmt.Errorf("command exited with code %d", code)
		}
		return nil
	case p.TCPSocket != nil:
		port, err := probePort(p.TCPSocket.Port, c)
		if err != nil {
			return err
		}
		if p.TCPSocket.Host != "" {
			host = p.TCPSocket.Host
		}
		conn, err := w.a.dial(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		return conn.Close()
	case p.HTTPGet != nil:
		return w.httpProbe(ctx, host, p.HTTPGet, c)
	case p.GRPC != nil:
		return fmt.Errorf("gRPC probes are not supported by the sandbox node agent: use tcpSocket or httpGet")
	}
	return fmt.Errorf("probe has no handler")
}

func (w *podWorker) podAddr() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.podIP.IsValid() {
		return w.podIP.String()
	}
	return w.a.cfg.NodeIP.String()
}

// httpProbe GETs the probe's URL; 200-399 is success.
func (w *podWorker) httpProbe(ctx context.Context, host string, g *corev1.HTTPGetAction, c *corev1.Container) error {
	port, err := probePort(g.Port, c)
	if err != nil {
		return err
	}
	if g.Host != "" {
		host = g.Host
	}
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	path := g.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u := &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port))}
	if p, q, ok := strings.Cut(path, "?"); ok {
		u.Path, u.RawQuery = p, q
	} else {
		u.Path = path
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "kube-probe/1.37")
	req.Header.Set("Accept", "*/*")
	for _, h := range g.HTTPHeaders {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	client := &http.Client{
		Transport: &http.Transport{
			DialContext:       w.a.dial,
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // probes do not verify, as the kubelet's
			DisableKeepAlives: true,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 10 || req.URL.Hostname() != u.Hostname() {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 10*1024))
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP probe failed with status %d", resp.StatusCode)
	}
	return nil
}

// probePort resolves a numeric or named port.
func probePort(p intstr.IntOrString, c *corev1.Container) (int, error) {
	if p.Type == intstr.Int {
		if p.IntVal <= 0 || p.IntVal > 65535 {
			return 0, fmt.Errorf("invalid probe port %d", p.IntVal)
		}
		return int(p.IntVal), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("probe port %q names no port of container %s", p.StrVal, c.Name)
}

// dial opens a connection from the node's network namespace, as the kubelet's
// probes come from the node.
func (a *agent) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if _, err := netip.ParseAddrPort(addr); err != nil {
		return nil, fmt.Errorf("probe address %s: use an IP address (names are not resolved on the node): %w", addr, err)
	}
	var conn net.Conn
	err := a.nodeNS.Do(func() error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}
