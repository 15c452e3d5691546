// Package testclock holds the settable clock that unit tests of several
// packages share: it stands still until the test moves it, and is safe
// for concurrent use (a limiter or a cache reads it from other
// goroutines while the test moves it).
package testclock

import (
	"sync"
	"time"
)

// Clock is a clock that moves only when told. Its Now method fits the
// packages' Clock options (func() time.Time).
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// New returns a clock that reads start.
func New(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Add moves the clock by d (backwards when d is negative).
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
