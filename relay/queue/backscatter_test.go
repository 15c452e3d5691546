package queue

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"moat/internal/reply"
	"moat/relay/spool"
)

// putChecked spools a message from sender to rcpt with the given sender
// check, as the gateway records it at acceptance.
func (h *harness) putChecked(sender string, check spool.SenderCheck, rcpt string) string {
	h.t.Helper()
	env := &spool.Envelope{ID: h.sp.NewID(), Sender: sender, Received: h.clk.Now(), ClientName: "client.example", SenderCheck: check,
		Recipients: []spool.Recipient{{Address: rcpt, Route: "mx", Status: spool.StatusPending}}}
	if err := h.sp.Put(context.Background(), env, strings.NewReader("From: "+sender+"\r\nSubject: test\r\n\r\nbody\r\n")); err != nil {
		h.t.Fatal(err)
	}
	return env.ID
}

type kinds struct {
	mu sync.Mutex
	l  []string
}

func (k *kinds) add(s string) { k.mu.Lock(); k.l = append(k.l, s); k.mu.Unlock() }
func (k *kinds) get() string  { k.mu.Lock(); defer k.mu.Unlock(); return strings.Join(k.l, ",") }

// Issue 27 item 1: no bounce to a sender that neither passed SPF nor is
// DMARC-aligned. The failed recipient is marked done (no retry, the
// message leaves the queue), one line says so and the hook counts it.
func TestNoBounceToUnverifiedSender(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	var got kinds
	h := newHarness(t, t.TempDir(), Options{Logger: zap.New(core), Suppressed: got.add})
	h.tr.answer["nobody@example.com"] = reply.New(550, 1, 1, "no such user")
	id := h.putChecked("forged@victim.example", spool.SenderUnverified, "nobody@example.com")
	if env := h.attempt(id); env != nil {
		t.Fatalf("kept: %+v", env)
	}
	if bs := h.bounces(); len(bs) != 0 {
		t.Fatalf("%d notices to an unverified sender: %+v", len(bs), bs[0])
	}
	if list, _ := h.sp.List(); len(list) != 0 {
		t.Errorf("spool holds %d messages", len(list))
	}
	if got.get() != NoticeFailure {
		t.Errorf("Suppressed calls %q, want %q", got.get(), NoticeFailure)
	}
	lines := logs.FilterMessage("bounce suppressed").All()
	if len(lines) != 1 {
		t.Fatalf("%d 'bounce suppressed' lines, want 1: %v", len(lines), logs.All())
	}
	f := lines[0].ContextMap()
	if f["queue_id"] != id || f["sender"] != "forged@victim.example" || f["reason"] == "" {
		t.Errorf("log fields %v", f)
	}
}

// A verified sender, a record from before the field (unchecked) and an
// operator who turned the protection off all get their bounce.
func TestBounceToVerifiedOrUncheckedSender(t *testing.T) {
	for _, tc := range []struct {
		name   string
		check  spool.SenderCheck
		bounce bool
	}{
		{"spf", spool.SenderSPF, false},
		{"dmarc", spool.SenderDMARC, false},
		{"auth", spool.SenderAuthenticated, false},
		{"trusted", spool.SenderTrusted, false},
		{"old record", spool.SenderUnchecked, false},
		{"unverified, classic behaviour", spool.SenderUnverified, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got kinds
			h := newHarness(t, t.TempDir(), Options{BounceUnverifiedSenders: tc.bounce, Suppressed: got.add})
			h.tr.answer["nobody@example.com"] = reply.New(550, 1, 1, "no such user")
			id := h.putChecked("alice@example.net", tc.check, "nobody@example.com")
			if env := h.attempt(id); env != nil {
				t.Fatalf("kept: %+v", env)
			}
			if bs := h.bounces(); len(bs) != 1 || bs[0].QueueID != id {
				t.Fatalf("notices %+v", bs)
			}
			if got.get() != "" {
				t.Errorf("Suppressed called: %q", got.get())
			}
		})
	}
}

// A delay warning is a notice too: withheld from an unverified sender,
// once.
func TestNoDelayWarningToUnverifiedSender(t *testing.T) {
	var got kinds
	h := newHarness(t, t.TempDir(), Options{DelayWarning: time.Hour, Suppressed: got.add})
	h.tr.answer["slow@example.com"] = reply.New(451, 4, 0, "later")
	id := h.putChecked("forged@victim.example", spool.SenderUnverified, "slow@example.com")
	for range 4 {
		h.clk.Add(time.Hour)
		h.attempt(id)
	}
	if bs := h.bounces(); len(bs) != 0 {
		t.Fatalf("%d notices", len(bs))
	}
	if got.get() != NoticeDelay {
		t.Errorf("Suppressed calls %q, want one %q", got.get(), NoticeDelay)
	}
	if env, _ := h.sp.Get(id); env == nil || !env.DelayWarned || env.Recipients[0].Status != spool.StatusPending {
		t.Errorf("envelope %+v", env)
	}
}

func TestConfigBounceUnverified(t *testing.T) {
	c := DefaultConfig()
	if c.BounceUnverifiedSenders {
		t.Fatal("bounce_unverified_senders is on by default")
	}
	c.BounceUnverifiedSenders = true
	var o Options
	c.Apply(&o)
	if !o.BounceUnverifiedSenders {
		t.Error("Apply did not copy bounce_unverified_senders")
	}
}
