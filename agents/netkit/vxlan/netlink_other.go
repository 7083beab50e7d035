//go:build !linux

package vxlan

import (
	"context"
	"errors"

	"github.com/vishvananda/netlink"

	"github.com/submariner-go/submariner/agents/netkit/route"
)

// Netlink is only implemented on Linux.
type Netlink struct{}

// New returns a Netlink whose methods fail with errors.ErrUnsupported.
func New(*netlink.Handle, route.Protocol) *Netlink { return &Netlink{} }

// Apply implements Interface.
func (*Netlink) Apply(context.Context, State) error { return errors.ErrUnsupported }

// Delete implements Interface.
func (*Netlink) Delete(context.Context, string) error { return errors.ErrUnsupported }

// State reads back the overlay.
func (*Netlink) State(context.Context, string) (State, error) { return State{}, errors.ErrUnsupported }
