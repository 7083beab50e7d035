package nodeagent

// The kubelet API, the part the API server uses: container logs, exec, port
// forwarding, and a health check. Callers authenticate with a client certificate
// that Config.ClientCAs verifies (the API server's --kubelet-client-certificate);
// every verified caller may use every endpoint (the real kubelet would also ask
// the API server to authorize it).

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/creack/pty"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

const (
	streamIdleTimeout     = 4 * time.Hour
	streamCreationTimeout = remotecommand.DefaultStreamCreationTimeout
)

// serveKubeletAPI listens on NodeIP:port inside the node's network namespace
// and serves until ctx ends.
func (a *agent) serveKubeletAPI(ctx context.Context) (func(), error) {
	var ln net.Listener
	addr := net.JoinHostPort(a.cfg.NodeIP.String(), strconv.Itoa(a.port))
	if err := a.nodeNS.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		return nil, fmt.Errorf("listening for the kubelet API on %s in %s: %w", addr, a.nodeNS.Name, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	authed := func(pattern string, h http.HandlerFunc) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
				http.Error(w, "Unauthorized: a client certificate signed by the node's client CA is required", http.StatusUnauthorized)
				return
			}
			h(w, r)
		})
	}
	authed("GET /pods", a.handlePods)
	authed("GET /containerLogs/{ns}/{pod}/{container}", a.handleLogs)
	for _, p := range []string{"/exec/{ns}/{pod}/{container}", "/exec/{ns}/{pod}/{uid}/{container}"} {
		authed(p, a.handleExec)
	}
	for _, p := range []string{"/run/{ns}/{pod}/{container}", "/run/{ns}/{pod}/{uid}/{container}"} {
		authed("POST "+p, a.handleRun)
	}
	for _, p := range []string{"/portForward/{ns}/{pod}", "/portForward/{ns}/{pod}/{uid}"} {
		authed(p, a.handlePortForward)
	}
	srv := &http.Server{
		Handler: mux,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{a.cfg.ServingCert},
			ClientCAs:    a.cfg.ClientCAs,
			ClientAuth:   tls.VerifyClientCertIfGiven,
			MinVersion:   tls.VersionTLS12,
			// Streams upgrade HTTP/1.1 connections.
			NextProtos: []string{"http/1.1"},
		},
		ReadHeaderTimeout: 30 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error(err, "serving the kubelet API")
		}
	}()
	a.log.Info("serving the kubelet API", "address", addr)
	return func() { _ = srv.Close() }, nil
}

// lookup finds the worker of a pod by namespace and name (and UID when given).
func (a *agent) lookup(ns, name, uid string) *podWorker {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, w := range a.workers {
		w.mu.Lock()
		match := w.pod.Namespace == ns && w.pod.Name == name && (uid == "" || string(w.pod.UID) == uid)
		w.mu.Unlock()
		if match {
			return w
		}
	}
	return nil
}

func (a *agent) handlePods(w http.ResponseWriter, _ *http.Request) {
	a.mu.Lock()
	list := corev1.PodList{}
	for _, pw := range a.workers {
		pw.mu.Lock()
		list.Items = append(list.Items, *pw.pod.DeepCopy())
		pw.mu.Unlock()
	}
	a.mu.Unlock()
	list.Kind, list.APIVersion = "PodList", "v1"
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(list)
}

func (a *agent) handleLogs(w http.ResponseWriter, r *http.Request) {
	pw := a.lookup(r.PathValue("ns"), r.PathValue("pod"), "")
	if pw == nil {
		http.Error(w, fmt.Sprintf("pod %s/%s not found on node %s", r.PathValue("ns"), r.PathValue("pod"), a.cfg.NodeName), http.StatusNotFound)
		return
	}
	q := r.URL.Query()
	opts := logOptions{
		Follow:     q.Get("follow") == "true",
		Timestamps: q.Get("timestamps") == "true",
		Stream:     q.Get("stream"),
	}
	for _, p := range []struct {
		name string
		dst  **int64
	}{{"tailLines", &opts.TailLines}, {"limitBytes", &opts.LimitBytes}} {
		if v := q.Get(p.name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				http.Error(w, fmt.Sprintf("invalid %s %q: %v", p.name, v, err), http.StatusBadRequest)
				return
			}
			*p.dst = &n
		}
	}
	if v := q.Get("sinceSeconds"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			http.Error(w, fmt.Sprintf("invalid sinceSeconds %q: %v", v, err), http.StatusBadRequest)
			return
		}
		opts.Since = time.Now().Add(-time.Duration(n) * time.Second)
	}
	if v := q.Get("sinceTime"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			http.Error(w, fmt.Sprintf("invalid sinceTime %q: %v", v, err), http.StatusBadRequest)
			return
		}
		opts.Since = t
	}
	name := r.PathValue("container")
	pw.mu.Lock()
	ct, ok := pw.containers[name]
	var path string
	var live *logFile
	if ok && ct.ran {
		run := ct.restarts
		if q.Get("previous") == "true" {
			run--
		} else {
			live = ct.logs
		}
		path = filepath.Join(pw.dir, "logs", name, logName(run))
		if run < 0 {
			path = ""
		}
	}
	pw.mu.Unlock()
	switch {
	case !ok:
		http.Error(w, fmt.Sprintf("container %s is not in pod %s", name, pw.name()), http.StatusNotFound)
		return
	case path == "" && q.Get("previous") == "true":
		http.Error(w, fmt.Sprintf("previous terminated container %q in pod %q not found", name, pw.record.Name), http.StatusBadRequest)
		return
	case path == "":
		http.Error(w, fmt.Sprintf("container %q in pod %q is waiting to start", name, pw.record.Name), http.StatusBadRequest)
		return
	}
	if _, err := os.Stat(path); err != nil {
		http.Error(w, fmt.Sprintf("no log for container %q in pod %q: %v", name, pw.record.Name, err), http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Transfer-Encoding", "chunked")
	w.WriteHeader(http.StatusOK)
	if err := readLog(r.Context(), path, live, opts, flushWriter{w}); err != nil {
		a.log.V(1).Info("streaming logs ended", "error", err.Error())
	}
}

// flushWriter flushes after every write, so followers see lines at once.
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}

