package queue

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/maillog"
	"moat/internal/reply"
	"moat/relay/dsn"
	"moat/relay/spool"
	"moat/relay/transport"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// fake is a transport that answers from a table by recipient and records calls.
type fake struct {
	mu     sync.Mutex
	answer map[string]error
	calls  [][]string
	junk   []bool // msg.Junk of each call
}

func (f *fake) Deliver(ctx context.Context, msg *transport.Message, rcpts []string) []transport.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, rcpts)
	f.junk = append(f.junk, msg.Junk)
	r, err := msg.Open()
	if err != nil {
		return transport.All(rcpts, err)
	}
	io.Copy(io.Discard, r)
	r.Close()
	out := make([]transport.Result, len(rcpts))
	for i, a := range rcpts {
		out[i] = transport.Result{Recipient: a, Err: f.answer[a]}
		if out[i].Err == nil {
			out[i].Relay, out[i].Reply = "mx.test[192.0.2.25:25]", "250 2.0.0 Ok: queued as N1"
		}
	}
	return out
}

type harness struct {
	t     *testing.T
	dir   string
	sp    *spool.Spool
	m     *Manager
	clk   *clock
	tr    *fake
	local *fake
}

func newHarness(t *testing.T, dir string, opt Options) *harness {
	t.Helper()
	sp, err := spool.Open(dir, spool.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, dir: dir, sp: sp, clk: &clock{t: t0}, tr: &fake{answer: map[string]error{}}, local: &fake{answer: map[string]error{}}}
	opt.Clock = h.clk.Now
	opt.Hostname = "mx.example.org"
	h.m = New(sp, func(route string) (transport.Transport, bool) {
		switch route {
		case "mx":
			return h.tr, true
		case "local":
			return h.local, true
		}
		return nil, false
	}, opt)
	t.Cleanup(func() { sp.Close() })
	return h
}

func (h *harness) put(sender string, rcpts ...string) string {
	h.t.Helper()
	env := &spool.Envelope{ID: h.sp.NewID(), Sender: sender, Received: h.clk.Now(), ClientName: "client.example"}
	for _, r := range rcpts {
		route := "mx"
		if strings.HasSuffix(r, "@example.org") {
			route = "local"
		}
		env.Recipients = append(env.Recipients, spool.Recipient{Address: r, Route: route, Status: spool.StatusPending})
	}
	if err := h.sp.Put(context.Background(), env, strings.NewReader("From: "+sender+"\r\nSubject: test\r\n\r\nbody\r\n")); err != nil {
		h.t.Fatal(err)
	}
	return env.ID
}

