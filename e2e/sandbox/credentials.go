package sandbox

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// Identities the control-plane components and nodes authenticate as (client
// certificates; the group system:masters and the system:* users are bound by the
// API server's bootstrap RBAC policy).
const (
	adminUser             = "kubernetes-admin"
	mastersGroup          = "system:masters"
	controllerManagerUser = "system:kube-controller-manager"
	schedulerUser         = "system:kube-scheduler"
	kubeProxyUser         = "system:kube-proxy"
	apiServerKubeletUser  = "kube-apiserver-kubelet-client"
	nodeUserPrefix        = "system:node:"
	nodesGroup            = "system:nodes"
)

// planeCredentials are one control plane's CA, certificates and keys.
type planeCredentials struct {
	CA                          *CA
	APIServer, KubeletClient    KeyPair
	Admin, ControllerManager    KeyPair
	Scheduler, KubeProxy        KeyPair
	ServiceAccountKey, SAPublic []byte
	// Nodes are in the order of the cluster's nodes.
	Nodes []nodeCredentials
}

// nodeCredentials are what a node agent needs: its client certificate as
// system:node:<name> and its kubelet API serving certificate.
type nodeCredentials struct {
	Node            Node
	Client, Serving KeyPair
}

// apiServerSANs are the subject alternative names of an API server's certificate:
// its address on the root link, loopback, the kubernetes Service IP and names.
func apiServerSANs(cp ControlPlane) ([]string, []netip.Addr) {
	dns := []string{
		"kubernetes",
		"kubernetes.default",
		"kubernetes.default.svc",
		"kubernetes.default.svc." + ClusterDomain,
		"localhost",
	}
	ips := []netip.Addr{RootAddr.Addr(), netip.MustParseAddr("127.0.0.1"), cp.KubernetesServiceIP()}
	return dns, ips
}

// issueCredentials makes a control plane's CA and everything it signs.
func issueCredentials(cp ControlPlane, nodes []Node, now time.Time) (*planeCredentials, error) {
	ca, err := NewCA("sandbox-"+cp.Name+"-ca", now)
	if err != nil {
		return nil, err
	}
	c := &planeCredentials{CA: ca}
	dns, ips := apiServerSANs(cp)
	issue := []struct {
		into *KeyPair
		req  CertRequest
	}{
		{&c.APIServer, CertRequest{CommonName: "kube-apiserver", DNSNames: dns, IPs: ips, Usage: ServerAuth}},
		{&c.KubeletClient, CertRequest{CommonName: apiServerKubeletUser, Organizations: []string{mastersGroup}, Usage: ClientAuth}},
		{&c.Admin, CertRequest{CommonName: adminUser, Organizations: []string{mastersGroup}, Usage: ClientAuth}},
		{&c.ControllerManager, CertRequest{CommonName: controllerManagerUser, Usage: ClientAuth}},
		{&c.Scheduler, CertRequest{CommonName: schedulerUser, Usage: ClientAuth}},
		{&c.KubeProxy, CertRequest{CommonName: kubeProxyUser, Usage: ClientAuth}},
	}
	for _, i := range issue {
		if *i.into, err = ca.Issue(i.req, now); err != nil {
			return nil, fmt.Errorf("control plane %s: %w", cp.Name, err)
		}
	}
	if c.ServiceAccountKey, c.SAPublic, err = NewServiceAccountKey(); err != nil {
		return nil, fmt.Errorf("control plane %s: %w", cp.Name, err)
	}
	for _, n := range nodes {
		nc := nodeCredentials{Node: n}
		nc.Client, err = ca.Issue(CertRequest{CommonName: nodeUserPrefix + n.Name, Organizations: []string{nodesGroup}, Usage: ClientAuth}, now)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
		nc.Serving, err = ca.Issue(CertRequest{CommonName: nodeUserPrefix + n.Name, DNSNames: []string{n.Name}, IPs: []netip.Addr{n.IP}, Usage: ServerAuth}, now)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
		c.Nodes = append(c.Nodes, nc)
	}
	return c, nil
}

// write puts the credentials and the kubeconfigs of the control plane's users into
// its directory of the state dir. Private keys are readable by root only.
func (c *planeCredentials) write(l Layout, cp ControlPlane) error {
	server := cp.APIServer()
	files := map[string][]byte{
		fileCACert:          c.CA.CertPEM,
		fileCAKey:           c.CA.KeyPEM,
		fileAPIServerCert:   c.APIServer.CertPEM,
		fileAPIServerKey:    c.APIServer.KeyPEM,
		fileKubeletClient:   c.KubeletClient.CertPEM,
		fileKubeletClientKy: c.KubeletClient.KeyPEM,
		fileSAKey:           c.ServiceAccountKey,
		fileSAPub:           c.SAPublic,
	}
	for file, user := range map[string]KeyPair{
		fileAdminKubeconfig: c.Admin,
		fileKCMKubeconfig:   c.ControllerManager,
		fileSchedKubeconfig: c.Scheduler,
		fileProxyKubeconfig: c.KubeProxy,
	} {
		kc, err := Kubeconfig(cp.Name, server, c.CA.CertPEM, user)
		if err != nil {
			return err
		}
		files[file] = kc
	}
	for name, data := range files {
		if err := writeFile(l.PlaneFile(cp.Name, name), data); err != nil {
			return err
		}
	}
	for _, nc := range c.Nodes {
		kc, err := Kubeconfig(cp.Name, server, c.CA.CertPEM, nc.Client)
		if err != nil {
			return err
		}
		dir := l.Node(nc.Node)
		for name, data := range map[string][]byte{
			fileNodeKubeconfig:  kc,
			fileNodeServingCert: nc.Serving.CertPEM,
			fileNodeServingKey:  nc.Serving.KeyPEM,
		} {
			if err := writeFile(filepath.Join(dir, name), data); err != nil {
				return err
			}
		}
	}
	return nil
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
