package dnsbl

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"moat/internal/dnstest"
)

func TestQueryName(t *testing.T) {
	tests := []struct{ ip, zone, want string }{
		// RFC 5782 §2.1 example.
		{"192.0.2.99", "bad.example.com", "99.2.0.192.bad.example.com."},
		{"::ffff:192.0.2.99", "bad.example.com.", "99.2.0.192.bad.example.com."},
		// RFC 5782 §2.4 example.
		{"2001:db8:1:2:3:4:567:89ab", "ugly.example.com",
			"b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com."},
	}
	for _, tt := range tests {
		if got := QueryName(netip.MustParseAddr(tt.ip), tt.zone); got != tt.want {
			t.Errorf("QueryName(%s, %s) = %s, want %s", tt.ip, tt.zone, got, tt.want)
		}
	}
}

func TestFilter(t *testing.T) {
	tests := []struct {
		filter, answer string
		want           bool
	}{
		{"127.0.0.2", "127.0.0.2", true},
		{"127.0.0.2", "127.0.0.3", false},
		{"127.0.0.2-127.0.0.11", "127.0.0.11", true},
		{"127.0.0.2-127.0.0.11", "127.0.0.12", false},
		{"127.0.0.2-127.0.0.11", "127.0.0.1", false},
		{"&0.0.0.4", "127.0.0.4", true},
		{"&0.0.0.4", "127.0.0.6", true},
		{"&0.0.0.4", "127.0.0.2", false},
	}
	for _, tt := range tests {
		f, err := ParseFilter(tt.filter)
		if err != nil {
			t.Fatalf("ParseFilter(%q): %v", tt.filter, err)
		}
		if got := f.Match(netip.MustParseAddr(tt.answer)); got != tt.want {
			t.Errorf("%s matches %s = %v, want %v", tt.filter, tt.answer, got, tt.want)
		}
	}
	for _, bad := range []string{"", "x", "127.0.0.3-127.0.0.2", "&0.0.0.0", "::1", "&x", "127.0.0.1-"} {
		if _, err := ParseFilter(bad); err == nil {
			t.Errorf("ParseFilter(%q): want error", bad)
		}
	}
}

func TestValidateNamesKeys(t *testing.T) {
	cfg := Config{Zones: []Zone{{Zone: ""}, {Zone: "ok.example", Match: []string{"nope"}}}, Timeout: -1}
	err := cfg.Validate("guard.dnsbl")
	if err == nil {
		t.Fatal("want error")
	}
	for _, key := range []string{"guard.dnsbl.zones[0].zone", "guard.dnsbl.zones[1].match[0]", "guard.dnsbl.timeout"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error %q does not name %s", err, key)
		}
	}
}

func TestCheck(t *testing.T) {
	r := &dnstest.AddrMap{
		A: map[string][]string{
			"2.0.0.127.zen.test.":   {"127.0.0.2", "127.0.0.10"},
			"2.0.0.127.bits.test.":  {"127.0.0.6"},
			"2.0.0.127.wl.test.":    {"127.0.15.1"},
			"2.0.0.127.error.test.": {"127.255.255.254"},
			"3.0.0.127.zen.test.":   {"127.0.0.20"},
		},
		Fail: map[string]bool{"2.0.0.127.broken.test.": true},
		Slow: map[string]bool{"2.0.0.127.slow.test.": true},
	}
	cfg := Config{Timeout: 200 * time.Millisecond, Zones: []Zone{
		{Zone: "zen.test", Weight: 2, Match: []string{"127.0.0.2-127.0.0.11"}},
		{Zone: "zen.test", Weight: 1, Match: []string{"127.0.0.10"}}, // same zone, second filter: one query
		{Zone: "bits.test", Weight: 0.5, Match: []string{"&0.0.0.4"}},
		{Zone: "wl.test", Weight: -5},
		{Zone: "error.test", Weight: 10}, // 127.255.255.x is an error code, not a listing
		{Zone: "broken.test", Weight: 10},
		{Zone: "slow.test", Weight: 10},
	}}
	c, err := New(cfg, r, Options{})
	if err != nil {
		t.Fatal(err)
	}
	res := c.Check(context.Background(), netip.MustParseAddr("127.0.0.2"))
	if res.Score != 2+1+0.5-5 {
		t.Errorf("score = %v, want -1.5; hits %+v", res.Score, res.Hits)
	}
	if len(res.Hits) != 4 || !res.Hits[3].Allowed || res.Hits[0].Answer != netip.MustParseAddr("127.0.0.2") {
		t.Errorf("hits = %+v", res.Hits)
	}
	failed := strings.Join(res.FailedZones(), ",")
	if failed != "broken.test,slow.test" {
		t.Errorf("failed = %s", failed)
	}
	// The fact says which lists failed, and what each could have added.
	if e := strings.Join(res.Errors, ","); e != failed || res.Failed[0].Weight != 10 {
		t.Errorf("errors fact = %s, failures %+v", e, res.Failed)
	}
	// Filters: 127.0.0.20 is outside the zen.test ranges.
	res = c.Check(context.Background(), netip.MustParseAddr("127.0.0.3"))
	if res.Score != 0 || len(res.Hits) != 0 {
		t.Errorf("127.0.0.3: %+v", res)
	}
	// Answers and "not listed" are cached; failures are not.
	before := r.Queries()
	c.Check(context.Background(), netip.MustParseAddr("127.0.0.2"))
	after := r.Queries()
	if after-before != 2 { // broken.test and slow.test only
		t.Errorf("second check made %d queries, want 2", after-before)
	}
}

func TestCacheExpires(t *testing.T) {
	r := &dnstest.AddrMap{A: map[string][]string{"2.0.0.127.zen.test.": {"127.0.0.2"}}}
	now := time.Unix(1000, 0)
	c, err := New(Config{Zones: []Zone{{Zone: "zen.test"}}, CacheTTL: time.Minute}, r, Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("127.0.0.2")
	c.Check(context.Background(), ip)
	c.Check(context.Background(), ip)
	if r.Queries() != 1 {
		t.Fatalf("queries = %d, want 1", r.Queries())
	}
	now = now.Add(2 * time.Minute)
	if res := c.Check(context.Background(), ip); res.Score != 1 {
		t.Errorf("score = %v", res.Score)
	}
	if r.Queries() != 2 {
		t.Errorf("queries = %d, want 2 after expiry", r.Queries())
	}
}

func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"127.0.0.2", "127.0.0.2-127.0.0.11", "&0.0.0.4", "", "-", "&"} {
		f.Add(s, "127.0.0.4")
	}
	f.Fuzz(func(t *testing.T, s, answer string) {
		flt, err := ParseFilter(s)
		if err != nil {
			return
		}
		if a, err := netip.ParseAddr(answer); err == nil {
			flt.Match(a)
		}
	})
}
