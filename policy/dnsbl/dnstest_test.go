package dnsbl

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"moat/internal/dnsres"
	"moat/internal/dnstest"
)

// TestCheckRealDNS runs the lists against a real DNS server on loopback,
// over the project's resolver: IPv4 and IPv6 (nibble) names, a DNSWL, a
// SERVFAIL and a timeout.
func TestCheckRealDNS(t *testing.T) {
	srv := dnstest.NewServer(t)
	srv.Add(
		"2.0.0.127.zen.test. 300 IN A 127.0.0.2",
		"2.0.0.127.zen.test. 300 IN A 127.0.0.4",
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.test. 300 IN A 127.0.0.3",
		"2.0.0.127.wl.test. 300 IN A 127.0.10.2",
	)
	srv.Fail("2.0.0.127.broken.test.", dns.TypeA, dnstest.ServFail)
	srv.Fail("2.0.0.127.slow.test.", dns.TypeA, dnstest.Timeout)
	res, err := dnsres.New(dnsres.Config{Servers: []string{srv.Addr()}, Timeout: 300 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Timeout: time.Second, Zones: []Zone{
		{Zone: "zen.test", Weight: 3, Match: []string{"127.0.0.2-127.0.0.3"}},
		{Zone: "wl.test", Weight: -1},
		{Zone: "broken.test", Weight: 5},
		{Zone: "slow.test", Weight: 5},
	}}, res, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ip     string
		score  float64
		hits   int
		failed int
	}{
		{"127.0.0.2", 2, 2, 2},
		{"2001:db8::1", 3, 1, 0},
		{"127.0.0.9", 0, 0, 0}, // NXDOMAIN everywhere
	}
	for _, tt := range tests {
		r := c.Check(context.Background(), netip.MustParseAddr(tt.ip))
		if r.Score != tt.score || len(r.Hits) != tt.hits || len(r.Failed) != tt.failed {
			t.Errorf("%s: score %v hits %+v failed %v", tt.ip, r.Score, r.Hits, r.FailedZones())
		}
	}
}
