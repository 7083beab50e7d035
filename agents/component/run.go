package component

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// shutdownTimeout bounds the HTTP server's graceful shutdown.
const shutdownTimeout = 5 * time.Second

// Runtime is what a component's run function gets.
type Runtime struct {
	// Name is the component's name, for logs and the version line.
	Name string
	// Log is the component's logger; client-go and controller-runtime log through it too.
	Log logr.Logger
	// Kube reaches the local cluster.
	Kube *rest.Config
	// Addr is the address the HTTP server listens on, once it does (":0" resolves).
	Addr string

	mu    sync.Mutex
	ready error
}

// SetReady records whether the component is ready (nil) or why not; /readyz reports it.
// A component starts not ready.
func (r *Runtime) SetReady(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ready = err
}

// Ready returns nil when the component is ready, else the reason it is not.
func (r *Runtime) Ready() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ready
}

// Run is a component's main: it prints the version and returns when asked to, sets up
// logging at the chosen verbosity, loads the local cluster's client configuration,
// serves /metrics, /healthz and /readyz, and calls run with a context that is
// cancelled on SIGTERM or SIGINT. It returns run's error after shutting the server
// down. stdout receives the version line.
func Run(name string, o *Options, stdout io.Writer, run func(ctx context.Context, rt *Runtime) error) error {
	if o.ShowVersion {
		_, err := fmt.Fprintf(stdout, "%s %s\n", name, Version)
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	log := textlogger.NewLogger(textlogger.NewConfig(textlogger.Verbosity(o.Verbosity))).WithName(name)
	klog.SetLogger(log)
	ctrl.SetLogger(log)

	kube, err := KubeConfig(o.Kubeconfig)
	if err != nil {
		return err
	}
	rt := &Runtime{Name: name, Log: log, Kube: kube, ready: errors.New("starting")}
	serveErr := make(chan error, 1)
	var srv *http.Server
	if o.MetricsAddr != "" {
		ln, err := net.Listen("tcp", o.MetricsAddr)
		if err != nil {
			return fmt.Errorf("listening on --metrics-addr %s: %w", o.MetricsAddr, err)
		}
		rt.Addr = ln.Addr().String()
		srv = &http.Server{Handler: rt.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { serveErr <- srv.Serve(ln) }()
	}
	log.Info("Starting", "version", Version, "clusterID", o.ClusterID, "node", o.NodeName, "metricsAddr", rt.Addr)

	runErr := run(ctx, rt)
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			runErr = errors.Join(runErr, fmt.Errorf("shutting down the HTTP server: %w", err))
		}
		if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
			runErr = errors.Join(runErr, fmt.Errorf("serving HTTP: %w", err))
		}
	}
	if runErr == nil {
		log.Info("Stopped")
	}
	return runErr
}

// Registry is where components register their metrics. It is controller-runtime's
// registry, which already carries the Go, process, client-go and workqueue metrics.
var Registry = ctrlmetrics.Registry

// Handler serves /metrics (Registry), /healthz
// (the process serves requests) and /readyz (the component says it is ready).
func (r *Runtime) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := r.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	return mux
}

// KubeConfig loads the local cluster's client configuration from kubeconfig, or the
// in-cluster ServiceAccount when it is empty.
func KubeConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("loading the in-cluster configuration (outside a pod, pass --kubeconfig): %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading --kubeconfig %s: %w", kubeconfig, err)
	}
	return cfg, nil
}

// Main is the body of every component's main(): it runs fn and exits non-zero with
// the error on stderr when fn fails.
func Main(fn func() error) {
	if err := fn(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
