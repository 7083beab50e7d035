// Command subctl deploys the clusterset's broker, joins clusters to it, exports
// services, shows the clusterset's state and uninstalls (docs/subctl.md).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/submariner-go/submariner/subctl/commands"
)

func main() {
	if err := commands.New(os.Stdout).ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}
