package queue

import (
	"context"
	"testing"

	"moat/internal/reply"
)

// A watch counts each watched message once: by the outcome of its
// attempt, or as deleted or held by the operator, or not at all when
// forgotten; it is done when nothing is left.
func TestWatch(t *testing.T) {
	h := newHarness(t, t.TempDir(), Options{})
	del, hold, forgot, tried := h.put("a@far.example", "x@far.example"), h.put("a@far.example", "y@far.example"),
		h.put("a@far.example", "z@far.example"), h.put("a@far.example", "ok@far.example", "no@far.example", "wait@far.example")
	h.tr.answer["no@far.example"] = reply.New(550, 1, 1, "no such user")
	h.tr.answer["wait@far.example"] = reply.New(451, 4, 0, "try later")
	w := h.m.Watch([]string{del, hold, forgot, tried})
	defer w.Stop()
	w.Forget(forgot)
	if err := h.m.Delete(del); err != nil {
		t.Fatal(err)
	}
	if err := h.m.Hold(hold); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.Done():
		t.Fatal("done before the attempt")
	default:
	}
	// What a worker does: one attempt, then its report.
	h.m.mu.Lock()
	h.m.items[tried] = &item{id: tried, index: -1, running: true}
	h.m.active++
	h.m.mu.Unlock()
	h.m.work(context.Background(), h.m.items[tried])
	<-w.Done()
	want := Progress{Messages: 3, Attempted: 1, Removed: 1, Held: 1, Delivered: 1, Deferred: 1, Bounced: 1}
	if p := w.Progress(); p != want {
		t.Errorf("progress %+v, want %+v", p, want)
	}
	// An empty watch is done at once.
	e := h.m.Watch(nil)
	defer e.Stop()
	<-e.Done()
}
