package queue

import (
	"container/heap"
	"errors"
	"fmt"

	"moat/relay/spool"
)

// The operator's commands (`moat queue flush|hold|release|delete`, via the
// admin API). Each is applied at once, or, while an attempt of the message
// runs, right after it.

// lookup returns the item of id, loading it from the spool if it is not
// tracked yet (m.mu held).
func (m *Manager) lookup(id string) (*item, error) {
	if it, ok := m.items[id]; ok {
		return it, nil
	}
	env, err := m.sp.Get(id)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	m.track(env, false)
	return m.items[id], nil
}

// ErrHeld: Flush of a held message (Release it first).
var ErrHeld = errors.New("queue: message is held")

// command runs an operator command on id: while an attempt of it runs,
// later records the wish for right after the attempt; otherwise now
// applies it at once. m.mu is held for both.
func (m *Manager) command(id string, later func(*item), now func(*item) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	it, err := m.lookup(id)
	if err != nil {
		return err
	}
	if it.running {
		later(it)
		return nil
	}
	return now(it)
}

// Flush schedules an attempt of id now.
func (m *Manager) Flush(id string) error {
	return m.command(id, func(it *item) { it.wantFlush = true }, func(it *item) error {
		if it.env.Held {
			return ErrHeld
		}
		m.reschedule(it)
		return nil
	})
}

// FlushAll schedules an attempt of every message not held now.
func (m *Manager) FlushAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, it := range m.items {
		if it.running {
			it.wantFlush = true
		} else if !it.env.Held {
			m.reschedule(it)
		}
	}
}

// reschedule puts it at the front (m.mu held).
func (m *Manager) reschedule(it *item) {
	it.due = m.now()
	if it.index >= 0 {
		heap.Fix(&m.sched, it.index)
	} else {
		heap.Push(&m.sched, it)
	}
	m.poke()
}

// Hold stops attempts of id until Release.
func (m *Manager) Hold(id string) error {
	return m.command(id, func(it *item) { it.wantHold = true }, func(it *item) error {
		return m.setHeld(it, true)
	})
}

// Release resumes attempts of a held message, starting now.
func (m *Manager) Release(id string) error {
	return m.command(id, func(it *item) { it.wantHold = false }, func(it *item) error {
		if err := m.setHeld(it, false); err != nil {
			return err
		}
		m.reschedule(it)
		return nil
	})
}

func (m *Manager) setHeld(it *item, held bool) error {
	env, err := m.sp.Get(it.id)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	env.Held = held
	if !held {
		env.NextAttempt = m.now()
	}
	if err := m.sp.Update(env); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	it.env = env
	if held {
		m.watched(it.id, Outcome{Held: true}, nil)
	}
	if held && it.index >= 0 {
		heap.Remove(&m.sched, it.index)
	}
	return nil
}

// Delete removes id from the queue without notice to anyone.
func (m *Manager) Delete(id string) error {
	return m.command(id, func(it *item) { it.wantDelete = true }, func(it *item) error {
		if it.index >= 0 {
			heap.Remove(&m.sched, it.index)
		}
		delete(m.items, id)
		m.watched(id, Outcome{Removed: true}, nil)
		if err := m.sp.Remove(id); err != nil && !errors.Is(err, spool.ErrNotFound) {
			return fmt.Errorf("queue: %w", err)
		}
		return nil
	})
}

// Stats counts the tracked messages.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var s Stats
	for _, it := range m.items {
		s.Messages++
		switch {
		case it.running:
			s.Active++
		case it.env.Held:
			s.Held++
		case it.env.Attempts > 0:
			s.Deferred++
		}
		for _, r := range it.env.Recipients {
			if r.Status == spool.StatusPending {
				s.Recipients++
			}
		}
		if age := now.Sub(it.env.Received); age > s.Oldest {
			s.Oldest = age
		}
	}
	return s
}

// schedule is a min-heap of items by due time.
type schedule []*item

func (s schedule) Len() int           { return len(s) }
func (s schedule) Less(i, j int) bool { return s[i].due.Before(s[j].due) }
func (s schedule) Swap(i, j int) {
	s[i], s[j] = s[j], s[i]
	s[i].index, s[j].index = i, j
}
func (s *schedule) Push(x any) {
	it := x.(*item)
	it.index = len(*s)
	*s = append(*s, it)
}
func (s *schedule) Pop() any {
	old := *s
	it := old[len(old)-1]
	old[len(old)-1] = nil
	it.index = -1
	*s = old[:len(old)-1]
	return it
}
