package spf

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"

	"moat/internal/dnsres"
	"moat/internal/dnstest"
	"moat/policy"
)

func TestParseRecord(t *testing.T) {
	valid := []string{
		"v=spf1",
		"V=SPF1 -ALL",
		"v=spf1  ip4:192.0.2.0/24   ip6:2001:db8::/32 ip6:::ffff:1.2.3.4 -all ",
		"v=spf1 a a:mail.example.com a/24 a//64 a:x.example.com/24//64 mx mx:%{d} ptr ptr:example.com ?all",
		"v=spf1 include:_spf.example.com exists:%{ir}.%{l1r+-}._spf.%{d} redirect=%{o}",
		"v=spf1 exists:%{i}._spf.%{d2} exists:%{p}.x.example exists:%{v}.%{h}.example.com",
		"v=spf1 a:foo:bar/baz.example.com", // §7.1: any visible character but %
		"v=spf1 a:macro%%percent%_%_space%-url-space.example.com -all",
		"v=spf1 a:example.com. -all",     // trailing dot
		"v=spf1 a:foo.a-1 exists:%{d}%-", // toplabel with "-", ends in macro-expand
		"v=spf1 -all exp=explain.%{d} foo=%{c}%{r}%{t}bar moo.cow-2=x",
	}
	for _, r := range valid {
		if _, err := parseRecord(r); err != nil {
			t.Errorf("parseRecord(%q): %v", r, err)
		}
	}
	invalid := []string{
		"v=spf10 -all",
		"v=spf1 -all moo", // detect errors anywhere (§4.6)
		"v=spf1 ip4:1.2.3.4 redirect:t2.example.com",
		"v=spf1 a:foo-bar -all",              // no top label
		"v=spf1 a:example.com:8080",          // toplabel "com:8080"
		"v=spf1 a:111.222.33.44",             // numeric toplabel
		"v=spf1 a:museum.",                   // only a toplabel
		"v=spf1 a:foo.example.com\x00",       // NUL
		"v=spf1 a:ctrl.example.com\rptr",     // CR between terms
		"v=spf1 a:\xef\xbb\xbfx.example.net", // not ASCII
		"v=spf1 ip4:1.2.3.4/032 -all",        // leading zero
		"v=spf1 ip4:1.2.3.4/33",
		"v=spf1 ip6:::1/129",
		"v=spf1 ip4:01.2.3.4",
		"v=spf1 ip4:::1",
		"v=spf1 ip6:1.2.3.4",
		"v=spf1 ip6",
		"v=spf1 mx//129", "v=spf1 mx/33", "v=spf1 a/", "v=spf1 a:", "v=spf1 a:x.example.com/",
		"v=spf1 include:", "v=spf1 exists", "v=spf1 all:x", "v=spf1 ptr/24",
		"v=spf1 exp= -all", "v=spf1 exp=-all", "v=spf1 redirect=", "v=spf1 redirect=-all ?all",
		"v=spf1 exp=a.example.com exp=b.example.com", "v=spf1 redirect=a.example.com redirect=b.example.com",
		"v=spf1 -all foo=%abc",             // bad macro in unknown modifier
		"v=spf1 -all exp=%{r}.example.com", // c, r, t only in explanation text
		"v=spf1 exists:%{c}.example.com",
		"v=spf1 exists:%{d0}.example.com", // zero digit transformer
		"v=spf1 exists:%{x}.example.com",
		"v=spf1 exists:%{d.example.com",
		"v=spf1 exists:%{d}%",
		"v=spf1 exists:%{dr:}.example.com",
		"v=spf1 9x=y",
	}
	for _, r := range invalid {
		if _, err := parseRecord(r); err == nil {
			t.Errorf("parseRecord(%q): no error", r)
		}
	}
}

func TestMacroApply(t *testing.T) {
	s := &session{ip: netip.MustParseAddr("192.0.2.3"), sender: "strong-bad@email.example.com", local: "strong-bad", domain: "email.example.com", helo: "h.example"}
	for spec, want := range map[string]string{
		"%{s}":                   "strong-bad@email.example.com",
		"%{o}":                   "email.example.com",
		"%{d4}":                  "email.example.com",
		"%{d2}":                  "example.com",
		"%{d1r}":                 "email",
		"%{dr}":                  "com.example.email",
		"%{l-}":                  "strong.bad",
		"%{lr-}":                 "bad.strong",
		"%{l1r-}":                "strong",
		"%{ir}.%{v}._spf.%{d}":   "3.2.0.192.in-addr._spf.email.example.com",
		"%{S}":                   "strong-bad%40email.example.com",
		"a%%b%_c%-d.example.com": "a%b c%20d.example.com",
		"%{h}.example.com":       "h.example.example.com",
	} {
		if got := s.expand(context.Background(), spec, "email.example.com"); got != want {
			t.Errorf("expand(%q) = %q, want %q", spec, got, want)
		}
	}
	s.ip = netip.MustParseAddr("2001:db8::cb01")
	if got := s.expand(context.Background(), "%{ir}.%{v}", "x"); got != "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6" {
		t.Errorf("ipv6 %%{ir}: %q", got)
	}
	if got := truncateName(strings.Repeat("abcdefghi.", 30) + "com"); len(got) > 253 || !strings.HasSuffix(got, ".com") || strings.HasPrefix(got, ".") {
		t.Errorf("truncateName: %q", got)
	}
}

