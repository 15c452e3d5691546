package spool

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

// Every caller is covered by a sync that started after it called, and
// concurrent callers share syncs.
func TestGroupSync(t *testing.T) {
	var writes, syncs atomic.Int64
	var covered atomic.Int64 // writes covered by the last finished sync
	g := newGroupSync(0, func() error {
		syncs.Add(1)
		covered.Store(writes.Load())
		return nil
	})
	var wg sync.WaitGroup
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := writes.Add(1)
			if err := g.Sync(); err != nil {
				t.Error(err)
			}
			if covered.Load() < mine {
				t.Errorf("write %d returned before a sync covered it", mine)
			}
		}()
	}
	wg.Wait()
	if syncs.Load() > 200 || syncs.Load() < 1 {
		t.Errorf("%d syncs for 200 callers", syncs.Load())
	}

	boom := errors.New("boom")
	g = newGroupSync(0, func() error { return boom })
	if err := g.Sync(); !errors.Is(err, boom) {
		t.Errorf("Sync = %v, want the sync's error", err)
	}
}
