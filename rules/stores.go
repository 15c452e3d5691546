package rules

import (
	"time"

	"moat/policy/store"
)

// The stores the engine keeps state in are declared in package
// policy/store, so that the cluster backend (package policy/cluster, over
// Redis) can implement them without importing rules. These aliases keep
// the names rules has always exported.
type (
	// Limiter counts events per key in fixed windows.
	Limiter = store.Limiter
	// GreylistResult is the answer of a Greylister.
	GreylistResult = store.GreylistResult
	// Greylister remembers greylisting triplets (RFC 6647 §2).
	Greylister = store.Greylister
	// MemoryLimiter is a Limiter over a bounded LRU of fixed windows.
	MemoryLimiter = store.MemoryLimiter
	// MemoryGreylister is a Greylister over a bounded LRU.
	MemoryGreylister = store.MemoryGreylister
)

// NewMemoryLimiter returns a limiter holding at most size keys; clock nil
// means time.Now.
func NewMemoryLimiter(size int, clock func() time.Time) *MemoryLimiter {
	return store.NewMemoryLimiter(size, clock)
}

// NewMemoryGreylister returns a greylister holding at most size triplets;
// clock nil means time.Now.
func NewMemoryGreylister(size int, clock func() time.Time) *MemoryGreylister {
	return store.NewMemoryGreylister(size, clock)
}