// TestSyntaxAndRewrite covers issue 23 item 5 end to end: errors after a
// match, %{p}, and a domain-spec with ":" and "/".
func TestSyntaxAndRewrite(t *testing.T) {
	srv := dnstest.NewServer(t)
	srv.Add(
		`late.example.org. 300 IN TXT "v=spf1 ip4:192.0.2.9 -all moo"`,
		`inc.example.org. 300 IN TXT "v=spf1 include:late.example.org -all"`,
		`colon.example.org. 300 IN TXT "v=spf1 a:foo:bar/baz.example.org -all"`,
		`foo:bar/baz.example.org. 300 IN A 192.0.2.9`,
		`redir.example.org. 300 IN TXT "v=spf1 redirect=x/y.example.org"`,
		`x/y.example.org. 300 IN TXT "v=spf1 a -all"`,
		`x/y.example.org. 300 IN A 192.0.2.9`,
		`p.example.org. 300 IN TXT "v=spf1 exists:%{p}._p.%{d} -all"`,
		`mail.p.example.org._p.p.example.org. 300 IN A 127.0.0.2`,
		`9.2.0.192.in-addr.arpa. 300 IN PTR other.example.net.`,
		`9.2.0.192.in-addr.arpa. 300 IN PTR mail.p.example.org.`,
		`mail.p.example.org. 300 IN A 192.0.2.9`,
		`other.example.net. 300 IN A 192.0.2.9`,
		`pu.example.org. 300 IN TXT "v=spf1 exists:%{p}._p.%{d} -all"`,
		`unknown._p.pu.example.org. 300 IN A 127.0.0.2`,
	)
	r := dnsres.ForTest(srv.Addr())
	ip := netip.MustParseAddr("192.0.2.9")
	for _, tc := range []struct {
		sender string
		ip     netip.Addr
		want   policy.Result
		reason string
	}{
		{"a@late.example.org", ip, policy.ResultPermError, "moo"},
		{"a@inc.example.org", ip, policy.ResultPermError, "late.example.org"},
		{"a@colon.example.org", ip, policy.ResultPass, ""},
		{"a@redir.example.org", ip, policy.ResultPass, ""},
		{"a@p.example.org", ip, policy.ResultPass, ""},
		{"a@pu.example.org", netip.MustParseAddr("192.0.2.10"), policy.ResultPass, ""}, // no PTR: "unknown"
	} {
		got := Check(context.Background(), r, tc.ip, "h.example", tc.sender)
		if got.Result != tc.want || !strings.Contains(got.Reason, tc.reason) {
			t.Errorf("%s: got %s (%s), want %s (%q)", tc.sender, got.Result, got.Reason, tc.want, tc.reason)
		}
	}
	_ = dns.TypeA
}

// countingResolver serves one SPF record for every name and counts the
// lookups, for the fuzz target's bound.
type countingResolver struct {
	txt string
	n   atomic.Int64
}

func (c *countingResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	c.n.Add(1)
	return []string{c.txt}, nil
}
func (c *countingResolver) LookupMX(_ context.Context, n string) ([]*net.MX, error) {
	c.n.Add(1)
	return []*net.MX{{Host: "mx1." + n, Pref: 10}, {Host: "mx2." + n, Pref: 20}}, nil
}
func (c *countingResolver) LookupIPAddr(_ context.Context, n string) ([]net.IPAddr, error) {
	c.n.Add(1)
	return []net.IPAddr{{IP: net.IPv4(192, 0, 2, 1)}}, nil
}
func (c *countingResolver) LookupIP(context.Context, string, string) ([]net.IP, error) {
	return nil, nil
}
func (c *countingResolver) LookupAddr(_ context.Context, a string) ([]string, error) {
	c.n.Add(1)
	return []string{"x.example.", "y.example."}, nil
}
func (c *countingResolver) LookupCNAME(_ context.Context, h string) (string, error) { return h, nil }

// maxLookups bounds the DNS queries of one check: 10 terms that query
// (§4.6.4), each at most 1 + 10 MX or PTR names, the first record, and
// one PTR plus 10 address lookups for %{p}.
const maxLookups = 1 + 10*(1+10) + 1 + 10

func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{
		"v=spf1 ip4:192.0.2.0/24 -all",
		"v=spf1 a:foo:bar/baz.example.com mx:x.example.com/24//64 -all",
		"v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} redirect=%{o} exp=%{d}",
		"v=spf1 -all foo=%{c}%{r}%{t} exp=%{r}.x",
		"v=spf1 a:%%%_%-.example.com ip6:::ffff:1.2.3.4/128 ptr:%{p}.x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, txt string) {
		rec, err := parseRecord(txt)
		if err != nil {
			return
		}
		// A valid record rewritten for the library is valid again.
		s := &session{ip: netip.MustParseAddr("192.0.2.1"), sender: "a@b.example", local: "a", domain: "b.example", helo: "h.example", r: &countingResolver{txt: "v=spf1"}}
		out, err := s.rewrite(context.Background(), rec, "d.example", true)
		if err != nil {
			return
		}
		if _, err := parseRecord(out); err != nil && !strings.Contains(err.Error(), "top label") {
			t.Fatalf("rewrite of %q gives %q: %v", txt, out, err)
		}
	})
}
