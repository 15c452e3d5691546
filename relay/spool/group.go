package spool

import (
	"sync"
	"time"
)

// groupSync shares one expensive sync among every caller waiting at the
// same moment (group commit). A caller is satisfied only by a sync that
// STARTED after it called Sync, so whatever it wrote before calling is
// covered. One sync runs at a time; callers that arrive while it runs form
// the next group, whose first member leads it.
type groupSync struct {
	fn     func() error
	window time.Duration

	mu      sync.Mutex
	cond    *sync.Cond
	running bool
	started uint64 // syncs started
	done    uint64 // number of the last sync that finished
	err     error  // its outcome
}

func newGroupSync(window time.Duration, fn func() error) *groupSync {
	g := &groupSync{fn: fn, window: window}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// Sync returns once a sync that started after the call has finished, with
// that sync's error. If several finished, the latest counts: it too
// started after the call, so its success covers the caller.
func (g *groupSync) Sync() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	target := g.started + 1
	for g.done < target {
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		if g.window > 0 {
			// Let more callers join this group: they target the same
			// sync number, which is not taken until the window ends.
			g.mu.Unlock()
			time.Sleep(g.window)
			g.mu.Lock()
		}
		g.started++
		gen := g.started
		g.mu.Unlock()
		err := g.fn()
		g.mu.Lock()
		g.done, g.err, g.running = gen, err, false
		g.cond.Broadcast()
	}
	return g.err
}
