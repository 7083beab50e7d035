package nodeagent_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/utils/ptr"

	"github.com/submariner-go/submariner/agents/netkit/netns"
	"github.com/submariner-go/submariner/agents/netkit/netns/netnstest"
	"github.com/submariner-go/submariner/e2e/controlplane"
	"github.com/submariner-go/submariner/e2e/sandbox/nodeagent"
)

const (
	workloadImage = "example.test/sandbox/workload:v1"
	nodeName      = "agent-test-node"
	kubeletPort   = 10250
)

var (
	// TEST-NET-2: the machine's uplink may use TEST-NET-1 (192.0.2.0/24).
	rootAddr    = netip.MustParsePrefix("198.51.100.1/24")
	nodeAddr    = netip.MustParsePrefix("198.51.100.2/24")
	podCIDR     = netip.MustParsePrefix("10.244.2.0/24")
	clusterCIDR = netip.MustParsePrefix("10.244.0.0/16")
)

// pki is the kubelet API's PKI for a test: one CA that signs the node's serving
// certificate and the API server's kubelet client certificate.
type pki struct {
	ca          *x509.Certificate
	caKey       *ecdsa.PrivateKey
	dir         string
	caFile      string
	clientCert  string
	clientKey   string
	serving     tls.Certificate
	clientCAs   *x509.CertPool
	servingCert *x509.Certificate
}

func newPKI(t *testing.T, nodeIP netip.Addr) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	var err error
	if p.caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubelet-test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	if p.ca, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	p.caFile = p.write(t, "ca.crt", "CERTIFICATE", der)
	p.clientCAs = x509.NewCertPool()
	p.clientCAs.AddCert(p.ca)

	certDER, key := p.issue(t, 2, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	p.clientCert = p.write(t, "client.crt", "CERTIFICATE", certDER)
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p.clientKey = p.write(t, "client.key", "EC PRIVATE KEY", keyDER)

	servDER, servKey := p.issue(t, 3, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "system:node:" + nodeName, Organization: []string{"system:nodes"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{nodeIP.AsSlice()},
	})
	p.serving = tls.Certificate{Certificate: [][]byte{servDER}, PrivateKey: servKey}
	return p
}

func (p *pki) issue(t *testing.T, serial int64, tmpl *x509.Certificate) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(serial)
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// env is one running node agent against a real API server, in a node netns.
type env struct {
	plane    *controlplane.Plane
	kube     kubernetes.Interface
	nodeNS   *netns.NS
	stateDir string
	stop     func() error
	// uids are the pods the tests made, for the leftover checks.
	mu   sync.Mutex
	pids map[string]bool
}

