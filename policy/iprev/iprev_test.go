package iprev

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"moat/internal/dnsres"
	"moat/internal/dnstest"
	"moat/policy"
)

func TestCheck(t *testing.T) {
	srv := dnstest.NewServer(t)
	srv.Add(
		"1.2.0.192.in-addr.arpa. 300 IN PTR mail.example.org.",
		"mail.example.org. 300 IN A 192.0.2.1",
		"2.2.0.192.in-addr.arpa. 300 IN PTR liar.example.org.",
		"liar.example.org. 300 IN A 198.51.100.1",
		"3.2.0.192.in-addr.arpa. 300 IN PTR temp.example.org.",
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. 300 IN PTR v6.example.org.",
		"v6.example.org. 300 IN AAAA 2001:db8::1",
	)
	// 12 PTR names, only the last confirms: beyond MaxNames.
	for i := range 12 {
		srv.Add(fmt.Sprintf("5.2.0.192.in-addr.arpa. 300 IN PTR n%d.example.org.", i))
	}
	srv.Add("n11.example.org. 300 IN A 192.0.2.5")
	srv.Fail("temp.example.org", dns.TypeA, dnstest.ServFail)
	srv.Fail("4.2.0.192.in-addr.arpa", dns.TypePTR, dnstest.ServFail)
	r := dnsres.ForTest(srv.Addr())
	tests := []struct {
		ip   string
		want policy.Result
	}{
		{"192.0.2.1", policy.ResultPass},
		{"::ffff:192.0.2.1", policy.ResultPass},
		{"2001:db8::1", policy.ResultPass},
		{"192.0.2.2", policy.ResultFail},
		{"192.0.2.3", policy.ResultTempError},
		{"192.0.2.4", policy.ResultTempError},
		{"192.0.2.5", policy.ResultFail},
		{"192.0.2.99", policy.ResultFail},
	}
	for _, tt := range tests {
		got := Start(r, netip.MustParseAddr(tt.ip), 5*time.Second).Wait()
		if got.Result != tt.want {
			t.Errorf("%s: got %+v, want %s", tt.ip, got, tt.want)
		}
	}
	if got := Check(context.Background(), r, netip.Addr{}); got.Result != policy.ResultPermError {
		t.Errorf("invalid: %+v", got)
	}
	if got := Check(context.Background(), r, netip.MustParseAddr("192.0.2.1")); len(got.Names) != 1 || got.Names[0] != "mail.example.org" {
		t.Errorf("names: %+v", got)
	}
}

type panicResolver struct{ dnsres.Resolver }

func (panicResolver) LookupAddr(context.Context, string) ([]string, error) { panic("boom") }

func TestPanic(t *testing.T) {
	if got := Check(context.Background(), panicResolver{}, netip.MustParseAddr("192.0.2.1")); got.Result != policy.ResultTempError {
		t.Fatalf("got %+v", got)
	}
}
