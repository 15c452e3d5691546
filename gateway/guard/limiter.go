package guard

import (
	"net/netip"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// bucket is the state of one client address or network: a token bucket
// for the connection rate and a count of open connections.
type bucket struct {
	tokens float64
	last   time.Time
	active int
}

// limiter holds the per-IP and per-prefix buckets in two bounded LRUs,
// so memory stays bounded whatever the number of distinct clients. An
// evicted bucket of a client with open connections only makes the limit
// more lenient for that client (its count starts again from zero); with
// tracked_clients far above max_connections this takes a flood of new
// addresses, which max_connections still caps.
type limiter struct {
	mu   sync.Mutex
	ips  *lru.Cache[netip.Prefix, *bucket]
	nets *lru.Cache[netip.Prefix, *bucket]
	now  func() time.Time
}

func newLimiter(size int, now func() time.Time) (*limiter, error) {
	ips, err := lru.New[netip.Prefix, *bucket](size)
	if err != nil {
		return nil, err
	}
	nets, err := lru.New[netip.Prefix, *bucket](size)
	if err != nil {
		return nil, err
	}
	return &limiter{ips: ips, nets: nets, now: now}, nil
}

// resize follows a reload of guard.tracked_clients.
func (l *limiter) resize(size int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ips.Resize(size)
	l.nets.Resize(size)
}

// prefixOf returns the network of ip for the per-prefix limit.
func prefixOf(ip netip.Addr, cfg *Config) netip.Prefix {
	bits := cfg.PerPrefix.IPv4Prefix
	if ip.Is6() {
		bits = cfg.PerPrefix.IPv6Prefix
	}
	p, _ := ip.Prefix(bits)
	return p
}

// lease is one connection's place in the concurrency counts of its
// address and network.
type lease struct {
	l      *limiter
	bi, bn *bucket
	done   bool // guarded by l.mu
}

// release gives the place back; calls after the first, and calls on a
// nil lease, do nothing. The buckets may have been evicted meanwhile;
// decrementing them is harmless then.
func (s *lease) release() {
	if s == nil {
		return
	}
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	if s.done {
		return
	}
	s.done = true
	if s.bi.active > 0 {
		s.bi.active--
	}
	if s.bn.active > 0 {
		s.bn.active--
	}
}

// acquire checks and takes one connection for ip. On success it returns
// the lease (release it once, when the connection ends); on failure the
// rejection reason.
func (l *limiter) acquire(ip netip.Addr, cfg *Config) (*lease, string) {
	now := l.now()
	ipKey := netip.PrefixFrom(ip, ip.BitLen())
	netKey := prefixOf(ip, cfg)

	l.mu.Lock()
	defer l.mu.Unlock()
	bi := l.get(l.ips, ipKey, cfg.PerIP, now)
	bn := l.get(l.nets, netKey, cfg.PerPrefix.Limit, now)
	refill(bi, cfg.PerIP, now)
	refill(bn, cfg.PerPrefix.Limit, now)
	switch {
	case cfg.PerIP.MaxConcurrent > 0 && bi.active >= cfg.PerIP.MaxConcurrent:
		return nil, ReasonPerIPConcurrency
	case cfg.PerPrefix.MaxConcurrent > 0 && bn.active >= cfg.PerPrefix.MaxConcurrent:
		return nil, ReasonPerPrefixConcurrency
	case cfg.PerIP.RatePerMinute > 0 && bi.tokens < 1:
		return nil, ReasonPerIPRate
	case cfg.PerPrefix.RatePerMinute > 0 && bn.tokens < 1:
		return nil, ReasonPerPrefixRate
	}
	if cfg.PerIP.RatePerMinute > 0 {
		bi.tokens--
	}
	if cfg.PerPrefix.RatePerMinute > 0 {
		bn.tokens--
	}
	bi.active++
	bn.active++
	return &lease{l: l, bi: bi, bn: bn}, ""
}

func (l *limiter) get(c *lru.Cache[netip.Prefix, *bucket], k netip.Prefix, lim Limit, now time.Time) *bucket {
	if b, ok := c.Get(k); ok {
		return b
	}
	b := &bucket{tokens: float64(lim.Burst), last: now}
	c.Add(k, b)
	return b
}

// refill adds the tokens earned since the last visit, up to the burst.
func refill(b *bucket, lim Limit, now time.Time) {
	if lim.RatePerMinute <= 0 {
		return
	}
	if d := now.Sub(b.last); d > 0 {
		b.tokens += d.Minutes() * lim.RatePerMinute
		b.last = now
	}
	if max := float64(lim.Burst); b.tokens > max {
		b.tokens = max
	}
}
