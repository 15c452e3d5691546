// Package deadline makes contexts that carry a deadline but start no
// timer until something waits on them.
//
// context.WithTimeout arms a runtime timer at once and stops it on
// cancel. The checks and rule evaluations of an SMTP session each get a
// deadline, about ten per message, and almost none is ever waited on: a
// rule reads facts, a cached DNS answer only asks Err. A Context from
// WithTimeout answers Deadline and Err from the clock and arms the real
// context (context.WithDeadline on the parent) only when Done is first
// called, so code that selects on Done, or derives a child context,
// behaves exactly as with context.WithTimeout.
package deadline

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// closed is Done of a context canceled before anyone waited on it.
var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Context is a context.Context whose timer is armed on first Done.
type Context struct {
	parent context.Context
	at     time.Time

	mu       sync.Mutex
	armed    atomic.Pointer[context.Context] // set once, under mu
	cancel   context.CancelFunc              // of *armed
	canceled atomic.Bool                     // the CancelFunc was called before Done
	stopErr  error                           // Err from then on; set before canceled
}

// WithTimeout is context.WithTimeout(parent, d) without a timer until
// Done is called. The CancelFunc must be called, as with the standard one.
func WithTimeout(parent context.Context, d time.Duration) (*Context, context.CancelFunc) {
	c := &Context{parent: parent, at: time.Now().Add(d)}
	return c, c.stop
}

// Deadline returns the earlier of the timeout and the parent's deadline.
func (c *Context) Deadline() (time.Time, bool) {
	if d, ok := c.parent.Deadline(); ok && d.Before(c.at) {
		return d, true
	}
	return c.at, true
}

// Done arms the context on first call and returns its channel, closed
// when the deadline passes, the parent is done or the context canceled.
func (c *Context) Done() <-chan struct{} {
	if p := c.armed.Load(); p != nil {
		return (*p).Done()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.armed.Load(); p != nil {
		return (*p).Done()
	}
	if c.canceled.Load() {
		return closed
	}
	ctx, cancel := context.WithDeadline(c.parent, c.at)
	c.cancel = cancel
	c.armed.Store(&ctx)
	return ctx.Done()
}

// Err is context.Canceled after cancel, the parent's error once it has
// one, and context.DeadlineExceeded from the deadline on.
func (c *Context) Err() error {
	if p := c.armed.Load(); p != nil {
		return (*p).Err()
	}
	if c.canceled.Load() {
		return c.stopErr
	}
	return c.clockErr()
}

// clockErr is Err of the unarmed context before cancel.
func (c *Context) clockErr() error {
	if err := c.parent.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.at) {
		return context.DeadlineExceeded
	}
	return nil
}

// Value looks key up in the armed context, else in the parent: a child
// derived after Done then registers with the armed context's canceler
// rather than starting a goroutine to watch it.
func (c *Context) Value(key any) any {
	if p := c.armed.Load(); p != nil {
		return (*p).Value(key)
	}
	return c.parent.Value(key)
}

// stop is the CancelFunc. As with the standard context, the first reason
// stays: a context past its deadline still says DeadlineExceeded.
func (c *Context) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel != nil {
		c.cancel()
		return
	}
	if c.canceled.Load() {
		return
	}
	c.stopErr = c.clockErr()
	if c.stopErr == nil {
		c.stopErr = context.Canceled
	}
	c.canceled.Store(true)
}
