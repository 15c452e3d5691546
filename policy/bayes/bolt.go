package bayes

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BoltOptions opens a BoltStore.
type BoltOptions struct {
	// LockTimeout is how long Open waits for the file lock that another
	// process (a running `moat serve`) holds. Default 1s.
	LockTimeout time.Duration
	// NoSync skips the fsync after each Learn and Forget and syncs once at
	// Close: for bulk learning, where a crash only loses work that can be
	// redone.
	NoSync bool
	// ReadOnly opens the file for reading only (a shared lock: several
	// readers, no writer).
	ReadOnly bool
}

// ErrLocked is returned by OpenBolt when another process holds the file.
var ErrLocked = errors.New("bayes: the database is locked by another process")

// BoltStore is a Store in one bbolt file, normally <data_dir>/bayes.db.
// bbolt takes an exclusive lock on the file, so only one process (the
// running moat serve) has it open at a time; `moat learn` opens it when
// no daemon does (see cmd/moat learn_cmd.go).
//
// Layout: bucket "tokens" maps the 8-byte big-endian token key to 8 bytes
// (spam count, ham count: uint32 big-endian each); bucket "digests" maps a
// 32-byte Digest to one byte (its Class); bucket "meta" holds "spam",
// "ham" and "tokens" as uint64 big-endian.
type BoltStore struct {
	db     *bolt.DB
	noSync bool
}

var _ Store = (*BoltStore)(nil)

var (
	bucketTokens  = []byte("tokens")
	bucketDigests = []byte("digests")
	bucketMeta    = []byte("meta")
	metaSpam      = []byte("spam")
	metaHam       = []byte("ham")
	metaTokens    = []byte("tokens")
)

// OpenBolt opens (creating it if needed) the store at path.
func OpenBolt(path string, opt BoltOptions) (*BoltStore, error) {
	if opt.LockTimeout <= 0 {
		opt.LockTimeout = time.Second
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opt.LockTimeout, ReadOnly: opt.ReadOnly, NoSync: opt.NoSync})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, path)
	}
	if err != nil {
		return nil, fmt.Errorf("bayes: open %s: %w", path, err)
	}
	if !opt.ReadOnly {
		err = db.Update(func(tx *bolt.Tx) error {
			for _, b := range [][]byte{bucketTokens, bucketDigests, bucketMeta} {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("bayes: init %s: %w", path, err)
		}
	}
	return &BoltStore{db: db, noSync: opt.NoSync}, nil
}

func u64(b []byte) int64 {
	if len(b) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b))
}

func putU64(b *bolt.Bucket, k []byte, v int64) error {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], uint64(max(v, 0)))
	return b.Put(k, buf[:])
}

func totalsOf(tx *bolt.Tx) Totals {
	m := tx.Bucket(bucketMeta)
	if m == nil {
		return Totals{}
	}
	return Totals{Spam: u64(m.Get(metaSpam)), Ham: u64(m.Get(metaHam)), Tokens: u64(m.Get(metaTokens))}
}

// Counts implements Store: one read transaction.
func (s *BoltStore) Counts(_ context.Context, keys []uint64) ([]Count, Totals, error) {
	out := make([]Count, len(keys))
	var tot Totals
	err := s.db.View(func(tx *bolt.Tx) error {
		tot = totalsOf(tx)
		b := tx.Bucket(bucketTokens)
		if b == nil {
			return nil
		}
		var k [8]byte
		for i, key := range keys {
			binary.BigEndian.PutUint64(k[:], key)
			if v := b.Get(k[:]); len(v) == 8 {
				out[i] = Count{Spam: binary.BigEndian.Uint32(v), Ham: binary.BigEndian.Uint32(v[4:])}
			}
		}
		return nil
	})
	return out, tot, err
}

// Learn implements Store: one write transaction.
func (s *BoltStore) Learn(_ context.Context, d Digest, c Class, keys []uint64) (Outcome, error) {
	if c != ClassSpam && c != ClassHam {
		return 0, errors.New("bayes: learn needs spam or ham")
	}
	var out Outcome
	err := s.db.Update(func(tx *bolt.Tx) error {
		ds := tx.Bucket(bucketDigests)
		prev := ClassNone
		if v := ds.Get(d[:]); len(v) == 1 {
			prev = Class(v[0])
		}
		if prev == c {
			out = AlreadyKnown
			return nil
		}
		out = Learned
		if prev != ClassNone {
			out = Moved
			if err := boltApply(tx, prev, keys, -1); err != nil {
				return err
			}
		}
		if err := boltApply(tx, c, keys, +1); err != nil {
			return err
		}
		return ds.Put(d[:], []byte{byte(c)})
	})
	return out, err
}

