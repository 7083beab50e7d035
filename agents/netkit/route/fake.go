package route

import (
	"context"
	"fmt"
	"sync"
)

// Fake is an in-memory Interface: it validates states as Netlink does and keeps the
// last one applied.
type Fake struct {
	mu      sync.Mutex
	state   State
	applies int
}

// NewFake returns a Fake holding no routes or rules.
func NewFake() *Fake { return &Fake{} }

// Apply implements Interface.
func (f *Fake) Apply(_ context.Context, s State) error {
	if err := s.Validate(); err != nil {
		return fmt.Errorf("refusing route state: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state = State{Routes: s.sortedRoutes(), Rules: s.sortedRules()}
	f.applies++
	return nil
}

// Flush implements Interface.
func (f *Fake) Flush(ctx context.Context) error { return f.Apply(ctx, State{}) }

// State returns the routes and rules applied last, sorted.
func (f *Fake) State() State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

// Applies returns how many states were applied.
func (f *Fake) Applies() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applies
}

// String renders the applied state as State.String does.
func (f *Fake) String() string { return f.State().String() }
