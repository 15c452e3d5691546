// Package authlimit owns the limits of the submission listener against a
// stolen or guessed password: failed-AUTH delays and lock-outs per client
// address and per user name, and per-user sending rates. It decides; the
// gateway session asks it at the right moments and sleeps or replies.
//
// What it implements, with the sections it follows:
//   - Each failed AUTH makes the next AUTH reply to that address or user
//     wait longer (DelayBase doubling up to DelayMax), a tarpit that slows
//     password guessing; the wait stays well under the 5-minute command
//     timeouts of RFC 5321 §4.5.3.2, so an honest client does not give up.
//   - After max_failures within a window, AUTH from that address, or for
//     that user from anywhere, is refused for the lock-out with
//     454 4.7.0 (RFC 4954 §6, "temporary authentication failure")
//     without checking the password, so a locked-out guesser learns
//     nothing. The reply is the same for an address and a user lock.
//   - A success clears the address's counter and, unless it is locked,
//     the user's.
//   - Per-user sending rates (messages and recipients an hour) refuse a
//     message with 450 4.7.1 or 452 4.5.3 (RFC 5321 §4.5.3.1.10, RFC 3463
//     §3.6 X.5.3 "too many recipients"); a message with more recipients
//     than an hour's allowance can never pass and gets 550 5.5.3.
//
// State lives in bounded LRU tables (golang-lru) behind a mutex each, so
// a Limiter is safe for concurrent use and its memory is fixed by the
// tracked_* settings whatever clients send. Passwords are never passed
// in, kept or logged. The package does not log; Stats gives counters for
// metrics.
package authlimit

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"moat/internal/mailname"
	"moat/internal/reply"
)

// Replies. Copy with With to attach a cause for the log.
var (
	// ReplyLocked refuses AUTH during a lock-out (RFC 4954 §6).
	ReplyLocked = reply.New(454, 7, 0, "Temporary authentication failure: too many failed attempts, try again later")
)

// Options wires a Limiter.
type Options struct {
	// Clock is the time source of every window, lock-out and bucket.
	// Default time.Now.
	Clock func() time.Time
	// Shared, when set, is the fleet's failure table (policy/cluster over
	// Redis): failures and lock-outs counted by every node. The node's
	// own table is kept as well and decides alone whenever Shared
	// answers with an error (Redis down or slow), so an outage makes
	// each node as strict as a single moat, never more lenient.
	Shared Shared
}

// Shared is a failure table the nodes of a fleet share. Keys are "ip:"
// and the counted network, or "user:" and the canonical user. Each call
// is bounded by the store's own timeout (cluster.redis.timeout).
type Shared interface {
	// AuthCheck reports whether key is locked out and its failures in
	// the current window.
	AuthCheck(ctx context.Context, key string) (locked bool, count int, err error)
	// AuthFail counts a failure of key; at max failures (0: never)
	// within window it locks key out for lockout and reports started.
	AuthFail(ctx context.Context, key string, max int, window, lockout time.Duration) (started bool, err error)
	// AuthReset forgets key's failures, and its lock-out unless keepLock.
	AuthReset(ctx context.Context, key string, keepLock bool) error
}

// Limiter applies a Config. Build it with New; it is safe for concurrent
// use.
type Limiter struct {
	auth   AuthLimits
	send   SendLimits
	now    func() time.Time
	ips    *failTable[netip.Prefix]
	users  *failTable[string]
	shared Shared

	sendMu sync.Mutex
	rates  *simplelru.LRU[string, *sendState]

	stats [numReasons]atomic.Uint64
	locks [2]atomic.Uint64 // lock-outs started: ip, user
}

