package sandbox

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/tools/clientcmd"
)

func parseCert(t *testing.T, k KeyPair) *x509.Certificate {
	t.Helper()
	c, err := k.TLS()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestIssueCredentials(t *testing.T) {
	topo, err := Plan(1, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	c := topo.Clusters[0]
	now := time.Now()
	creds, err := issueCredentials(c.ControlPlane, c.Nodes, now)
	if err != nil {
		t.Fatal(err)
	}
	roots := creds.CA.Pool()
	type identity struct {
		User   string
		Groups []string
		Usage  []x509.ExtKeyUsage
		DNS    []string
		IPs    []string
	}
	describe := func(k KeyPair, usage x509.ExtKeyUsage) identity {
		t.Helper()
		cert := parseCert(t, k)
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}, CurrentTime: now}); err != nil {
			t.Errorf("%s does not verify against the cluster CA for %v: %v", cert.Subject.CommonName, usage, err)
		}
		var ips []string
		for _, ip := range cert.IPAddresses {
			ips = append(ips, ip.String())
		}
		sort.Strings(ips)
		return identity{User: cert.Subject.CommonName, Groups: cert.Subject.Organization, Usage: cert.ExtKeyUsage, DNS: cert.DNSNames, IPs: ips}
	}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	server := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	got := map[string]identity{
		"apiserver":          describe(creds.APIServer, x509.ExtKeyUsageServerAuth),
		"kubelet client":     describe(creds.KubeletClient, x509.ExtKeyUsageClientAuth),
		"admin":              describe(creds.Admin, x509.ExtKeyUsageClientAuth),
		"controller-manager": describe(creds.ControllerManager, x509.ExtKeyUsageClientAuth),
		"scheduler":          describe(creds.Scheduler, x509.ExtKeyUsageClientAuth),
		"kube-proxy":         describe(creds.KubeProxy, x509.ExtKeyUsageClientAuth),
		"c1-gw1 client":      describe(creds.Nodes[0].Client, x509.ExtKeyUsageClientAuth),
		"c1-gw1 serving":     describe(creds.Nodes[0].Serving, x509.ExtKeyUsageServerAuth),
	}
	want := map[string]identity{
		"apiserver": {User: "kube-apiserver", Usage: server,
			DNS: []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"},
			IPs: []string{"10.141.0.1", "127.0.0.1", "192.168.240.1"}},
		"kubelet client":     {User: "kube-apiserver-kubelet-client", Groups: []string{"system:masters"}, Usage: client},
		"admin":              {User: "kubernetes-admin", Groups: []string{"system:masters"}, Usage: client},
		"controller-manager": {User: "system:kube-controller-manager", Usage: client},
		"scheduler":          {User: "system:kube-scheduler", Usage: client},
		"kube-proxy":         {User: "system:kube-proxy", Usage: client},
		"c1-gw1 client":      {User: "system:node:c1-gw1", Groups: []string{"system:nodes"}, Usage: client},
		"c1-gw1 serving":     {User: "system:node:c1-gw1", Usage: server, DNS: []string{"c1-gw1"}, IPs: []string{"192.168.241.21"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("certificates (-want +got):\n%s", diff)
	}
	if len(creds.Nodes) != len(c.Nodes) {
		t.Errorf("%d node credentials for %d nodes", len(creds.Nodes), len(c.Nodes))
	}

	// A certificate of another cluster's CA must not verify against this one.
	other, err := issueCredentials(c.ControlPlane, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseCert(t, other.Admin).Verify(x509.VerifyOptions{Roots: roots, KeyUsages: client}); err == nil {
		t.Error("another sandbox CA's admin certificate verifies against this cluster's CA")
	}
}

// TestTLSHandshake runs a real mutual-TLS exchange over loopback with issued
// certificates: the server certificate for an IP SAN, the client's identity seen
// by the server.
func TestTLSHandshake(t *testing.T) {
	now := time.Now()
	ca, err := NewCA("test-ca", now)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Issue(CertRequest{CommonName: "server", IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Usage: ServerAuth}, now)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := ca.Issue(CertRequest{CommonName: "system:node:n1", Organizations: []string{"system:nodes"}, Usage: ClientAuth}, now)
	if err != nil {
		t.Fatal(err)
	}
	srvCert, _ := srv.TLS()
	cliCert, _ := cli.TLS()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			if err := tc.Handshake(); err == nil {
				peer := tc.ConnectionState().PeerCertificates[0]
				_, _ = io.WriteString(c, peer.Subject.CommonName+" "+strings.Join(peer.Subject.Organization, ","))
			}
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cliCert}, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), "system:node:n1 system:nodes"; got != want {
		t.Errorf("the server saw the client as %q, want %q", got, want)
	}
	// The server certificate does not cover another address.
	_, err = tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cliCert}, ServerName: "10.0.0.1"})
	if err == nil {
		t.Error("the server certificate for 127.0.0.1 was accepted for 10.0.0.1")
	}
}

func TestIssueRejectsIncompleteRequests(t *testing.T) {
	ca, err := NewCA("test-ca", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		req  CertRequest
		want string
	}{
		{"no common name", CertRequest{Usage: ClientAuth}, "issuing a certificate without a common name"},
		{"no usage", CertRequest{CommonName: "x"}, "issuing certificate x without a usage: say ClientAuth, ServerAuth or both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ca.Issue(tc.req, time.Now()); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Issue(%+v) error %v, want %q", tc.req, err, tc.want)
			}
		})
	}
}

func TestKubeconfig(t *testing.T) {
	now := time.Now()
	ca, err := NewCA("test-ca", now)
	if err != nil {
		t.Fatal(err)
	}
	user, err := ca.Issue(CertRequest{CommonName: "kubernetes-admin", Organizations: []string{"system:masters"}, Usage: ClientAuth}, now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Kubeconfig("cluster1", "https://192.168.240.1:6441", ca.CertPEM, user)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://192.168.240.1:6441" || string(cfg.CAData) != string(ca.CertPEM) || string(cfg.CertData) != string(user.CertPEM) || string(cfg.KeyData) != string(user.KeyPEM) {
		t.Errorf("the kubeconfig loads as host %q with other credentials than written", cfg.Host)
	}
	raw, err := clientcmd.Load(b)
	if err != nil {
		t.Fatal(err)
	}
	if raw.CurrentContext != "cluster1" {
		t.Errorf("current context %q, want cluster1", raw.CurrentContext)
	}
}
