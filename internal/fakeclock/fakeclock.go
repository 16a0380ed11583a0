// Package fakeclock is a settable time source for tests: its Now method
// goes where a component takes a clock (Options.Now, Config.Now), and the
// test moves time with Advance instead of sleeping.
package fakeclock

import (
	"sync"
	"time"
)

// Clock is a time source that stands still until advanced. It is safe for
// concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New returns a Clock that reads start.
func New(start time.Time) *Clock { return &Clock{t: start} }

// Now returns the clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
