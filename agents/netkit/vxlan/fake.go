package vxlan

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/submariner-go/submariner/agents/netkit/route"
)

// Fake is an in-memory Interface: it validates states as Netlink does, keeps each
// device with its FDB entries and the owner's routes and rules, and records what it
// created and replaced.
type Fake struct {
	mu      sync.Mutex
	devices map[string]State
	routes  route.State
	events  []string
}

// NewFake returns a Fake with no devices.
func NewFake() *Fake { return &Fake{devices: map[string]State{}} }

// Apply implements Interface.
func (f *Fake) Apply(_ context.Context, s State) error {
	if err := s.Validate(); err != nil {
		return fmt.Errorf("refusing vxlan state: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	name := s.Device.Name
	if have, ok := f.devices[name]; !ok {
		f.events = append(f.events, "create "+name)
	} else if reason := s.Device.incompatibleWith(have.Device); reason != "" {
		f.events = append(f.events, "replace "+name+": "+reason)
	}
	d := s.Device
	d.MAC = d.mac()
	f.devices[name] = State{Device: d, FDB: State{FDB: s.FDB}.fdb()}
	f.routes = route.State{Routes: slices.Clone(s.Routes), Rules: slices.Clone(s.Rules)}
	return nil
}

// Delete implements Interface.
func (f *Fake) Delete(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.devices[name]; ok {
		f.events = append(f.events, "delete "+name)
		delete(f.devices, name)
	}
	f.routes = route.State{}
	return nil
}

// Events returns what the fake did to devices: "create NAME", "replace NAME: why",
// "delete NAME".
func (f *Fake) Events() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events)
}

// String renders every device (sorted by name) and the owner's routes and rules in
// the canonical form of State.String.
func (f *Fake) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	names := make([]string, 0, len(f.devices))
	for n := range f.devices {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		b.WriteString(f.devices[n].String())
	}
	b.WriteString(f.routes.String())
	return b.String()
}