func (h *harness) attempt(id string) *spool.Envelope {
	h.t.Helper()
	env, err := h.m.attempt(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return env
}

// bounces returns the notices in the spool (sender "") parsed.
func (h *harness) bounces() []*dsn.Report {
	h.t.Helper()
	list, err := h.sp.List()
	if err != nil {
		h.t.Fatal(err)
	}
	var out []*dsn.Report
	for _, e := range list {
		if e.Sender != "" || e.Protocol != "LOCAL" {
			continue // not a notice
		}
		r, _ := h.sp.Open(e.ID)
		b, _ := io.ReadAll(r)
		r.Close()
		rep, err := dsn.Parse(b)
		if err != nil {
			h.t.Fatalf("notice %s: %v\n%s", e.ID, err, b)
		}
		if e.Recipients[0].Route != "mx" {
			h.t.Errorf("notice envelope %+v", e)
		}
		out = append(out, rep)
	}
	return out
}

func TestDeliveredRemoved(t *testing.T) {
	h := newHarness(t, t.TempDir(), Options{})
	id := h.put("alice@example.net", "bob@example.com", "carol@example.org", "dave@example.com", "eve@other.example")
	if env := h.attempt(id); env != nil {
		t.Fatalf("message kept: %+v", env)
	}
	if _, err := h.sp.Get(id); !errors.Is(err, spool.ErrNotFound) {
		t.Errorf("Get = %v", err)
	}
	// mx recipients grouped by domain, local apart.
	if len(h.tr.calls) != 2 || len(h.tr.calls[0]) != 2 || len(h.local.calls) != 1 {
		t.Errorf("calls mx=%v local=%v", h.tr.calls, h.local.calls)
	}
}

// Delivered lines carry relay= and the next hop's reply (issue 24 item 8);
// deferred ones the error.
func TestMailLogDelivered(t *testing.T) {
	var buf bytes.Buffer
	h := newHarness(t, t.TempDir(), Options{MailLog: maillog.New(&buf)})
	h.tr.answer["busy@example.com"] = reply.New(451, 3, 0, "try later")
	id := h.put("alice@example.net", "bob@example.com", "busy@example.com")
	h.attempt(id)
	got := map[string]maillog.Event{}
	for l := range strings.Lines(buf.String()) {
		e, err := maillog.Parse(l)
		if err != nil {
			t.Fatal(err)
		}
		got[e.Recipients[0]] = e
	}
	if e := got["bob@example.com"]; e.Kind != maillog.Delivered || e.Relay != "mx.test[192.0.2.25:25]" || e.Reply != "250 2.0.0 Ok: queued as N1" {
		t.Errorf("delivered line %+v", e)
	}
	if e := got["busy@example.com"]; e.Kind != maillog.Deferred || e.Relay != "" || !strings.HasPrefix(e.Reply, "451 4.3.0") {
		t.Errorf("deferred line %+v", e)
	}
}

func TestRetryBackoff(t *testing.T) {
	h := newHarness(t, t.TempDir(), Options{RetryMin: 5 * time.Minute, RetryMax: time.Hour, DelayWarning: -1})
	h.tr.answer["bob@example.com"] = reply.New(451, 4, 0, "try later")
	id := h.put("alice@example.net", "bob@example.com")
	for n, want := range []time.Duration{5, 10, 20, 40, 60, 60} {
		env := h.attempt(id)
		if env == nil {
			t.Fatal("removed")
		}
		wait := env.NextAttempt.Sub(h.clk.Now())
		base := want * time.Minute
		if wait < base*85/100 || wait > base*115/100 {
			t.Errorf("attempt %d: next in %s, want %s ±15%%", n+1, wait, base)
		}
		r := env.Recipients[0]
		if r.Status != spool.StatusPending || r.Attempts != n+1 || r.LastError != "451 4.4.0 try later" || env.Attempts != n+1 {
			t.Errorf("attempt %d: %+v", n+1, env)
		}
		h.clk.Add(wait)
	}
	if len(h.bounces()) != 0 {
		t.Error("bounce for a temporary failure")
	}
}

func TestPermanentBounce(t *testing.T) {
	h := newHarness(t, t.TempDir(), Options{})
	h.tr.answer["bad@example.com"] = reply.New(550, 1, 1, "no such user")
	h.tr.answer["gone@example.com"] = transport.Permanent(errors.New("null MX"))
	id := h.put("alice@example.net", "ok@example.com", "bad@example.com", "gone@example.com", "carol@example.org")
	if env := h.attempt(id); env != nil {
		t.Fatalf("kept: %+v", env)
	}
	bs := h.bounces()
	if len(bs) != 1 {
		t.Fatalf("%d notices", len(bs))
	}
	b := bs[0]
	if b.QueueID != id || b.ReportingMTA != "mx.example.org" || b.AutoSubmitted != "auto-replied" || b.To != "<alice@example.net>" || len(b.Recipients) != 2 {
		t.Fatalf("notice %+v", b)
	}
	if r := b.Recipients[0]; r.Address != "bad@example.com" || r.Action != dsn.Failed || r.Status != "5.1.1" || r.DiagnosticCode != "smtp; 550 5.1.1 no such user" {
		t.Errorf("rcpt 1: %+v", r)
	}
	if r := b.Recipients[1]; r.Address != "gone@example.com" || r.Status != "5.0.0" {
		t.Errorf("rcpt 2: %+v", r)
	}
	if !strings.Contains(string(b.Headers), "Subject: test") {
		t.Errorf("headers %q", b.Headers)
	}
}

func TestNullSenderNoBounce(t *testing.T) {
	h := newHarness(t, t.TempDir(), Options{})
	h.tr.answer["bad@example.com"] = reply.New(550, 1, 1, "no such user")
	id := h.put("", "bad@example.com")
	if env := h.attempt(id); env != nil {
		t.Fatalf("kept: %+v", env)
	}
	if list, _ := h.sp.List(); len(list) != 0 {
		t.Errorf("spool holds %d messages", len(list))
	}
}

func TestRestartKeepsUndelivered(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir, Options{DelayWarning: -1})
	h.tr.answer["slow@example.com"] = reply.New(421, 4, 2, "busy")
	id := h.put("alice@example.net", "ok@example.com", "slow@example.com")
	h.attempt(id)
	h.sp.Close()

	h2 := newHarness(t, dir, Options{DelayWarning: -1})
	delete(h2.tr.answer, "slow@example.com")
	env, err := h2.sp.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if env.Recipients[0].Status != spool.StatusDelivered || env.Recipients[1].Status != spool.StatusPending {
		t.Fatalf("after restart %+v", env.Recipients)
	}
	// A real run of the new manager delivers only what is left.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- h2.m.Run(ctx) }()
	h2.clk.Add(2 * time.Hour) // past NextAttempt
	h2.m.Flush(id)
	waitFor(t, func() bool { _, err := h2.sp.Get(id); return errors.Is(err, spool.ErrNotFound) })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(h2.tr.calls) != 1 || len(h2.tr.calls[0]) != 1 || h2.tr.calls[0][0] != "slow@example.com" {
		t.Errorf("calls after restart %v", h2.tr.calls)
	}
}

