package sandbox

import "path/filepath"

// Files of one control plane's directory in the state dir.
const (
	fileCACert          = "ca.crt"
	fileCAKey           = "ca.key"
	fileAPIServerCert   = "apiserver.crt"
	fileAPIServerKey    = "apiserver.key"
	fileKubeletClient   = "apiserver-kubelet-client.crt"
	fileKubeletClientKy = "apiserver-kubelet-client.key"
	fileSAKey           = "sa.key"
	fileSAPub           = "sa.pub"
	fileAdminKubeconfig = "kubeconfig"
	fileKCMKubeconfig   = "controller-manager.kubeconfig"
	fileSchedKubeconfig = "scheduler.kubeconfig"
	fileProxyKubeconfig = "kube-proxy.kubeconfig"
	fileNodeKubeconfig  = "kubeconfig"
	fileNodeServingCert = "kubelet.crt"
	fileNodeServingKey  = "kubelet.key"
)

// Layout names the files of a sandbox under its state dir:
//
//	.submariner-sandbox      marker: the directory is a sandbox's (down removes only such)
//	sandbox.json             options, topology and owner of the running sandbox
//	pids/<process>.json      every process started, with its start time
//	logs/<process>.log       their output; logs/<node>.agent.log the node agents'
//	etcd/                    the shared etcd's data
//	<plane>/                 per control plane (broker, clusterN): CA, certificates,
//	                         ServiceAccount keys, kubeconfig (admin) and the components'
//	<plane>/nodes/<node>/    per node: kubeconfig, kubelet serving cert, agent/ (node agent state)
type Layout struct {
	Dir string
}

// Marker is the file that marks the directory as a sandbox's.
func (l Layout) Marker() string { return filepath.Join(l.Dir, ".submariner-sandbox") }

// StateFile records the running sandbox.
func (l Layout) StateFile() string { return filepath.Join(l.Dir, "sandbox.json") }

// Logs is the directory of the processes' logs.
func (l Layout) Logs() string { return filepath.Join(l.Dir, "logs") }

// Log is the log file of a process.
func (l Layout) Log(name string) string { return filepath.Join(l.Logs(), name+".log") }

// PIDs is the directory of the process records.
func (l Layout) PIDs() string { return filepath.Join(l.Dir, "pids") }

// EtcdData is the shared etcd's data directory.
func (l Layout) EtcdData() string { return filepath.Join(l.Dir, "etcd") }

// Plane is a control plane's directory.
func (l Layout) Plane(name string) string { return filepath.Join(l.Dir, name) }

// PlaneFile is a file of a control plane's directory.
func (l Layout) PlaneFile(plane, file string) string { return filepath.Join(l.Plane(plane), file) }

// Kubeconfig is the administrator's kubeconfig of a control plane.
func (l Layout) Kubeconfig(plane string) string { return l.PlaneFile(plane, fileAdminKubeconfig) }

// Node is a node's directory.
func (l Layout) Node(n Node) string { return filepath.Join(l.Plane(n.Cluster), "nodes", n.Name) }

// AgentState is the node agent's state directory of a node.
func (l Layout) AgentState(n Node) string { return filepath.Join(l.Node(n), "agent") }
