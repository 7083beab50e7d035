// Command globalnet is Globalnet (image submariner-globalnet): on the active gateway
// node of a cluster with Globalnet it allocates global IPs from the cluster's global
// CIDR and writes the NAT rules that let clusters with overlapping CIDRs connect. The
// logic is in package agents/globalnet; `globalnet --help` lists the flags.
package main

import (
	"os"

	"github.com/submariner-go/submariner/agents/component"
	"github.com/submariner-go/submariner/agents/globalnet"
)

func main() {
	component.Main(func() error { return globalnet.Main(os.Args[1:], os.Stdout) })
}