// startAgent starts an API server with the Node authorizer, NodeRestriction and
// ServiceAccount admission and the kubelet client certificate, a node netns
// reachable from the root netns, and the node agent.
//
//	root netns: kube-apiserver (127.0.0.1), test
//	   veth smtK<pid> 198.51.100.1/24 (route 10.244.2.0/24 via .2)
//	        |
//	   eth0 198.51.100.2/24  node netns (smtest-...), agent's kubelet API :10250
//	   cni0 10.244.2.1/24 -- veth<hash> -- eth0 10.244.2.x  pod netns sbx-pod-<uid>
func startAgent(t *testing.T) *env {
	t.Helper()
	p := newPKI(t, nodeAddr.Addr())
	planes := controlplane.StartWith(t, controlplane.Options{APIServerFlags: map[string][]string{
		"authorization-mode":              {"Node,RBAC"},
		"enable-admission-plugins":        {"NodeRestriction,ServiceAccount"},
		"disable-admission-plugins":       {"StorageObjectInUseProtection"},
		"kubelet-client-certificate":      {p.clientCert},
		"kubelet-client-key":              {p.clientKey},
		"kubelet-certificate-authority":   {p.caFile},
		"kubelet-preferred-address-types": {"InternalIP"},
	}}, "nodeagent")
	plane := planes[0]

	// The test's addresses must be free here: neither local nor covered by a
	// route other than the default one.
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			continue
		}
		bits, _ := r.Dst.Mask.Size()
		dst, _ := netip.AddrFromSlice(r.Dst.IP.To4())
		if p := netip.PrefixFrom(dst, bits); p.Overlaps(rootAddr.Masked()) || p.Overlaps(podCIDR) {
			t.Fatalf("route %v of this machine clashes with the test's addresses %s and %s", r, rootAddr.Masked(), podCIDR)
		}
	}
	nodeNS := netnstest.New(t)
	rootName := fmt.Sprintf("smtK%d", os.Getpid()%100000)
	attrs := netlink.NewLinkAttrs()
	attrs.Name = rootName
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "eth0", PeerNamespace: netlink.NsFd(nodeNS.Handle())}); err != nil {
		t.Fatalf("creating veth %s: %v", rootName, err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(rootName); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	root, err := netlink.LinkByName(rootName)
	if err != nil {
		t.Fatal(err)
	}
	mustAddr := func(h *netlink.Handle, l netlink.Link, a netip.Prefix) {
		t.Helper()
		if err := h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), 32)}}); err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	rootH, err := netlink.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	defer rootH.Close()
	mustAddr(rootH, root, rootAddr)
	eth0, err := nodeNS.Netlink.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	mustAddr(nodeNS.Netlink, eth0, nodeAddr)
	// The test reaches pods through the node, as the API server reaches the node.
	podRoute := &netlink.Route{
		LinkIndex: root.Attrs().Index,
		Dst:       &net.IPNet{IP: podCIDR.Addr().AsSlice(), Mask: net.CIDRMask(podCIDR.Bits(), 32)},
		Gw:        nodeAddr.Addr().AsSlice(),
	}
	if err := rootH.RouteAdd(podRoute); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.RouteDel(podRoute) })

	ctx := context.Background()
	if err := nodeagent.InstallRBAC(ctx, plane.Kube); err != nil {
		t.Fatal(err)
	}
	nodeCfg, err := plane.AddUser("system:node:"+nodeName, "system:nodes")
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{plane: plane, kube: plane.Kube, nodeNS: nodeNS, stateDir: filepath.Join(t.TempDir(), "state"), pids: map[string]bool{}}
	catalog := nodeagent.Catalog{Images: []nodeagent.Image{
		{Repository: nodeagent.Repository(workloadImage), Binary: exe, Entrypoint: workloadEntrypoint},
		{Repository: "example.test/sandbox/not-built", Binary: "/nonexistent/not-built", Entrypoint: "/not-built"},
	}}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- nodeagent.Run(runCtx, nodeagent.Config{
			NodeName:      nodeName,
			NodeIP:        nodeAddr.Addr(),
			PodCIDR:       podCIDR,
			ClusterCIDR:   clusterCIDR,
			Labels:        map[string]string{"submariner.io/gateway": "true"},
			NetNS:         nodeNS.Name,
			Kube:          nodeCfg,
			ServingCert:   p.serving,
			ClientCAs:     p.clientCAs,
			KubeletPort:   kubeletPort,
			ClusterDNS:    netip.MustParseAddr("10.0.0.10"),
			ClusterDomain: "cluster.local",
			Catalog:       catalog,
			StateDir:      e.stateDir,
			Log:           testLogger(t),
		})
	}()
	var once sync.Once
	var runErr error
	e.stop = func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := e.stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := nodeagent.Cleanup(context.Background(), e.stateDir); err != nil {
			t.Errorf("Cleanup: %v", err)
		}
	})
	return e
}

func testLogger(t *testing.T) logr.Logger {
	var mu sync.Mutex
	done := false
	t.Cleanup(func() { mu.Lock(); done = true; mu.Unlock() })
	return funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			t.Log(prefix, args)
		}
	}, funcr.Options{Verbosity: 0})
}

// namespace makes a namespace with the ServiceAccount "default" and the
// kube-root-ca.crt ConfigMap (which a controller-manager would make).
func (e *env) namespace(t *testing.T, name string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := e.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.kube.CoreV1().ServiceAccounts(name).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.kube.CoreV1().ConfigMaps(name).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt"},
		Data:       map[string]string{"ca.crt": string(e.plane.Config.CAData)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

func workloadPod(ns, name string, args ...string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			NodeName:                      nodeName,
			TerminationGracePeriodSeconds: ptr.To(int64(5)),
			Containers: []corev1.Container{{
				Name: "main", Image: workloadImage, Args: args,
				Env: []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
			}},
		},
	}
}

