package cluster

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// AuthFailures shares failed-AUTH counts and lock-outs (policy/authlimit)
// between the nodes, so that a password guesser who spreads its attempts
// over a fleet meets the same limit as against one node. Two keys per
// counted address or user: "af:" holds the failures of the current window
// (expiring with the window, which starts at the first failure, as the
// node-local table does) and "al:" the lock-out (expiring when it ends).
// It satisfies authlimit.Shared; the node-local table stays the fallback,
// so an error here only means "no shared answer".
type AuthFailures struct{ c *Client }

// AuthFailures returns the shared failure table (authlimit.Options.Shared).
func (c *Client) AuthFailures() *AuthFailures { return &AuthFailures{c: c} }

// authFailScript counts one failure of KEYS[1] unless KEYS[2] (its
// lock-out) exists; at ARGV[3] failures (0: never) it starts the lock-out
// for ARGV[2] ms and drops the count. Returns -1 when already locked, -2
// when this failure started the lock-out, else the count.
var authFailScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
local max = tonumber(ARGV[3])
if max > 0 and n >= max then
  redis.call('SET', KEYS[2], n, 'PX', ARGV[2])
  redis.call('DEL', KEYS[1])
  return -2
end
return n
`)

// authResetScript forgets KEYS[1], and KEYS[2] too unless ARGV[1] is "1"
// and the lock-out exists (a lock-out outlives a success).
var authResetScript = redis.NewScript(`
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
`)

func (a *AuthFailures) keys(key string) []string {
	return []string{a.c.key("af:", key), a.c.key("al:", key)}
}

// AuthCheck reports whether key is locked out and its failures in the
// current window.
func (a *AuthFailures) AuthCheck(ctx context.Context, key string) (locked bool, count int, err error) {
	var vals []any
	err = a.c.do(ctx, func(ctx context.Context) error {
		var err error
		vals, err = a.c.rdb.MGet(ctx, a.keys(key)...).Result()
		return err
	})
	if err != nil {
		return false, 0, err
	}
	if len(vals) == 2 && vals[1] != nil {
		return true, 0, nil
	}
	if len(vals) > 0 {
		if s, ok := vals[0].(string); ok {
			count = atoiBounded(s)
		}
	}
	return false, count, nil
}

// AuthFail counts one failure of key; it reports whether this failure
// started a lock-out of lockout, at max failures within window.
func (a *AuthFailures) AuthFail(ctx context.Context, key string, max int, window, lockout time.Duration) (started bool, err error) {
	var n int64
	err = a.c.do(ctx, func(ctx context.Context) error {
		var err error
		n, err = authFailScript.Run(ctx, a.c.rdb, a.keys(key), millis(window), millis(lockout), max).Int64()
		return err
	})
	return err == nil && n == -2, err
}

// AuthReset forgets key's failures, and its lock-out unless keepLock.
func (a *AuthFailures) AuthReset(ctx context.Context, key string, keepLock bool) error {
	keep := "0"
	if keepLock {
		keep = "1"
	}
	return a.c.do(ctx, func(ctx context.Context) error {
		return authResetScript.Run(ctx, a.c.rdb, a.keys(key), keep).Err()
	})
}

// atoiBounded parses a stored count; anything else (written by something
// other than moat) counts as 0, and a huge one is capped.
func atoiBounded(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0
		}
		if n > 1<<30 {
			return 1 << 30
		}
		n = n*10 + int(c-'0')
	}
	return n
}
