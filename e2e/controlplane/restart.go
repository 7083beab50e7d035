package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// portReleaseTimeout bounds the wait for a stopped API server's port to close.
const portReleaseTimeout = 30 * time.Second

// RestartFlags returns the kube-apiserver flags of a plane that a test stops and
// restarts, for Options.APIServerFlags. A graceful shutdown otherwise waits for
// open watches until --request-timeout (60 s), longer than envtest waits; with
// --shutdown-send-retry-after the server drains ordinary requests, gives watches
// 2 s and exits.
func RestartFlags() map[string][]string {
	return map[string][]string{"shutdown-send-retry-after": {"true"}}
}

// StopAPIServer stops the plane's kube-apiserver and leaves etcd running with all
// the data, so that StartAPIServer brings the same cluster back. When it returns,
// nothing listens on the server's address: clients get "connection refused".
// Start the plane with RestartFlags, or the stop takes a minute when clients
// watch. Stopping a stopped API server does nothing.
func (p *Plane) StopAPIServer() error {
	api := p.env.ControlPlane.APIServer
	// envtest removes a certificate directory it made itself when the API server
	// stops; keep a copy under the plane's work directory (where the kubeconfig
	// is) so that the restarted server has the same serving certificate, client
	// CA and service-account keys, and every client config stays valid.
	kept := filepath.Join(filepath.Dir(p.Kubeconfig), p.Name+"-apiserver-certs")
	if api.CertDir != kept {
		if err := os.RemoveAll(kept); err != nil {
			return fmt.Errorf("clearing %s: %w", kept, err)
		}
		if err := os.CopyFS(kept, os.DirFS(api.CertDir)); err != nil {
			return fmt.Errorf("keeping the certificates of the API server of %s: %w", p.Name, err)
		}
	}
	// When envtest gives up on a graceful stop it kills the server and reports
	// an error; what matters is whether the server is gone.
	stopErr := api.Stop()
	api.CertDir = kept

	addr := api.SecureServing.ListenAddr.HostPort()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, portReleaseTimeout, true,
		func(context.Context) (bool, error) {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return true, nil // nothing listens any more
			}
			conn.Close()
			return false, nil // the process is still exiting
		})
	if err != nil {
		return errors.Join(fmt.Errorf("the API server of %s still answers on %s after it was stopped: %w", p.Name, addr, err), stopErr)
	}
	return nil
}

// StartAPIServer starts the plane's kube-apiserver again after StopAPIServer, on
// the same address with the same certificates, and waits until it is healthy.
func (p *Plane) StartAPIServer() error {
	if err := p.env.ControlPlane.APIServer.Start(); err != nil {
		return fmt.Errorf("restarting the API server of %s: %w", p.Name, err)
	}
	return nil
}