func (a *agent) handleExec(w http.ResponseWriter, r *http.Request) {
	pw := a.lookup(r.PathValue("ns"), r.PathValue("pod"), r.PathValue("uid"))
	if pw == nil {
		http.Error(w, "pod not found on this node", http.StatusNotFound)
		return
	}
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cmd := r.URL.Query()["command"]
	remotecommand.ServeExec(w, r, execAdapter{pw}, pw.record.Name, pw.record.UID, r.PathValue("container"), cmd, opts,
		streamIdleTimeout, streamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

func (a *agent) handleRun(w http.ResponseWriter, r *http.Request) {
	pw := a.lookup(r.PathValue("ns"), r.PathValue("pod"), r.PathValue("uid"))
	if pw == nil {
		http.Error(w, "pod not found on this node", http.StatusNotFound)
		return
	}
	cmd := r.URL.Query()["cmd"]
	if len(cmd) == 1 {
		cmd = splitFields(cmd[0])
	}
	var out lockedBuffer
	code, err := pw.runExec(r.Context(), r.PathValue("container"), cmd, stdio{Stdout: &out, Stderr: &out})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if code != 0 {
		w.Header().Set("X-Exit-Code", strconv.Itoa(int(code)))
	}
	_, _ = w.Write(out.Bytes())
}

func splitFields(s string) []string { return strings.Fields(s) }

// lockedBuffer collects the output of a process's stdout and stderr.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Bytes()
}

// execAdapter runs exec sessions of the streaming server in a pod.
type execAdapter struct{ pw *podWorker }

func (e execAdapter) ExecInContainer(ctx context.Context, _, _ string, container string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, _ time.Duration) error {
	sio := stdio{Stdin: in, Stdout: out, Stderr: errw}
	if in == nil {
		sio.Stdin = nil
	}
	if out == nil {
		sio.Stdout = nil
	}
	if errw == nil {
		sio.Stderr = nil
	}
	var closeTTY func()
	if tty {
		ptm, pts, err := pty.Open()
		if err != nil {
			return fmt.Errorf("opening a terminal: %w", err)
		}
		closeTTY = func() { ptm.Close(); pts.Close() }
		defer closeTTY()
		sio = stdio{TTY: pts}
		if in != nil {
			go func() { _, _ = io.Copy(ptm, in) }()
		}
		copied := make(chan struct{})
		go func() {
			defer close(copied)
			if out != nil {
				_, _ = io.Copy(out, ptm)
			}
		}()
		go func() {
			for size := range resize {
				_ = pty.Setsize(ptm, &pty.Winsize{Rows: size.Height, Cols: size.Width})
			}
		}()
		code, err := e.pw.runExec(ctx, container, cmd, sio)
		// Without our copy of the follower side, reads drain what the process
		// wrote and then end; a background process still holding the terminal
		// does not keep the session open for long.
		pts.Close()
		select {
		case <-copied:
		case <-time.After(2 * time.Second):
		}
		if err != nil {
			return err
		}
		if code != 0 {
			return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: int(code)}
		}
		return nil
	}
	code, err := e.pw.runExec(ctx, container, cmd, sio)
	if err != nil {
		return err
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: int(code)}
	}
	return nil
}

func (a *agent) handlePortForward(w http.ResponseWriter, r *http.Request) {
	pw := a.lookup(r.PathValue("ns"), r.PathValue("pod"), r.PathValue("uid"))
	if pw == nil {
		http.Error(w, "pod not found on this node", http.StatusNotFound)
		return
	}
	opts, err := portforward.NewV4Options(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	portforward.ServePortForward(w, r, forwarder{pw}, pw.record.Name, pw.record.UID, opts,
		streamIdleTimeout, streamCreationTimeout, portforward.SupportedProtocols)
}

// forwarder connects port-forward streams to the pod's ports, from the node.
type forwarder struct{ pw *podWorker }

func (f forwarder) PortForward(ctx context.Context, _, _ string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	host, err := netip.ParseAddr(f.pw.podAddr())
	if err != nil {
		return err
	}
	conn, err := f.pw.a.dial(ctx, "tcp", netip.AddrPortFrom(host, uint16(port)).String())
	if err != nil {
		return fmt.Errorf("connecting to port %d of pod %s: %w", port, f.pw.name(), err)
	}
	defer conn.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(conn, stream); done <- struct{}{} }()
	go func() { _, _ = io.Copy(stream, conn); done <- struct{}{} }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}
