package metrics

import (
	"moat/relay/spool"
	"sort"
	"sync"
	"time"

	"moat/relay/queue"
)

// ring holds verdict counts per minute for the last hour: bucket i counts
// the minute whose number (Unix minutes) is ≡ i mod 60.
type ring struct {
	buckets [60]minuteBucket
}

type minuteBucket struct {
	minute int64
	counts [len(verdicts)]uint64
}

func (r *ring) add(t time.Time, verdict int) {
	mn := t.Unix() / 60
	b := &r.buckets[mn%60]
	if b.minute != mn {
		*b = minuteBucket{minute: mn}
	}
	b.counts[verdict]++
}

// Minute is one minute of the verdict history.
type Minute struct {
	Start  time.Time
	Counts map[string]uint64 // verdict → messages
	Total  uint64
}

// last returns the 60 minutes ending with now's, oldest first.
func (r *ring) last(now time.Time) []Minute {
	cur := now.Unix() / 60
	out := make([]Minute, 60)
	for i := range out {
		min := cur - 59 + int64(i)
		m := Minute{Start: time.Unix(min*60, 0).UTC(), Counts: make(map[string]uint64, len(verdicts))}
		b := &r.buckets[((min%60)+60)%60]
		for j, v := range verdicts {
			var n uint64
			if b.minute == min {
				n = b.counts[j]
			}
			m.Counts[v] = n
			m.Total += n
		}
		out[i] = m
	}
	return out
}

// topK counts keys with the space-saving algorithm (Metwally et al.):
// at most k keys are kept; a new key when full replaces the smallest,
// inheriting its count (so counts are upper bounds, off by at most Err).
type topK struct {
	k int
	m map[string]*topEntry
}

type topEntry struct {
	n, err uint64
}

func newTopK(k int) *topK { return &topK{k: k, m: make(map[string]*topEntry, k)} }

func (t *topK) add(key string) {
	key = cut(key, maxKeyLen)
	if e, ok := t.m[key]; ok {
		e.n++
		return
	}
	if len(t.m) < t.k {
		t.m[key] = &topEntry{n: 1}
		return
	}
	var minKey string
	var minE *topEntry
	for k, e := range t.m { // k ≤ 100: a scan is cheaper than a heap here
		if minE == nil || e.n < minE.n || (e.n == minE.n && k < minKey) {
			minKey, minE = k, e
		}
	}
	delete(t.m, minKey)
	t.m[key] = &topEntry{n: minE.n + 1, err: minE.n}
}

// Count is one entry of a top list.
type Count struct {
	Key   string
	Count uint64
	// Error bounds the over-count of Count (space-saving estimate).
	Error uint64
}

func (t *topK) list(n int) []Count {
	out := make([]Count, 0, len(t.m))
	for k, e := range t.m {
		out = append(out, Count{Key: k, Count: e.n, Error: e.err})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Key < out[j].Key
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// Snapshot is what the status page shows.
type Snapshot struct {
	Time time.Time
	// Queue is the queue manager's count, when QueueStats was set.
	Queue    queue.Stats
	HasQueue bool
	// Minutes is the verdict history of the last hour, oldest first.
	Minutes []Minute
	// TopClients are the clients rejected most (guard, verdicts and
	// refused commands).
	TopClients []Count
	// TopAuthFailures are the clients whose AUTH failed most.
	TopAuthFailures []Count
	// Refusals are the most recent refused commands, newest first.
	Refusals []RefusalEvent
	// TopRules are the rules that decided the most verdicts.
	TopRules []Count
	// Deliveries are the most recent deliveries, newest first.
	Deliveries []DeliveryEvent
}

// Snapshot copies the in-memory history; n bounds the top lists (≤ TopK).
func (m *Metrics) Snapshot(n int) Snapshot {
	if n <= 0 || n > TopK {
		n = TopK
	}
	now := m.now()
	s := Snapshot{Time: now}
	s.Queue, s.HasQueue = m.queueStatsNow()
	m.ref.snapshot(&s, n)
	m.mu.Lock()
	defer m.mu.Unlock()
	s.Minutes = m.minutes.last(now)
	s.TopClients = m.topClients.list(n)
	s.TopRules = m.topRules.list(n)
	k := min(m.recentN, len(m.recent))
	s.Deliveries = make([]DeliveryEvent, 0, k)
	for i := 1; i <= k; i++ {
		s.Deliveries = append(s.Deliveries, m.recent[(m.recentN-i)%len(m.recent)])
	}
	return s
}

// SpoolDirBytes returns a func for SpoolBytes that reports what the spool
// in spoolDir occupies on disk (spool.DiskBytes), measured at most once
// per every (default 30s); between measurements it returns the last one.
func SpoolDirBytes(spoolDir string, every time.Duration) func() int64 {
	if every <= 0 {
		every = 30 * time.Second
	}
	var mu sync.Mutex
	var last time.Time
	var sum int64
	return func() int64 {
		mu.Lock()
		defer mu.Unlock()
		if last.IsZero() || time.Since(last) >= every {
			last = time.Now()
			sum = spool.DiskBytes(spoolDir)
		}
		return sum
	}
}
