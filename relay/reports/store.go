// Package reports records what DMARC aggregate reports (RFC 7489 §7.2)
// and SMTP TLS reports (RFC 8460) are made of, and once a day builds the
// reports and sends them through moat's own queue (relay/spool), signed,
// from a real reporter address.
//
// Recording: results are counted in memory (bounded) and merged every
// minute, and at close, into a bbolt file in data_dir (reports.db), one
// entry per (kind, UTC day, domain). The file is opened only for each
// merge or report run, so `moat dmarc report --dry-run` can read it
// while the server runs. Counts are per node: each moat of a fleet
// reports what it saw, under its own report ids (RFC 7489 §7.2.1.1 and
// RFC 8460 §4.4 let one organisation send several reports; a receiver
// adds them up). A crash loses at most the last minute of counts, never
// mail.
//
// Decisions, with their sections:
//   - RFC 7489 §7.2.1.1, RFC 8460 §5.3: reports are sent from the
//     configured reporter address, never from the null sender, and
//     signed with the DKIM key of its domain when dkim.sign has one.
//   - Reports are never answered: the gateway does not record a message
//     that is itself a report (see IsReport), and the reports moat
//     sends go straight to the queue, never through the gateway, so no
//     report is ever made about a report.
//   - A DNS temporary failure keeps the day's entry for the next run;
//     entries older than maxAgeDays are dropped unsent.
package reports

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"moat/relay/dmarcrpt"
	"moat/relay/tlsrpt"
)

// Bounds: the in-memory buffer between merges, and what one day of one
// domain may hold in the file.
const (
	maxPending       = 20000 // distinct rows and results between merges
	maxRowsPerDomain = 10000 // DMARC rows of one domain and day
	maxDomainsPerDay = 20000 // domains of one kind and day
	maxPolicies      = 16    // TLS policies of one domain and day
	maxAgeDays       = 7
)

var (
	bucketDMARC = []byte("dmarc")
	bucketTLS   = []byte("tlsrpt")
)

// DMARCEntry is one domain's day of DMARC rows.
type DMARCEntry struct {
	Published dmarcrpt.Published           `json:"pub"`
	Rows      map[string]*dmarcrpt.Counted `json:"rows"`
	Dropped   int64                        `json:"dropped,omitempty"`
}

// TLSEntry is one policy domain's day of TLS results, by policy.
type TLSEntry struct {
	Policies map[string]*tlsrpt.Aggregate `json:"policies"`
	Dropped  int64                        `json:"dropped,omitempty"`
}

// Store counts results and keeps them in path (a bbolt file).
type Store struct {
	path string
	now  func() time.Time

	mu       sync.Mutex
	dmarc    map[string]*DMARCEntry // day|domain
	tls      map[string]*TLSEntry   // day|domain
	pending  int
	dropped  int64
	flushing sync.Mutex
}

// Open returns a store kept in path; the file is created at the first
// merge. now (nil: time.Now) says which day a result belongs to.
func Open(path string, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{path: path, now: now, dmarc: map[string]*DMARCEntry{}, tls: map[string]*TLSEntry{}}
}

// DBPath is where a data_dir keeps the store.
func DBPath(dataDir string) string { return filepath.Join(dataDir, "reports.db") }

// Day is the UTC day of t, as the store's keys name it.
func Day(t time.Time) string { return t.UTC().Format("2006-01-02") }

func entryKey(day, domain string) string { return day + "|" + domain }

func splitKey(k string) (day, domain string) {
	day, domain, _ = strings.Cut(k, "|")
	return day, domain
}

// RecordDMARC counts one evaluated message for pub.Domain's report.
func (s *Store) RecordDMARC(pub dmarcrpt.Published, row dmarcrpt.Row) {
	k := entryKey(Day(s.now()), strings.ToLower(pub.Domain))
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.dmarc[k]
	if !ok {
		if s.pending >= maxPending {
			s.dropped++
			return
		}
		e = &DMARCEntry{Rows: map[string]*dmarcrpt.Counted{}}
		s.dmarc[k] = e
	}
	e.Published = pub // the latest record seen that day
	rk := row.Key()
	c, ok := e.Rows[rk]
	if !ok {
		if s.pending >= maxPending {
			s.dropped++
			return
		}
		s.pending++
		c = &dmarcrpt.Counted{Row: row}
		e.Rows[rk] = c
	}
	c.Count++
}

