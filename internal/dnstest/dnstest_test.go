package dnstest

import (
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const zone = `$ORIGIN example.org.
$TTL 300
@        IN SOA ns.example.org. host.example.org. 1 3600 600 86400 120
@        IN MX  10 mx
@        IN TXT "v=spf1 " "-all"
mx       IN A   192.0.2.1
mx       IN AAAA 2001:db8::1
www      IN CNAME mx
dangling IN CNAME nowhere
loop1    IN CNAME loop2
loop2    IN CNAME loop1
a.b.c    IN A   192.0.2.9
`

func exchange(t *testing.T, s *Server, net, name string, qtype uint16, edns bool) (*dns.Msg, error) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns {
		m.SetEdns0(1232, false)
	}
	c := &dns.Client{Net: net, Timeout: 300 * time.Millisecond}
	r, _, err := c.Exchange(m, s.Addr())
	return r, err
}

func TestAnswers(t *testing.T) {
	s := NewServerWithZone(t, zone)
	tests := []struct {
		name    string
		qtype   uint16
		rcode   int
		answers int
		soa     bool
	}{
		{"example.org.", dns.TypeMX, dns.RcodeSuccess, 1, false},
		{"EXAMPLE.org.", dns.TypeTXT, dns.RcodeSuccess, 1, false},
		{"mx.example.org.", dns.TypeA, dns.RcodeSuccess, 1, false},
		{"mx.example.org.", dns.TypeMX, dns.RcodeSuccess, 0, true},        // no data
		{"nope.example.org.", dns.TypeA, dns.RcodeNameError, 0, true},     // NXDOMAIN
		{"b.c.example.org.", dns.TypeA, dns.RcodeSuccess, 0, true},        // empty non-terminal
		{"www.example.org.", dns.TypeA, dns.RcodeSuccess, 2, false},       // CNAME + A
		{"www.example.org.", dns.TypeCNAME, dns.RcodeSuccess, 1, false},   // the CNAME itself
		{"dangling.example.org.", dns.TypeA, dns.RcodeNameError, 1, true}, // RFC 6604
		{"loop1.example.org.", dns.TypeA, dns.RcodeSuccess, 2, false},
		{"other.test.", dns.TypeA, dns.RcodeNameError, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name+dns.TypeToString[tc.qtype], func(t *testing.T) {
			r, err := exchange(t, s, "udp", tc.name, tc.qtype, false)
			if err != nil {
				t.Fatal(err)
			}
			if r.Rcode != tc.rcode || len(r.Answer) != tc.answers || (len(r.Ns) == 1) != tc.soa || !r.Authoritative {
				t.Errorf("got rcode %s, %d answers, %d ns, aa %v; want %s, %d, soa %v\n%v",
					dns.RcodeToString[r.Rcode], len(r.Answer), len(r.Ns), r.Authoritative,
					dns.RcodeToString[tc.rcode], tc.answers, tc.soa, r)
			}
		})
	}
}

func TestTXTStrings(t *testing.T) {
	s := NewServerWithZone(t, zone)
	r, err := exchange(t, s, "tcp", "example.org.", dns.TypeTXT, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.Answer[0].(*dns.TXT).Txt, "|"); got != "v=spf1 |-all" {
		t.Errorf("TXT strings %q", got)
	}
}

func TestFailures(t *testing.T) {
	s := NewServer(t)
	s.Add("example.org. 300 IN A 192.0.2.1")
	s.Fail("example.org.", dns.TypeA, ServFail)
	if r, err := exchange(t, s, "udp", "example.org.", dns.TypeA, false); err != nil || r.Rcode != dns.RcodeServerFailure {
		t.Errorf("servfail: %v %v", r, err)
	}
	s.Fail("example.org.", dns.TypeANY, Refused)
	s.Fail("example.org.", dns.TypeA, 0)
	if r, err := exchange(t, s, "udp", "example.org.", dns.TypeA, false); err != nil || r.Rcode != dns.RcodeRefused {
		t.Errorf("refused: %v %v", r, err)
	}
	s.Fail("example.org.", dns.TypeANY, Truncate)
	if r, err := exchange(t, s, "udp", "example.org.", dns.TypeA, false); err != nil || !r.Truncated || len(r.Answer) != 0 {
		t.Errorf("truncate udp: %v %v", r, err)
	}
	if r, err := exchange(t, s, "tcp", "example.org.", dns.TypeA, false); err != nil || r.Truncated || len(r.Answer) != 1 {
		t.Errorf("truncate tcp: %v %v", r, err)
	}
	s.Fail("example.org.", dns.TypeANY, Timeout)
	if r, err := exchange(t, s, "udp", "example.org.", dns.TypeA, false); err == nil {
		t.Errorf("timeout: got answer %v", r)
	}
	before := s.Queries()
	s.Clear()
	if r, err := exchange(t, s, "udp", "example.org.", dns.TypeA, false); err != nil || r.Rcode != dns.RcodeNameError {
		t.Errorf("after Clear: %v %v", r, err)
	}
	if s.Queries() != before+1 {
		t.Errorf("Queries %d, want %d", s.Queries(), before+1)
	}
}

