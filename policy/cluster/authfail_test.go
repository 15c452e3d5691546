package cluster

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"moat/internal/reply"
	"moat/policy/authlimit"
)

// limiters are two nodes' authlimit.Limiters sharing one Redis.
func (e *env) authLimiter(t *testing.T, c *Client) *authlimit.Limiter {
	t.Helper()
	cfg := authlimit.DefaultConfig()
	cfg.Auth.PerUser = authlimit.Threshold{MaxFailures: 3, Window: 10 * time.Minute}
	cfg.Auth.PerIP = authlimit.Threshold{MaxFailures: 4, Window: 10 * time.Minute}
	cfg.Auth.Lockout = 15 * time.Minute
	l, err := authlimit.New(cfg, authlimit.Options{Clock: e.clock.Now, Shared: c.AuthFailures()})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func locked(err error) bool {
	var r *reply.Reply
	return errors.As(err, &r) && r.Code == 454
}

// TestAuthFailuresShared: failures on two nodes add up to one lock-out,
// which both nodes then apply; it ends with its time on the server; a
// success forgets the address's failures on every node.
func TestAuthFailuresShared(t *testing.T) {
	e := newEnv(t)
	a, b := e.authLimiter(t, e.client(t, nil)), e.authLimiter(t, e.client(t, nil))
	ip1, ip2, ip3 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")

	// A guesser spreads three attempts on alice over both nodes and
	// three addresses: no node alone saw three.
	a.AuthFailed(ip1, "alice@example.org")
	b.AuthFailed(ip2, "alice@example.org")
	if _, err := a.BeforeAuth(ip3, "alice@example.org"); err != nil {
		t.Fatalf("locked after two failures: %v", err)
	}
	d, _ := b.BeforeAuth(ip3, "alice@example.org")
	if d != 2*time.Second {
		t.Errorf("delay after two shared failures = %v, want 2s", d)
	}
	a.AuthFailed(ip3, "Alice@Example.org") // another spelling, same user
	for name, l := range map[string]*authlimit.Limiter{"a": a, "b": b} {
		if _, err := l.BeforeAuth(netip.MustParseAddr("198.51.100.9"), "alice@example.org"); !locked(err) {
			t.Errorf("node %s: alice not locked out: %v", name, err)
		}
	}
	if s := a.Stats(); s.UserLockouts != 1 {
		t.Errorf("node a stats %+v, want one user lock-out", s)
	}
	// A success does not lift a user's lock-out.
	b.AuthSucceeded(ip1, "alice@example.org")
	if _, err := a.BeforeAuth(ip1, "alice@example.org"); !locked(err) {
		t.Errorf("success lifted the lock-out: %v", err)
	}
	// The lock-out ends on the server and on both clocks.
	e.mr.FastForward(16 * time.Minute)
	e.clock.Add(16 * time.Minute)
	if _, err := b.BeforeAuth(ip1, "alice@example.org"); err != nil {
		t.Errorf("still locked after the lock-out: %v", err)
	}

	// An address: four failures over the two nodes lock it out.
	for i, l := range []*authlimit.Limiter{a, b, a, b} {
		if _, err := l.BeforeAuth(ip2, ""); err != nil {
			t.Fatalf("failure %d: locked early: %v", i+1, err)
		}
		l.AuthFailed(ip2, "")
	}
	if _, err := a.BeforeAuth(ip2, ""); !locked(err) {
		t.Errorf("address not locked out after four shared failures: %v", err)
	}
	// A success from an address forgets its failures everywhere.
	a.AuthFailed(ip3, "")
	b.AuthFailed(ip3, "")
	b.AuthSucceeded(ip3, "")
	if d, err := a.BeforeAuth(ip3, ""); err != nil || d != time.Second {
		t.Errorf("after success elsewhere: delay %v, %v; want 1s from node a's own failure", d, err)
	}
}

// TestAuthFailuresRedisDown: without Redis each node counts alone, as a
// single moat does: no error, no lock-out from nowhere, and its own
// failures still lock.
func TestAuthFailuresRedisDown(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, nil, func(r *RedisConfig) { r.Timeout = 100 * time.Millisecond })
	a := e.authLimiter(t, c)
	ip := netip.MustParseAddr("192.0.2.1")
	a.AuthFailed(ip, "bob@example.org")
	e.mr.Close()
	if _, err := a.BeforeAuth(ip, "bob@example.org"); err != nil {
		t.Fatalf("Redis down: %v", err)
	}
	a.AuthFailed(ip, "bob@example.org")
	a.AuthFailed(ip, "bob@example.org")
	if _, err := a.BeforeAuth(ip, "bob@example.org"); !locked(err) {
		t.Errorf("Redis down: the node's own three failures did not lock: %v", err)
	}
}
