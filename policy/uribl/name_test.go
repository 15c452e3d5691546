package uribl

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestReduce(t *testing.T) {
	tests := []struct {
		host string
		want string // "" means not asked
		ip   bool
	}{
		{"evil.example", "evil.example", false},
		{"www.a.b.evil.example", "evil.example", false},
		{"WWW.Evil.Example.", "evil.example", false},
		{"shop.example.co.uk", "example.co.uk", false},
		{"user.github.io", "user.github.io", false}, // private PSL section
		{"a.user.github.io", "user.github.io", false},
		{"bit.ly", "bit.ly", false}, // shorteners are asked like any domain
		{"bücher.example", "xn--bcher-kva.example", false},
		{"192.0.2.99", "192.0.2.99", true},
		{"[192.0.2.99]", "192.0.2.99", true},
		{"[IPv6:2001:db8::1]", "2001:db8::1", true},
		{"[2001:db8::1]", "2001:db8::1", true},
		{"::ffff:192.0.2.1", "192.0.2.1", true},
		{"2001:db8::1%eth0", "2001:db8::1", true},
		{"fe80::1%eth0", "", false},
		{"127.0.0.1", "", false},
		{"10.1.2.3", "", false},
		{"[::1]", "", false},
		{"fd00::1", "", false},
		{"0.0.0.0", "", false},
		{"224.0.0.1", "", false},
		{"com", "", false},
		{"co.uk", "", false},
		{"", "", false},
		{".", "", false},
		{"a..b.example", "", false},
		{"-", "", false},
		{"evil example", "", false},
		{"evil.example/path", "", false},
		{"1.2.3.999", "", false},
		{"01.2.3.4", "", false},
		{strings.Repeat("a", 64) + ".example", "", false},
		{strings.Repeat("a.", 130) + "example", "", false},
	}
	for _, tt := range tests {
		s, ok := Reduce(tt.host)
		if tt.want == "" {
			if ok {
				t.Errorf("Reduce(%q) = %v, want not asked", tt.host, s)
			}
			continue
		}
		if !ok || s.String() != tt.want || s.IsIP() != tt.ip {
			t.Errorf("Reduce(%q) = %v (ip %v, ok %v), want %s (ip %v)", tt.host, s, s.IsIP(), ok, tt.want, tt.ip)
		}
	}
}

func TestQueryName(t *testing.T) {
	must := func(h string) Subject {
		s, ok := Reduce(h)
		if !ok {
			t.Fatalf("Reduce(%q) failed", h)
		}
		return s
	}
	tests := []struct {
		s    Subject
		zone string
		want string
	}{
		// RFC 5782 §2.2: the domain is a prefix of the zone.
		{must("www.evil.example"), "dbl.example.", "evil.example.dbl.example."},
		// RFC 5782 §2.1 and §2.4 examples.
		{must("192.0.2.99"), "bad.example.com", "99.2.0.192.bad.example.com."},
		{must("2001:db8:1:2:3:4:567:89ab"), "ugly.example.com",
			"b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com."},
	}
	for _, tt := range tests {
		if got, ok := QueryName(tt.s, tt.zone); !ok || got != tt.want {
			t.Errorf("QueryName(%v, %s) = %q %v, want %q", tt.s, tt.zone, got, ok, tt.want)
		}
	}
	// A name that fits alone but not under the zone is not asked.
	long := Subject{Domain: strings.Repeat("abcdefghi.", 24) + "example"} // 247 characters
	if q, ok := QueryName(long, "dbl.example"); ok {
		t.Errorf("QueryName(long) = %q, want not asked", q)
	}
	if _, ok := QueryName(Subject{}, "dbl.example"); ok {
		t.Error("QueryName(empty subject) should not be asked")
	}
}

// checkQueryName fails when q is not a well-formed, fully qualified query
// name of letters, digits, '-', '_' and dots.
func checkQueryName(t *testing.T, q string) {
	t.Helper()
	if len(q) > maxName+1 || !strings.HasSuffix(q, ".") {
		t.Fatalf("query name %q: bad length or not fully qualified", q)
	}
	if _, ok := dns.IsDomainName(q); !ok {
		t.Fatalf("query name %q: not a domain name", q)
	}
	for _, l := range strings.Split(strings.TrimSuffix(q, "."), ".") {
		if l == "" || len(l) > maxLabel {
			t.Fatalf("query name %q: bad label %q", q, l)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				t.Fatalf("query name %q: bad octet %q", q, c)
			}
		}
	}
	msg := new(dns.Msg)
	msg.SetQuestion(q, dns.TypeA)
	if _, err := msg.Pack(); err != nil {
		t.Fatalf("query name %q does not pack: %v", q, err)
	}
}

// FuzzQueryName: from any host string, Reduce and QueryName never panic
// and never build a malformed query name.
func FuzzQueryName(f *testing.F) {
	for _, s := range []string{
		"evil.example", "www.a.b.evil.example", "WWW.Evil.Example.", "shop.example.co.uk",
		"user.github.io", "bücher.example", "xn--bcher-kva.example", "192.0.2.99",
		"[192.0.2.99]", "[IPv6:2001:db8::1]", "::ffff:192.0.2.1", "fe80::1%eth0",
		"com", "", ".", "a..b", "1.2.3.999", "\x00", "ex\u00e4mple.xn--", "_dmarc.example",
		strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + ".example",
	} {
		f.Add(s)
	}
	zones := []string{"dbl.example", "multi.surbl.org.", strings.Repeat("z", 63) + "." + strings.Repeat("y", 63) + ".example"}
	f.Fuzz(func(t *testing.T, host string) {
		s, ok := Reduce(host)
		if !ok {
			return
		}
		if s.IsIP() == (s.Domain != "") {
			t.Fatalf("Reduce(%q) = %+v: want exactly one of domain and IP", host, s)
		}
		if !s.IsIP() && !validName(s.Domain) {
			t.Fatalf("Reduce(%q) = %q: not a valid name", host, s.Domain)
		}
		for _, z := range zones {
			if q, ok := QueryName(s, z); ok {
				checkQueryName(t, q)
			}
		}
	})
}