// New validates cfg and builds a Limiter; it has no side effect.
func New(cfg Config, opt Options) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opt.Clock == nil {
		opt.Clock = time.Now
	}
	l := &Limiter{auth: cfg.Auth, send: cfg.Send, now: opt.Clock, shared: opt.Shared}
	var err error
	if l.ips, err = newFailTable[netip.Prefix](cfg.Auth.TrackedIPs, cfg.Auth.PerIP, cfg.Auth.Lockout); err != nil {
		return nil, err
	}
	if l.users, err = newFailTable[string](cfg.Auth.TrackedUsers, cfg.Auth.PerUser, cfg.Auth.Lockout); err != nil {
		return nil, err
	}
	if l.rates, err = simplelru.NewLRU[string, *sendState](cfg.Send.TrackedUsers, nil); err != nil {
		return nil, err
	}
	return l, nil
}

// ipKey is the counted network of a client: the address itself for IPv4,
// its IPv6Prefix network for IPv6. ok is false for the zero Addr.
func (l *Limiter) ipKey(ip netip.Addr) (netip.Prefix, bool) {
	if !ip.IsValid() {
		return netip.Prefix{}, false
	}
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = l.auth.IPv6Prefix
	}
	p, err := ip.Prefix(bits)
	return p, err == nil
}

// userKey is the canonical name of user (internal/mailname.Fold: case,
// blanks around, trailing dot, Unicode look-alikes), bounded, so that
// every spelling of one user shares one lock-out and one sending bucket
// (issue 27). The gateway already passes the directory's canonical user;
// folding again here keeps the promise for any caller. ok is false for "".
func userKey(user string) (string, bool) {
	u := mailname.Fold(user)
	if len(u) > maxUserBytes {
		u = u[:maxUserBytes]
	}
	return u, u != ""
}

// BeforeAuth is asked once the client has sent its credentials and before
// the password is checked. A non-nil err is a *reply.Reply (454 4.7.0,
// ReplyLocked with the cause for the log): send it at once and do not
// check the password. Otherwise wait delay (see Sleep) and then check.
// ip may be the zero Addr and user "" when unknown: that side is skipped.
func (l *Limiter) BeforeAuth(ip netip.Addr, user string) (delay time.Duration, err error) {
	now := l.now()
	var n int
	if k, ok := l.ipKey(ip); ok {
		locked, c := l.ips.check(k, now)
		locked, c = l.sharedCheck("ip:"+k.String(), locked, c)
		if locked {
			l.stats[reasonLockedIP].Add(1)
			return 0, ReplyLocked.With(fmt.Errorf("client %s locked out after failed AUTH", k))
		}
		n = c
	}
	if k, ok := userKey(user); ok {
		locked, c := l.users.check(k, now)
		locked, c = l.sharedCheck("user:"+k, locked, c)
		if locked {
			l.stats[reasonLockedUser].Add(1)
			return 0, ReplyLocked.With(fmt.Errorf("user %q locked out after failed AUTH", k))
		}
		n = max(n, c)
	}
	return l.delay(n), nil
}

// sharedCheck adds the fleet's answer for key to the node's own (locked,
// count): locked by either, the larger count. Without an answer the
// node's own stands.
func (l *Limiter) sharedCheck(key string, locked bool, count int) (bool, int) {
	if l.shared == nil || locked {
		return locked, count
	}
	sl, sc, err := l.shared.AuthCheck(context.Background(), key)
	if err != nil {
		return locked, count
	}
	return sl, max(count, sc)
}

// delay is DelayBase·2^(n-1), at most DelayMax; 0 for n = 0.
func (l *Limiter) delay(n int) time.Duration {
	if n <= 0 || l.auth.DelayBase <= 0 {
		return 0
	}
	if n > 32 {
		return l.auth.DelayMax
	}
	d := l.auth.DelayBase << (n - 1)
	if d <= 0 || d > l.auth.DelayMax {
		return l.auth.DelayMax
	}
	return d
}

