package mtasts

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	bolt "go.etcd.io/bbolt"
)

// Entry is a cached policy.
type Entry struct {
	Domain  string    `json:"domain"`
	ID      string    `json:"id"` // the TXT record's id when fetched
	Fetched time.Time `json:"fetched"`
	Expires time.Time `json:"expires"` // Fetched + max_age
	Policy  *Policy   `json:"policy"`
}

// Store keeps entries beyond the in-memory cache. Get and Put do not
// fail the caller: a store that cannot answer answers "none".
type Store interface {
	Get(ctx context.Context, domain string) (Entry, bool)
	Put(ctx context.Context, e Entry)
}

// KV is a shared byte cache with expiry; moat's Redis cache
// (policy/cluster.Cache) is one.
type KV interface {
	Get(ctx context.Context, key string) ([]byte, bool)
	Set(ctx context.Context, key string, val []byte, ttl time.Duration)
}

// KVStore is a Store over a KV: entries expire with their policy.
type KVStore struct{ KV KV }

// Get implements Store.
func (s KVStore) Get(ctx context.Context, domain string) (Entry, bool) {
	b, ok := s.KV.Get(ctx, domain)
	if !ok {
		return Entry{}, false
	}
	return decode(b, domain)
}

// Put implements Store.
func (s KVStore) Put(ctx context.Context, e Entry) {
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	if ttl := time.Until(e.Expires); ttl > 0 {
		s.KV.Set(ctx, e.Domain, b, ttl)
	}
}

func decode(b []byte, domain string) (Entry, bool) {
	var e Entry
	if json.Unmarshal(b, &e) != nil || e.Policy == nil || e.Domain != domain {
		return Entry{}, false
	}
	return e, true
}

// BoltStore is a Store in one bbolt file (normally
// <data_dir>/mtasts.db), holding at most max entries: when full, expired
// entries go first, then the oldest fetched.
type BoltStore struct {
	db  *bolt.DB
	max int
}

var bucket = []byte("policies")

// OpenBolt opens (creating it) the store at path.
func OpenBolt(path string, max int) (*BoltStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		db.Close()
		return nil, err
	}
	if max <= 0 {
		max = DefaultCacheSize
	}
	return &BoltStore{db: db, max: max}, nil
}

// Close closes the file.
func (s *BoltStore) Close() error { return s.db.Close() }

// Get implements Store.
func (s *BoltStore) Get(_ context.Context, domain string) (Entry, bool) {
	var b []byte
	s.db.View(func(tx *bolt.Tx) error {
		b = append(b, tx.Bucket(bucket).Get([]byte(domain))...)
		return nil
	})
	if b == nil {
		return Entry{}, false
	}
	return decode(b, domain)
}

// Put implements Store.
func (s *BoltStore) Put(_ context.Context, e Entry) {
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	s.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucket)
		if bk.Get([]byte(e.Domain)) == nil && bk.Stats().KeyN >= s.max {
			s.evict(bk)
		}
		return bk.Put([]byte(e.Domain), b)
	})
}

// evict removes the expired entries, or else the one fetched longest ago.
func (s *BoltStore) evict(bk *bolt.Bucket) {
	now := time.Now()
	var expired [][]byte
	var oldest []byte
	var oldestAt time.Time
	bk.ForEach(func(k, v []byte) error {
		var e Entry
		if json.Unmarshal(v, &e) != nil || now.After(e.Expires) {
			expired = append(expired, append([]byte(nil), k...))
		} else if oldest == nil || e.Fetched.Before(oldestAt) {
			oldest, oldestAt = append([]byte(nil), k...), e.Fetched
		}
		return nil
	})
	if len(expired) == 0 && oldest != nil {
		expired = append(expired, oldest)
	}
	for _, k := range expired {
		bk.Delete(k)
	}
}

// memCache is the in-memory LRU in front of the store.
type memCache = lru.Cache[string, Entry]
