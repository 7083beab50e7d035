// Package commands is subctl's command tree (cobra). Each command parses its flags
// into the options struct of the package that implements it, validates them before
// anything is contacted or changed, and runs it with a context that ends on
// SIGINT/SIGTERM or after --timeout.
package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/submariner-go/submariner/agents/component"
	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/subctl/broker"
	"github.com/submariner-go/submariner/subctl/cluster"
	"github.com/submariner-go/submariner/subctl/export"
	"github.com/submariner-go/submariner/subctl/join"
	"github.com/submariner-go/submariner/subctl/progress"
	"github.com/submariner-go/submariner/subctl/show"
	"github.com/submariner-go/submariner/subctl/uninstall"
)

// DefaultTimeout bounds a whole command unless --timeout says otherwise.
const DefaultTimeout = 10 * time.Minute

// New returns the root command, printing to out.
func New(out io.Writer) *cobra.Command {
	var timeout time.Duration
	root := &cobra.Command{
		Use:   "subctl",
		Short: "Connect Kubernetes clusters into a clusterset: deploy a broker, join clusters, export services",
		Long: `subctl deploys a broker, joins clusters to it, exports services across the clusterset,
shows its state and uninstalls. See docs/subctl.md.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(out)
	root.PersistentFlags().DurationVar(&timeout, "timeout", DefaultTimeout, "give up on the command after this long")
	ctxOf := func(cmd *cobra.Command) (context.Context, context.CancelFunc) {
		ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
		ctx, cancel := context.WithTimeout(ctx, timeout)
		return ctx, func() { cancel(); stop() }
	}
	rep := func() *progress.Reporter { return progress.New(out) }

	root.AddCommand(
		deployBrokerCmd(ctxOf, rep),
		joinCmd(ctxOf, rep),
		uninstallCmd(ctxOf, rep),
		showCmd(ctxOf),
		exportCmd(ctxOf, true),
		exportCmd(ctxOf, false),
		&cobra.Command{
			Use:   "version",
			Short: "Print subctl's version",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "subctl %s\n", component.Version)
				return err
			},
		},
	)
	return root
}

type ctxFunc func(*cobra.Command) (context.Context, context.CancelFunc)

func deployBrokerCmd(ctxOf ctxFunc, rep func() *progress.Reporter) *cobra.Command {
	o := &broker.Options{}
	cmd := &cobra.Command{
		Use:   "deploy-broker",
		Short: "Make a Kubernetes API server the clusterset's broker and write broker-info.subm",
		Long: `deploy-broker installs the CRDs, the namespace submariner-k8s-broker, the RBAC and the
admission policies that keep every cluster to its own objects, creates the IPsec
pre-shared key and the Globalnet settings, and writes broker-info.subm, the secret
that lets clusters join (docs/broker-info.md). Running it again keeps the key and the
settings and writes a fresh file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			ctx, cancel := ctxOf(cmd)
			defer cancel()
			return o.Run(ctx, rep())
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func joinCmd(ctxOf ctxFunc, rep func() *progress.Reporter) *cobra.Command {
	o := &join.Options{}
	cmd := &cobra.Command{
		Use:   "join BROKER-INFO --clusterid ID",
		Short: "Join a cluster to the clusterset of the broker in BROKER-INFO",
		Long: `join checks the cluster's CIDRs (discovered when not given) against the clusters already
joined, creates the cluster's identity on the broker, installs the CRDs and the
components, makes the cluster's CoreDNS forward clusterset.local and publishes the
cluster. Everything is checked before anything changes. Running join again with the
same settings changes nothing; with new settings it updates the cluster.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.BrokerInfo = args[0]
			// VXLAN cannot cross NAT, so with it --natt defaults to false.
			if !cmd.Flags().Changed("natt") && o.CableDriver == string(submv1.BackendVXLAN) {
				o.NATT = false
			}
			if err := o.Validate(); err != nil {
				return err
			}
			ctx, cancel := ctxOf(cmd)
			defer cancel()
			return o.Run(ctx, rep())
		},
	}
	o.AddFlags(cmd.Flags(), component.Version)
	return cmd
}

func uninstallCmd(ctxOf ctxFunc, rep func() *progress.Reporter) *cobra.Command {
	o := &uninstall.Options{}
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove the clusterset's components from a cluster and the cluster from the broker",
		Long: `uninstall runs the components' cleanup mode on every node first, so that no kernel state
is left behind, then removes the components, the cluster's objects and identity on the
broker, the CoreDNS forwarding, the gateway labels join added, the namespace and the
CRDs (kept when this cluster also hosts the broker).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			ctx, cancel := ctxOf(cmd)
			defer cancel()
			return o.Run(ctx, rep())
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func showCmd(ctxOf ctxFunc) *cobra.Command {
	var copts cluster.Options
	var format string
	run := func(what show.What) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, _ []string) error {
			f, err := show.ParseFormat(format)
			if err != nil {
				return err
			}
			if err := copts.Validate(); err != nil {
				return err
			}
			c, err := copts.Connect()
			if err != nil {
				return err
			}
			ctx, cancel := ctxOf(cmd)
			defer cancel()
			r, err := show.Collect(ctx, c, what)
			if err != nil {
				return err
			}
			return r.Write(cmd.OutOrStdout(), f)
		}
	}
	cmd := &cobra.Command{
		Use:   "show [networks|endpoints|connections|gateways|versions|globalnet|all]",
		Short: "Show the clusterset as this cluster sees it",
		Args:  cobra.NoArgs,
		RunE:  run(show.All),
	}
	copts.AddFlags(cmd.PersistentFlags(), "the cluster's")
	cmd.PersistentFlags().StringVarP(&format, "output", "o", string(show.Table), "output format: table, json or yaml")
	short := map[show.What]string{
		show.Networks:    "Show every cluster's Pod, Service and global CIDRs",
		show.Endpoints:   "Show the clusters' gateway endpoints",
		show.Connections: "Show the active gateway's tunnels to the other clusters",
		show.Gateways:    "Show the gateway nodes and their HA status",
		show.Versions:    "Show the components' configured and running images",
		show.Globalnet:   "Show the global IPs in use (Globalnet)",
		show.All:         "Show all of the above (globalnet when the cluster runs Globalnet)",
	}
	for _, w := range append(append([]show.What{}, show.Whats...), show.Globalnet, show.All) {
		cmd.AddCommand(&cobra.Command{Use: string(w), Short: short[w], Args: cobra.NoArgs, RunE: run(w)})
	}
	return cmd
}

func exportCmd(ctxOf ctxFunc, exporting bool) *cobra.Command {
	var copts cluster.Options
	var namespace string
	verb, short := "export", "Export a Service to the clusterset (create its ServiceExport)"
	if !exporting {
		verb, short = "unexport", "Stop exporting a Service (delete its ServiceExport)"
	}
	cmd := &cobra.Command{Use: verb, Short: short}
	svc := &cobra.Command{
		Use:   "service NAME",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := errors.Join(export.Validate(name, namespace), copts.Validate()); err != nil {
				return err
			}
			c, err := copts.Connect()
			if err != nil {
				return err
			}
			ctx, cancel := ctxOf(cmd)
			defer cancel()
			out := cmd.OutOrStdout()
			if exporting {
				created, err := export.Export(ctx, c, namespace, name)
				if err != nil {
					return err
				}
				if created {
					fmt.Fprintf(out, "✓ Service %s/%s exported\n", namespace, name)
				} else {
					fmt.Fprintf(out, "✓ Service %s/%s was exported already\n", namespace, name)
				}
				return nil
			}
			deleted, err := export.Unexport(ctx, c, namespace, name)
			if err != nil {
				return err
			}
			if deleted {
				fmt.Fprintf(out, "✓ Service %s/%s unexported\n", namespace, name)
			} else {
				fmt.Fprintf(out, "✓ Service %s/%s was not exported\n", namespace, name)
			}
			return nil
		},
	}
	copts.AddFlags(svc.Flags(), "the cluster's")
	svc.Flags().StringVarP(&namespace, "namespace", "n", "default", "the Service's namespace")
	cmd.AddCommand(svc)
	return cmd
}
