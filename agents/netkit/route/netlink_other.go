//go:build !linux

package route

import (
	"context"
	"errors"

	"github.com/vishvananda/netlink"
)

// Netlink is only implemented on Linux.
type Netlink struct{}

// New returns a Netlink whose methods fail with errors.ErrUnsupported.
func New(*netlink.Handle, Protocol) *Netlink { return &Netlink{} }

// Apply implements Interface.
func (*Netlink) Apply(context.Context, State) error { return errors.ErrUnsupported }

// Flush implements Interface.
func (*Netlink) Flush(context.Context) error { return errors.ErrUnsupported }

// State reads back the owner's routes and rules.
func (*Netlink) State(context.Context) (State, error) { return State{}, errors.ErrUnsupported }
