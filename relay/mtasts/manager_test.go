package mtasts

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"moat/internal/dnsres"
	"moat/internal/dnstest"
	"moat/internal/smtptest"
)

type env struct {
	dns *dnstest.Server
	ps  *policyServer
	now time.Time
	m   *Manager
}

func newEnv(t *testing.T, store Store) *env {
	t.Helper()
	ca := smtptest.NewCA(t)
	e := &env{dns: dnstest.NewServer(t), ps: startPolicyServer(t, ca.IssueNow(t, "mta-sts.example.test")), now: time.Now()}
	r, err := dnsres.New(dnsres.Config{Servers: []string{e.dns.Addr()}, Timeout: time.Second, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	e.m, err = NewManager(Options{Resolver: r, Fetcher: e.ps.fetcher(ca, 5*time.Second), Store: store, CacheSize: 10,
		Now: func() time.Time { return e.now }})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) txt(id string) {
	e.dns.Remove("_mta-sts.example.test.", dns.TypeTXT)
	if id != "" {
		e.dns.AddTXT("_mta-sts.example.test.", "v=STSv1; id="+id)
	}
}

func TestManagerCaching(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()

	// No record, nothing cached: no policy, no error.
	if l := e.m.Get(ctx, "example.test"); l.Policy != nil || l.Err != nil {
		t.Fatalf("no record: %+v", l)
	}
	e.txt("one")
	l := e.m.Get(ctx, "example.test")
	if l.Policy == nil || l.Cached || l.Err != nil || e.ps.hits.Load() != 1 {
		t.Fatalf("first: %+v, %d fetches", l, e.ps.hits.Load())
	}
	// Same id: the cache answers (§3.3).
	if l := e.m.Get(ctx, "Example.Test."); !l.Cached || e.ps.hits.Load() != 1 {
		t.Fatalf("same id: %+v, %d fetches", l, e.ps.hits.Load())
	}
	// A new id fetches again.
	e.txt("two")
	if l := e.m.Get(ctx, "example.test"); l.Cached || e.ps.hits.Load() != 2 {
		t.Fatalf("new id: %+v, %d fetches", l, e.ps.hits.Load())
	}
	// The fetch fails: the unexpired cached policy still applies (§5.1),
	// with the error for TLS-RPT.
	e.ps.set(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) })
	e.txt("three")
	l = e.m.Get(ctx, "example.test")
	var fe *FetchError
	if l.Policy == nil || !errors.As(l.Err, &fe) {
		t.Fatalf("failed fetch with cache: %+v", l)
	}
	// The record disappears or its lookup fails: the cache applies.
	e.txt("")
	if l := e.m.Get(ctx, "example.test"); l.Policy == nil {
		t.Fatalf("record gone: %+v", l)
	}
	e.dns.Fail("_mta-sts.example.test.", dns.TypeTXT, dnstest.ServFail)
	if l := e.m.Get(ctx, "example.test"); l.Policy == nil {
		t.Fatalf("SERVFAIL with cache: %+v", l)
	}
	// Once max_age has run out, nothing is left: a SERVFAIL is an
	// error, a failed fetch is no policy with the error.
	e.now = e.now.Add(86401 * time.Second)
	if l := e.m.Get(ctx, "example.test"); l.Policy != nil || l.Err == nil {
		t.Fatalf("SERVFAIL, expired: %+v", l)
	}
	e.dns.Fail("_mta-sts.example.test.", dns.TypeTXT, 0)
	e.txt("four")
	if l := e.m.Get(ctx, "example.test"); l.Policy != nil || !errors.As(l.Err, &fe) {
		t.Fatalf("failed fetch, expired: %+v", l)
	}
}

func TestManagerBoltStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mtasts.db")
	st, err := OpenBolt(path, 3)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, st)
	e.txt("one")
	if l := e.m.Get(context.Background(), "example.test"); l.Policy == nil {
		t.Fatalf("%+v", l)
	}
	st.Close()

	// A new manager (a restart) finds the policy in the file, without a
	// fetch, even when the policy server is down.
	st, err = OpenBolt(path, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e2 := newEnv(t, st)
	e2.txt("one")
	e2.ps.set(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) })
	if l := e2.m.Get(context.Background(), "example.test"); l.Policy == nil || !l.Cached || e2.ps.hits.Load() != 0 {
		t.Fatalf("after restart: %+v, %d fetches", l, e2.ps.hits.Load())
	}

	// Bounded: at most 3 entries, the oldest goes.
	ctx := context.Background()
	base := time.Now()
	for i, d := range []string{"a.test", "b.test", "c.test", "d.test"} {
		st.Put(ctx, Entry{Domain: d, ID: "x", Fetched: base.Add(time.Duration(i) * time.Minute), Expires: base.Add(time.Hour), Policy: &Policy{Mode: ModeNone}})
	}
	n := 0
	for _, d := range []string{"example.test", "a.test", "b.test", "c.test", "d.test"} {
		if _, ok := st.Get(ctx, d); ok {
			n++
		}
	}
	if n != 3 {
		t.Errorf("%d entries kept, want 3", n)
	}
	if _, ok := st.Get(ctx, "d.test"); !ok {
		t.Error("the newest entry was evicted")
	}
}

// memKV is a KV in memory, for KVStore.
type memKV map[string][]byte

func (m memKV) Get(_ context.Context, k string) ([]byte, bool) { v, ok := m[k]; return v, ok }
func (m memKV) Set(_ context.Context, k string, v []byte, _ time.Duration) {
	m[k] = v
}

func TestKVStore(t *testing.T) {
	kv := memKV{}
	e := newEnv(t, KVStore{KV: kv})
	e.txt("one")
	if l := e.m.Get(context.Background(), "example.test"); l.Policy == nil {
		t.Fatalf("%+v", l)
	}
	if _, ok := kv["example.test"]; !ok {
		t.Fatal("not stored")
	}
	got, ok := KVStore{KV: kv}.Get(context.Background(), "example.test")
	if !ok || got.ID != "one" || got.Policy.Mode != ModeEnforce {
		t.Errorf("%+v %v", got, ok)
	}
	kv["bad.test"] = []byte("{")
	if _, ok := (KVStore{KV: kv}).Get(context.Background(), "bad.test"); ok {
		t.Error("garbage decoded")
	}
}

// TestManagerOneFetchAtATime: concurrent lookups of one domain share a
// fetch.
func TestManagerOneFetchAtATime(t *testing.T) {
	e := newEnv(t, nil)
	e.txt("one")
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	e.ps.set(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(goodPolicy))
	})
	const n = 5
	got := make(chan Lookup, n)
	for range n {
		go func() { got <- e.m.Get(context.Background(), "example.test") }()
	}
	<-started
	// The other lookups wait on the first fetch; give them the chance
	// to start a second one if they were going to (not a timed
	// assertion: a late goroutine finds the cache filled, also 1 fetch).
	time.Sleep(100 * time.Millisecond)
	close(release)
	for range n {
		if l := <-got; l.Policy == nil {
			t.Errorf("%+v", l)
		}
	}
	if h := e.ps.hits.Load(); h != 1 {
		t.Errorf("%d fetches, want 1", h)
	}
}
