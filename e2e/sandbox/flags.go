package sandbox

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
)

// Names of the Kubernetes binaries in Options.K8sBinDir (`make k8s-bins`).
const (
	binEtcd              = "etcd"
	binAPIServer         = "kube-apiserver"
	binControllerManager = "kube-controller-manager"
	binScheduler         = "kube-scheduler"
	binKubeProxy         = "kube-proxy"
)

// k8sBinaries are the binaries the sandbox needs from `make k8s-bins`.
var k8sBinaries = []string{binEtcd, binAPIServer, binControllerManager, binScheduler, binKubeProxy}

// serviceAccountIssuer is every cluster's ServiceAccount token issuer, as kubeadm sets it.
const serviceAccountIssuer = "https://kubernetes.default.svc." + ClusterDomain

// procSpec is one process the supervisor runs: pure data, rendered by the functions
// below and golden-tested.
type procSpec struct {
	// Name identifies the process in logs/ and pids/ ("etcd", "cluster1-apiserver").
	Name string
	// Stage groups the processes that stop together (see stopOrder).
	Stage string
	// Path and Args are the command line.
	Path string
	Args []string
}

// Stages of the processes, in the order they stop: clients before their servers.
const (
	stageKubeProxy         = "kube-proxy"
	stageScheduler         = "scheduler"
	stageControllerManager = "controller-manager"
	stageAPIServer         = "apiserver"
	stageEtcd              = "etcd"
)

var stopOrder = []string{stageKubeProxy, stageScheduler, stageControllerManager, stageAPIServer, stageEtcd}

// String renders the command line, for logs and golden tests.
func (p procSpec) String() string {
	return strings.Join(append([]string{p.Path}, p.Args...), " ")
}

func etcdSpec(l Layout, k8sBin string) procSpec {
	client := fmt.Sprintf("http://127.0.0.1:%d", EtcdClientPort)
	peer := fmt.Sprintf("http://127.0.0.1:%d", EtcdPeerPort)
	return procSpec{
		Name:  "etcd",
		Stage: stageEtcd,
		Path:  filepath.Join(k8sBin, binEtcd),
		Args: []string{
			"--name=sandbox",
			"--data-dir=" + l.EtcdData(),
			"--listen-client-urls=" + client,
			"--advertise-client-urls=" + client,
			"--listen-peer-urls=" + peer,
			"--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=sandbox=" + peer,
			"--initial-cluster-state=new",
			// The sandbox is disposable: losing the last writes on a machine crash
			// costs nothing, and fsync on shared CI disks costs seconds.
			"--unsafe-no-fsync=true",
			"--log-level=warn",
		},
	}
}

func apiServerSpec(l Layout, k8sBin string, cp ControlPlane) procSpec {
	f := func(name string) string { return l.PlaneFile(cp.Name, name) }
	return procSpec{
		Name:  cp.Name + "-apiserver",
		Stage: stageAPIServer,
		Path:  filepath.Join(k8sBin, binAPIServer),
		Args: []string{
			"--advertise-address=" + RootAddr.Addr().String(),
			"--allow-privileged=true",
			"--authorization-mode=Node,RBAC",
			"--bind-address=" + RootAddr.Addr().String(),
			"--cert-dir=" + l.Plane(cp.Name),
			"--client-ca-file=" + f(fileCACert),
			"--enable-admission-plugins=NodeRestriction",
			"--etcd-prefix=/sandbox/" + cp.Name,
			fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", EtcdClientPort),
			"--kubelet-certificate-authority=" + f(fileCACert),
			"--kubelet-client-certificate=" + f(fileKubeletClient),
			"--kubelet-client-key=" + f(fileKubeletClientKy),
			"--kubelet-preferred-address-types=InternalIP",
			"--profiling=false",
			fmt.Sprintf("--secure-port=%d", cp.APIPort),
			"--service-account-issuer=" + serviceAccountIssuer,
			"--service-account-key-file=" + f(fileSAPub),
			"--service-account-signing-key-file=" + f(fileSAKey),
			"--service-cluster-ip-range=" + cp.ServiceCIDR.String(),
			"--tls-cert-file=" + f(fileAPIServerCert),
			"--tls-private-key-file=" + f(fileAPIServerKey),
		},
	}
}

// controllerManagerSpec runs every default controller, the broker's included (it
// needs the serviceaccount-token, namespace and garbage-collector controllers for
// the clusters' identities). Node CIDRs are not allocated: the node agents set them.
func controllerManagerSpec(l Layout, k8sBin string, cp ControlPlane, podCIDR netip.Prefix) procSpec {
	f := func(name string) string { return l.PlaneFile(cp.Name, name) }
	args := []string{
		"--allocate-node-cidrs=false",
	}
	if podCIDR.IsValid() {
		args = append(args, "--cluster-cidr="+podCIDR.String())
	}
	args = append(args,
		"--cluster-name="+cp.Name,
		"--cluster-signing-cert-file="+f(fileCACert),
		"--cluster-signing-key-file="+f(fileCAKey),
		"--controllers=*",
		"--kubeconfig="+f(fileKCMKubeconfig),
		"--leader-elect=false",
		"--profiling=false",
		"--root-ca-file="+f(fileCACert),
		"--secure-port=0",
		"--service-account-private-key-file="+f(fileSAKey),
		"--service-cluster-ip-range="+cp.ServiceCIDR.String(),
		"--use-service-account-credentials=true",
	)
	return procSpec{Name: cp.Name + "-controller-manager", Stage: stageControllerManager, Path: filepath.Join(k8sBin, binControllerManager), Args: args}
}

func schedulerSpec(l Layout, k8sBin string, cp ControlPlane) procSpec {
	return procSpec{
		Name:  cp.Name + "-scheduler",
		Stage: stageScheduler,
		Path:  filepath.Join(k8sBin, binScheduler),
		Args: []string{
			"--kubeconfig=" + l.PlaneFile(cp.Name, fileSchedKubeconfig),
			"--leader-elect=false",
			"--profiling=false",
			"--secure-port=0",
		},
	}
}

// kubeProxySpec runs kube-proxy in iptables mode inside the node's network
// namespace through `ip netns exec` (which execs, so the PID is kube-proxy's, and
// gives it the node's /sys). The conntrack settings leave the kernel's values
// alone: nf_conntrack_max is machine-wide, and the sandbox must not change the
// machine it runs on.
func kubeProxySpec(l Layout, k8sBin string, c Cluster, n Node) procSpec {
	return procSpec{
		Name:  n.Name + "-kube-proxy",
		Stage: stageKubeProxy,
		Path:  "ip",
		Args: []string{
			"netns", "exec", n.NetNS,
			filepath.Join(k8sBin, binKubeProxy),
			"--cluster-cidr=" + c.PodCIDR.String(),
			"--conntrack-max-per-core=0",
			"--conntrack-tcp-timeout-close-wait=0s",
			"--conntrack-tcp-timeout-established=0s",
			fmt.Sprintf("--healthz-bind-address=0.0.0.0:%d", KubeProxyHealthPort),
			"--hostname-override=" + n.Name,
			"--kubeconfig=" + l.PlaneFile(c.Name, fileProxyKubeconfig),
			"--metrics-bind-address=127.0.0.1:10249",
			"--proxy-mode=iptables",
		},
	}
}
