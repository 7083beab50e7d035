// Package fake is a recording cable driver for tests of the gateway engine: it
// keeps the tunnels it was asked for, records every call as a line of text, and
// fails or reports the states a test sets.
package fake

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/submariner-go/submariner/agents/gateway/cable"
	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// Driver is an in-memory cable.Driver.
type Driver struct {
	backend submv1.Backend

	mu       sync.Mutex
	inited   bool
	closed   bool
	tunnels  map[string]cable.Tunnel
	events   []string
	failInit error
	failOn   map[string]error // remote cable name -> Connect error
	states   map[string]cable.Status
	config   map[string]string
}

var _ cable.Driver = (*Driver)(nil)

// New returns a fake driver that calls itself backend.
func New(backend submv1.Backend) *Driver {
	return &Driver{
		backend: backend,
		tunnels: map[string]cable.Tunnel{},
		failOn:  map[string]error{},
		states:  map[string]cable.Status{},
		config:  map[string]string{},
	}
}

// Backend implements cable.Driver.
func (d *Driver) Backend() submv1.Backend { return d.backend }

// Init implements cable.Driver; it fails with the error FailInit set.
func (d *Driver) Init(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failInit != nil {
		d.events = append(d.events, "init failed: "+d.failInit.Error())
		return d.failInit
	}
	d.inited = true
	d.events = append(d.events, "init")
	return nil
}

// BackendConfig implements cable.Driver.
func (d *Driver) BackendConfig() map[string]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return maps.Clone(d.config)
}

// Connect implements cable.Driver; it fails for the cables FailConnect names.
func (d *Driver) Connect(_ context.Context, t cable.Tunnel) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.usable(); err != nil {
		return err
	}
	if err := d.failOn[t.Remote.CableName]; err != nil {
		d.events = append(d.events, fmt.Sprintf("connect %s failed: %v", t.Remote.CableName, err))
		return err
	}
	verb := "connect"
	if _, ok := d.tunnels[t.Remote.CableName]; ok {
		verb = "update"
	}
	d.tunnels[t.Remote.CableName] = t
	d.events = append(d.events, fmt.Sprintf("%s %s", verb, describe(t)))
	return nil
}

// Disconnect implements cable.Driver.
func (d *Driver) Disconnect(_ context.Context, remote cable.Endpoint) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.usable(); err != nil {
		return err
	}
	delete(d.tunnels, remote.CableName)
	d.events = append(d.events, "disconnect "+remote.CableName)
	return nil
}

// Connections implements cable.Driver: each tunnel is connected unless SetState
// said otherwise.
func (d *Driver) Connections(context.Context) ([]cable.Status, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.usable(); err != nil {
		return nil, err
	}
	var out []cable.Status
	for _, name := range slices.Sorted(maps.Keys(d.tunnels)) {
		t := d.tunnels[name]
		st := cable.Status{Remote: t.Remote, Status: submv1.Connected, UsingIP: t.UseIP, UsingNAT: t.UseNAT}
		if s, ok := d.states[name]; ok {
			st.Status, st.Message = s.Status, s.Message
		}
		out = append(out, st)
	}
	return out, nil
}

// Close implements cable.Driver.
func (d *Driver) Close(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	d.tunnels = map[string]cable.Tunnel{}
	d.events = append(d.events, "close")
	return nil
}

func (d *Driver) usable() error {
	switch {
	case d.closed:
		return errors.New("fake driver: closed")
	case !d.inited:
		return errors.New("fake driver: not initialised")
	}
	return nil
}

// FailInit makes Init fail with err (nil: succeed).
func (d *Driver) FailInit(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failInit = err
}

// FailConnect makes Connect to the remote cable name fail with err (nil: succeed).
func (d *Driver) FailConnect(cableName string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil {
		delete(d.failOn, cableName)
		return
	}
	d.failOn[cableName] = err
}

// SetState makes Connections report status and message for the remote cable name.
func (d *Driver) SetState(cableName string, status submv1.ConnectionStatus, message string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.states[cableName] = cable.Status{Status: status, Message: message}
}

// SetBackendConfig sets what BackendConfig returns.
func (d *Driver) SetBackendConfig(c map[string]string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.config = maps.Clone(c)
}

// Events returns the calls recorded since the last call of Events, one line each.
func (d *Driver) Events() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	ev := d.events
	d.events = nil
	return ev
}

// String renders the tunnels, one line each, sorted by remote cable name.
func (d *Driver) String() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(d.tunnels)) {
		b.WriteString(describe(d.tunnels[name]) + "\n")
	}
	return b.String()
}

func describe(t cable.Tunnel) string {
	subnets := make([]string, 0, len(t.Remote.Subnets))
	for _, s := range t.Remote.Subnets {
		subnets = append(subnets, s.String())
	}
	return fmt.Sprintf("%s cluster %s via %s:%d nat=%t subnets %s", t.Remote.CableName, t.Remote.ClusterID, t.UseIP, t.Remote.Port, t.UseNAT, strings.Join(subnets, ","))
}
