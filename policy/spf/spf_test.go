package spf

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"moat/internal/dnsres"
	"moat/internal/dnstest"
	"moat/policy"
)

func TestCheck(t *testing.T) {
	srv := dnstest.NewServer(t)
	srv.Add(
		`example.org. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"`,
		`helo.example.org. 300 IN TXT "v=spf1 a -all"`,
		`helo.example.org. 300 IN A 192.0.2.9`,
		`loop.example.org. 300 IN TXT "v=spf1 include:loop.example.org -all"`,
		`many.example.org. 300 IN TXT "v=spf1 a:a1.example.org a:a2.example.org a:a3.example.org a:a4.example.org a:a5.example.org a:a6.example.org a:a7.example.org a:a8.example.org a:a9.example.org a:a10.example.org a:a11.example.org -all"`,
		`void.example.org. 300 IN TXT "v=spf1 a:n1.example.org a:n2.example.org a:n3.example.org -all"`,
		`two.example.org. 300 IN TXT "v=spf1 -all"`,
		`two.example.org. 300 IN TXT "v=spf1 +all"`,
		// issue 23 item 4: a local-part with ' ( ) ; @ in an exists: name.
		`ob.example.org. 300 IN TXT "v=spf1 exists:%{l}._spf.%{d} -all"`,
		`o\'brien._spf.ob.example.org. 300 IN A 127.0.0.2`,
		`\"a\(b\)\;c\"._spf.ob.example.org. 300 IN A 127.0.0.2`,
	)
	for i := 1; i <= 11; i++ {
		srv.Add("a" + string(rune('0'+i%10)) + ".example.org. 300 IN A 198.51.100.1")
	}
	// A record over 255 octets, split in strings (RFC 7208 §3.3).
	long := "v=spf1 " + strings.Repeat("ip4:203.0.113.1 ", 20) + "ip4:192.0.2.77 -all"
	srv.AddRR(&dns.TXT{Hdr: dns.RR_Header{Name: "long.example.org.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300}, Txt: []string{long[:255], long[255:]}})
	srv.Fail("temp.example.org", dns.TypeTXT, dnstest.ServFail)
	r := dnsres.ForTest(srv.Addr())
	ip := netip.MustParseAddr("192.0.2.9")
	tests := []struct {
		name, helo, sender string
		ip                 netip.Addr
		want               policy.Result
		domain, identity   string
	}{
		{"mailfrom pass", "h.example", "a@example.org", ip, policy.ResultPass, "example.org", "mailfrom"},
		{"mailfrom fail", "h.example", "a@example.org", netip.MustParseAddr("198.51.100.1"), policy.ResultFail, "example.org", "mailfrom"},
		{"ipv4-mapped", "h.example", "a@example.org", netip.MustParseAddr("::ffff:192.0.2.9"), policy.ResultPass, "example.org", "mailfrom"},
		{"null sender uses helo", "helo.example.org", "", ip, policy.ResultPass, "helo.example.org", "helo"},
		{"helo ip literal", "[192.0.2.9]", "", ip, policy.ResultNone, "[192.0.2.9]", "helo"},
		{"helo single label", "localhost", "", ip, policy.ResultNone, "localhost", "helo"},
		{"no record", "h", "a@norecord.example.org", ip, policy.ResultNone, "norecord.example.org", "mailfrom"},
		{"temp", "h", "a@temp.example.org", ip, policy.ResultTempError, "temp.example.org", "mailfrom"},
		{"loop", "h", "a@loop.example.org", ip, policy.ResultPermError, "loop.example.org", "mailfrom"},
		{"too many lookups", "h", "a@many.example.org", ip, policy.ResultPermError, "many.example.org", "mailfrom"},
		{"void lookups", "h", "a@void.example.org", ip, policy.ResultPermError, "void.example.org", "mailfrom"},
		{"two records", "h", "a@two.example.org", ip, policy.ResultPermError, "two.example.org", "mailfrom"},
		{"long record", "h", "a@long.example.org", netip.MustParseAddr("192.0.2.77"), policy.ResultPass, "long.example.org", "mailfrom"},
		{"no ip", "h", "a@example.org", netip.Addr{}, policy.ResultPermError, "example.org", "mailfrom"},
		{"exists with ' in local-part", "h", "o'brien@ob.example.org", ip, policy.ResultPass, "ob.example.org", "mailfrom"},
		{"exists with specials in local-part", "h", `"a(b);c"@ob.example.org`, ip, policy.ResultPass, "ob.example.org", "mailfrom"},
		{"exists with ' not listed", "h", "d'arcy@ob.example.org", ip, policy.ResultFail, "ob.example.org", "mailfrom"},
		{"bracketed", "h", "<a@example.org>", ip, policy.ResultPass, "example.org", "mailfrom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Check(context.Background(), r, tt.ip, tt.helo, tt.sender)
			if got.Result != tt.want || got.Domain != tt.domain || got.Identity != tt.identity {
				t.Fatalf("got %+v, want %s %s %s", got, tt.want, tt.domain, tt.identity)
			}
		})
	}
}

// fakeResolver serves one TXT record for every name, or panics.
type fakeResolver struct {
	txt   string
	panic bool
}

func (f fakeResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	if f.panic {
		panic("boom")
	}
	return []string{f.txt}, nil
}
func (fakeResolver) LookupMX(_ context.Context, n string) ([]*net.MX, error) {
	return nil, &net.DNSError{Err: "no such host", Name: n, IsNotFound: true}
}
func (fakeResolver) LookupIPAddr(_ context.Context, n string) ([]net.IPAddr, error) {
	return []net.IPAddr{{IP: net.IPv4(192, 0, 2, 1)}}, nil
}
func (fakeResolver) LookupIP(context.Context, string, string) ([]net.IP, error) { return nil, nil }
func (fakeResolver) LookupAddr(_ context.Context, a string) ([]string, error) {
	return []string{"x.example."}, nil
}
func (fakeResolver) LookupCNAME(_ context.Context, h string) (string, error) { return h, nil }

func TestPanicIsTempError(t *testing.T) {
	got := Check(context.Background(), fakeResolver{panic: true}, netip.MustParseAddr("192.0.2.1"), "h.example", "a@example.org")
	if got.Result != policy.ResultTempError {
		t.Fatalf("got %+v", got)
	}
}

func FuzzCheck(f *testing.F) {
	f.Add("v=spf1 ip4:192.0.2.0/24 -all", "a@example.org")
	f.Add("v=spf1 include:%{d}.x exists:%{ir}.%{l1r+-}._spf.%{d} ptr mx/24 a//64 redirect=%{o}", "a.b+c@example.org")
	f.Add("v=spf1 -all exp=%{c}%{r}%{t}", "")
	// Every name serves the same record: redirect and include loops, and
	// the lookup limits (RFC 7208 §4.6.4), must end the check.
	f.Add("v=spf1 redirect=%{d}", "a@loop.example")
	f.Add("v=spf1 redirect=x.%{d}", "a@loop.example")
	f.Add("v=spf1 include:%{d} include:x.%{d} -all", "a@loop.example")
	f.Add("v=spf1 a:foo/bar.%{d} redirect=r/%{d}", "a@loop.example")
	f.Add("v=spf1 mx mx mx mx mx mx mx mx mx mx mx -all", "a@many.example")
	f.Add("v=spf1 ptr ptr ptr ptr ptr ptr ptr ptr ptr ptr ptr exists:%{p}.x -all", "a@many.example")
	f.Add("v=spf1 a a a a a a a a a a a -all", "a@many.example")
	f.Fuzz(func(t *testing.T, record, sender string) {
		got := Check(context.Background(), fakeResolver{txt: record}, netip.MustParseAddr("203.0.113.5"), "helo.example", sender)
		if strings.HasPrefix(got.Reason, "internal error") {
			t.Fatalf("panic: %s", got.Reason)
		}
		c := &countingResolver{txt: record}
		got = Check(context.Background(), c, netip.MustParseAddr("203.0.113.5"), "helo.example", sender)
		if strings.HasPrefix(got.Reason, "internal error") {
			t.Fatalf("panic: %s", got.Reason)
		}
		if n := c.n.Load(); n > maxLookups {
			t.Fatalf("%d lookups for %q (at most %d)", n, record, maxLookups)
		}
	})
}
