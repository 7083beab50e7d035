// Package integration holds subctl's integration tests: deploy-broker, join, show,
// export and uninstall run through the command line against real API servers (a
// broker and two clusters started with e2e/controlplane).
package integration
