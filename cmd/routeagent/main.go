// Command routeagent is the route agent (image submariner-route-agent): it runs on
// every node and points the node's traffic for remote clusters at the active
// gateway. The logic is in package agents/routeagent; `routeagent --help` lists
// the flags.
package main

import (
	"os"

	"github.com/submariner-go/submariner/agents/component"
	"github.com/submariner-go/submariner/agents/routeagent"
)

func main() {
	component.Main(func() error { return routeagent.Main(os.Args[1:], os.Stdout) })
}
