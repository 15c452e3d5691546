package cluster

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"moat/policy/store"
)

// greylistScript checks the triplet KEYS[1] (RFC 6647 §2): a hash with
// f = first attempt (unix ms) and p = passed. ARGV: now, delay and expiry
// in ms. A new triplet is recorded and told to wait the delay; a retry
// after the delay passes (RFC 6647 §2.2), and a passed triplet keeps
// passing. Every attempt renews the expiry, so a triplet is forgotten
// after expiry unseen (RFC 6647 §4.1 recommends remembering passes for
// weeks). Returns {pass (0/1), retry after (ms)}.
var greylistScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local delay = tonumber(ARGV[2])
local v = redis.call('HMGET', KEYS[1], 'f', 'p')
local first = tonumber(v[1])
if first == nil then
  redis.call('HSET', KEYS[1], 'f', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {0, delay}
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if v[2] == '1' or now - first >= delay then
  redis.call('HSET', KEYS[1], 'p', '1')
  return {1, 0}
end
local wait = delay - (now - first)
if wait > delay then wait = delay end
return {0, wait}
`)

// Greylister is a store.Greylister whose triplets are shared by every
// node through Redis, so that a sender retrying through another node (a
// load balancer, or the next MX of the same cluster) is not greylisted
// again. Each call also goes to a node-local store.MemoryGreylister, which
// learns the passes Redis reports and answers when Redis does not.
//
// There is no cache in front of Redis: every attempt must renew the
// shared expiry.
type Greylister struct {
	c     *Client
	local *store.MemoryGreylister
}

// Greylister returns the shared greylist (rules.Options.Greylister).
func (c *Client) Greylister() *Greylister {
	return &Greylister{c: c, local: store.NewMemoryGreylister(c.localSize, c.clock)}
}

// Check implements store.Greylister. It never returns an error: when
// Redis fails the local greylist decides.
func (g *Greylister) Check(ctx context.Context, key string, delay, expiry time.Duration) (store.GreylistResult, error) {
	local, _ := g.local.Check(ctx, key, delay, expiry)
	var res []int64
	err := g.c.do(ctx, func(ctx context.Context) error {
		var err error
		res, err = greylistScript.Run(ctx, g.c.rdb, []string{g.c.key("gl:", key)},
			g.c.clock().UnixMilli(), delay.Milliseconds(), millis(expiry)).Int64Slice()
		return err
	})
	if err != nil || len(res) != 2 {
		return local, nil
	}
	if res[0] == 1 {
		g.local.MarkPassed(key)
		return store.GreylistResult{Pass: true}, nil
	}
	return store.GreylistResult{RetryAfter: time.Duration(res[1]) * time.Millisecond}, nil
}

var _ store.Greylister = (*Greylister)(nil)
