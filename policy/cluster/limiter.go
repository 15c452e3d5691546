package cluster

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"moat/policy/store"
)

// limitScript counts one event in the fixed window of KEYS[1]: the first
// event of a window creates the key and sets its expiry to the window
// (ARGV[1], ms), so the window starts at the first event, as in
// store.MemoryLimiter. A key left without expiry (written by something
// else) gets one. Atomic: Redis runs a script alone.
var limitScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
`)

// Limiter is a store.Limiter whose fixed windows are shared by every node
// through Redis. Each call also counts in a node-local
// store.MemoryLimiter, which answers when Redis does not, so that it is
// warm when it has to.
type Limiter struct {
	c     *Client
	local *store.MemoryLimiter
}

// Limiter returns the shared rate limiter (rules.Options.Limiter).
func (c *Client) Limiter() *Limiter {
	return &Limiter{c: c, local: store.NewMemoryLimiter(c.localSize, c.clock)}
}

// Allow implements store.Limiter. It never returns an error: when Redis
// fails the local count decides.
func (l *Limiter) Allow(ctx context.Context, key string, limit int, window time.Duration) (bool, error) {
	localOK, _ := l.local.Allow(ctx, key, limit, window)
	var n int64
	err := l.c.do(ctx, func(ctx context.Context) error {
		var err error
		n, err = limitScript.Run(ctx, l.c.rdb, []string{l.c.key("rl:", key)}, millis(window)).Int64()
		return err
	})
	if err != nil {
		return localOK, nil
	}
	return n <= int64(limit), nil
}

var _ store.Limiter = (*Limiter)(nil)
