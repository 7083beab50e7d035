//go:build !linux

package routeagent

import (
	"errors"
)

// HostKernel fails: the route agent drives Linux's network stack.
func HostKernel() (Kernel, error) {
	return Kernel{}, errors.New("the route agent runs on Linux only")
}
