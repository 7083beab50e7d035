// Package e2e holds subctl's sandbox tests: deploy-broker and join against the
// sandbox's real multi-cluster Kubernetes (package e2e/sandbox), where the real
// DaemonSet controller, scheduler and node agents place and run the components.
package e2e
