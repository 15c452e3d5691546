package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Cache is a bounded TTL cache of byte values shared by every node
// through Redis, with a node-local LRU in front: answers that expire on
// their own (a callahead's verdict on a recipient, say) can be served
// from any node's copy until they expire. A value is stored in Redis with
// its expiry time in front (8 bytes, unix ms, big-endian) and a key expiry,
// so a node that reads it caches it locally for exactly the time left.
//
// Get and Set never fail: on a Redis error Get answers from the local LRU
// alone and Set writes only the local LRU.
type Cache struct {
	c    *Client
	name string
	mu   sync.Mutex
	lru  *lru.Cache[string, cached]
}

type cached struct {
	val     []byte
	expires time.Time
}

// MaxCacheValue bounds a cached value; Set ignores larger ones.
const MaxCacheValue = 64 << 10

// Cache returns the shared cache name (a short word, e.g. "callahead"),
// holding at most size entries locally.
func (c *Client) Cache(name string, size int) (*Cache, error) {
	if name == "" || strings.ContainsAny(name, ": \r\n") {
		return nil, errors.New("cluster: a cache name is one word without ':'")
	}
	l, err := lru.New[string, cached](max(size, 1))
	if err != nil {
		return nil, err
	}
	return &Cache{c: c, name: name, lru: l}, nil
}

func (k *Cache) redisKey(key string) string { return k.c.key("c:"+k.name+":", key) }

// Get returns the value of key and whether there is one that has not
// expired. The returned slice must not be modified.
func (k *Cache) Get(ctx context.Context, key string) ([]byte, bool) {
	now := k.c.clock()
	k.mu.Lock()
	e, ok := k.lru.Get(key)
	if ok && !now.Before(e.expires) {
		k.lru.Remove(key)
		ok = false
	}
	k.mu.Unlock()
	if ok {
		return e.val, true
	}
	var raw []byte
	err := k.c.do(ctx, func(ctx context.Context) error {
		var err error
		raw, err = k.c.rdb.Get(ctx, k.redisKey(key)).Bytes()
		return err
	})
	if err != nil || len(raw) < 8 {
		return nil, false
	}
	exp := time.UnixMilli(int64(binary.BigEndian.Uint64(raw[:8])))
	if !now.Before(exp) {
		return nil, false
	}
	val := raw[8:]
	k.mu.Lock()
	k.lru.Add(key, cached{val: val, expires: exp})
	k.mu.Unlock()
	return val, true
}

// Set stores val under key for ttl, locally and in Redis (best effort).
func (k *Cache) Set(ctx context.Context, key string, val []byte, ttl time.Duration) {
	if ttl <= 0 || len(val) > MaxCacheValue {
		return
	}
	exp := k.c.clock().Add(ttl)
	v := append([]byte(nil), val...)
	k.mu.Lock()
	k.lru.Add(key, cached{val: v, expires: exp})
	k.mu.Unlock()
	raw := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(v)), uint64(exp.UnixMilli()))
	raw = append(raw, v...)
	_ = k.c.do(ctx, func(ctx context.Context) error {
		return k.c.rdb.Set(ctx, k.redisKey(key), raw, ttl).Err()
	})
}