func (e *env) create(t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	created, err := e.kube.CoreV1().Pods(pod.Namespace).Create(context.Background(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return created
}

// waitPod polls the pod until cond holds, failing with the last status.
func (e *env) waitPod(t *testing.T, ns, name, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var last *corev1.Pod
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := e.kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = p
		return cond(p), nil
	})
	if err != nil {
		status, _ := json.MarshalIndent(last.Status, "", "  ")
		t.Fatalf("pod %s/%s never became %s: %v; last status:\n%s", ns, name, what, err, status)
	}
	return last
}

func running(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning }

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// exec runs a command in a container through the API server (kubectl exec).
func (e *env) exec(t *testing.T, ns, pod string, cmd ...string) (string, error) {
	t.Helper()
	req := e.kube.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: "main", Command: cmd, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	ex, err := remotecommand.NewSPDYExecutor(e.plane.Config, "POST", req.URL())
	if err != nil {
		return "", err
	}
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out, Stderr: &errOut})
	return out.String() + errOut.String(), err
}

// execTTY runs a command with a terminal through the API server (kubectl exec -t).
func (e *env) execTTY(t *testing.T, ns, pod string, cmd ...string) (string, error) {
	t.Helper()
	req := e.kube.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: "main", Command: cmd, Stdout: true, TTY: true}, scheme.ParameterCodec)
	ex, err := remotecommand.NewSPDYExecutor(e.plane.Config, "POST", req.URL())
	if err != nil {
		return "", err
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out, Tty: true})
	return out.String(), err
}

// logs reads a container's log through the API server (kubectl logs).
func (e *env) logs(t *testing.T, ns, pod string, opts *corev1.PodLogOptions) string {
	t.Helper()
	data, err := e.kube.CoreV1().Pods(ns).GetLogs(pod, opts).DoRaw(context.Background())
	if err != nil {
		t.Fatalf("logs of %s/%s: %v", ns, pod, err)
	}
	return string(data)
}

// waitLog polls the log until it contains want.
func (e *env) waitLog(t *testing.T, ns, pod, want string) string {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		data, err := e.kube.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: "main"}).DoRaw(ctx)
		if err != nil {
			return false, nil
		}
		last = string(data)
		return strings.Contains(last, want), nil
	})
	if err != nil {
		t.Fatalf("log of %s/%s never contained %q: %v; log:\n%s", ns, pod, want, err, last)
	}
	return last
}

// recordPIDs remembers the container processes the agent recorded, for the
// leftover checks.
func (e *env) recordPIDs(t *testing.T) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(e.stateDir, "pods", "*", "pod.json"))
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var rec struct {
			Processes map[string]struct {
				PID   int    `json:"pid"`
				Start uint64 `json:"start"`
			} `json:"processes"`
		}
		if json.Unmarshal(data, &rec) == nil {
			for _, p := range rec.Processes {
				e.pids[fmt.Sprintf("%d/%d", p.PID, p.Start)] = true
			}
		}
	}
}

