package bayes

import (
	"context"
	"errors"
	"sync"
)

// Class is what a message was learned as.
type Class uint8

// The classes. ClassNone means "not learned".
const (
	ClassNone Class = iota
	ClassSpam
	ClassHam
)

func (c Class) String() string {
	switch c {
	case ClassSpam:
		return "spam"
	case ClassHam:
		return "ham"
	}
	return "none"
}

// ParseClass parses "spam" or "ham".
func ParseClass(s string) (Class, error) {
	switch s {
	case "spam":
		return ClassSpam, nil
	case "ham":
		return ClassHam, nil
	}
	return ClassNone, errors.New(`bayes: class must be "spam" or "ham"`)
}

// Outcome is what Learn did.
type Outcome uint8

// The outcomes of Learn.
const (
	Learned      Outcome = iota + 1 // new message, counted
	AlreadyKnown                    // learned before as the same class: nothing changed
	Moved                           // learned before as the other class: moved
)

func (o Outcome) String() string {
	switch o {
	case Learned:
		return "learned"
	case AlreadyKnown:
		return "already known"
	case Moved:
		return "moved"
	}
	return "unknown"
}

// Count is the number of learned spam and ham messages that held a token.
type Count struct {
	Spam, Ham uint32
}

// Totals are the numbers of learned messages (and, where the store knows
// it cheaply, of distinct tokens; -1 otherwise).
type Totals struct {
	Spam, Ham int64
	Tokens    int64
}

// Store keeps token counts and the digests of learned messages. Tokens are
// passed as 64-bit keys (TokenKey). Implementations are safe for
// concurrent use.
type Store interface {
	// Counts returns the count of every key (in order) and the totals, in
	// one round trip.
	Counts(ctx context.Context, keys []uint64) ([]Count, Totals, error)
	// Learn records the message d as class c with the given keys. A
	// message learned before as c is left alone (AlreadyKnown); one
	// learned as the other class has its keys moved (Moved).
	Learn(ctx context.Context, d Digest, c Class, keys []uint64) (Outcome, error)
	// Forget removes the message d and its keys' counts; it returns the
	// class it had, ClassNone if it was not learned.
	Forget(ctx context.Context, d Digest, keys []uint64) (Class, error)
	// Stats returns the totals.
	Stats(ctx context.Context) (Totals, error)
	// Close releases the store.
	Close() error
}

// TokenKey maps a token to its store key (64-bit FNV-1a: stable across
// processes and versions, so every node of a fleet agrees).
func TokenKey(tok string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(tok); i++ {
		h ^= uint64(tok[i])
		h *= 1099511628211
	}
	return h
}

// MemStore is a Store in memory, for tests and measurements. Its size
// grows with the distinct tokens learned.
type MemStore struct {
	mu      sync.RWMutex
	tokens  map[uint64]Count
	digests map[Digest]Class
	spam    int64
	ham     int64
}

var _ Store = (*MemStore)(nil)

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{tokens: map[uint64]Count{}, digests: map[Digest]Class{}}
}

// Counts implements Store.
func (m *MemStore) Counts(_ context.Context, keys []uint64) ([]Count, Totals, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]Count, len(keys))
	for i, k := range keys {
		out[i] = m.tokens[k]
	}
	return out, Totals{Spam: m.spam, Ham: m.ham, Tokens: int64(len(m.tokens))}, nil
}

// Learn implements Store.
func (m *MemStore) Learn(_ context.Context, d Digest, c Class, keys []uint64) (Outcome, error) {
	if c != ClassSpam && c != ClassHam {
		return 0, errors.New("bayes: learn needs spam or ham")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	prev := m.digests[d]
	if prev == c {
		return AlreadyKnown, nil
	}
	if prev != ClassNone {
		m.apply(prev, keys, -1)
	}
	m.apply(c, keys, +1)
	m.digests[d] = c
	if prev != ClassNone {
		return Moved, nil
	}
	return Learned, nil
}

// Forget implements Store.
func (m *MemStore) Forget(_ context.Context, d Digest, keys []uint64) (Class, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	prev := m.digests[d]
	if prev != ClassNone {
		m.apply(prev, keys, -1)
		delete(m.digests, d)
	}
	return prev, nil
}

func (m *MemStore) apply(c Class, keys []uint64, delta int) {
	if c == ClassSpam {
		m.spam = max(m.spam+int64(delta), 0)
	} else {
		m.ham = max(m.ham+int64(delta), 0)
	}
	for _, k := range keys {
		n := m.tokens[k]
		if c == ClassSpam {
			n.Spam = addClamped(n.Spam, delta)
		} else {
			n.Ham = addClamped(n.Ham, delta)
		}
		if n == (Count{}) {
			delete(m.tokens, k)
		} else {
			m.tokens[k] = n
		}
	}
}

// Stats implements Store.
func (m *MemStore) Stats(context.Context) (Totals, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return Totals{Spam: m.spam, Ham: m.ham, Tokens: int64(len(m.tokens))}, nil
}

// Close implements Store.
func (m *MemStore) Close() error { return nil }

// addClamped adds delta to n, staying within 0..MaxUint32.
func addClamped(n uint32, delta int) uint32 {
	v := int64(n) + int64(delta)
	if v < 0 {
		return 0
	}
	if v > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(v)
}
