package guard

import (
	"context"
	"net/netip"
	"time"
)

// SharedState is state the guard shares with the other nodes of a
// cluster (package policy/cluster implements it over Redis): the
// connection rate buckets and the pregreet pass cache. It is optional
// (Options.Shared); without it every node keeps its own.
//
// The guard keeps its local state in any case and uses it whenever a
// call returns an error, so an implementation must bound every call by
// its own short deadline and return an error rather than wait: the
// screening of a connection waits for it.
//
// Concurrency (per_ip and per_prefix max_concurrent, max_connections)
// is never shared: a live connection belongs to one node's sockets, and a
// shared counter left behind by a node that crashed or lost the store
// would lock clients out.
type SharedState interface {
	// PassUntil returns until when ip is remembered as having passed the
	// pregreet test on any node; the zero time if it is not.
	PassUntil(ctx context.Context, ip netip.Addr) (time.Time, error)
	// SetPass remembers that ip passed the pregreet test, until until.
	SetPass(ctx context.Context, ip netip.Addr, until time.Time) error
	// RateAllow takes one token from the shared token bucket key (refilled
	// at ratePerMinute, holding at most burst) and reports whether there
	// was one.
	RateAllow(ctx context.Context, key string, ratePerMinute float64, burst int) (bool, error)
}

// sharedRate asks the shared buckets after the local limiter admitted ip;
// it returns the rejection reason, "" to admit. On an error of the store
// the local decision stands. A client refused by its network still spent
// a token of its own address: it was refused anyway.
func (g *Guard) sharedRate(ctx context.Context, ip netip.Addr, cfg *Config) string {
	if g.shared == nil {
		return ""
	}
	if l := cfg.PerIP; l.RatePerMinute > 0 {
		ok, err := g.shared.RateAllow(ctx, "ip:"+ip.String(), l.RatePerMinute, l.Burst)
		if err == nil && !ok {
			return ReasonPerIPRate
		}
	}
	if l := cfg.PerPrefix.Limit; l.RatePerMinute > 0 {
		ok, err := g.shared.RateAllow(ctx, "net:"+prefixOf(ip, cfg).String(), l.RatePerMinute, l.Burst)
		if err == nil && !ok {
			return ReasonPerPrefixRate
		}
	}
	return ""
}

// sharedPass looks ip up in the shared pass cache after a local miss, and
// copies a hit into the local cache.
func (g *Guard) sharedPass(ctx context.Context, ip netip.Addr) (time.Time, bool) {
	if g.shared == nil {
		return time.Time{}, false
	}
	until, err := g.shared.PassUntil(ctx, ip)
	if err != nil || !g.now().Before(until) {
		return time.Time{}, false
	}
	g.passMu.Lock()
	g.pass.Add(ip, until)
	g.passMu.Unlock()
	return until, true
}
