package bayes

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions configures a RedisStore.
type RedisOptions struct {
	// KeyPrefix starts every key (normally cluster.redis.key_prefix, e.g.
	// "moat:"); the store adds "bayes:".
	KeyPrefix string
	// TokenTTL, when positive, expires a token's counts this long after
	// the last message that held it was learned, so rare tokens prune
	// themselves. Default 0: tokens never expire.
	TokenTTL time.Duration
	// Timeout bounds each call. Default 2s (learning a message is one
	// script call over up to MaxTokens keys).
	Timeout time.Duration
}

// RedisStore is a Store in Redis, shared by every node of a fleet.
//
// Keys (after the prefix): "bayes:t:<16 hex>" a hash per token with fields
// "s" and "h" (learned spam and ham messages holding it); "bayes:n" a hash
// with the totals "s" and "h"; "bayes:d:<64 hex>" the class ("s" or "h")
// of each learned message. Learn and Forget run as one Lua script each, so
// concurrent learners of the same message count it once; Counts is one
// pipeline of HMGETs.
type RedisStore struct {
	rdb redis.UniversalClient
	opt RedisOptions
}

var _ Store = (*RedisStore)(nil)

// NewRedisStore returns a store over rdb. It does not own rdb: Close does
// not close it.
func NewRedisStore(rdb redis.UniversalClient, opt RedisOptions) *RedisStore {
	if opt.Timeout <= 0 {
		opt.Timeout = 2 * time.Second
	}
	return &RedisStore{rdb: rdb, opt: opt}
}

func (s *RedisStore) tokenKey(k uint64) string {
	var b [8]byte
	for i := range 8 {
		b[i] = byte(k >> (56 - 8*i))
	}
	return s.opt.KeyPrefix + "bayes:t:" + hex.EncodeToString(b[:])
}

func (s *RedisStore) totalsKey() string { return s.opt.KeyPrefix + "bayes:n" }

func (s *RedisStore) digestKey(d Digest) string {
	return s.opt.KeyPrefix + "bayes:d:" + hex.EncodeToString(d[:])
}

func classField(c Class) string {
	if c == ClassSpam {
		return "s"
	}
	return "h"
}

func parseCount(v any) int64 {
	str, ok := v.(string)
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(str, 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// Counts implements Store: one pipelined round trip.
func (s *RedisStore) Counts(ctx context.Context, keys []uint64) ([]Count, Totals, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opt.Timeout)
	defer cancel()
	cmds := make([]*redis.SliceCmd, len(keys))
	var tot *redis.SliceCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		tot = p.HMGet(ctx, s.totalsKey(), "s", "h")
		for i, k := range keys {
			cmds[i] = p.HMGet(ctx, s.tokenKey(k), "s", "h")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, Totals{}, fmt.Errorf("bayes: redis: %w", err)
	}
	out := make([]Count, len(keys))
	for i, c := range cmds {
		v := c.Val()
		if len(v) == 2 {
			out[i] = Count{Spam: uint32(min(parseCount(v[0]), 1<<32-1)), Ham: uint32(min(parseCount(v[1]), 1<<32-1))}
		}
	}
	t := tot.Val()
	totals := Totals{Tokens: -1}
	if len(t) == 2 {
		totals.Spam, totals.Ham = parseCount(t[0]), parseCount(t[1])
	}
	return out, totals, nil
}

// The scripts take KEYS[1] the digest, KEYS[2] the totals and KEYS[3…]
// the tokens. A count that would go below zero is removed instead.
const luaApply = `
local function add(field, delta, ttl)
  if redis.call('HINCRBY', KEYS[2], field, delta) < 0 then
    redis.call('HSET', KEYS[2], field, 0)
  end
  for i = 3, #KEYS do
    if delta > 0 then
      redis.call('HINCRBY', KEYS[i], field, 1)
      if ttl > 0 then redis.call('PEXPIRE', KEYS[i], ttl) end
    elseif redis.call('HINCRBY', KEYS[i], field, -1) <= 0 then
      redis.call('HDEL', KEYS[i], field)
    end
  end
end
`

// learnScript: ARGV[1] the class field, ARGV[2] the token TTL in ms (0:
// none). Returns 1 learned, 0 already known, 2 moved.
var learnScript = redis.NewScript(luaApply + `
local c = ARGV[1]
local prev = redis.call('GET', KEYS[1])
if prev == c then return 0 end
if prev then add(prev, -1, 0) end
add(c, 1, tonumber(ARGV[2]))
redis.call('SET', KEYS[1], c)
if prev then return 2 end
return 1
`)

// forgetScript returns the class field the message had, or "".
var forgetScript = redis.NewScript(luaApply + `
local prev = redis.call('GET', KEYS[1])
if not prev then return '' end
add(prev, -1, 0)
redis.call('DEL', KEYS[1])
return prev
`)

func (s *RedisStore) scriptKeys(d Digest, keys []uint64) []string {
	ks := make([]string, 0, len(keys)+2)
	ks = append(ks, s.digestKey(d), s.totalsKey())
	for _, k := range keys {
		ks = append(ks, s.tokenKey(k))
	}
	return ks
}

// Learn implements Store: one script call.
func (s *RedisStore) Learn(ctx context.Context, d Digest, c Class, keys []uint64) (Outcome, error) {
	if c != ClassSpam && c != ClassHam {
		return 0, errors.New("bayes: learn needs spam or ham")
	}
	ctx, cancel := context.WithTimeout(ctx, s.opt.Timeout)
	defer cancel()
	n, err := learnScript.Run(ctx, s.rdb, s.scriptKeys(d, keys), classField(c), s.opt.TokenTTL.Milliseconds()).Int()
	if err != nil {
		return 0, fmt.Errorf("bayes: redis: %w", err)
	}
	switch n {
	case 0:
		return AlreadyKnown, nil
	case 2:
		return Moved, nil
	}
	return Learned, nil
}

// Forget implements Store: one script call.
func (s *RedisStore) Forget(ctx context.Context, d Digest, keys []uint64) (Class, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opt.Timeout)
	defer cancel()
	v, err := forgetScript.Run(ctx, s.rdb, s.scriptKeys(d, keys)).Text()
	if err != nil && !errors.Is(err, redis.Nil) {
		return ClassNone, fmt.Errorf("bayes: redis: %w", err)
	}
	switch v {
	case "s":
		return ClassSpam, nil
	case "h":
		return ClassHam, nil
	}
	return ClassNone, nil
}

// Stats implements Store. Tokens is -1: counting keys would scan.
func (s *RedisStore) Stats(ctx context.Context) (Totals, error) {
	_, tot, err := s.Counts(ctx, nil)
	return tot, err
}

// Close implements Store; the client stays open.
func (s *RedisStore) Close() error { return nil }
