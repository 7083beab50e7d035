// Command lighthouse-agent is the lighthouse agent (image
// submariner-lighthouse-agent): it turns the cluster's ServiceExports into
// ServiceImports and EndpointSlices on the broker and brings the clusterset's
// into the cluster, for the lighthouse CoreDNS plugin. The logic is in package
// agents/lighthouse; `lighthouse-agent --help` lists the flags.
package main

import (
	"os"

	"github.com/submariner-go/submariner/agents/component"
	"github.com/submariner-go/submariner/agents/lighthouse"
)

func main() {
	component.Main(func() error { return lighthouse.Main(os.Args[1:], os.Stdout) })
}
