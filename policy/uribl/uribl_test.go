package uribl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"moat/internal/dnsres"
	"moat/internal/dnstest"
)

// testZones are the lists of the DNS tests, modelled on the real ones: a
// DBL-like list with specific codes and an IP error code, a SURBL-like
// multi list with bitmasks that takes IPs, a URIBL-like one whose
// 127.0.0.1 means "refused".
func testZones() []Zone {
	return []Zone{
		{Zone: "dbl.test", Weight: 3, Match: []string{"127.0.1.2-127.0.1.99"}, ErrorCodes: []string{"127.0.1.255"}},
		{Zone: "multi.test", Weight: 2, Match: []string{"&0.0.0.8", "&0.0.0.16"}, IPs: true},
		{Zone: "uri.test", Weight: 1, Match: []string{"&0.0.0.14"}, ErrorCodes: []string{"127.0.0.1"}},
	}
}

func newServer(t *testing.T) *dnstest.Server {
	srv := dnstest.NewServer(t)
	srv.Add(
		"evil.example.dbl.test. 300 IN A 127.0.1.2",
		"phish.example.multi.test. 300 IN A 127.0.0.8",
		"99.2.0.192.multi.test. 300 IN A 127.0.0.16",
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.multi.test. 300 IN A 127.0.0.16",
		"spammer.example.uri.test. 300 IN A 127.0.0.2",
		// Answers the filters leave out.
		"abused.example.dbl.test. 300 IN A 127.0.1.102",
		"grey.example.multi.test. 300 IN A 127.0.0.4",
		// Error codes.
		"public.example.dbl.test. 300 IN A 127.255.255.254",
		"refused.example.uri.test. 300 IN A 127.0.0.1",
		"hijack.example.dbl.test. 300 IN A 192.0.2.1",
	)
	return srv
}

