package cluster

import (
	"context"
	"errors"
	"math"
	"net/netip"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// bucketScript takes one token from the token bucket KEYS[1], a hash with
// t = tokens and l = last refill (unix ms). ARGV: now (ms), refill rate
// (tokens per ms), burst, expiry (ms). A missing bucket is full. A "last"
// in the future (a node whose clock is ahead) refills nothing. Returns 1
// if a token was taken.
var bucketScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local v = redis.call('HMGET', KEYS[1], 't', 'l')
local tokens = tonumber(v[1])
local last = tonumber(v[2])
if tokens == nil or last == nil then
  tokens = burst
  last = now
end
if now > last then
  tokens = tokens + (now - last) * rate
  last = now
end
if tokens > burst then tokens = burst end
local ok = 0
if tokens >= 1 then
  tokens = tokens - 1
  ok = 1
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'l', tostring(last))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return ok
`)

// GuardState shares the connection guard's rate buckets and pregreet
// pass cache (it satisfies gateway/guard.SharedState). It keeps no local
// state: the guard's own LRUs are in front of it (pass cache) and are its
// fallback (both). Errors are returned, never waited out: every call is
// bounded by cluster.redis.timeout and skipped during a back-off.
type GuardState struct {
	c *Client
}

// GuardState returns the guard's shared state (guard.Options.Shared).
func (c *Client) GuardState() *GuardState { return &GuardState{c: c} }

// maxBucketTTL bounds the life of an idle bucket; past its refill time an
// idle bucket is full, the same as a missing one.
const maxBucketTTL = 7 * 24 * time.Hour

// RateAllow takes one token from the shared bucket key.
func (s *GuardState) RateAllow(ctx context.Context, key string, ratePerMinute float64, burst int) (bool, error) {
	if ratePerMinute <= 0 || math.IsNaN(ratePerMinute) || math.IsInf(ratePerMinute, 0) || burst < 1 {
		return false, errors.New("cluster: rate and burst must be positive")
	}
	perMs := ratePerMinute / 60000
	refill := time.Duration(float64(burst)/perMs*float64(time.Millisecond)) + time.Second
	if refill > maxBucketTTL || refill <= 0 {
		refill = maxBucketTTL
	}
	var ok int64
	err := s.c.do(ctx, func(ctx context.Context) error {
		var err error
		ok, err = bucketScript.Run(ctx, s.c.rdb, []string{s.c.key("tb:", key)},
			s.c.clock().UnixMilli(), strconv.FormatFloat(perMs, 'g', -1, 64), burst, millis(refill)).Int64()
		return err
	})
	if err != nil {
		return false, err
	}
	return ok == 1, nil
}

// PassUntil returns until when ip passed the pregreet test on some node;
// the zero time if it did not.
func (s *GuardState) PassUntil(ctx context.Context, ip netip.Addr) (time.Time, error) {
	var v string
	err := s.c.do(ctx, func(ctx context.Context) error {
		var err error
		v, err = s.c.rdb.Get(ctx, s.c.key("pg:", ip.Unmap().String())).Result()
		return err
	})
	if errors.Is(err, redis.Nil) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, nil // not ours: as if absent
	}
	return time.UnixMilli(ms), nil
}

// SetPass remembers that ip passed the pregreet test, until until; the
// key expires then.
func (s *GuardState) SetPass(ctx context.Context, ip netip.Addr, until time.Time) error {
	ttl := until.Sub(s.c.clock())
	if ttl <= 0 {
		return nil
	}
	return s.c.do(ctx, func(ctx context.Context) error {
		return s.c.rdb.Set(ctx, s.c.key("pg:", ip.Unmap().String()), until.UnixMilli(), ttl).Err()
	})
}
