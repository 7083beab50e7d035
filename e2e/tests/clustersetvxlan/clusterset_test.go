// Package clustersetvxlan_test holds the end-to-end test of a whole clusterset in
// the sandbox with the vxlan cable driver (clustersettest.Clusterset), in a
// sandbox of its own. Libreswan needs the kernel's ESP, which the test machines
// lack; agents/gateway/cable/libreswan tests it as far as the kernel allows.
package clustersetvxlan_test

import (
	"testing"

	"github.com/submariner-go/submariner/e2e/clustersettest"
	"github.com/submariner-go/submariner/e2e/sandbox"
	"github.com/submariner-go/submariner/e2e/sandbox/sandboxtest"
)

func TestMain(m *testing.M) {
	sandboxtest.Main(m, sandbox.DefaultOptions())
}

func TestClusterset(t *testing.T) { clustersettest.Clusterset(t, "vxlan") }

// BenchmarkThroughput: iperf3 through the vxlan tunnel against the same
// clusters' gateway nodes without it.
//
// Run: go test ./e2e/tests/clustersetvxlan -run '^$' -bench Throughput -benchtime 1x
func BenchmarkThroughput(b *testing.B) { clustersettest.Throughput(b, "vxlan") }
