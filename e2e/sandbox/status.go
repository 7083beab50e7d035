package sandbox

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Status describes a sandbox from its state dir and its API servers.
type Status struct {
	StateDir string
	// Running reports whether the sandbox's owner process is alive.
	Running bool
	// Ready reports whether Up completed.
	Ready bool
	Owner int
	// Topology is the address plan.
	Topology Topology
	// Processes are the supervised processes, sorted by name.
	Processes []ProcessStatus
	// Planes are the broker and the clusters.
	Planes []PlaneStatus
}

// ProcessStatus is one supervised process.
type ProcessStatus struct {
	Name     string
	PID      int
	Alive    bool
	Restarts int
}

// PlaneStatus is one control plane as its API server reports it.
type PlaneStatus struct {
	Name       string
	APIServer  string
	Kubeconfig string
	// Healthy reports whether /readyz answered ok; Problem says why not.
	Healthy bool
	Problem string
	// Nodes and NodesReady count the Nodes (clusters only).
	Nodes, NodesReady int
}

// ReadStatus reports on the sandbox in stateDir ("" means the last one brought up,
// else DefaultStateDir). Without a sandbox there it fails saying so.
func ReadStatus(ctx context.Context, stateDir string) (*Status, error) {
	if stateDir == "" {
		stateDir = orDefault(LastStateDir(), DefaultStateDir)
	}
	l := Layout{Dir: stateDir}
	st, err := readState(l)
	if err != nil {
		return nil, fmt.Errorf("no sandbox in %s (%v): bring one up with `sandbox up`", stateDir, err)
	}
	s := &Status{StateDir: stateDir, Running: st.Owner.Alive(), Ready: st.Ready, Owner: st.Owner.PID, Topology: st.Topology}
	recs, err := readRecords(l.PIDs())
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		s.Processes = append(s.Processes, ProcessStatus{Name: r.Name, PID: r.PID, Alive: r.Alive(), Restarts: r.Restarts})
	}
	for _, cp := range st.Topology.ControlPlanes() {
		ps := PlaneStatus{Name: cp.Name, APIServer: cp.APIServer(), Kubeconfig: l.Kubeconfig(cp.Name)}
		ps.Healthy, ps.Problem, ps.Nodes, ps.NodesReady = probePlane(ctx, ps.Kubeconfig)
		s.Planes = append(s.Planes, ps)
	}
	return s, nil
}

func probePlane(ctx context.Context, kubeconfig string) (healthy bool, problem string, nodes, ready int) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return false, err.Error(), 0, 0
	}
	cfg.Timeout = 5 * time.Second
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return false, err.Error(), 0, 0
	}
	if body, err := kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err != nil {
		return false, strings.TrimSpace(fmt.Sprintf("%v %s", err, body)), 0, 0
	}
	list, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return true, err.Error(), 0, 0
	}
	for _, n := range list.Items {
		for _, c := range n.Status.Conditions {
			if c.Type == "Ready" && c.Status == "True" {
				ready++
			}
		}
	}
	return true, "", len(list.Items), ready
}

// String renders the status as the CLI prints it.
func (s *Status) String() string {
	var b strings.Builder
	state := "not running (its owner is gone: `sandbox down` cleans up)"
	if s.Running && s.Ready {
		state = fmt.Sprintf("up (owner pid %d)", s.Owner)
	} else if s.Running {
		state = fmt.Sprintf("coming up (owner pid %d)", s.Owner)
	}
	fmt.Fprintf(&b, "sandbox %s: %s\n\n", s.StateDir, state)
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CLUSTER\tAPI SERVER\tHEALTHY\tNODES READY\tKUBECONFIG")
	for _, p := range s.Planes {
		health := "yes"
		if !p.Healthy {
			health = "no: " + p.Problem
		}
		nodes := "-"
		if p.Name != BrokerName {
			nodes = fmt.Sprintf("%d/%d", p.NodesReady, p.Nodes)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", p.Name, p.APIServer, health, nodes, p.Kubeconfig)
	}
	w.Flush()
	b.WriteString("\n")
	w = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "PROCESS\tPID\tRUNNING\tRESTARTS")
	for _, p := range s.Processes {
		fmt.Fprintf(w, "%s\t%d\t%t\t%d\n", p.Name, p.PID, p.Alive, p.Restarts)
	}
	w.Flush()
	return b.String()
}

// Describe returns the topology and file layout of the sandbox in stateDir ("":
// the last one brought up, else DefaultStateDir), from its state file alone.
func Describe(stateDir string) (Topology, Layout, error) {
	if stateDir == "" {
		stateDir = orDefault(LastStateDir(), DefaultStateDir)
	}
	l := Layout{Dir: stateDir}
	st, err := readState(l)
	if err != nil {
		return Topology{}, l, fmt.Errorf("no sandbox in %s (%v): bring one up with `sandbox up`", stateDir, err)
	}
	return st.Topology, l, nil
}
