package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/submariner-go/submariner/e2e/sandbox"
)

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "sandbox",
		Short: "A real multi-cluster Kubernetes on one machine, nodes as network namespaces",
		Long: `sandbox brings up a broker control plane and N clusters (real kube-apiserver,
kube-controller-manager, kube-scheduler and kube-proxy; our node agent in place of the
kubelet; CoreDNS as cluster DNS) on this machine. Nodes are network namespaces; the
fabric between the clusters forwards only gateway-to-gateway traffic, and nothing leaves
the machine. It needs root. See e2e/sandbox/README.md.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newUpCommand(), newSuperviseCommand(), newDownCommand(), newStatusCommand(),
		newKubeconfigCommand(), newExecCommand())
	return root
}

// upOptions are the flags of `sandbox up` and `sandbox supervise`.
type upOptions struct {
	sandbox.Options
}

func newUpOptions() *upOptions { return &upOptions{Options: sandbox.DefaultOptions()} }

// AddFlags registers the options' flags.
func (o *upOptions) AddFlags(fs *pflag.FlagSet) {
	fs.IntVar(&o.Clusters, "clusters", o.Clusters, fmt.Sprintf("number of workload clusters, cluster1...clusterN (1 to %d)", sandbox.MaxClusters))
	fs.IntVar(&o.WorkersPerCluster, "workers-per-cluster", o.WorkersPerCluster, fmt.Sprintf("worker nodes per cluster besides the two gateway nodes (0 to %d)", sandbox.MaxWorkers))
	fs.BoolVar(&o.OverlappingCIDRs, "overlapping-cidrs", o.OverlappingCIDRs, "give every cluster the same pod (10.241.0.0/16) and service (10.141.0.0/16) ranges, as Globalnet tests need")
	fs.StringVar(&o.StateDir, "state-dir", o.StateDir, "directory for certificates, kubeconfigs, logs and process records (new, empty, or an earlier sandbox's)")
	fs.StringVar(&o.BinDir, "bin-dir", o.BinDir, "directory of our binaries from `make build` (default: next to this binary, else _output/bin)")
	fs.BoolVar(&o.WaitForLock, "wait-for-lock", o.WaitForLock, "wait while another sandbox is up on this machine (e.g. a test package's) instead of failing")
	fs.StringVar(&o.K8sBinDir, "k8s-bin-dir", o.K8sBinDir, "directory of etcd and the Kubernetes binaries from `make k8s-bins` (default: ../k8s next to --bin-dir, else _output/k8s)")
}

// Validate checks the flags; see sandbox.Options.Validate.
func (o *upOptions) Validate() error { return o.Options.Validate() }

func newUpCommand() *cobra.Command {
	o := newUpOptions()
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Bring a sandbox up and print where its kubeconfigs are",
		Long: `up starts a detached supervisor that owns every process of the sandbox, waits until
