package component

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// The broker Secret that `subctl join` creates in the component namespace and the
// components mount at DefaultBrokerSecretDir. Its keys are files there.
const (
	BrokerSecretName       = "submariner-broker-secret"
	DefaultBrokerSecretDir = "/run/secrets/submariner.io/" + BrokerSecretName
	BrokerSecretServer     = "server" // the broker API server's URL
	BrokerSecretCA         = "ca.crt" // PEM CA bundle of the broker API server
	BrokerSecretToken      = "token"  // this cluster's identity on the broker
)

// BrokerOptions locate the broker and this cluster's credentials for it.
type BrokerOptions struct {
	// SecretDir holds the broker Secret's keys as files.
	SecretDir string
	// Namespace is the broker namespace that holds the clusterset's objects.
	Namespace string
}

// AddFlags registers the broker flags and returns the environment variables behind them.
func (b *BrokerOptions) AddFlags(fs *pflag.FlagSet) Env {
	fs.StringVar(&b.SecretDir, "broker-secret-dir", DefaultBrokerSecretDir,
		"directory with the broker Secret's files: server (URL), ca.crt, token (env BROKER_K8S_SECRET_DIR)")
	fs.StringVar(&b.Namespace, "broker-namespace", submv1.BrokerNamespace,
		"namespace on the broker that holds the clusterset's objects (env BROKER_K8S_REMOTENAMESPACE)")
	return Env{"broker-secret-dir": "BROKER_K8S_SECRET_DIR", "broker-namespace": "BROKER_K8S_REMOTENAMESPACE"}
}

// Validate checks the broker flags without reading the files.
func (b *BrokerOptions) Validate() error {
	var errs []error
	if b.SecretDir == "" {
		errs = append(errs, errors.New("--broker-secret-dir is empty: mount the submariner-broker-secret Secret and point at it"))
	}
	if b.Namespace == "" {
		errs = append(errs, errors.New("--broker-namespace is empty: use the broker's namespace, normally submariner-k8s-broker"))
	}
	return errors.Join(errs...)
}

// RESTConfig builds a client configuration for the broker from the Secret's files.
// The token is read through BearerTokenFile, so a rotated token is picked up.
func (b *BrokerOptions) RESTConfig() (*rest.Config, error) {
	read := func(key string) (string, error) {
		data, err := os.ReadFile(filepath.Join(b.SecretDir, key))
		if err != nil {
			return "", fmt.Errorf("reading the broker Secret's %s from %s: %w (is %s mounted?)", key, b.SecretDir, err, BrokerSecretName)
		}
		return strings.TrimSpace(string(data)), nil
	}
	server, err := read(BrokerSecretServer)
	if err != nil {
		return nil, err
	}
	if u, err := url.Parse(server); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("the broker Secret's server %q is not an https:// URL: re-run subctl join with a good broker-info.subm", server)
	}
	ca, err := read(BrokerSecretCA)
	if err != nil {
		return nil, err
	}
	if _, err := read(BrokerSecretToken); err != nil {
		return nil, err
	}
	return &rest.Config{
		Host:            server,
		BearerTokenFile: filepath.Join(b.SecretDir, BrokerSecretToken),
		TLSClientConfig: rest.TLSClientConfig{CAData: []byte(ca)},
	}, nil
}