func TestPrivilegedNodeAgent(t *testing.T) {
	netnstest.RequirePrivileged(t)
	_, err := os.Stat("/run/secrets")
	secretsExisted := err == nil
	e := startAgent(t)
	ctx := context.Background()

	t.Run("node registers ready", func(t *testing.T) {
		var node *corev1.Node
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
			n, err := e.kube.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			node = n
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("node %s never became Ready: %v", nodeName, err)
		}
		if got, want := node.Spec.PodCIDR, podCIDR.String(); got != want {
			t.Errorf("podCIDR = %q, want %q", got, want)
		}
		wantAddrs := []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: nodeAddr.Addr().String()}, {Type: corev1.NodeHostName, Address: nodeName}}
		if fmt.Sprint(node.Status.Addresses) != fmt.Sprint(wantAddrs) {
			t.Errorf("addresses = %v, want %v", node.Status.Addresses, wantAddrs)
		}
		for k, v := range map[string]string{"submariner.io/gateway": "true", corev1.LabelHostname: nodeName, corev1.LabelOSStable: "linux"} {
			if node.Labels[k] != v {
				t.Errorf("label %s = %q, want %q", k, node.Labels[k], v)
			}
		}
		if node.Status.DaemonEndpoints.KubeletEndpoint.Port != kubeletPort {
			t.Errorf("kubelet port = %d, want %d", node.Status.DaemonEndpoints.KubeletEndpoint.Port, kubeletPort)
		}
		lease, err := e.kube.CoordinationV1().Leases("kube-node-lease").Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("node lease: %v", err)
		}
		if lease.Spec.RenewTime == nil || ptr.Deref(lease.Spec.HolderIdentity, "") != nodeName {
			t.Errorf("lease not held and renewed by %s: %+v", nodeName, lease.Spec)
		}
		// The kubelet API answers health checks to anyone and the rest only to
		// callers with a client certificate from the client CA.
		insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the test checks the server's answers, not its identity
		base := "https://" + netip.AddrPortFrom(nodeAddr.Addr(), kubeletPort).String()
		for path, want := range map[string]int{"/healthz": http.StatusOK, "/pods": http.StatusUnauthorized} {
			resp, err := insecure.Get(base + path)
			if err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("GET %s without a client certificate: status %d, want %d", path, resp.StatusCode, want)
			}
		}

		br, err := e.nodeNS.Netlink.LinkByName(nodeagent.BridgeName)
		if err != nil {
			t.Fatalf("no %s in the node: %v", nodeagent.BridgeName, err)
		}
		addrs, _ := e.nodeNS.Netlink.AddrList(br, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != "10.244.2.1/24" {
			t.Errorf("%s addresses = %v, want 10.244.2.1/24", nodeagent.BridgeName, addrs)
		}
	})

	t.Run("pod runs with env, volumes, probes, logs and exec", func(t *testing.T) {
		ns := e.namespace(t, "basics")
		hostDir := filepath.Join(t.TempDir(), "hostdir")
		_, err := e.kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "config"}, Data: map[string]string{"key1": "value1", "greeting": "hello"},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "secret"}, Data: map[string][]byte{"password": []byte("s3cret")},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod := workloadPod(ns, "web", "serve")
		c := &pod.Spec.Containers[0]
		c.Env = append(c.Env,
			corev1.EnvVar{Name: "PLAIN", Value: "plain-$(POD_NAME)"},
			corev1.EnvVar{Name: "MY_NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
			corev1.EnvVar{Name: "MY_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			corev1.EnvVar{Name: "MY_NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
			corev1.EnvVar{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "secret"}, Key: "password"}}},
			corev1.EnvVar{Name: "GREETING", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "config"}, Key: "greeting"}}},
			corev1.EnvVar{Name: "MISSING", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "config"}, Key: "absent", Optional: ptr.To(true)}}},
		)
		c.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8081}}
		c.ReadinessProbe = &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}},
			PeriodSeconds: 1, FailureThreshold: 1,
		}
		c.VolumeMounts = []corev1.VolumeMount{
			{Name: "config", MountPath: "/etc/sbx-test/config"},
			{Name: "secret", MountPath: "/etc/sbx-test/secret"},
			{Name: "data", MountPath: "/data"},
			{Name: "host", MountPath: "/mnt/sbx-test-host"},
		}
		pod.Spec.Volumes = []corev1.Volume{
			{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "config"}}}},
			{Name: "secret", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "secret", DefaultMode: ptr.To(int32(0o400))}}},
			{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hostDir, Type: ptr.To(corev1.HostPathDirectoryOrCreate)}}},
		}
		e.create(t, pod)
		got := e.waitPod(t, ns, "web", "Running", running)
		e.recordPIDs(t)

		podIP, err := netip.ParseAddr(got.Status.PodIP)
		if err != nil || !podCIDR.Contains(podIP) {
			t.Fatalf("pod IP %q is not in the pod CIDR %s", got.Status.PodIP, podCIDR)
		}
		if got.Status.HostIP != nodeAddr.Addr().String() {
			t.Errorf("hostIP = %q, want %s", got.Status.HostIP, nodeAddr.Addr())
		}
		if ready(got) {
			t.Errorf("pod is Ready before its readiness probe can pass")
		}

		// Reachable from the node (and so from the root netns through it).
		var reply string
		err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			conn, err := net.DialTimeout("tcp", netip.AddrPortFrom(podIP, 8080).String(), 2*time.Second)
			if err != nil {
				return false, nil
			}
			defer conn.Close()
			data, _ := io.ReadAll(conn)
			reply = string(data)
			return true, nil
		})
		if err != nil || reply != "pod=web\n" {
			t.Fatalf("TCP to %s:8080: reply %q, err %v; want %q", podIP, reply, err, "pod=web\n")
		}

		log := e.waitLog(t, ns, "web", "STARTED")
		for _, want := range []string{
			"ENV POD_NAME=web", "ENV PLAIN=plain-web", "ENV MY_NS=basics", "ENV MY_IP=" + podIP.String(),
			"ENV MY_NODE=" + nodeName, "ENV PASSWORD=s3cret", "ENV GREETING=hello",
			"ENV KUBERNETES_SERVICE_HOST=", "ENV KUBERNETES_SERVICE_PORT=", "HOSTNAME web",
			// The runtime's default capability set: no NET_ADMIN (bit 12).
			"CAPEFF 00000000a80425fb",
		} {
			if !strings.Contains(log, want) {
				t.Errorf("container output lacks %q:\n%s", want, log)
			}
		}
		if strings.Contains(log, "ENV MISSING=") {
			t.Errorf("an optional reference to a missing key set MISSING:\n%s", log)
		}

		for _, tc := range []struct {
			cmd  []string
			want string
		}{
			{[]string{"cat", "/etc/sbx-test/config/key1"}, "value1"},
			{[]string{"cat", "/etc/sbx-test/secret/password"}, "s3cret"},
			{[]string{"stat", "-L", "-c", "%a", "/etc/sbx-test/secret/password"}, "400\n"},
			{[]string{"cat", "/var/run/secrets/kubernetes.io/serviceaccount/namespace"}, "basics"},
			{[]string{"cat", "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"}, string(e.plane.Config.CAData)},
			{[]string{"hostname"}, "web\n"},
			{[]string{"sh", "-c", "grep -c nameserver /etc/resolv.conf; grep search /etc/resolv.conf"}, "1\nsearch basics.svc.cluster.local svc.cluster.local cluster.local"},
		} {
			out, err := e.exec(t, ns, "web", tc.cmd...)
			if err != nil || !strings.HasPrefix(out, tc.want) {
				t.Errorf("exec %v: got %q, %v; want %q", tc.cmd, out, err, tc.want)
			}
		}

		// The projected token is one the API server accepts for the pod's account.
		token, err := e.exec(t, ns, "web", "cat", "/var/run/secrets/kubernetes.io/serviceaccount/token")
		if err != nil {
			t.Fatal(err)
		}
		review, err := e.kube.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !review.Status.Authenticated || review.Status.User.Username != "system:serviceaccount:basics:default" {
			t.Errorf("token review: authenticated %v as %q (%s), want system:serviceaccount:basics:default", review.Status.Authenticated, review.Status.User.Username, review.Status.Error)
		}

		// A file written on the host shows in the hostPath volume.
		if err := os.WriteFile(filepath.Join(hostDir, "from-host"), []byte("host data"), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := e.exec(t, ns, "web", "cat", "/mnt/sbx-test-host/from-host"); err != nil || out != "host data" {
			t.Errorf("hostPath volume: got %q, %v; want %q", out, err, "host data")
		}

		// exec -t gets a terminal.
		if out, err := e.execTTY(t, ns, "web", "tty"); err != nil || !strings.HasPrefix(out, "/dev/pts/") {
			t.Errorf("exec -t tty: got %q, %v; want a /dev/pts/ path", out, err)
		}

		// Exit codes come back through the API server.
		_, err = e.exec(t, ns, "web", "sh", "-c", "exit 3")
		var exitErr interface{ ExitStatus() int }
		if !errors.As(err, &exitErr) || exitErr.ExitStatus() != 3 {
			t.Errorf("exec exit 3: got %v, want exit status 3", err)
		}

		// Readiness follows the probe: the file in the emptyDir makes it pass.
		if _, err := e.exec(t, ns, "web", "touch", "/data/ready"); err != nil {
			t.Fatal(err)
		}
		e.waitPod(t, ns, "web", "Ready", ready)
		if _, err := e.exec(t, ns, "web", "rm", "/data/ready"); err != nil {
			t.Fatal(err)
		}
		e.waitPod(t, ns, "web", "not Ready", func(p *corev1.Pod) bool { return !ready(p) })

		// ConfigMap updates reach the running container.
		cm, err := e.kube.CoreV1().ConfigMaps(ns).Get(ctx, "config", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cm.Data["key1"] = "value2"
		if _, err := e.kube.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		var seen string
		err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			seen, _ = e.exec(t, ns, "web", "cat", "/etc/sbx-test/config/key1")
			return seen == "value2", nil
		})
		if err != nil {
			t.Errorf("configMap update never reached the container: last read %q", seen)
		}

		// logs options: tail and follow-free reads.
		if tail := e.logs(t, ns, "web", &corev1.PodLogOptions{Container: "main", TailLines: ptr.To(int64(1))}); strings.Count(tail, "\n") != 1 {
			t.Errorf("tailLines=1 returned %q", tail)
		}
	})

	t.Run("hostNetwork privileged pod", func(t *testing.T) {
		ns := e.namespace(t, "hostnet")
		pod := workloadPod(ns, "hostnet", "exit", "0")
		pod.Spec.HostNetwork = true
		pod.Spec.RestartPolicy = corev1.RestartPolicyNever
		pod.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
		e.create(t, pod)
		got := e.waitPod(t, ns, "hostnet", "Succeeded", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
		if got.Status.PodIP != nodeAddr.Addr().String() {
			t.Errorf("hostNetwork pod IP = %q, want the node's %s", got.Status.PodIP, nodeAddr.Addr())
		}
		log := e.logs(t, ns, "hostnet", &corev1.PodLogOptions{Container: "main"})
		for _, want := range []string{"HOSTNAME " + nodeName, "CAPEFF " + ownCapEff(t)} {
			if !strings.Contains(log, want) {
				t.Errorf("hostNetwork privileged output lacks %q:\n%s", want, log)
			}
		}
	})

	t.Run("restart policies and back-off", func(t *testing.T) {
		ns := e.namespace(t, "restarts")
		crash := workloadPod(ns, "crash", "exit", "1")
		e.create(t, crash)
		never := workloadPod(ns, "never", "exit", "2")
		never.Spec.RestartPolicy = corev1.RestartPolicyNever
		e.create(t, never)
		onFailure := workloadPod(ns, "onfailure", "exit", "0")
		onFailure.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
		e.create(t, onFailure)

		unhealthy := workloadPod(ns, "unhealthy", "serve")
		unhealthy.Spec.Containers[0].LivenessProbe = &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"cat", "/data/alive"}}},
			PeriodSeconds: 1, FailureThreshold: 2,
		}
		e.create(t, unhealthy)
		slowStart := workloadPod(ns, "slowstart", "serve")
		slowStart.Spec.Containers[0].StartupProbe = &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}},
			PeriodSeconds: 1, FailureThreshold: 30,
		}
		e.create(t, slowStart)

		e.waitPod(t, ns, "crash", "in CrashLoopBackOff", func(p *corev1.Pod) bool {
			if len(p.Status.ContainerStatuses) != 1 {
				return false
			}
			s := p.Status.ContainerStatuses[0]
			return s.State.Waiting != nil && s.State.Waiting.Reason == "CrashLoopBackOff" &&
				s.LastTerminationState.Terminated != nil && s.LastTerminationState.Terminated.ExitCode == 1
		})
		got := e.waitPod(t, ns, "crash", "restarted", func(p *corev1.Pod) bool {
			return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 1
		})
		if got.Status.Phase != corev1.PodRunning {
			t.Errorf("a crash-looping pod with restartPolicy Always has phase %s, want Running", got.Status.Phase)
		}
		prev := e.logs(t, ns, "crash", &corev1.PodLogOptions{Container: "main", Previous: true})
		if !strings.Contains(prev, "exiting with 1") {
			t.Errorf("previous log lacks the first run's output: %q", prev)
		}

		// A failing liveness probe restarts the container.
		e.waitPod(t, ns, "unhealthy", "restarted by its liveness probe", func(p *corev1.Pod) bool {
			return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 1 &&
				p.Status.ContainerStatuses[0].LastTerminationState.Terminated != nil
		})
		prevUnhealthy := e.logs(t, ns, "unhealthy", &corev1.PodLogOptions{Container: "main", Previous: true})
		if !strings.Contains(prevUnhealthy, "got SIGTERM, exiting") {
			t.Errorf("the liveness restart did not stop the container with SIGTERM: previous log %q", prevUnhealthy)
		}
		// A passing startup probe marks the container started, and then ready.
		got = e.waitPod(t, ns, "slowstart", "started and ready", ready)
		if s := got.Status.ContainerStatuses[0]; s.Started == nil || !*s.Started || s.RestartCount != 0 {
			t.Errorf("startup probe: got %+v", s)
		}

		got = e.waitPod(t, ns, "never", "Failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
		if s := got.Status.ContainerStatuses[0]; s.State.Terminated == nil || s.State.Terminated.ExitCode != 2 || s.RestartCount != 0 {
			t.Errorf("restartPolicy Never, exit 2: got %+v", s)
		}
		got = e.waitPod(t, ns, "onfailure", "Succeeded", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
		if s := got.Status.ContainerStatuses[0]; s.State.Terminated == nil || s.State.Terminated.Reason != "Completed" || s.RestartCount != 0 {
			t.Errorf("restartPolicy OnFailure, exit 0: got %+v", s)
		}
	})

	t.Run("deletion sends SIGTERM then SIGKILL", func(t *testing.T) {
		ns := e.namespace(t, "deletion")
		stubborn := workloadPod(ns, "stubborn", "ignore-term")
		stubborn.Spec.TerminationGracePeriodSeconds = ptr.To(int64(2))
		e.create(t, stubborn)
		polite := workloadPod(ns, "polite", "serve")
		e.create(t, polite)
		e.waitLog(t, ns, "stubborn", "STARTED")
		e.waitLog(t, ns, "polite", "STARTED")
		e.recordPIDs(t)

		for _, tc := range []struct {
			name     string
			wantCode int32
			wantLog  string
		}{
			{"stubborn", 137, "got SIGTERM, ignoring it"},
			{"polite", 0, "got SIGTERM, exiting"},
		} {
			w, err := e.kube.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + tc.name})
			if err != nil {
				t.Fatal(err)
			}
			if err := e.kube.CoreV1().Pods(ns).Delete(ctx, tc.name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			var last *corev1.Pod
			deleted := false
			timeout := time.After(60 * time.Second)
			for !deleted {
				select {
				case ev := <-w.ResultChan():
					if p, ok := ev.Object.(*corev1.Pod); ok {
						last = p
					}
					deleted = ev.Type == watch.Deleted
				case <-timeout:
					t.Fatalf("pod %s was not deleted", tc.name)
				}
			}
			w.Stop()
			s := last.Status.ContainerStatuses[0]
			if s.State.Terminated == nil || s.State.Terminated.ExitCode != tc.wantCode {
				t.Errorf("%s: final state %+v, want terminated with exit code %d", tc.name, s.State, tc.wantCode)
			}
			if _, err := os.Stat(filepath.Join(netns.Dir, nodeagent.PodNetNSPrefix+string(last.UID))); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s: network namespace left after deletion (%v)", tc.name, err)
			}
			if _, err := e.kube.CoreV1().Pods(ns).Get(ctx, tc.name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("%s: pod still exists: %v", tc.name, err)
			}
		}
	})

	t.Run("unknown image shows a waiting reason", func(t *testing.T) {
		ns := e.namespace(t, "badimage")
		pod := workloadPod(ns, "unknown")
		pod.Spec.Containers[0].Image = "quay.io/nobody/unknown:1.0"
		e.create(t, pod)
		missing := workloadPod(ns, "notbuilt")
		missing.Spec.Containers[0].Image = "example.test/sandbox/not-built:latest"
		e.create(t, missing)
		for _, tc := range []struct{ pod, reason, inMessage string }{
			{"unknown", nodeagent.ReasonImageNotInCatalog, `image "quay.io/nobody/unknown:1.0" is not in the sandbox catalog, which knows example.test/sandbox/not-built, example.test/sandbox/workload`},
			{"notbuilt", nodeagent.ReasonImageBinaryMissing, "/nonexistent/not-built, which does not exist"},
		} {
			got := e.waitPod(t, ns, tc.pod, "waiting for "+tc.reason, func(p *corev1.Pod) bool {
				return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Waiting != nil &&
					p.Status.ContainerStatuses[0].State.Waiting.Reason == tc.reason
			})
			if msg := got.Status.ContainerStatuses[0].State.Waiting.Message; !strings.Contains(msg, tc.inMessage) {
				t.Errorf("%s: waiting message %q lacks %q", tc.pod, msg, tc.inMessage)
			}
			if got.Status.Phase != corev1.PodPending {
				t.Errorf("%s: phase %s, want Pending", tc.pod, got.Status.Phase)
			}
		}
		// The agent goes on: a good pod next to them runs.
		e.create(t, workloadPod(ns, "good", "serve"))
		e.waitPod(t, ns, "good", "Running", running)
		e.recordPIDs(t)
	})

	t.Run("nothing is left after Run and Cleanup", func(t *testing.T) {
		e.recordPIDs(t)
		if err := e.stop(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		if len(e.pids) == 0 {
			t.Fatal("no container process was recorded: the check below would prove nothing")
		}
		for p := range e.pids {
			var pid int
			var start uint64
			fmt.Sscanf(p, "%d/%d", &pid, &start)
			if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && procStart(stat) == start {
				t.Errorf("container process %d still runs after Run returned", pid)
			}
		}
		names, err := netns.List()
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if strings.HasPrefix(n, nodeagent.PodNetNSPrefix) && podOfThisTest(e, n) {
				t.Errorf("pod network namespace %s left after Run returned", n)
			}
		}
		// Agents of other tests or a sandbox may hold mount points too: ours
		// must be gone, theirs must be held by living processes.
		held := registryHolders(t)
		for p := range e.pids {
			for path, holders := range held {
				if holders[p] {
					t.Errorf("mount point %s still held by our container %s", path, p)
				}
			}
		}
		if _, err := os.Stat("/run/secrets"); !secretsExisted && len(held["/run/secrets"]) == 0 && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("mount point /run/secrets left after Run returned (%v)", err)
		}
		if _, err := e.nodeNS.Netlink.LinkByName(nodeagent.BridgeName); err == nil {
			t.Errorf("%s left in the node namespace after Run returned", nodeagent.BridgeName)
		}
		if out, err := e.nodeNS.Run(ctx, "iptables-save", "-t", "nat"); err != nil || strings.Contains(string(out), nodeagent.MasqueradeChain) {
			t.Errorf("chain %s left in the node namespace after Run returned (%v):\n%s", nodeagent.MasqueradeChain, err, out)
		}
		if err := nodeagent.Cleanup(ctx, e.stateDir); err != nil {
			t.Fatalf("Cleanup: %v", err)
		}
		if _, err := os.Stat(e.stateDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("state directory left after Cleanup (%v)", err)
		}
		if err := nodeagent.Cleanup(ctx, e.stateDir); err != nil {
			t.Errorf("second Cleanup: %v", err)
		}
	})
}

