// Package clusterset_test holds the end-to-end test of a whole clusterset in the
// sandbox with the wireguard cable driver (clustersettest.Clusterset), and the
// failover benchmark. One sandbox serves the package (TestMain).
package clusterset_test

import (
	"testing"

	"github.com/submariner-go/submariner/e2e/clustersettest"
	"github.com/submariner-go/submariner/e2e/sandbox"
	"github.com/submariner-go/submariner/e2e/sandbox/sandboxtest"
)

func TestMain(m *testing.M) {
	sandboxtest.Main(m, sandbox.DefaultOptions())
}

func TestClusterset(t *testing.T) { clustersettest.Clusterset(t, "wireguard") }
