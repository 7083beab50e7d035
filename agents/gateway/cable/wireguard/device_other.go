//go:build !linux

package wireguard

import (
	"errors"

	"github.com/go-logr/logr"

	"github.com/submariner-go/submariner/agents/gateway/cable"
)

var errNotLinux = errors.New("the wireguard cable driver runs on Linux only")

func newKernelDevice(*cable.Host, string, int) (Device, error) { return nil, errNotLinux }

func newUserspaceDevice(*cable.Host, string, int, string, logr.Logger) (Device, error) {
	return nil, errNotLinux
}

func deleteLink(*cable.Host, string) error { return errNotLinux }
