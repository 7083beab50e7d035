package routeagent

import (
	"fmt"
	"os"
	"testing"

	"github.com/go-logr/logr/funcr"
	ctrl "sigs.k8s.io/controller-runtime"
)

// agentProcessEnv, set in a test binary's environment, makes it run the route
// agent's Main with its arguments instead of the tests: the privileged tests start
// the real agent this way, inside the nodes' network namespaces.
const agentProcessEnv = "ROUTEAGENT_TEST_RUN_AGENT"

func TestMain(m *testing.M) {
	if os.Getenv(agentProcessEnv) != "" {
		if err := Main(os.Args[1:], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	// controller-runtime's packages log through its global logger; tests log what
	// they need through their own.
	ctrl.SetLogger(funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) }, funcr.Options{}))
	os.Exit(m.Run())
}
