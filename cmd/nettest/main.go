// Command nettest is our test workload: `nettest serve` answers TCP, UDP and HTTP
// with a line naming its pod, pod IP and client; `nettest connect` is the client;
// `nettest ips` lists the pod's addresses. The README beside this file documents
// the contract; the logic is in package e2e/nettest.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/submariner-go/submariner/e2e/nettest"
)

// Exit statuses.
const (
	exitFailure = 1 // the exchange or the server failed
	exitUsage   = 2 // bad flags or arguments
)

// usageError marks errors in the command line.
type usageError struct{ error }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := newCommand(os.Stdout, os.Stderr).ExecuteContext(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "nettest: %v\n", err)
		if errors.As(err, new(usageError)) {
			os.Exit(exitUsage)
		}
		os.Exit(exitFailure)
	}
}

// noArgs refuses positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("%s takes flags, not arguments: got %q (see --help)", cmd.CommandPath(), args)}
	}
	return nil
}

func newCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "nettest",
		Short:         "Test workload: TCP, UDP and HTTP echo server and client",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// Without a subcommand: help; with an unknown one: a usage error.
	root.Args = cobra.ArbitraryArgs
	root.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return usageError{errors.New("give a command: serve, connect or ips (see --help)")}
		}
		return usageError{fmt.Errorf("unknown command %q: give serve, connect or ips (see --help)", args[0])}
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })

	serve := nettest.NewServeOptions()
	serveCmd := &cobra.Command{
		Use:   "serve",
		Short: "Answer TCP, UDP and HTTP with `pod=NAME ip=IP client=IP:PORT` until SIGTERM",
		Long: "serve answers each TCP connection, UDP datagram and HTTP GET with one line\n" +
			"`pod=<POD_NAME> ip=<POD_IP> client=<client IP:port>`; TCP then echoes its input until\n" +
			"the client closes. It logs `accepted tcp from`, `udp from` and `http from` lines to\n" +
			"stdout. POD_NAME and POD_IP come from the environment, else the hostname and the\n" +
			"first non-loopback IPv4 address.",
		Args: noArgs,
		PreRunE: func(*cobra.Command, []string) error {
			if err := serve.Validate(); err != nil {
				return usageError{err}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			id, err := nettest.DetectIdentity()
			if err != nil {
				return err
			}
			s, err := nettest.Listen(serve.Config(id, cmd.OutOrStdout()))
			if err != nil {
				return err
			}
			return s.Serve(cmd.Context())
		},
	}
	serve.AddFlags(serveCmd.Flags())

	connect := nettest.NewConnectOptions()
	connectCmd := &cobra.Command{
		Use:   "connect (--tcp HOST:PORT | --udp HOST:PORT | --http URL)",
		Short: "Make one exchange with a server and print its reply; fail with the reason",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := connect.Config(cmd.ErrOrStderr())
			if err != nil {
				return usageError{err}
			}
			return nettest.Connect(cmd.Context(), cfg, cmd.OutOrStdout())
		},
	}
	connect.AddFlags(connectCmd.Flags())

	ips := &nettest.IPsOptions{}
	ipsCmd := &cobra.Command{
		Use:   "ips",
		Short: "Print the pod's addresses, one `IFACE ADDR/LEN` per line",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			addrs, err := nettest.Addresses(ips.All)
			if err != nil {
				return err
			}
			for _, a := range addrs {
				fmt.Fprintln(cmd.OutOrStdout(), a)
			}
			return nil
		},
	}
	ips.AddFlags(ipsCmd.Flags())

	root.AddCommand(serveCmd, connectCmd, ipsCmd)
	return root
}
