package mtasts

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"moat/internal/dnsres"
)

// DefaultCacheSize bounds the policies kept in memory and in a BoltStore.
const DefaultCacheSize = 10000

// TXTResolver looks up TXT records; dnsres.Resolver is one.
type TXTResolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// Options configure a Manager.
type Options struct {
	Resolver TXTResolver
	Fetcher  *Fetcher
	// Store persists policies (BoltStore, KVStore); nil keeps them in
	// memory only.
	Store Store
	// CacheSize bounds the in-memory cache; default DefaultCacheSize.
	CacheSize int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Manager finds the policy of a domain, with the caching of §5.1. It is
// safe for concurrent use.
type Manager struct {
	o   Options
	mem *memCache

	mu       sync.Mutex
	inflight map[string]*call // one fetch per domain at a time
}

// call is a fetch in progress that others for the same domain wait for.
type call struct {
	done chan struct{}
	p    *Policy
	err  error
}

// NewManager returns a Manager.
func NewManager(o Options) (*Manager, error) {
	if o.Resolver == nil || o.Fetcher == nil {
		return nil, errors.New("mtasts: a resolver and a fetcher are needed")
	}
	if o.CacheSize <= 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	mem, err := lru.New[string, Entry](o.CacheSize)
	if err != nil {
		return nil, err
	}
	return &Manager{o: o, mem: mem, inflight: map[string]*call{}}, nil
}

// Lookup is the answer for one domain.
type Lookup struct {
	// Policy is the policy that applies (enforce or testing; a "none"
	// policy is returned too), nil when there is none.
	Policy *Policy
	// Err is why no fresh policy could be had: a *FetchError when the
	// fetch failed (with Policy the cached one, or nil), or the DNS
	// error of the TXT lookup. For TLS-RPT and the log; it never stops
	// delivery by itself (§5).
	Err error
	// Cached is true when Policy came from the cache without a fetch.
	Cached bool
}

// Get returns the policy of domain (A-label form).
func (m *Manager) Get(ctx context.Context, domain string) Lookup {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	now := m.o.Now()
	cached, haveCached := m.cached(ctx, domain, now)
	txts, err := m.o.Resolver.LookupTXT(ctx, "_mta-sts."+domain)
	var rec Record
	if err == nil {
		rec, err = ParseRecords(txts)
	} else if dnsres.IsNotFound(err) {
		err = ErrNoRecord
	}
	if err != nil {
		// §5.1: no record, a broken one or a failed lookup: a cached
		// policy that has not expired still applies.
		if haveCached {
			return Lookup{Policy: cached.Policy, Cached: true}
		}
		if errors.Is(err, ErrNoRecord) {
			return Lookup{}
		}
		return Lookup{Err: fmt.Errorf("looking up _mta-sts.%s: %w", domain, err)}
	}
	if haveCached && cached.ID == rec.ID {
		return Lookup{Policy: cached.Policy, Cached: true}
	}
	p, err := m.fetch(ctx, domain)
	if err != nil {
		if haveCached {
			return Lookup{Policy: cached.Policy, Cached: true, Err: err}
		}
		return Lookup{Err: err}
	}
	e := Entry{Domain: domain, ID: rec.ID, Fetched: now, Expires: now.Add(p.MaxAge), Policy: p}
	m.mem.Add(domain, e)
	if m.o.Store != nil {
		m.o.Store.Put(ctx, e)
	}
	return Lookup{Policy: p}
}

// fetch fetches the policy of domain, sharing a fetch already under way
// (concurrent deliveries to one domain fetch once).
func (m *Manager) fetch(ctx context.Context, domain string) (*Policy, error) {
	m.mu.Lock()
	if c, ok := m.inflight[domain]; ok {
		m.mu.Unlock()
		select {
		case <-c.done:
			return c.p, c.err
		case <-ctx.Done():
			return nil, &FetchError{Domain: domain, Err: ctx.Err()}
		}
	}
	c := &call{done: make(chan struct{})}
	m.inflight[domain] = c
	m.mu.Unlock()
	c.p, c.err = m.o.Fetcher.Fetch(ctx, domain)
	m.mu.Lock()
	delete(m.inflight, domain)
	m.mu.Unlock()
	close(c.done)
	return c.p, c.err
}

// cached returns the unexpired cached entry of domain.
func (m *Manager) cached(ctx context.Context, domain string, now time.Time) (Entry, bool) {
	e, ok := m.mem.Get(domain)
	if !ok && m.o.Store != nil {
		if e, ok = m.o.Store.Get(ctx, domain); ok {
			m.mem.Add(domain, e)
		}
	}
	if !ok || !now.Before(e.Expires) {
		return Entry{}, false
	}
	return e, true
}