func TestLargeAnswerTruncatesOverUDP(t *testing.T) {
	s := NewServer(t)
	for i := range 60 {
		s.Add("big.example.org. 300 IN TXT \"" + strings.Repeat("x", 40) + string(rune('a'+i%26)) + strings.Repeat("y", i) + "\"")
	}
	r, err := exchange(t, s, "udp", "big.example.org.", dns.TypeTXT, false)
	if err != nil || !r.Truncated {
		t.Fatalf("udp without EDNS0: want TC=1, got %v", err)
	}
	r, err = exchange(t, s, "tcp", "big.example.org.", dns.TypeTXT, true)
	if err != nil || r.Truncated || len(r.Answer) != 60 {
		t.Fatalf("tcp: %v, %d answers", err, len(r.Answer))
	}
}

func TestRemove(t *testing.T) {
	s := NewServer(t)
	s.Add("example.org. 300 IN A 192.0.2.1", "example.org. 300 IN A 192.0.2.1", "example.org. 300 IN MX 0 .")
	r, _ := exchange(t, s, "udp", "example.org.", dns.TypeA, false)
	if len(r.Answer) != 1 {
		t.Errorf("duplicate kept: %v", r.Answer)
	}
	s.Remove("Example.ORG", dns.TypeA)
	r, _ = exchange(t, s, "udp", "example.org.", dns.TypeA, false)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Errorf("after Remove A: %v", r)
	}
	s.Remove("example.org.", dns.TypeANY)
	r, _ = exchange(t, s, "udp", "example.org.", dns.TypeMX, false)
	if r.Rcode != dns.RcodeNameError {
		t.Errorf("after Remove ANY: %v", r)
	}
}

func TestAddTXTSplitsLongValues(t *testing.T) {
	s := NewServer(t)
	long := strings.Repeat("k", 600)
	s.AddTXT("key.example.", long)
	m, err := exchange(t, s, "tcp", "key.example.", dns.TypeTXT, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Answer) != 1 {
		t.Fatalf("answer %v", m.Answer)
	}
	txt := m.Answer[0].(*dns.TXT).Txt
	if len(txt) != 3 || len(txt[0]) != 255 || len(txt[2]) != 90 || strings.Join(txt, "") != long {
		t.Errorf("strings of %d octets each: %v", len(txt[0]), len(txt))
	}
}

func TestSecureSetsAD(t *testing.T) {
	s := NewServerWithZone(t, zone)
	s.Secure("www.example.org", "mx.example.org", "nope.example.org")
	ask := func(name string, qtype uint16, do, ad bool) *dns.Msg {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		m.AuthenticatedData = ad
		if do {
			m.SetEdns0(1232, true)
		}
		r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	tests := []struct {
		name   string
		qtype  uint16
		do, ad bool
		want   bool
	}{
		{"mx.example.org.", dns.TypeA, true, false, true},
		{"mx.example.org.", dns.TypeA, false, true, true},
		{"mx.example.org.", dns.TypeA, false, false, false}, // not asked for
		{"mx.example.org.", dns.TypeMX, true, false, true},  // secure no data
		{"nope.example.org.", dns.TypeA, true, false, true}, // secure NXDOMAIN
		{"www.example.org.", dns.TypeA, true, false, true},  // CNAME to mx: both secure
		{"example.org.", dns.TypeMX, true, false, false},    // not marked
	}
	for _, tc := range tests {
		if got := ask(tc.name, tc.qtype, tc.do, tc.ad).AuthenticatedData; got != tc.want {
			t.Errorf("%s %s do=%v ad=%v: AD %v, want %v", tc.name, dns.TypeToString[tc.qtype], tc.do, tc.ad, got, tc.want)
		}
	}
	s.Insecure("mx.example.org")
	if ask("www.example.org.", dns.TypeA, true, false).AuthenticatedData {
		t.Error("CNAME to an insecure name: AD set")
	}
	s.Fail("mx.example.org", dns.TypeA, ServFail)
	s.Secure("mx.example.org")
	if r := ask("mx.example.org.", dns.TypeA, true, false); r.AuthenticatedData || r.Rcode != dns.RcodeServerFailure {
		t.Errorf("SERVFAIL: rcode %s AD %v", dns.RcodeToString[r.Rcode], r.AuthenticatedData)
	}
}
