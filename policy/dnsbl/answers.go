package dnsbl

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"moat/internal/dnsres"
)

// maxAnswerAddrs bounds the addresses kept from one answer.
const maxAnswerAddrs = 16

// Answers looks up the A records of DNS list query names through a
// resolver and keeps each answer, "listed" or "not listed", in a bounded
// LRU cache for a fixed TTL. Failures (timeout, SERVFAIL, REFUSED, network
// errors) are returned and never cached. It is safe for concurrent use;
// policy/uribl shares it.
type Answers struct {
	res   dnsres.Resolver
	ttl   time.Duration
	now   func() time.Time
	cache *lru.Cache[string, cachedAnswer]
}

// AnswersOptions configures NewAnswers.
type AnswersOptions struct {
	Resolver dnsres.Resolver // required
	Size     int             // cache entries; 0: DefaultCacheSize
	TTL      time.Duration   // how long an answer is reused; 0: DefaultCacheTTL
	Now      func() time.Time
}

type cachedAnswer struct {
	addrs   []netip.Addr // nil: not listed
	expires time.Time
}

// NewAnswers makes an Answers; it does no lookups.
func NewAnswers(o AnswersOptions) (*Answers, error) {
	if o.Resolver == nil {
		return nil, errors.New("dnsbl: a resolver is required")
	}
	if o.Size <= 0 {
		o.Size = DefaultCacheSize
	}
	if o.TTL <= 0 {
		o.TTL = DefaultCacheTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	cache, err := lru.New[string, cachedAnswer](o.Size)
	if err != nil {
		return nil, err
	}
	return &Answers{res: o.Resolver, ttl: o.TTL, now: o.Now, cache: cache}, nil
}

// Cached returns the cached answer for name (nil when not listed) if
// there is a fresh one, without a lookup.
func (a *Answers) Cached(name string) ([]netip.Addr, bool) {
	if e, ok := a.cache.Get(name); ok && a.now().Before(e.expires) {
		return e.addrs, true
	}
	return nil, false
}

// Lookup returns the A records of name (nil when not listed), from the
// cache when fresh. A non-nil error is a failure: neither listed nor not
// listed.
func (a *Answers) Lookup(ctx context.Context, name string) ([]netip.Addr, error) {
	now := a.now()
	if e, ok := a.cache.Get(name); ok && now.Before(e.expires) {
		return e.addrs, nil
	}
	ips, err := a.res.LookupIP(ctx, "ip4", name)
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound && !dnsErr.IsTemporary && !dnsErr.IsTimeout {
			// RFC 5782 §2.1: NXDOMAIN (or no A record) is "not listed".
			a.cache.Add(name, cachedAnswer{expires: now.Add(a.ttl)})
			return nil, nil
		}
		return nil, err
	}
	var addrs []netip.Addr
	for _, ip := range ips {
		if ad, ok := netip.AddrFromSlice(ip); ok {
			addrs = append(addrs, ad.Unmap())
		}
		if len(addrs) == maxAnswerAddrs { // bound what one answer can make us keep
			break
		}
	}
	a.cache.Add(name, cachedAnswer{addrs: addrs, expires: now.Add(a.ttl)})
	return addrs, nil
}
