// Command gateway is the gateway (image submariner-gateway): it runs on the nodes
// labelled submariner.io/gateway=true, elects the cluster's active gateway and
// keeps its tunnels to the other clusters. The logic is in package agents/gateway;
// `gateway --help` lists the flags.
package main

import (
	"os"

	"github.com/submariner-go/submariner/agents/component"
	"github.com/submariner-go/submariner/agents/gateway"

	// The cable drivers register themselves.
	_ "github.com/submariner-go/submariner/agents/gateway/cable/libreswan"
	_ "github.com/submariner-go/submariner/agents/gateway/cable/vxlan"
	_ "github.com/submariner-go/submariner/agents/gateway/cable/wireguard"
)

func main() {
	component.Main(func() error { return gateway.Main(os.Args[1:], os.Stdout) })
}