all nodes are Ready, kube-proxy has synced and CoreDNS is available in every cluster, and
prints the kubeconfig of the broker and of each cluster. Only one sandbox can be up on a
machine; up refuses, changing nothing, when one is up, when an earlier one left something
behind, or when not run as root.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := sandbox.RequireRoot(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("finding this binary for the supervisor: %w", err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			errOut := cmd.ErrOrStderr()
			began := time.Now()
			took, err := sandbox.UpDetached(ctx, o.Options, exe, func(step string) {
				fmt.Fprintf(errOut, "[%5.1fs] %s\n", time.Since(began).Seconds(), step)
			})
			if err != nil {
				return err
			}
			return printUp(cmd.OutOrStdout(), o.Options, took)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func printUp(w io.Writer, o sandbox.Options, took time.Duration) error {
	topo, err := sandbox.Plan(o.Clusters, o.WorkersPerCluster, o.OverlappingCIDRs)
	if err != nil {
		return err
	}
	l := sandbox.Layout{Dir: o.StateDir}
	fmt.Fprintf(w, "sandbox is up after %s (state dir %s)\n", took.Round(100*time.Millisecond), o.StateDir)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tAPI SERVER\tKUBECONFIG")
	for _, cp := range topo.ControlPlanes() {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", cp.Name, cp.APIServer(), l.Kubeconfig(cp.Name))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nkubectl: export KUBECONFIG=%s\nthen: sandbox status; sandbox exec CLUSTER NAMESPACE/POD -- CMD...; sandbox down\n",
		l.Kubeconfig(topo.Clusters[0].Name))
	return nil
}

func newSuperviseCommand() *cobra.Command {
	o := newUpOptions()
	cmd := &cobra.Command{
		Use:    "supervise",
		Short:  "Run a sandbox in the foreground (started by `sandbox up`, not by hand)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return sandbox.Supervise(ctx, o.Options)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// stateDirFlag is the --state-dir of the commands that find a running sandbox.
func stateDirFlag(fs *pflag.FlagSet, dir *string) {
	fs.StringVar(dir, "state-dir", "", fmt.Sprintf("the sandbox's state dir (default: the last one brought up on this machine, else %s)", sandbox.DefaultStateDir))
}

func newDownCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Take the sandbox down and remove everything it made",
		Long: `down stops the sandbox's supervisor and then removes whatever is left: processes,
pods, mounts, network namespaces, links, routes, iptables rules and the state dir. It is
safe to run twice and after a crash.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := sandbox.Down(cmd.Context(), dir); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "sandbox is down")
			return nil
		},
	}
	stateDirFlag(cmd.Flags(), &dir)
	return cmd
}

func newStatusCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the sandbox's clusters, their health and its processes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := sandbox.ReadStatus(cmd.Context(), dir)
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), st)
			return nil
		},
	}
	stateDirFlag(cmd.Flags(), &dir)
	return cmd
}

func newKubeconfigCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "kubeconfig CLUSTER",
		Short: "Print the path of a cluster's (or the broker's) administrator kubeconfig",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := kubeconfigOf(dir, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), path)
			return nil
		},
	}
	stateDirFlag(cmd.Flags(), &dir)
	return cmd
}

// kubeconfigOf finds the kubeconfig of a cluster of the sandbox in dir.
func kubeconfigOf(dir, cluster string) (string, error) {
	topo, l, err := sandbox.Describe(dir)
	if err != nil {
		return "", err
	}
	if _, err := topo.ControlPlane(cluster); err != nil {
		return "", err
	}
	return l.Kubeconfig(cluster), nil
}

// execOptions are the arguments and flags of `sandbox exec`.
type execOptions struct {
	stateDir  string
	container string
	stdin     bool

	cluster, namespace, pod string
	command                 []string
}

// AddFlags registers the options' flags.
func (o *execOptions) AddFlags(fs *pflag.FlagSet) {
	stateDirFlag(fs, &o.stateDir)
	fs.StringVarP(&o.container, "container", "c", "", "the container (default: the pod's first)")
	fs.BoolVarP(&o.stdin, "stdin", "i", false, "pass standard input to the command")
}

// Complete parses the positional arguments CLUSTER NAMESPACE/POD -- CMD...
func (o *execOptions) Complete(args []string, dash int) error {
	if dash < 0 || dash != 2 || len(args) < 3 {
		return errors.New("usage: sandbox exec CLUSTER NAMESPACE/POD -- CMD [ARGS...] (the command goes after --)")
	}
	o.cluster = args[0]
	ns, pod, ok := strings.Cut(args[1], "/")
	if !ok || ns == "" || pod == "" || strings.Contains(pod, "/") {
		return fmt.Errorf("pod %q: give it as NAMESPACE/POD, e.g. kube-system/coredns-5d78c9869d-abcde", args[1])
	}
	o.namespace, o.pod = ns, pod
	o.command = args[2:]
	return nil
}

func newExecCommand() *cobra.Command {
	o := &execOptions{}
	cmd := &cobra.Command{
		Use:   "exec CLUSTER NAMESPACE/POD -- CMD [ARGS...]",
		Short: "Run a command in a pod's network namespace and mount view",
		Long: `exec runs a command inside a pod's container, as kubectl exec does (through the API
server's pods/exec and the node agent): the pod's network namespace, its mounts (volumes,
resolv.conf) and the host's binaries, such as dig or nettest. The exit status is the
command's.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(args, cmd.ArgsLenAtDash()); err != nil {
				return err
			}
			path, err := kubeconfigOf(o.stateDir, o.cluster)
			if err != nil {
				return err
			}
			cfg, err := clientcmd.BuildConfigFromFlags("", path)
			if err != nil {
				return fmt.Errorf("loading %s: %w", path, err)
			}
			eo := sandbox.ExecOptions{Container: o.container, Command: o.command, Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr()}
			if o.stdin {
				eo.Stdin = cmd.InOrStdin()
			}
			return sandbox.Exec(cmd.Context(), cfg, o.namespace, o.pod, eo)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}
