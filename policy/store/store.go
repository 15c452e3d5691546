// Package store declares the two stores the rule engine keeps state in,
// a rate limiter and a greylist (RFC 6647 §2), together with their
// in-memory implementations over bounded LRUs. The rule engine (package
// rules) reads them through type aliases; the cluster backend (package
// policy/cluster) implements the same interfaces over Redis and uses the
// memory implementations as its local fallback.
package store

import (
	"context"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Limiter counts events per key in fixed windows. The cluster backend
// (Redis) implements the same interface.
type Limiter interface {
	// Allow counts one event for key and reports whether it is within
	// limit events per window.
	Allow(ctx context.Context, key string, limit int, window time.Duration) (bool, error)
}

// GreylistResult is the answer of a Greylister.
type GreylistResult struct {
	Pass       bool          // the triplet waited long enough (or passed before)
	RetryAfter time.Duration // when not passing: how long still to wait
}

// Greylister remembers greylisting triplets (RFC 6647 §2).
type Greylister interface {
	Check(ctx context.Context, key string, delay, expiry time.Duration) (GreylistResult, error)
}

// MemoryLimiter is a Limiter over a bounded LRU of fixed windows. Keys
// evicted by the LRU start a fresh window (they were the least active).
type MemoryLimiter struct {
	mu    sync.Mutex
	clock func() time.Time
	lru   *lru.Cache[string, *window]
}

type window struct {
	start time.Time
	count int
}

// NewMemoryLimiter returns a limiter holding at most size keys; clock nil
// means time.Now.
func NewMemoryLimiter(size int, clock func() time.Time) *MemoryLimiter {
	if clock == nil {
		clock = time.Now
	}
	c, _ := lru.New[string, *window](max(size, 1))
	return &MemoryLimiter{clock: clock, lru: c}
}

// Allow implements Limiter.
func (l *MemoryLimiter) Allow(_ context.Context, key string, limit int, win time.Duration) (bool, error) {
	now := l.clock()
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.lru.Get(key)
	if !ok || now.Sub(w.start) >= win || now.Before(w.start) {
		w = &window{start: now}
		l.lru.Add(key, w)
	}
	w.count++
	return w.count <= limit, nil
}

// MemoryGreylister is a Greylister over a bounded LRU.
type MemoryGreylister struct {
	mu    sync.Mutex
	clock func() time.Time
	lru   *lru.Cache[string, *triplet]
}

type triplet struct {
	first  time.Time // first attempt
	last   time.Time // last attempt (or pass)
	passed bool
}

// NewMemoryGreylister returns a greylister holding at most size triplets;
// clock nil means time.Now.
func NewMemoryGreylister(size int, clock func() time.Time) *MemoryGreylister {
	if clock == nil {
		clock = time.Now
	}
	c, _ := lru.New[string, *triplet](max(size, 1))
	return &MemoryGreylister{clock: clock, lru: c}
}

// Check implements Greylister: the first attempt is told to wait delay; a
// retry after delay passes, and the triplet then passes without delay
// until it has been unseen for expiry (RFC 6647 §2.2, §4.1).
func (g *MemoryGreylister) Check(_ context.Context, key string, delay, expiry time.Duration) (GreylistResult, error) {
	now := g.clock()
	g.mu.Lock()
	defer g.mu.Unlock()
	t, ok := g.lru.Get(key)
	if !ok || now.Sub(t.last) > expiry {
		g.lru.Add(key, &triplet{first: now, last: now})
		return GreylistResult{RetryAfter: delay}, nil
	}
	t.last = now
	if t.passed || now.Sub(t.first) >= delay {
		t.passed = true
		return GreylistResult{Pass: true}, nil
	}
	return GreylistResult{RetryAfter: delay - now.Sub(t.first)}, nil
}

// MarkPassed records key as a triplet that passed (seen now), as another
// node of a cluster told: the local fallback then keeps letting it pass.
func (g *MemoryGreylister) MarkPassed(key string) {
	now := g.clock()
	g.mu.Lock()
	defer g.mu.Unlock()
	if t, ok := g.lru.Get(key); ok {
		t.passed, t.last = true, now
		return
	}
	g.lru.Add(key, &triplet{first: now, last: now, passed: true})
}

var (
	_ Limiter    = (*MemoryLimiter)(nil)
	_ Greylister = (*MemoryGreylister)(nil)
)