// AuthFailed records a wrong password (or unknown user: the session must
// not tell them apart) from ip for user.
func (l *Limiter) AuthFailed(ip netip.Addr, user string) {
	now := l.now()
	l.stats[reasonBadPassword].Add(1)
	if k, ok := l.ipKey(ip); ok {
		started := l.ips.fail(k, now)
		if l.sharedFail("ip:"+k.String(), l.auth.PerIP) {
			started = true
		}
		if started {
			l.locks[0].Add(1)
		}
	}
	if k, ok := userKey(user); ok {
		started := l.users.fail(k, now)
		if l.sharedFail("user:"+k, l.auth.PerUser) {
			started = true
		}
		if started {
			l.locks[1].Add(1)
		}
	}
}

// sharedFail counts a failure of key in the fleet's table; it reports
// whether that started a lock-out.
func (l *Limiter) sharedFail(key string, th Threshold) bool {
	if l.shared == nil {
		return false
	}
	started, err := l.shared.AuthFail(context.Background(), key, th.MaxFailures, th.Window, l.auth.Lockout)
	return err == nil && started
}

// AuthSucceeded records a successful AUTH: the address's failures are
// forgotten, and the user's unless the user is locked out (a lock set by
// someone else's guesses holds until it expires).
func (l *Limiter) AuthSucceeded(ip netip.Addr, user string) {
	now := l.now()
	if k, ok := l.ipKey(ip); ok {
		l.ips.reset(k, now, false)
		if l.shared != nil {
			l.shared.AuthReset(context.Background(), "ip:"+k.String(), false)
		}
	}
	if k, ok := userKey(user); ok {
		l.users.reset(k, now, true)
		if l.shared != nil {
			l.shared.AuthReset(context.Background(), "user:"+k, true)
		}
	}
}

// Sleep waits d or until ctx is done, whichever comes first; it returns
// ctx.Err() in the second case. The session uses it for BeforeAuth's
// delay (always on the real clock).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// failures is the state of one key.
type failures struct {
	count       int
	start       time.Time // first failure of the window
	lockedUntil time.Time // zero: not locked
}

// failTable counts failures per key in a bounded LRU.
type failTable[K comparable] struct {
	th      Threshold
	lockout time.Duration
	mu      sync.Mutex
	lru     *simplelru.LRU[K, *failures]
}

func newFailTable[K comparable](size int, th Threshold, lockout time.Duration) (*failTable[K], error) {
	c, err := simplelru.NewLRU[K, *failures](size, nil)
	if err != nil {
		return nil, err
	}
	return &failTable[K]{th: th, lockout: lockout, lru: c}, nil
}

// current returns k's live entry, dropping it when its window or its
// lock-out is over. Called with mu held.
func (t *failTable[K]) current(k K, now time.Time) *failures {
	f, ok := t.lru.Get(k)
	if !ok {
		return nil
	}
	expired := now.Sub(f.start) >= t.th.Window
	if !f.lockedUntil.IsZero() {
		expired = !now.Before(f.lockedUntil)
	}
	if expired {
		t.lru.Remove(k)
		return nil
	}
	return f
}

// check reports whether k is locked out, and its failures in the window.
func (t *failTable[K]) check(k K, now time.Time) (locked bool, count int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.current(k, now)
	if f == nil {
		return false, 0
	}
	return !f.lockedUntil.IsZero(), f.count
}

// fail counts one failure; it reports whether it started a lock-out.
func (t *failTable[K]) fail(k K, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.current(k, now)
	if f == nil {
		f = &failures{start: now}
		t.lru.Add(k, f)
	}
	if !f.lockedUntil.IsZero() {
		return false // already locked (a check raced with the lock)
	}
	if f.count < math.MaxInt32 {
		f.count++
	}
	if t.th.MaxFailures > 0 && f.count >= t.th.MaxFailures {
		f.lockedUntil = now.Add(t.lockout)
		return true
	}
	return false
}

// reset forgets k, unless keepLock and k is locked out.
func (t *failTable[K]) reset(k K, now time.Time, keepLock bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.current(k, now)
	if f == nil || keepLock && !f.lockedUntil.IsZero() {
		return
	}
	t.lru.Remove(k)
}

// len is the number of tracked keys (tests).
func (t *failTable[K]) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lru.Len()
}
