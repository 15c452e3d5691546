package mx

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/miekg/dns"

	"moat/internal/dnsres"
	"moat/internal/dnstest"
	"moat/internal/reply"
	"moat/relay/transport"
)

// TestLookupDNS runs Lookup against a real DNS server and resolver.
func TestLookupDNS(t *testing.T) {
	srv := dnstest.NewServer(t)
	srv.Add(
		"example.org. 300 IN MX 20 mx2.example.org.",
		"example.org. 300 IN MX 10 mx1.example.org.",
		"mx1.example.org. 300 IN A 192.0.2.1",
		"mx1.example.org. 300 IN AAAA 2001:db8::1",
		"mx2.example.org. 300 IN CNAME real.example.net.",
		"real.example.net. 300 IN A 192.0.2.2",
		"null.example. 300 IN MX 0 .",
		"amx.example. 300 IN A 192.0.2.9",
		"loop.example. 300 IN MX 10 mx.moat.example.",
		"mx.moat.example. 300 IN A 192.0.2.50",
		"flaky.example. 300 IN A 192.0.2.9",
		"slowmx.example. 300 IN MX 10 slow.example.",
	)
	srv.Fail("flaky.example.", dns.TypeMX, dnstest.ServFail)
	srv.Fail("slow.example.", dns.TypeA, dnstest.Timeout)
	srv.Fail("slow.example.", dns.TypeAAAA, dnstest.Timeout)
	r, err := dnsres.New(dnsres.Config{Servers: []string{srv.Addr()}, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	self := Self{Hostnames: []string{"mx.moat.example"}}
	hs, err := Lookup(context.Background(), r, "example.org", self)
	if err != nil || !reflect.DeepEqual(names(hs), []string{"mx1.example.org", "mx2.example.org"}) {
		t.Fatalf("example.org: %v %v", names(hs), err)
	}
	if len(hs[0].Addrs) != 2 || hs[1].Addrs[0].String() != "192.0.2.2" {
		t.Errorf("addresses %+v", hs)
	}
	hs, err = Lookup(context.Background(), r, "amx.example", self)
	if err != nil || len(hs) != 1 || !hs[0].Implicit || hs[0].Addrs[0].String() != "192.0.2.9" {
		t.Errorf("implicit MX: %+v %v", hs, err)
	}
	for domain, want := range map[string]reply.Enhanced{
		"null.example":   {5, 1, 10},
		"loop.example":   {5, 4, 6},
		"nx.example":     {5, 1, 2},
		"flaky.example":  {4, 4, 3},
		"slowmx.example": {4, 4, 3},
	} {
		_, err := Lookup(context.Background(), r, domain, self)
		var rp *reply.Reply
		if !asReply(err, &rp) || rp.Enhanced != want || transport.IsPermanent(err) != (want[0] == 5) {
			t.Errorf("%s: %v, want %s", domain, err, want)
		}
	}
}

func asReply(err error, rp **reply.Reply) bool {
	r, ok := err.(*reply.Reply)
	*rp = r
	return ok
}
