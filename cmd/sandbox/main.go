// Command sandbox runs a real multi-cluster Kubernetes on one machine: a broker and
// N clusters whose nodes are network namespaces (see e2e/sandbox/README.md).
//
//	sandbox up [--clusters N] [--workers-per-cluster N] [--overlapping-cidrs] [--state-dir DIR]
//	sandbox status | sandbox kubeconfig CLUSTER | sandbox exec CLUSTER NAMESPACE/POD -- CMD...
//	sandbox down
package main

import (
	"errors"
	"fmt"
	"os"

	utilexec "k8s.io/client-go/util/exec"

	"github.com/submariner-go/submariner/e2e/sandbox/nodeagent"
)

func main() {
	// The node agents re-execute this binary as their container shim.
	nodeagent.Init()
	if err := newRootCommand().Execute(); err != nil {
		var exit utilexec.ExitError
		if errors.As(err, &exit) {
			os.Exit(exit.ExitStatus())
		}
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