// Forget implements Store.
func (s *BoltStore) Forget(_ context.Context, d Digest, keys []uint64) (Class, error) {
	prev := ClassNone
	err := s.db.Update(func(tx *bolt.Tx) error {
		ds := tx.Bucket(bucketDigests)
		if v := ds.Get(d[:]); len(v) == 1 {
			prev = Class(v[0])
		}
		if prev == ClassNone {
			return nil
		}
		if err := boltApply(tx, prev, keys, -1); err != nil {
			return err
		}
		return ds.Delete(d[:])
	})
	return prev, err
}

// boltApply adds delta to class c's total and to each key's count.
func boltApply(tx *bolt.Tx, c Class, keys []uint64, delta int) error {
	meta, toks := tx.Bucket(bucketMeta), tx.Bucket(bucketTokens)
	tot := totalsOf(tx)
	name, n := metaSpam, tot.Spam
	if c == ClassHam {
		name, n = metaHam, tot.Ham
	}
	if err := putU64(meta, name, n+int64(delta)); err != nil {
		return err
	}
	ntok := tot.Tokens
	// bbolt keeps the key and value slices of Put until the commit: each
	// Put gets its own 16 bytes.
	buf := make([]byte, 16*len(keys))
	for i, key := range keys {
		k, v := buf[16*i:16*i+8:16*i+8], buf[16*i+8:16*i+16:16*i+16]
		binary.BigEndian.PutUint64(k, key)
		var cnt Count
		if old := toks.Get(k); len(old) == 8 {
			cnt = Count{Spam: binary.BigEndian.Uint32(old), Ham: binary.BigEndian.Uint32(old[4:])}
		} else if delta < 0 {
			continue
		} else {
			ntok++
		}
		if c == ClassSpam {
			cnt.Spam = addClamped(cnt.Spam, delta)
		} else {
			cnt.Ham = addClamped(cnt.Ham, delta)
		}
		if cnt == (Count{}) {
			ntok--
			if err := toks.Delete(k); err != nil {
				return err
			}
			continue
		}
		binary.BigEndian.PutUint64(v, uint64(cnt.Spam)<<32|uint64(cnt.Ham))
		if err := toks.Put(k, v); err != nil {
			return err
		}
	}
	return putU64(meta, metaTokens, ntok)
}

// Stats implements Store.
func (s *BoltStore) Stats(context.Context) (Totals, error) {
	var tot Totals
	err := s.db.View(func(tx *bolt.Tx) error {
		tot = totalsOf(tx)
		return nil
	})
	return tot, err
}

// Prune removes the tokens held by at most atMost learned messages in all
// (hapaxes with atMost 1): they weigh little and make up most of a
// store. It returns how many it removed. Learned messages stay known, so
// forgetting one later leaves pruned tokens at zero.
func (s *BoltStore) Prune(_ context.Context, atMost uint32) (int64, error) {
	var removed int64
	err := s.db.Update(func(tx *bolt.Tx) error {
		toks := tx.Bucket(bucketTokens)
		c := toks.Cursor()
		for k, v := c.First(); k != nil; {
			if len(v) == 8 && uint64(binary.BigEndian.Uint32(v))+uint64(binary.BigEndian.Uint32(v[4:])) <= uint64(atMost) {
				if err := c.Delete(); err != nil {
					return err
				}
				removed++
				// Seek past the deleted key: Next after Delete skips one.
				k, v = c.Seek(append([]byte(nil), k...))
				continue
			}
			k, v = c.Next()
		}
		return putU64(tx.Bucket(bucketMeta), metaTokens, totalsOf(tx).Tokens-removed)
	})
	return removed, err
}

// Close syncs (with NoSync) and closes the file.
func (s *BoltStore) Close() error {
	var err error
	if s.noSync {
		err = s.db.Sync()
	}
	return errors.Join(err, s.db.Close())
}
