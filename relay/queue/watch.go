package queue

import (
	"context"

	"moat/relay/spool"
)

// A Watch follows the messages a flush scheduled until each has had an
// attempt that ended after the flush (`moat queue flush` waits on it, up
// to its --wait, to say how many recipients were delivered, deferred or
// bounced, rather than only scheduled). A message whose attempt was under
// way at the flush counts with that attempt. One the operator deletes or
// holds meanwhile counts as removed or held, with no outcome.
//
// A watch holds one entry per message it waits on, at most the messages
// of the queue, and is dropped by Stop.

// Outcome is what one attempt did to the recipients pending at its start
// (RFC 3464 §2.3.3 actions: delivered, delayed, failed).
type Outcome struct {
	Delivered, Deferred, Bounced int
	// Removed: the operator deleted the message before an attempt;
	// Held: the operator held it.
	Removed, Held bool
}

// add counts what became of the recipients at pending of env.
func (o *Outcome) add(env *spool.Envelope, pending []int) {
	for _, i := range pending {
		switch env.Recipients[i].Status {
		case spool.StatusDelivered:
			o.Delivered++
		case spool.StatusFailed:
			o.Bounced++
		default:
			o.Deferred++
		}
	}
}

func pendingIndexes(env *spool.Envelope) []int {
	var idx []int
	for i, r := range env.Recipients {
		if r.Status == spool.StatusPending {
			idx = append(idx, i)
		}
	}
	return idx
}

// Progress is a Watch's count so far.
type Progress struct {
	Messages int // watched
	Waiting  int // no attempt ended yet
	// Attempted: messages whose attempt ended; Failed: of them, attempts
	// that could not run or not be recorded (the daemon's log says why).
	Attempted, Failed int
	// Removed and Held: messages deleted or held meanwhile.
	Removed, Held int
	// Recipients by outcome, over the attempts that ended.
	Delivered, Deferred, Bounced int
}

// Watch is a set of messages waited on; see Manager.Watch.
type Watch struct {
	m       *Manager
	waiting map[string]struct{}
	p       Progress
	done    chan struct{}
}

// Watch starts following ids; call it before scheduling them, Forget
// those that were not scheduled, and Stop when done.
func (m *Manager) Watch(ids []string) *Watch {
	w := &Watch{m: m, waiting: make(map[string]struct{}, len(ids)), done: make(chan struct{})}
	for _, id := range ids {
		w.waiting[id] = struct{}{}
	}
	w.p.Messages = len(w.waiting)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.watches == nil {
		m.watches = map[*Watch]struct{}{}
	}
	m.watches[w] = struct{}{}
	w.check()
	return w
}

// Forget stops waiting on id (it was not scheduled after all).
func (w *Watch) Forget(id string) {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	if _, ok := w.waiting[id]; ok {
		delete(w.waiting, id)
		w.p.Messages--
		w.check()
	}
}

// Done is closed when no message is waited on any more.
func (w *Watch) Done() <-chan struct{} { return w.done }

// Wait returns when every message had its attempt, or when ctx ends.
func (w *Watch) Wait(ctx context.Context) {
	select {
	case <-w.done:
	case <-ctx.Done():
	}
}

// Progress returns the count so far.
func (w *Watch) Progress() Progress {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	p := w.p
	p.Waiting = len(w.waiting)
	return p
}

// Stop drops the watch.
func (w *Watch) Stop() {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	delete(w.m.watches, w)
}

// check closes done when nothing is waited on (m.mu held).
func (w *Watch) check() {
	if len(w.waiting) == 0 {
		select {
		case <-w.done:
		default:
			close(w.done)
		}
	}
}

// watched tells the watches waiting on id what became of it (m.mu held).
func (m *Manager) watched(id string, o Outcome, err error) {
	for w := range m.watches {
		if _, ok := w.waiting[id]; !ok {
			continue
		}
		delete(w.waiting, id)
		switch {
		case o.Removed:
			w.p.Removed++
		case o.Held:
			w.p.Held++
		default:
			w.p.Attempted++
			if err != nil {
				w.p.Failed++
			}
			w.p.Delivered += o.Delivered
			w.p.Deferred += o.Deferred
			w.p.Bounced += o.Bounced
		}
		w.check()
	}
}