func TestExpiry(t *testing.T) {
	h := newHarness(t, t.TempDir(), Options{MaxAge: 10 * time.Hour, RetryMax: 8 * time.Hour, RetryMin: 8 * time.Hour, DelayWarning: -1})
	h.tr.answer["slow@example.com"] = reply.New(451, 4, 4, "no route")
	id := h.put("alice@example.net", "slow@example.com")
	env := h.attempt(id)
	h.clk.Add(env.NextAttempt.Sub(h.clk.Now()))
	env = h.attempt(id)
	// The next attempt is capped at the expiry time.
	if !env.NextAttempt.Equal(t0.Add(10 * time.Hour)) {
		t.Errorf("NextAttempt %s, want expiry %s", env.NextAttempt, t0.Add(10*time.Hour))
	}
	h.clk.Add(env.NextAttempt.Sub(h.clk.Now()))
	if env := h.attempt(id); env != nil {
		t.Fatalf("kept after expiry: %+v", env)
	}
	if len(h.tr.calls) != 2 {
		t.Errorf("%d transport calls, want 2 (none after expiry)", len(h.tr.calls))
	}
	bs := h.bounces()
	if len(bs) != 1 || bs[0].Recipients[0].Status != "4.4.7" || !strings.Contains(bs[0].Recipients[0].DiagnosticCode, "451 4.4.4 no route") {
		t.Fatalf("notices %+v", bs)
	}
}

func TestDelayWarningOnce(t *testing.T) {
	h := newHarness(t, t.TempDir(), Options{DelayWarning: time.Hour})
	h.tr.answer["slow@example.com"] = reply.New(451, 4, 0, "later")
	id := h.put("alice@example.net", "slow@example.com")
	bid := h.put("", "slow@example.com") // a bounce: never warned about
	h.attempt(id)
	h.attempt(bid)
	if n := len(h.bounces()); n != 0 {
		t.Fatalf("%d notices before the delay", n)
	}
	for range 3 {
		h.clk.Add(time.Hour)
		h.attempt(id)
		h.attempt(bid)
	}
	bs := h.bounces()
	var warnings []*dsn.Report
	for _, b := range bs {
		if b.Recipients[0].Action == dsn.Delayed {
			warnings = append(warnings, b)
		}
	}
	if len(warnings) != 1 || warnings[0].QueueID != id || warnings[0].Recipients[0].WillRetryUntil.IsZero() {
		t.Fatalf("warnings %+v", warnings)
	}
	env, _ := h.sp.Get(id)
	if !env.DelayWarned {
		t.Error("DelayWarned not recorded")
	}
}

