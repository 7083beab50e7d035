// Package gatewaytest holds the tests that run whole gateways (leader election,
// Endpoint publishing through the syncer, the cable engine with a real cable
// driver, the health checker and the Gateway status) against real API servers,
// each gateway in the network namespace of its node. They need root and the
// Kubernetes binaries of `make k8s-bins`, and skip, saying so, without them.
//
// They live apart from package gateway because they link the real cable drivers,
// whose registrations would clash with the fakes that package's tests register.
package gatewaytest
