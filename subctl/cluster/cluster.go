// Package cluster connects subctl to a Kubernetes cluster chosen by a kubeconfig
// file and context, and bundles the clients the commands use.
package cluster

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Options choose the cluster: --kubeconfig and --context.
type Options struct {
	// Kubeconfig is the kubeconfig file; empty uses $KUBECONFIG or ~/.kube/config.
	Kubeconfig string
	// Context is the kubeconfig context; empty uses the current one.
	Context string
}

// AddFlags registers --kubeconfig and --context, with what describing the cluster
// ("the broker's", "the cluster's").
func (o *Options) AddFlags(fs *pflag.FlagSet, what string) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig file of "+what+" API server (default $KUBECONFIG or ~/.kube/config)")
	fs.StringVar(&o.Context, "context", "", "kubeconfig context to use (default the current context)")
}

// Validate checks that the kubeconfig file, when one is named, exists.
func (o *Options) Validate() error {
	if o.Kubeconfig == "" {
		return nil
	}
	st, err := os.Stat(o.Kubeconfig)
	if err != nil {
		return fmt.Errorf("--kubeconfig %s: %w", o.Kubeconfig, errors.Unwrap(err))
	}
	if st.IsDir() {
		return fmt.Errorf("--kubeconfig %s is a directory: name the kubeconfig file", o.Kubeconfig)
	}
	return nil
}

// RESTConfig loads the client configuration of the chosen context.
func (o *Options) RESTConfig() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if o.Kubeconfig != "" {
		rules.ExplicitPath = o.Kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: o.Context})
	cfg, err := cc.ClientConfig()
	if err != nil {
		where := "the default kubeconfig"
		if o.Kubeconfig != "" {
			where = o.Kubeconfig
		}
		if o.Context != "" {
			return nil, fmt.Errorf("loading context %q from %s: %w", o.Context, where, err)
		}
		return nil, fmt.Errorf("loading %s: %w", where, err)
	}
	return cfg, nil
}

// Cluster holds the clients of one API server.
type Cluster struct {
	// Config reaches the API server.
	Config *rest.Config
	// Kube is a client-go clientset.
	Kube kubernetes.Interface
	// Dynamic reaches any resource.
	Dynamic dynamic.Interface
	// Mapper maps kinds to resources from the server's discovery; Reset it after
	// installing CRDs.
	Mapper meta.ResettableRESTMapper
	// Client is a controller-runtime client whose scheme has the built-in types,
	// submariner.io/v1 and MCS v1beta1.
	Client client.Client
}

// Scheme returns the scheme of Cluster.Client.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(submv1.AddToScheme(s))
	utilruntime.Must(mcsv1beta1.AddToScheme(s))
	return s
}

// Connect builds the clients of the chosen cluster. It does not contact the API server.
func (o *Options) Connect() (*Cluster, error) {
	cfg, err := o.RESTConfig()
	if err != nil {
		return nil, err
	}
	return New(cfg)
}

// New builds the clients for cfg. It does not contact the API server.
func New(cfg *rest.Config) (*Cluster, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.UserAgent == "" {
		cfg.UserAgent = "subctl"
	}
	// client-go's default of 5 requests per second would make a join (some fifty
	// requests) wait on the client rather than on the server.
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = clientQPS, clientBurst
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating a client for %s: %w", cfg.Host, err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating a dynamic client for %s: %w", cfg.Host, err)
	}
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating a discovery client for %s: %w", cfg.Host, err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disco))
	c, err := client.New(cfg, client.Options{Scheme: Scheme(), Mapper: mapper})
	if err != nil {
		return nil, fmt.Errorf("creating a client for %s: %w", cfg.Host, err)
	}
	return &Cluster{Config: cfg, Kube: kube, Dynamic: dyn, Mapper: mapper, Client: c}, nil
}

// BrokerConfig returns a client configuration for the broker at url, verified with
// the PEM bundle ca (the system's roots when empty), authenticating with token.
// Requests time out after a while, so that an unreachable broker is reported.
func BrokerConfig(url string, ca []byte, token string) *rest.Config {
	return &rest.Config{
		Host:            url,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: ca},
		Timeout:         requestTimeout,
		UserAgent:       "subctl",
	}
}

// Client-side rate limits, as kubectl sets them.
const (
	clientQPS   = 50
	clientBurst = 300
)

// requestTimeout bounds each request to the broker.
const requestTimeout = 30 * time.Second