// RecordTLS counts one outbound TLS attempt (tlsrpt.Sink). It does not
// block beyond a map update.
func (s *Store) RecordTLS(r tlsrpt.Result) {
	if r.PolicyDomain == "" {
		return
	}
	k := entryKey(Day(s.now()), strings.ToLower(r.PolicyDomain))
	pk := tlsrpt.PolicyKey(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.tls[k]
	if !ok {
		e = &TLSEntry{Policies: map[string]*tlsrpt.Aggregate{}}
		if s.pending >= maxPending {
			s.dropped++
			return
		}
		s.pending++
		s.tls[k] = e
	}
	a, ok := e.Policies[pk]
	if !ok {
		if s.pending >= maxPending || len(e.Policies) >= maxPolicies {
			s.dropped++
			return
		}
		s.pending++
		a = &tlsrpt.Aggregate{}
		e.Policies[pk] = a
	}
	if !r.Success {
		if _, ok := a.Failures[tlsrpt.FailureKey(r)]; !ok {
			s.pending++ // a new failure row
		}
	}
	a.Add(r)
}

var _ tlsrpt.Sink = (*Store)(nil)

// Dropped is how many results were not counted because a bound was hit.
func (s *Store) Dropped() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

func (s *Store) open(readOnly bool) (*bolt.DB, error) {
	if !readOnly {
		if err := os.MkdirAll(filepath.Dir(s.path), 0o750); err != nil {
			return nil, err
		}
	} else if _, err := os.Stat(s.path); err != nil {
		return nil, err
	}
	db, err := bolt.Open(s.path, 0o640, &bolt.Options{Timeout: 5 * time.Second, ReadOnly: readOnly})
	if err != nil {
		return nil, fmt.Errorf("reports store %s: %w", s.path, err)
	}
	return db, nil
}

// Flush merges the counts in memory into the file.
func (s *Store) Flush() error {
	s.flushing.Lock()
	defer s.flushing.Unlock()
	s.mu.Lock()
	dm, tl := s.dmarc, s.tls
	s.dmarc, s.tls, s.pending = map[string]*DMARCEntry{}, map[string]*TLSEntry{}, 0
	s.mu.Unlock()
	if len(dm) == 0 && len(tl) == 0 {
		return nil
	}
	db, err := s.open(false)
	if err != nil {
		s.putBack(dm, tl)
		return err
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		bd, err := tx.CreateBucketIfNotExists(bucketDMARC)
		if err != nil {
			return err
		}
		bt, err := tx.CreateBucketIfNotExists(bucketTLS)
		if err != nil {
			return err
		}
		for k, e := range dm {
			var cur DMARCEntry
			if err := load(bd, k, &cur); err != nil {
				return err
			}
			if cur.Rows == nil {
				if tooMany(bd, k) {
					continue
				}
				cur.Rows = map[string]*dmarcrpt.Counted{}
			}
			cur.Published = e.Published
			for rk, c := range e.Rows {
				if old, ok := cur.Rows[rk]; ok {
					old.Count += c.Count
				} else if len(cur.Rows) < maxRowsPerDomain {
					cur.Rows[rk] = c
				} else {
					cur.Dropped += int64(c.Count)
				}
			}
			if err := save(bd, k, &cur); err != nil {
				return err
			}
		}
		for k, e := range tl {
			var cur TLSEntry
			if err := load(bt, k, &cur); err != nil {
				return err
			}
			if cur.Policies == nil {
				if tooMany(bt, k) {
					continue
				}
				cur.Policies = map[string]*tlsrpt.Aggregate{}
			}
			for pk, a := range e.Policies {
				if old, ok := cur.Policies[pk]; ok {
					old.MergeAggregate(a)
				} else if len(cur.Policies) < maxPolicies {
					cur.Policies[pk] = a
				} else {
					cur.Dropped += a.Success + failures(a)
				}
			}
			if err := save(bt, k, &cur); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.putBack(dm, tl)
	}
	return err
}

// putBack returns unmerged counts to memory after a failed merge (they
// are merged again next time), within the bounds.
func (s *Store) putBack(dm map[string]*DMARCEntry, tl map[string]*TLSEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range dm {
		for _, c := range e.Rows {
			if cur, ok := s.dmarc[k]; ok {
				if old, ok := cur.Rows[c.Row.Key()]; ok {
					old.Count += c.Count
					continue
				}
			}
			if s.pending >= maxPending {
				s.dropped += int64(c.Count)
				continue
			}
			if _, ok := s.dmarc[k]; !ok {
				s.dmarc[k] = &DMARCEntry{Published: e.Published, Rows: map[string]*dmarcrpt.Counted{}}
			}
			s.dmarc[k].Rows[c.Row.Key()] = c
			s.pending++
		}
	}
	for k, e := range tl {
		cur, ok := s.tls[k]
		if !ok {
			s.tls[k] = e
			s.pending += len(e.Policies)
			continue
		}
		for pk, a := range e.Policies {
			if old, ok := cur.Policies[pk]; ok {
				old.MergeAggregate(a)
			} else {
				cur.Policies[pk] = a
			}
		}
	}
}

func failures(a *tlsrpt.Aggregate) int64 {
	var n int64
	for _, f := range a.Failures {
		n += f.Count
	}
	return n
}

// tooMany reports whether the day of key k already holds
// maxDomainsPerDay domains.
func tooMany(b *bolt.Bucket, k string) bool {
	day, _ := splitKey(k)
	prefix := []byte(day + "|")
	n := 0
	c := b.Cursor()
	for key, _ := c.Seek(prefix); key != nil && strings.HasPrefix(string(key), string(prefix)); key, _ = c.Next() {
		if n++; n >= maxDomainsPerDay {
			return true
		}
	}
	return false
}

func load(b *bolt.Bucket, k string, v any) error {
	raw := b.Get([]byte(k))
	if raw == nil {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("reports store: entry %s: %w", k, err)
	}
	return nil
}

func save(b *bolt.Bucket, k string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(k), raw)
}

// Snapshot is what the file holds for some days.
type Snapshot struct {
	DMARC map[string]*DMARCEntry // day|domain
	TLS   map[string]*TLSEntry
}

// Keys returns the sorted keys of m.
func Keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Read returns the entries of the days for which keep(day) is true.
// A missing file is an empty snapshot.
func (s *Store) Read(keep func(day string) bool) (*Snapshot, error) {
	snap := &Snapshot{DMARC: map[string]*DMARCEntry{}, TLS: map[string]*TLSEntry{}}
	db, err := s.open(true)
	if os.IsNotExist(err) {
		return snap, nil
	}
	if err != nil {
		return nil, err
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketDMARC); b != nil {
			if err := b.ForEach(func(k, v []byte) error {
				if day, _ := splitKey(string(k)); !keep(day) {
					return nil
				}
				var e DMARCEntry
				if err := json.Unmarshal(v, &e); err != nil {
					return nil // a damaged entry is skipped, not fatal
				}
				snap.DMARC[string(k)] = &e
				return nil
			}); err != nil {
				return err
			}
		}
		if b := tx.Bucket(bucketTLS); b != nil {
			return b.ForEach(func(k, v []byte) error {
				if day, _ := splitKey(string(k)); !keep(day) {
					return nil
				}
				var e TLSEntry
				if err := json.Unmarshal(v, &e); err != nil {
					return nil
				}
				snap.TLS[string(k)] = &e
				return nil
			})
		}
		return nil
	})
	return snap, err
}

// Delete removes entries: dmarc and tls keys (day|domain).
func (s *Store) Delete(dmarc, tls []string) error {
	if len(dmarc) == 0 && len(tls) == 0 {
		return nil
	}
	db, err := s.open(false)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(tx *bolt.Tx) error {
		for _, kk := range []struct {
			b    []byte
			keys []string
		}{{bucketDMARC, dmarc}, {bucketTLS, tls}} {
			b := tx.Bucket(kk.b)
			if b == nil {
				continue
			}
			for _, k := range kk.keys {
				if err := b.Delete([]byte(k)); err != nil {
					return err
				}
			}
		}
		return nil
	})
}