// podOfThisTest reports whether a pod namespace belongs to a pod of this test's
// API server (other test processes may run pods at the same time).
func podOfThisTest(e *env, netnsName string) bool {
	uid := strings.TrimPrefix(netnsName, nodeagent.PodNetNSPrefix)
	pods, err := e.kube.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return true
	}
	for _, p := range pods.Items {
		if string(p.UID) == uid {
			return true
		}
	}
	return false
}

// procStart returns field 22 (start time) of a /proc/PID/stat line.
func procStart(stat []byte) uint64 {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 20 {
		return 0
	}
	var v uint64
	fmt.Sscanf(f[19], "%d", &v)
	return v
}

// ownCapEff returns this process's effective capabilities: all a privileged
// container can get.
func ownCapEff(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("no CapEff in /proc/self/status")
	return ""
}

// registryHolders reads the machine-wide mount point registry: path -> holders
// ("pid/start").
func registryHolders(t *testing.T) map[string]map[string]bool {
	t.Helper()
	out := map[string]map[string]bool{}
	data, err := os.ReadFile(nodeagent.MountPointRegistry)
	if errors.Is(err, os.ErrNotExist) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	var reg struct {
		Paths map[string]struct {
			Holders []struct {
				PID   int    `json:"pid"`
				Start uint64 `json:"start"`
			} `json:"holders"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(data, &reg); err != nil {
		t.Fatal(err)
	}
	for p, e := range reg.Paths {
		out[p] = map[string]bool{}
		for _, h := range e.Holders {
			out[p][fmt.Sprintf("%d/%d", h.PID, h.Start)] = true
		}
	}
	return out
}