func TestHoldReleaseDeleteFlush(t *testing.T) {
	h := newHarness(t, t.TempDir(), Options{DelayWarning: -1})
	h.tr.answer["slow@example.com"] = reply.New(451, 4, 0, "later")
	id := h.put("alice@example.net", "slow@example.com")
	if err := h.m.scan(); err != nil {
		t.Fatal(err)
	}
	if err := h.m.Hold(id); err != nil {
		t.Fatal(err)
	}
	if env := h.attempt(id); len(h.tr.calls) != 0 || !env.Held {
		t.Fatalf("held message attempted: %v", h.tr.calls)
	}
	if err := h.m.Flush(id); !errors.Is(err, ErrHeld) {
		t.Errorf("Flush of held = %v", err)
	}
	if s := h.m.Stats(); s.Held != 1 || s.Messages != 1 || s.Recipients != 1 {
		t.Errorf("stats %+v", s)
	}
	if err := h.m.Release(id); err != nil {
		t.Fatal(err)
	}
	if it := h.m.items[id]; it.index < 0 || it.env.Held {
		t.Error("released message not scheduled")
	}
	h.attempt(id)
	if len(h.tr.calls) != 1 {
		t.Errorf("calls %v", h.tr.calls)
	}
	if err := h.m.Flush(id); err != nil {
		t.Fatal(err)
	}
	if it := h.m.items[id]; !it.due.Equal(h.clk.Now()) {
		t.Errorf("flush: due %s", it.due)
	}
	h.m.FlushAll()
	if err := h.m.Delete(id); err != nil {
		t.Fatal(err)
	}
	if _, err := h.sp.Get(id); !errors.Is(err, spool.ErrNotFound) {
		t.Errorf("after Delete: %v", err)
	}
	if err := h.m.Hold("nosuch"); err == nil {
		t.Error("Hold of unknown id succeeded")
	}
	if s := h.m.Stats(); s.Messages != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestRunNotify(t *testing.T) {
	h := newHarness(t, t.TempDir(), Options{})
	h.m.opt.Clock = time.Now
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- h.m.Run(ctx) }()
	var ids []string
	for range 30 {
		id := h.put("alice@example.net", "bob@example.com")
		h.m.Notify(id)
		ids = append(ids, id)
	}
	waitFor(t, func() bool { l, _ := h.sp.List(); return len(l) == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(h.tr.calls) != 30 {
		t.Errorf("%d calls", len(h.tr.calls))
	}
}

func TestNoTransportAndPanic(t *testing.T) {
	h := newHarness(t, t.TempDir(), Options{DelayWarning: -1})
	id := h.put("alice@example.net", "x@example.com")
	env, _ := h.sp.Get(id)
	env.Recipients[0].Route = "nosuch"
	h.sp.Update(env)
	env = h.attempt(id)
	if env.Recipients[0].Status != spool.StatusPending || !strings.Contains(env.Recipients[0].LastError, "no transport") {
		t.Errorf("%+v", env.Recipients[0])
	}
	h.m.transports = func(string) (transport.Transport, bool) {
		return transport.Func(func(context.Context, *transport.Message, []string) []transport.Result { panic("boom") }), true
	}
	env = h.attempt(id)
	if env.Recipients[0].Status != spool.StatusPending {
		t.Errorf("after panic %+v", env.Recipients[0])
	}
}

func TestConfig(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	c.RetryMin, c.Concurrency = 0, 0
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "queue.retry_min") || !strings.Contains(err.Error(), "queue.concurrency") {
		t.Errorf("Validate = %v", err)
	}
	c = DefaultConfig()
	c.DelayWarning = 0
	var o Options
	c.Apply(&o)
	if o.DelayWarning >= 0 || o.Concurrency != 20 {
		t.Errorf("Apply: %+v", o)
	}
}

// waitFor polls cond (a state, not a timing): the test fails only if it
// never becomes true in a generous time.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 3000; i++ {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("condition not reached")
}

// One message whose recipients belong to different routes is handed to
// each route once (one call per route or MX domain, all its recipients
// together), and each recipient keeps its own state.
func TestSplitDeliveryPerRoute(t *testing.T) {
	h := newHarness(t, t.TempDir(), Options{})
	h.tr.answer["later@example.com"] = reply.New(451, 4, 7, "try later")
	id := h.put("alice@example.net", "a@example.com", "later@example.com", "b@example.net", "carol@example.org", "dave@example.org")
	env := h.attempt(id)
	if env == nil {
		t.Fatal("message left the queue with a recipient pending")
	}
	// MX: one call for example.com (two recipients), one for example.net;
	// local: one call per mailbox.
	var mxCalls []string
	for _, c := range h.tr.calls {
		mxCalls = append(mxCalls, strings.Join(c, ","))
	}
	sort.Strings(mxCalls)
	if strings.Join(mxCalls, " ") != "a@example.com,later@example.com b@example.net" {
		t.Errorf("mx calls %v", mxCalls)
	}
	if len(h.local.calls) != 2 {
		t.Errorf("local calls %v", h.local.calls)
	}
	state := map[string]spool.Status{}
	for _, r := range env.Recipients {
		state[r.Address] = r.Status
	}
	want := map[string]spool.Status{
		"a@example.com": spool.StatusDelivered, "later@example.com": spool.StatusPending, "b@example.net": spool.StatusDelivered,
		"carol@example.org": spool.StatusDelivered, "dave@example.org": spool.StatusDelivered,
	}
	for a, st := range want {
		if state[a] != st {
			t.Errorf("%s: %s, want %s", a, state[a], st)
		}
	}
	// The next attempt retries only the pending recipient.
	h.tr.calls, h.local.calls = nil, nil
	delete(h.tr.answer, "later@example.com")
	if env := h.attempt(id); env != nil {
		t.Fatalf("not removed after the last recipient: %+v", env)
	}
	if len(h.tr.calls) != 1 || strings.Join(h.tr.calls[0], ",") != "later@example.com" || len(h.local.calls) != 0 {
		t.Errorf("second attempt calls: mx %v local %v", h.tr.calls, h.local.calls)
	}
}
