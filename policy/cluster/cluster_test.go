package cluster

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"moat/internal/smtptest"
	"moat/internal/testclock"
)

// hook records the state changes a Client reports.
type hook struct {
	mu      sync.Mutex
	changes []bool
}

func (h *hook) on(up bool) {
	h.mu.Lock()
	h.changes = append(h.changes, up)
	h.mu.Unlock()
}

func (h *hook) get() []bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]bool(nil), h.changes...)
}

type env struct {
	mr    *miniredis.Miniredis
	clock *testclock.Clock
}

func newEnv(t *testing.T) *env {
	return &env{mr: miniredis.RunT(t), clock: testclock.New(time.Unix(1.7e9, 0))}
}

func (e *env) client(t *testing.T, h *hook, mod ...func(*RedisConfig)) *Client {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Redis.Address = e.mr.Addr()
	cfg.Redis.Timeout = 500 * time.Millisecond // generous: the machine is noisy
	cfg.Redis.LocalSize = 64
	for _, m := range mod {
		m(&cfg.Redis)
	}
	opt := Options{Clock: e.clock.Now}
	if h != nil {
		opt.OnStateChange = h.on
	}
	c, err := New(cfg, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestNew(t *testing.T) {
	if _, err := New(DefaultConfig(), Options{}); err == nil || !strings.Contains(err.Error(), "cluster.redis.address") {
		t.Errorf("New without an address: %v", err)
	}
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Redis.Address = "127.0.0.1:6379"
	for _, tt := range []struct{ name, content string }{
		{"missing", ""}, {"empty", "\n"}, {"two lines", "a\nb\n"}, {"long", strings.Repeat("x", maxPasswordFile+1)},
	} {
		p := filepath.Join(dir, tt.name)
		if tt.name != "missing" {
			os.WriteFile(p, []byte(tt.content), 0o600)
		}
		cfg.Redis.PasswordFile = p
		if _, err := New(cfg, Options{}); err == nil || !strings.Contains(err.Error(), "cluster.redis.password_file") {
			t.Errorf("%s password file: %v", tt.name, err)
		}
	}
}

func TestPassword(t *testing.T) {
	e := newEnv(t)
	e.mr.RequireAuth("s3cret")
	p := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(p, []byte("s3cret\n"), 0o600)
	c := e.client(t, nil, func(r *RedisConfig) { r.PasswordFile = p })
	if err := c.Ping(context.Background()); err != nil {
		t.Fatalf("ping with the password: %v", err)
	}
	os.WriteFile(p, []byte("wrong\n"), 0o600)
	bad := e.client(t, nil, func(r *RedisConfig) { r.PasswordFile = p })
	if err := bad.Ping(context.Background()); err == nil || bad.Up() {
		t.Fatalf("ping with a wrong password: %v, up %v", err, bad.Up())
	}
}

func TestLimiterShared(t *testing.T) {
	e := newEnv(t)
	a, b := e.client(t, nil).Limiter(), e.client(t, nil).Limiter()
	ctx := context.Background()
	// Limit 3 per minute, counted across both nodes.
	for i, tt := range []struct {
		l    *Limiter
		want bool
	}{{a, true}, {b, true}, {a, true}, {b, false}, {a, false}} {
		if got, err := tt.l.Allow(ctx, "rule\x00sender@example.org", 3, time.Minute); got != tt.want || err != nil {
			t.Fatalf("event %d: allow = %v, %v; want %v", i+1, got, err, tt.want)
		}
	}
	// Another key has its own window.
	if ok, _ := b.Allow(ctx, "rule\x00other@example.org", 3, time.Minute); !ok {
		t.Error("another key was limited")
	}
	// The window expires on the server.
	e.mr.FastForward(time.Minute)
	if ok, _ := b.Allow(ctx, "rule\x00sender@example.org", 3, time.Minute); !ok {
		t.Error("not allowed after the window")
	}
	if !e.mr.Exists("moat:rl:rule\x00sender@example.org") {
		t.Errorf("keys = %q", e.mr.Keys())
	}
}

func TestGreylistShared(t *testing.T) {
	e := newEnv(t)
	ca, cb := e.client(t, nil), e.client(t, nil)
	a, b := ca.Greylister(), cb.Greylister()
	ctx := context.Background()
	const delay, expiry = 5 * time.Minute, 35 * 24 * time.Hour
	check := func(g *Greylister, key string, pass bool, retry time.Duration) {
		t.Helper()
		r, err := g.Check(ctx, key, delay, expiry)
		if err != nil || r.Pass != pass || r.RetryAfter != retry {
			t.Fatalf("check %q = %+v, %v; want pass %v retry %s", key, r, err, pass, retry)
		}
	}
	check(a, "k1", false, delay)           // first attempt, on node A
	e.clock.Add(time.Minute)               //
	check(b, "k1", false, 4*time.Minute)   // B knows it: 4 minutes to go
	e.clock.Add(4 * time.Minute)           //
	check(b, "k1", true, 0)                // the retry through B passes
	check(a, "k2", false, delay)           // another triplet
	e.mr.FastForward(expiry + time.Second) // unseen for the expiry:
	check(a, "k1", false, delay)           // forgotten
	e.clock.Add(delay)                     //
	check(a, "k1", true, 0)                //
	check(b, "k1", true, 0)                // B learned the pass from Redis:
	e.mr.Close()                           // with Redis gone,
	check(b, "k1", true, 0)                // B's local state still passes it
	check(b, "k3", false, delay)           // and greylists new triplets
	if st := cb.Stats(); st.Up || st.Failures != 1 || st.Skipped != 1 || st.StateChanges != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestGuardStateShared(t *testing.T) {
	e := newEnv(t)
	a, b := e.client(t, nil).GuardState(), e.client(t, nil).GuardState()
	ctx := context.Background()
	ip := netip.MustParseAddr("192.0.2.7")

	// Pass cache.
	if until, err := b.PassUntil(ctx, ip); err != nil || !until.IsZero() {
		t.Fatalf("unknown client: %v, %v", until, err)
	}
	until := e.clock.Now().Add(24 * time.Hour)
	if err := a.SetPass(ctx, ip, until); err != nil {
		t.Fatal(err)
	}
	if got, err := b.PassUntil(ctx, ip); err != nil || !got.Equal(until) {
		t.Fatalf("pass seen by B = %v, %v; want %v", got, err, until)
	}
	if ttl := e.mr.TTL("moat:pg:192.0.2.7"); ttl != 24*time.Hour {
		t.Errorf("pass ttl = %s", ttl)
	}
	e.mr.FastForward(24 * time.Hour)
	if got, _ := b.PassUntil(ctx, ip); !got.IsZero() {
		t.Errorf("expired pass = %v", got)
	}

	// Token bucket: 1 a minute, burst 2, over both nodes.
	for i, tt := range []struct {
		s    *GuardState
		want bool
	}{{a, true}, {b, true}, {a, false}, {b, false}} {
		if got, err := tt.s.RateAllow(ctx, "ip:192.0.2.7", 1, 2); got != tt.want || err != nil {
			t.Fatalf("connection %d: %v, %v; want %v", i+1, got, err, tt.want)
		}
	}
	e.clock.Add(time.Minute) // one token back
	if ok, _ := b.RateAllow(ctx, "ip:192.0.2.7", 1, 2); !ok {
		t.Error("no token after a minute")
	}
	if ok, _ := a.RateAllow(ctx, "ip:192.0.2.7", 1, 2); ok {
		t.Error("a second token after a minute")
	}
	if _, err := a.RateAllow(ctx, "x", 0, 1); err == nil {
		t.Error("rate 0 accepted")
	}
}

func TestCacheShared(t *testing.T) {
	e := newEnv(t)
	a, err := e.client(t, nil).Cache("callahead", 16)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := e.client(t, nil).Cache("callahead", 16)
	ctx := context.Background()
	if _, ok := b.Get(ctx, "backend\x00bob@corp.example"); ok {
		t.Fatal("hit in an empty cache")
	}
	a.Set(ctx, "backend\x00bob@corp.example", []byte("250"), time.Hour)
	if v, ok := b.Get(ctx, "backend\x00bob@corp.example"); !ok || string(v) != "250" {
		t.Fatalf("B got %q, %v", v, ok)
	}
	e.mr.Close() // B's local copy answers now
	if v, ok := b.Get(ctx, "backend\x00bob@corp.example"); !ok || string(v) != "250" {
		t.Fatalf("B's local copy: %q, %v", v, ok)
	}
	e.clock.Add(time.Hour) // and expires with the time the entry had
	if _, ok := b.Get(ctx, "backend\x00bob@corp.example"); ok {
		t.Fatal("hit after the expiry")
	}
	if _, err := a.c.Cache("a:b", 1); err == nil {
		t.Error("a name with ':' accepted")
	}
}

func TestLongKeysAreHashed(t *testing.T) {
	e := newEnv(t)
	l := e.client(t, nil, func(r *RedisConfig) { r.KeyPrefix = "x:" }).Limiter()
	long := strings.Repeat("k", 1000)
	if ok, _ := l.Allow(context.Background(), long, 1, time.Minute); !ok {
		t.Fatal("first event refused")
	}
	if ok, _ := l.Allow(context.Background(), long, 1, time.Minute); ok {
		t.Fatal("second event allowed")
	}
	keys := e.mr.Keys()
	if len(keys) != 1 || !strings.HasPrefix(keys[0], "x:rl:sha256:") || len(keys[0]) > 100 {
		t.Errorf("keys = %q", keys)
	}
}

// TestFallbackAndRecovery kills Redis under a limiter: calls fall back to
// the local count, the hook fires once, Redis is skipped during the
// back-off, and is used again when it is back.
func TestFallbackAndRecovery(t *testing.T) {
	e := newEnv(t)
	h := &hook{}
	c := e.client(t, h)
	l := c.Limiter()
	ctx := context.Background()
	allow := func() bool {
		ok, err := l.Allow(ctx, "k", 2, time.Hour)
		if err != nil {
			t.Fatalf("allow: %v", err)
		}
		return ok
	}
	if !allow() || !c.Up() {
		t.Fatal("first event")
	}
	e.mr.Close()
	// The local count (it saw the first event too) decides: 2, then over.
	if !allow() {
		t.Fatal("second event refused with Redis down")
	}
	if allow() {
		t.Fatal("third event allowed by the local fallback")
	}
	for range 10 {
		allow()
	}
	st := c.Stats()
	if st.Up || st.Failures != 1 || st.Skipped != 11 || st.StateChanges != 1 {
		t.Errorf("stats while down = %+v", st)
	}
	if got := h.get(); len(got) != 1 || got[0] {
		t.Fatalf("state changes = %v, want [false]", got)
	}
	// After the back-off one call probes Redis; still down, no new change.
	e.clock.Add(time.Second)
	allow()
	if st := c.Stats(); st.Failures != 2 || len(h.get()) != 1 {
		t.Errorf("probe while down: %+v, changes %v", st, h.get())
	}

	if err := e.mr.Restart(); err != nil {
		t.Fatal(err)
	}
	// Redis is back; the next probe after the back-off uses it. (The
	// pool's own redial may take a moment: probe until it answers.)
	deadline := time.Now().Add(10 * time.Second)
	for !c.Up() {
		if time.Now().After(deadline) {
			t.Fatalf("Redis not used again: %+v", c.Stats())
		}
		e.clock.Add(time.Second)
		allow()
		time.Sleep(10 * time.Millisecond)
	}
	if got := h.get(); len(got) != 2 || !got[1] {
		t.Fatalf("state changes = %v, want [false true]", got)
	}
	// The count is Redis's again: it holds the first event and the probe.
	if v, _ := e.mr.Get("moat:rl:k"); v == "" || v == "0" {
		t.Errorf("redis count = %q", v)
	}
}

// TestStalledServer: a server that accepts and never answers costs each
// call at most the timeout, then the back-off skips it.
func TestStalledServer(t *testing.T) {
	// The server reads what it is sent and never answers.
	addr := smtptest.ServeConns(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	clock := testclock.New(time.Unix(1.7e9, 0))
	h := &hook{}
	cfg := DefaultConfig()
	cfg.Redis.Address = addr
	cfg.Redis.Timeout = 20 * time.Millisecond
	c, err := New(cfg, Options{Clock: clock.Now, OnStateChange: h.on})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	g := c.GuardState()
	ip := netip.MustParseAddr("192.0.2.1")
	if _, err := g.PassUntil(context.Background(), ip); err == nil {
		t.Fatal("a stalled server answered")
	}
	for range 5 {
		if ok, err := g.RateAllow(context.Background(), "ip:192.0.2.1", 60, 5); err == nil || ok {
			t.Fatalf("rate during back-off: %v, %v", ok, err)
		}
	}
	if st := c.Stats(); st.Failures != 1 || st.Skipped != 5 || len(h.get()) != 1 {
		t.Errorf("stats = %+v, changes %v", st, h.get())
	}
}

// TestCallerCancel: a caller that gives up does not mark Redis down.
func TestCallerCancel(t *testing.T) {
	e := newEnv(t)
	h := &hook{}
	c := e.client(t, h)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if ok, _ := c.Limiter().Allow(ctx, "k", 1, time.Minute); !ok {
		t.Error("local answer refused")
	}
	if !c.Up() || len(h.get()) != 0 {
		t.Errorf("a cancelled caller marked Redis down: %+v", c.Stats())
	}
}

// benchClient is a Client of a fresh miniredis, closed with the benchmark.
func benchClient(b *testing.B) (*Client, *miniredis.Miniredis) {
	b.Helper()
	mr := miniredis.RunT(b)
	cfg := DefaultConfig()
	cfg.Redis.Address = mr.Addr()
	c, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c, mr
}

func BenchmarkLimiterAllow(b *testing.B) {
	c, _ := benchClient(b)
	l := c.Limiter()
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		l.Allow(ctx, "k", 1<<30, time.Hour)
	}
}

func BenchmarkLimiterAllowDown(b *testing.B) {
	c, mr := benchClient(b)
	mr.Close()
	l := c.Limiter()
	ctx := context.Background()
	l.Allow(ctx, "k", 1<<30, time.Hour) // marks Redis down
	b.ResetTimer()
	for b.Loop() {
		l.Allow(ctx, "k", 1<<30, time.Hour)
	}
}
