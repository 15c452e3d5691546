package dnsres

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func msg(t testing.TB, rcode int, answer []string, ns ...string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion("a.example.org.", dns.TypeA)
	m.Rcode = rcode
	for _, s := range answer {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		m.Answer = append(m.Answer, rr)
	}
	for _, s := range ns {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		m.Ns = append(m.Ns, rr)
	}
	return m
}

const soa = "example.org. %d IN SOA ns. h. 1 3600 600 86400 %d"

func TestAnswerTTL(t *testing.T) {
	tests := []struct {
		name string
		m    *dns.Msg
		want time.Duration
	}{
		{"min of answer", msg(t, 0, []string{"a.example.org. 300 IN A 192.0.2.1", "a.example.org. 200 IN A 192.0.2.2"}), 200 * time.Second},
		{"cname counts", msg(t, 0, []string{"a.example.org. 300 IN CNAME b.example.org.", "b.example.org. 30 IN A 192.0.2.2"}), 30 * time.Second},
		{"capped", msg(t, 0, []string{"a.example.org. 86400 IN A 192.0.2.1"}), MaxCacheTTL},
		{"zero", msg(t, 0, []string{"a.example.org. 0 IN A 192.0.2.1"}), 0},
		{"other types ignored", msg(t, 0, []string{"a.example.org. 300 IN A 192.0.2.1", "a.example.org. 5 IN TXT \"x\""}), 300 * time.Second},
		{"nxdomain soa minimum", msg(t, 3, nil, strings.ReplaceAll(strings.Replace(soa, "%d", "900", 1), "%d", "90")), 90 * time.Second},
		{"nxdomain soa ttl", msg(t, 3, nil, strings.ReplaceAll(strings.Replace(soa, "%d", "40", 1), "%d", "900")), 40 * time.Second},
		{"nodata soa", msg(t, 0, nil, strings.ReplaceAll(strings.Replace(soa, "%d", "40", 1), "%d", "50")), 40 * time.Second},
		{"negative capped", msg(t, 3, nil, strings.ReplaceAll(soa, "%d", "86400")), MaxCacheTTL},
		{"negative no soa", msg(t, 3, nil), DefaultNegativeTTL},
		{"cname to nothing", msg(t, 0, []string{"a.example.org. 300 IN CNAME b.example.org."}), DefaultNegativeTTL},
	}
	for _, tc := range tests {
		if got := newAnswer(tc.m, dns.TypeA).ttl; got != tc.want {
			t.Errorf("%s: ttl %v, want %v", tc.name, got, tc.want)
		}
	}
}

func FuzzAnswer(f *testing.F) {
	seed := msg(f, 0, []string{
		"a.example.org. 300 IN CNAME B.example.org.",
		"b.example.org. 300 IN CNAME c.example.org.",
		"c.example.org. 30 IN A 192.0.2.2",
	}, "example.org. 300 IN SOA ns. h. 1 3600 600 86400 60")
	for _, m := range []*dns.Msg{seed, msg(f, 3, nil), msg(f, 0, []string{"a.example.org. 1 IN CNAME a.example.org."})} {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := new(dns.Msg)
		if err := m.Unpack(b); err != nil || len(m.Question) == 0 {
			return
		}
		q := m.Question[0]
		a := newAnswer(m, q.Qtype)
		if a.ttl < 0 || a.ttl > MaxCacheTTL {
			t.Fatalf("ttl %v", a.ttl)
		}
		seen := map[string]bool{}
		final, recs, links, _ := follow(q.Name, q.Qtype, a.rrs, seen)
		if links > MaxCNAMEChain+1 {
			t.Fatalf("%d links", links)
		}
		for _, rr := range recs {
			if !strings.EqualFold(rr.Header().Name, final) || rr.Header().Rrtype != q.Qtype {
				t.Fatalf("record %v not owned by %q", rr, final)
			}
		}
	})
}

func BenchmarkCachedLookup(b *testing.B) {
	c, _ := newTest(b, Config{})
	ctx := context.Background()
	if _, err := c.LookupTXT(ctx, "example.org"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.LookupTXT(ctx, "example.org"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCachedLookupParallel(b *testing.B) {
	c, _ := newTest(b, Config{})
	ctx := context.Background()
	if _, err := c.LookupIPAddr(ctx, "www.example.org"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.LookupIPAddr(ctx, "www.example.org"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkUncachedLookup(b *testing.B) {
	c, _ := newTest(b, Config{CacheSize: -1})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.LookupTXT(ctx, "example.org"); err != nil {
			b.Fatal(err)
		}
	}
}
