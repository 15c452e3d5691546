package dnsres

import (
	"net"
	"testing"

	"blitiri.com.ar/go/spf"
	"github.com/miekg/dns"

	"moat/internal/dnstest"
)

// TestSPFClassification runs blitiri.com.ar/go/spf over the Client: it
// type-asserts *net.DNSError and reads IsNotFound and Temporary() to tell
// "none" from "temperror" (RFC 7208 §4.3, §5, §2.6.6).
func TestSPFClassification(t *testing.T) {
	srv := dnstest.NewServer(t)
	srv.Add(
		`a.test. 300 IN TXT "v=spf1 a -all"`,
		`a.test. 300 IN A 192.0.2.10`,
		`mx.test. 300 IN TXT "v=spf1 mx -all"`,
		`mx.test. 300 IN MX 10 mail.mx.test.`,
		`mail.mx.test. 300 IN A 192.0.2.20`,
		`mxfail.test. 300 IN TXT "v=spf1 mx -all"`,
		`mxfail.test. 300 IN MX 10 mail.mxfail.test.`,
		`mail.mxfail.test. 300 IN A 192.0.2.30`,
		`inc.test. 300 IN TXT "v=spf1 include:missing.test -all"`,
		`notxt.test. 300 IN A 192.0.2.40`,
		`sf.test. 300 IN TXT "v=spf1 -all"`,
	)
	srv.Fail("mail.mxfail.test", dns.TypeANY, dnstest.ServFail)
	srv.Fail("sf.test", dns.TypeTXT, dnstest.ServFail)
	c := ForTest(srv.Addr())
	tests := []struct {
		domain string
		ip     string
		want   spf.Result
	}{
		{"a.test", "192.0.2.10", spf.Pass},
		{"a.test", "192.0.2.11", spf.Fail},
		{"mx.test", "192.0.2.20", spf.Pass},
		{"mxfail.test", "192.0.2.30", spf.TempError},
		{"inc.test", "192.0.2.1", spf.PermError}, // RFC 7208 §5.2: include of "none"
		{"nothere.test", "192.0.2.1", spf.None},  // NXDOMAIN
		{"notxt.test", "192.0.2.1", spf.None},    // no data
		{"sf.test", "192.0.2.1", spf.TempError},
	}
	for _, tc := range tests {
		got, err := spf.CheckHostWithSender(net.ParseIP(tc.ip), "helo.test", "u@"+tc.domain, spf.WithResolver(c))
		if got != tc.want {
			t.Errorf("%s from %s: %v (%v), want %v", tc.domain, tc.ip, got, err, tc.want)
		}
	}
}