func newChecker(t testing.TB, r dnsres.Resolver, mutate func(*Config)) *Checker {
	t.Helper()
	cfg := Config{Zones: testZones(), Timeout: 5 * time.Second}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := New(cfg, r, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCheckRealDNS(t *testing.T) {
	srv := newServer(t)
	srv.Fail("broken.example.dbl.test.", dns.TypeA, dnstest.ServFail)
	srv.Fail("denied.example.multi.test.", dns.TypeA, dnstest.Refused)
	c := newChecker(t, dnsres.ForTest(srv.Addr()), nil)

	tests := []struct {
		name    string
		in      Input
		score   float64
		hits    []string
		domains []string
		from    bool
		errors  int
	}{
		{name: "listed domain", in: Input{Domains: []string{"www.evil.example"}},
			score: 3, hits: []string{"dbl.test"}, domains: []string{"evil.example"}},
		{name: "bitmask listing", in: Input{Domains: []string{"login.phish.example"}},
			score: 2, hits: []string{"multi.test"}, domains: []string{"phish.example"}},
		{name: "listed IPv4 literal", in: Input{Domains: []string{"192.0.2.99"}},
			score: 2, hits: []string{"multi.test"}, domains: []string{"192.0.2.99"}},
		{name: "listed IPv6 literal", in: Input{Domains: []string{"[2001:db8::1]"}},
			score: 2, hits: []string{"multi.test"}, domains: []string{"2001:db8::1"}},
		{name: "unlisted", in: Input{Domains: []string{"good.example", "192.0.2.1"}}},
		{name: "code filter excludes", in: Input{Domains: []string{"abused.example", "grey.example"}}},
		{name: "spamhaus error code", in: Input{Domains: []string{"public.example"}}, errors: 1},
		{name: "zone error code", in: Input{Domains: []string{"refused.example"}}, errors: 1},
		{name: "answer outside 127/8", in: Input{Domains: []string{"hijack.example"}}, errors: 1},
		{name: "servfail", in: Input{Domains: []string{"broken.example"}}, errors: 1},
		{name: "refused", in: Input{Domains: []string{"denied.example"}}, errors: 1},
		{name: "from domain listed", in: Input{FromDomains: []string{"spammer.example"}, Domains: []string{"good.example"}},
			score: 1, hits: []string{"uri.test"}, domains: []string{"spammer.example"}, from: true},
		{name: "each zone once per message",
			in:    Input{Domains: []string{"evil.example", "phish.example", "192.0.2.99", "spammer.example"}},
			score: 6, hits: []string{"dbl.test", "multi.test", "uri.test"},
			domains: []string{"evil.example", "phish.example", "192.0.2.99", "spammer.example"}},
		{name: "listing and failure", in: Input{Domains: []string{"evil.example", "broken.example"}},
			score: 3, hits: []string{"dbl.test"}, domains: []string{"evil.example"}, errors: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.Check(context.Background(), tt.in)
			slices.Sort(r.Hits)
			slices.Sort(tt.hits)
			slices.Sort(r.Domains)
			slices.Sort(tt.domains)
			if r.Score != tt.score || !slices.Equal(r.Hits, tt.hits) || !slices.Equal(r.Domains, tt.domains) ||
				r.Listed != (len(tt.hits) > 0) || r.FromListed != tt.from || r.Errors != tt.errors || r.Skipped != 0 {
				t.Errorf("got %+v\nfailed %v", r.Facts, r.Failed)
			}
			for _, f := range r.Failed {
				var ce *CodeError
				if errors.As(f.Err, &ce) != (tt.name != "servfail" && tt.name != "refused" && tt.name != "listing and failure") {
					t.Errorf("failure %v: CodeError %v", f, ce)
				}
			}
		})
	}
}

// TestTimeout: a list that never answers ends the check at its deadline
// (well before the resolver's own 10 s), as a failure, never a listing.
func TestTimeout(t *testing.T) {
	srv := newServer(t)
	srv.Fail("slow.example.dbl.test.", dns.TypeA, dnstest.Timeout)
	srv.Fail("slow.example.multi.test.", dns.TypeA, dnstest.Timeout)
	srv.Fail("slow.example.uri.test.", dns.TypeA, dnstest.Timeout)
	res, err := dnsres.New(dnsres.Config{Servers: []string{srv.Addr()}, Timeout: 10 * time.Second, Attempts: 1, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	c := newChecker(t, res, func(cfg *Config) { cfg.Timeout = 200 * time.Millisecond })
	r := c.Check(context.Background(), Input{Domains: []string{"slow.example"}})
	if r.Listed || r.Score != 0 || r.Errors != 3 || len(r.Failed) != 3 {
		t.Fatalf("got %+v failed %v", r.Facts, r.Failed)
	}
	for _, f := range r.Failed {
		if !dnsres.IsTemporary(f.Err) && !errors.Is(f.Err, context.DeadlineExceeded) {
			t.Errorf("failure %v is not a timeout", f)
		}
	}
}

// stuckResolver never answers, whatever the context says.
type stuckResolver struct {
	dnstest.Unsupported
	release chan struct{}
}

func (s stuckResolver) LookupIP(context.Context, string, string) ([]net.IP, error) {
	<-s.release
	return nil, errors.New("released")
}

// TestDeadlineWithStuckResolver: Check returns at its deadline even when
// the resolver does not honour the context; the lookups left count as
// failures.
func TestDeadlineWithStuckResolver(t *testing.T) {
	r := stuckResolver{release: make(chan struct{})}
	defer close(r.release)
	c := newChecker(t, r, func(cfg *Config) { cfg.Timeout = 50 * time.Millisecond; cfg.Parallel = 2 })
	res := c.Check(context.Background(), Input{Domains: []string{"a.example", "b.example", "c.example"}})
	if res.Listed || res.Errors != 3 || len(res.Failed) != 9 {
		t.Fatalf("got %+v, %d failures", res.Facts, len(res.Failed))
	}
}

func TestMaxLookups(t *testing.T) {
	srv := newServer(t)
	c := newChecker(t, dnsres.ForTest(srv.Addr()), func(cfg *Config) { cfg.MaxLookups = 2 })
	in := Input{
		FromDomains: []string{"spammer.example"},
		Domains:     []string{"d1.example", "evil.example", "d3.example", "www.d1.example", "d4.example"},
	}
	r := c.Check(context.Background(), in)
	// The From domain comes first; of the URL hosts, d1 fits; evil, d3
	// and d4 are skipped (www.d1 is d1 again).
	if !slices.Equal(r.Asked, []string{"spammer.example", "d1.example"}) || r.Skipped != 3 {
		t.Fatalf("asked %v skipped %d", r.Asked, r.Skipped)
	}
	if !r.FromListed || slices.Contains(r.Domains, "evil.example") {
		t.Errorf("got %+v", r.Facts)
	}
}

func TestMaxInputs(t *testing.T) {
	srv := newServer(t)
	c := newChecker(t, dnsres.ForTest(srv.Addr()), nil)
	var hosts []string
	for range maxInputs + 5 {
		hosts = append(hosts, "www.evil.example") // one name, many times
	}
	r := c.Check(context.Background(), Input{Domains: hosts})
	if !slices.Equal(r.Asked, []string{"evil.example"}) || r.Skipped != 5 || !r.Listed {
		t.Fatalf("asked %v, %+v", r.Asked, r.Facts)
	}
}

// TestCacheAndDedupe: sub-domains of one registered domain are one
// lookup per zone; a second check is answered from the cache, listed and
// not listed alike, with no query to the server.
func TestCacheAndDedupe(t *testing.T) {
	srv := newServer(t)
	c := newChecker(t, dnsres.ForTest(srv.Addr()), nil)
	in := Input{
		FromDomains: []string{"EVIL.example"},
		Domains:     []string{"a.evil.example", "b.c.evil.example", "evil.example.", "good.example", "www.good.example"},
	}
	before := srv.Queries()
	r1 := c.Check(context.Background(), in)
	first := srv.Queries() - before
	if !slices.Equal(r1.Asked, []string{"evil.example", "good.example"}) {
		t.Fatalf("asked %v", r1.Asked)
	}
	if first != 2*len(testZones()) {
		t.Errorf("first check made %d queries, want %d", first, 2*len(testZones()))
	}
	r2 := c.Check(context.Background(), in)
	if n := srv.Queries() - before - first; n != 0 {
		t.Errorf("second check made %d queries, want 0", n)
	}
	if r1.Score != 3 || r2.Score != r1.Score || !slices.Equal(r1.Hits, r2.Hits) || !r2.FromListed {
		t.Errorf("first %+v second %+v", r1.Facts, r2.Facts)
	}
}

// TestFailuresNotCached: a SERVFAIL is asked again next time.
func TestFailuresNotCached(t *testing.T) {
	srv := newServer(t)
	srv.Fail("broken.example.dbl.test.", dns.TypeA, dnstest.ServFail)
	c := newChecker(t, dnsres.ForTest(srv.Addr()), nil)
	in := Input{Domains: []string{"broken.example"}}
	if r := c.Check(context.Background(), in); r.Errors != 1 {
		t.Fatalf("got %+v", r.Facts)
	}
	srv.Fail("broken.example.dbl.test.", dns.TypeA, 0)
	srv.Add("broken.example.dbl.test. 300 IN A 127.0.1.2")
	if r := c.Check(context.Background(), in); r.Errors != 0 || !r.Listed {
		t.Fatalf("got %+v", r.Facts)
	}
}

func TestIPsOnlyToIPZones(t *testing.T) {
	srv := newServer(t)
	c := newChecker(t, dnsres.ForTest(srv.Addr()), nil)
	before := srv.Queries()
	c.Check(context.Background(), Input{Domains: []string{"192.0.2.99"}})
	if n := srv.Queries() - before; n != 1 {
		t.Errorf("an IP literal made %d queries, want 1 (only multi.test takes IPs)", n)
	}
	// No zone takes IPs: IP literals are neither asked nor skipped.
	c = newChecker(t, dnsres.ForTest(srv.Addr()), func(cfg *Config) { cfg.Zones = cfg.Zones[:1]; cfg.MaxLookups = 1 })
	r := c.Check(context.Background(), Input{Domains: []string{"192.0.2.99", "evil.example"}})
	if !r.Listed || r.Skipped != 0 {
		t.Errorf("got %+v", r.Facts)
	}
}

func TestAllowList(t *testing.T) {
	srv := newServer(t)
	srv.Add("good.example.white.test. 300 IN A 127.0.0.2")
	c := newChecker(t, dnsres.ForTest(srv.Addr()), func(cfg *Config) {
		cfg.Zones = append(cfg.Zones, Zone{Zone: "white.test", Weight: -2})
	})
	r := c.Check(context.Background(), Input{Domains: []string{"good.example", "evil.example"}})
	if r.Score != 1 || !slices.Equal(r.Hits, []string{"dbl.test"}) || !slices.Equal(r.Domains, []string{"evil.example"}) {
		t.Errorf("got %+v", r.Facts)
	}
}

// TestSameZoneTwice: two entries on one zone share its lookups and score
// on their own.
func TestSameZoneTwice(t *testing.T) {
	srv := newServer(t)
	c := newChecker(t, dnsres.ForTest(srv.Addr()), func(cfg *Config) {
		cfg.Zones = []Zone{
			{Zone: "dbl.test", Weight: 3, Match: []string{"127.0.1.2-127.0.1.99"}},
			{Zone: "DBL.test.", Weight: 0.5, Match: []string{"127.0.1.100-127.0.1.199"}},
		}
	})
	before := srv.Queries()
	r := c.Check(context.Background(), Input{Domains: []string{"evil.example", "abused.example"}})
	if n := srv.Queries() - before; n != 2 {
		t.Errorf("%d queries, want 2", n)
	}
	if r.Score != 3.5 || !slices.Equal(r.Hits, []string{"dbl.test"}) || len(r.Domains) != 2 {
		t.Errorf("got %+v", r.Facts)
	}
}

func TestDisabled(t *testing.T) {
	c := newChecker(t, stuckResolver{}, func(cfg *Config) { cfg.Zones = nil })
	if c.Enabled() {
		t.Fatal("enabled without zones")
	}
	if r := c.Check(context.Background(), Input{Domains: []string{"evil.example"}}); r.Listed || len(r.Asked) != 0 {
		t.Errorf("got %+v", r)
	}
	var nilChecker *Checker
	if nilChecker.Enabled() {
		t.Error("nil checker enabled")
	}
}

func TestValidate(t *testing.T) {
	if err := DefaultConfig().Validate("uribl"); err != nil {
		t.Fatalf("default config: %v", err)
	}
	if err := (Config{Zones: testZones()}).Validate("uribl"); err != nil {
		t.Fatalf("test zones: %v", err)
	}
	many := make([]Zone, maxZones+1)
	for i := range many {
		many[i] = Zone{Zone: fmt.Sprintf("z%d.test", i)}
	}
	bad := []struct {
		cfg  Config
		want string
	}{
		{Config{Zones: []Zone{{Zone: ""}}}, "uribl.zones[0].zone"},
		{Config{Zones: []Zone{{Zone: "bad zone.test"}}}, "uribl.zones[0].zone"},
		{Config{Zones: []Zone{{Zone: "a.test", Match: []string{"127.0.0"}}}}, "uribl.zones[0].match[0]"},
		{Config{Zones: []Zone{{Zone: "a.test", Match: []string{"&0.0.0.0"}}}}, "uribl.zones[0].match[0]"},
		{Config{Zones: []Zone{{Zone: "a.test", ErrorCodes: []string{"x"}}}}, "uribl.zones[0].error_codes[0]"},
		{Config{Zones: many}, "uribl.zones:"},
		{Config{MaxLookups: -1}, "uribl.max_lookups"},
		{Config{MaxLookups: maxLookupsLimit + 1}, "uribl.max_lookups"},
		{Config{Parallel: maxParallel + 1}, "uribl.parallel"},
		{Config{Timeout: 2 * time.Minute}, "uribl.timeout"},
		{Config{CacheTTL: -1}, "uribl.cache_ttl"},
		{Config{CacheSize: -1}, "uribl.cache_size"},
	}
	for _, tt := range bad {
		err := tt.cfg.Validate("uribl")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: error %v, want one naming %s", tt.cfg, err, tt.want)
		}
	}
	if _, err := New(Config{}, nil, Options{}); err == nil {
		t.Error("New without a resolver should fail")
	}
}

// BenchmarkCheckWarm is a 20-domain check answered from the warm cache.
func BenchmarkCheckWarm(b *testing.B) {
	srv := dnstest.NewServer(b)
	srv.Add("evil.example.dbl.test. 300 IN A 127.0.1.2")
	c := newChecker(b, dnsres.ForTest(srv.Addr()), nil)
	in := Input{FromDomains: []string{"sender.example"}}
	for i := range 19 {
		in.Domains = append(in.Domains, fmt.Sprintf("www.d%d.example", i))
	}
	in.Domains[7] = "www.evil.example"
	if r := c.Check(context.Background(), in); !r.Listed || len(r.Asked) != 20 || r.Errors != 0 {
		b.Fatalf("warm-up: %+v", r.Facts)
	}
	b.ReportAllocs()
	for b.Loop() {
		c.Check(context.Background(), in)
	}
}

// TestCacheExpiry: after cache_ttl an answer is asked again.
func TestCacheExpiry(t *testing.T) {
	srv := newServer(t)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := Config{Zones: testZones()[:1], CacheTTL: time.Minute}
	c, err := New(cfg, dnsres.ForTest(srv.Addr()), Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	in := Input{Domains: []string{"evil.example"}}
	before := srv.Queries()
	c.Check(context.Background(), in)
	now = now.Add(59 * time.Second)
	c.Check(context.Background(), in)
	if n := srv.Queries() - before; n != 1 {
		t.Fatalf("%d queries within the TTL, want 1", n)
	}
	now = now.Add(2 * time.Second)
	if r := c.Check(context.Background(), in); !r.Listed {
		t.Fatalf("got %+v", r.Facts)
	}
	if n := srv.Queries() - before; n != 2 {
		t.Fatalf("%d queries after the TTL, want 2", n)
	}
}
