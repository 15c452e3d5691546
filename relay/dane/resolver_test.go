package dane

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"moat/internal/dnsres"
	"moat/internal/dnstest"
)

const (
	hashA = "8CB0FC6C527506A053F4F14C8464BEBBD6DEDE2738D11468DD953D7D6A3021F1"
	hashB = "0C72AC70B745AC19998811B131D662C9AC69DBDBE7CB23E5B514B56664C5D3D6"
)

func newTestResolver(t *testing.T) (*dnstest.Server, *Resolver) {
	srv := dnstest.NewServer(t)
	return srv, NewResolver([]string{srv.Addr()}, 2*time.Second)
}

func temporary(err error) bool {
	var e *dnsres.Error
	return errors.As(err, &e) && e.Temporary()
}

func TestMX(t *testing.T) {
	srv, r := newTestResolver(t)
	srv.Add("example.org. 300 IN MX 20 mx2.example.org.",
		"example.org. 300 IN MX 10 MX1.Example.org.",
		"insecure.example. 300 IN MX 10 mx.insecure.example.",
		"null.example. 300 IN MX 0 .",
		"nomx.example. 300 IN A 192.0.2.1")
	srv.Secure("example.org", "null.example", "nomx.example", "gone.example")
	srv.Fail("bogus.example", dns.TypeMX, dnstest.ServFail)
	ctx := context.Background()

	tests := []struct {
		domain string
		hosts  []string
		secure bool
	}{
		{"example.org", []string{"mx1.example.org", "mx2.example.org"}, true},
		{"Example.ORG.", []string{"mx1.example.org", "mx2.example.org"}, true},
		{"insecure.example", []string{"mx.insecure.example"}, false},
		{"null.example", nil, true},
		{"nomx.example", nil, true},   // secure no data
		{"gone.example", nil, true},   // secure NXDOMAIN
		{"other.example", nil, false}, // insecure NXDOMAIN
	}
	for _, tc := range tests {
		hosts, secure, err := r.MX(ctx, tc.domain)
		if err != nil {
			t.Errorf("MX(%s): %v", tc.domain, err)
			continue
		}
		if !slices.Equal(hosts, tc.hosts) || secure != tc.secure {
			t.Errorf("MX(%s) = %v, %v; want %v, %v", tc.domain, hosts, secure, tc.hosts, tc.secure)
		}
	}
	if _, _, err := r.MX(ctx, "bogus.example"); !temporary(err) {
		t.Errorf("MX(bogus.example): %v, want a temporary error", err)
	}
}

// base is the TLSA base domain a result must name: where its records
// were found.
func base(res Result, host string) string {
	if !res.Secure {
		return ""
	}
	switch host {
	case "alias.example.org":
		return "mx.hoster.example"
	case "MX.example.org.":
		return "mx.example.org"
	}
	return host
}

func TestTLSA(t *testing.T) {
	srv, r := newTestResolver(t)
	srv.Add(
		// Plain: secure address and TLSA, one PKIX record dropped.
		"mx.example.org. 300 IN A 192.0.2.1",
		"_25._tcp.mx.example.org. 300 IN TLSA 3 1 1 "+hashA,
		"_25._tcp.mx.example.org. 300 IN TLSA 1 1 1 "+hashB,
		"_25._tcp.mx.example.org. 300 IN TLSA 2 0 1 "+hashB,
		// Secure address, no TLSA.
		"plain.example.org. 300 IN A 192.0.2.2",
		// Only PKIX records and a malformed digest: unusable.
		"pkix.example.org. 300 IN A 192.0.2.3",
		"_25._tcp.pkix.example.org. 300 IN TLSA 1 1 1 "+hashA,
		"_25._tcp.pkix.example.org. 300 IN TLSA 3 1 1 ABCD",
		// Insecure address records over a secure TLSA RRset.
		"insecure-a.example.org. 300 IN A 192.0.2.4",
		"_25._tcp.insecure-a.example.org. 300 IN TLSA 3 1 1 "+hashA,
		// Secure address, insecure TLSA.
		"insecure-tlsa.example.org. 300 IN A 192.0.2.5",
		"_25._tcp.insecure-tlsa.example.org. 300 IN TLSA 3 1 1 "+hashA,
		// Secure CNAME to a host with its own TLSA records.
		"alias.example.org. 300 IN CNAME mx.hoster.example.",
		"mx.hoster.example. 300 IN A 192.0.2.6",
		"_25._tcp.mx.hoster.example. 300 IN TLSA 3 1 1 "+hashB,
		"_25._tcp.alias.example.org. 300 IN TLSA 3 1 1 "+hashA,
		// Secure CNAME to a host without TLSA: the initial name's records.
		"alias2.example.org. 300 IN CNAME bare.hoster.example.",
		"bare.hoster.example. 300 IN A 192.0.2.7",
		"_25._tcp.alias2.example.org. 300 IN TLSA 3 1 1 "+hashA,
		// CNAME to an insecure target.
		"alias3.example.org. 300 IN CNAME mx.unsigned.example.",
		"mx.unsigned.example. 300 IN A 192.0.2.8",
		"_25._tcp.alias3.example.org. 300 IN TLSA 3 1 1 "+hashA,
		// A chain that leaves signed data in the middle: only the host's
		// own records count.
		"alias4.example.org. 300 IN CNAME hop.unsigned.example.",
		"hop.unsigned.example. 300 IN CNAME final.hoster.example.",
		"final.hoster.example. 300 IN A 192.0.2.11",
		"_25._tcp.final.hoster.example. 300 IN TLSA 3 1 1 "+hashB,
		"_25._tcp.alias4.example.org. 300 IN TLSA 3 1 1 "+hashA,
		// Bogus TLSA and bogus address.
		"bogus.example.org. 300 IN A 192.0.2.9",
		"bogus-a.example.org. 300 IN A 192.0.2.10",
		// Port 465.
		"_465._tcp.mx.example.org. 300 IN TLSA 3 1 1 "+hashB,
	)
	srv.Secure("mx.example.org", "_25._tcp.mx.example.org", "_465._tcp.mx.example.org",
		"plain.example.org", "_25._tcp.plain.example.org",
		"pkix.example.org", "_25._tcp.pkix.example.org",
		"_25._tcp.insecure-a.example.org",
		"insecure-tlsa.example.org",
		"alias.example.org", "mx.hoster.example", "_25._tcp.mx.hoster.example", "_25._tcp.alias.example.org",
		"alias2.example.org", "bare.hoster.example", "_25._tcp.bare.hoster.example", "_25._tcp.alias2.example.org",
		"alias3.example.org", "_25._tcp.alias3.example.org",
		"alias4.example.org", "final.hoster.example", "_25._tcp.final.hoster.example", "_25._tcp.alias4.example.org",
		"bogus.example.org")
	srv.Fail("_25._tcp.bogus.example.org", dns.TypeTLSA, dnstest.ServFail)
	srv.Fail("bogus-a.example.org", dns.TypeA, dnstest.ServFail)

	tests := []struct {
		host     string
		port     int
		secure   bool
		records  []string
		names    []string
		unusable bool
	}{
		{"mx.example.org", 25, true, []string{"3 1 1 " + hashA, "2 0 1 " + hashB}, []string{"mx.example.org"}, false},
		{"MX.example.org.", 25, true, []string{"3 1 1 " + hashA, "2 0 1 " + hashB}, []string{"mx.example.org"}, false},
		{"mx.example.org", 465, true, []string{"3 1 1 " + hashB}, []string{"mx.example.org"}, false},
		{"plain.example.org", 25, true, nil, []string{"plain.example.org"}, false},
		{"pkix.example.org", 25, true, nil, []string{"pkix.example.org"}, true},
		{"insecure-a.example.org", 25, false, nil, nil, false},
		{"insecure-tlsa.example.org", 25, false, nil, nil, false},
		{"alias.example.org", 25, true, []string{"3 1 1 " + hashB}, []string{"alias.example.org", "mx.hoster.example"}, false},
		{"alias2.example.org", 25, true, []string{"3 1 1 " + hashA}, []string{"alias2.example.org", "bare.hoster.example"}, false},
		{"alias3.example.org", 25, false, nil, nil, false},
		{"alias4.example.org", 25, true, []string{"3 1 1 " + hashA}, []string{"alias4.example.org"}, false},
	}
	ctx := context.Background()
	for _, tc := range tests {
		res, err := r.TLSA(ctx, tc.host, tc.port)
		if err != nil {
			t.Errorf("TLSA(%s, %d): %v", tc.host, tc.port, err)
			continue
		}
		if res.Secure != tc.secure || !slices.Equal(res.Strings(), tc.records) ||
			!slices.Equal(res.Names, tc.names) || res.Unusable != tc.unusable || res.Base != base(res, tc.host) {
			t.Errorf("TLSA(%s, %d) = secure %v records %q names %v unusable %v base %q; want %v %q %v %v",
				tc.host, tc.port, res.Secure, res.Strings(), res.Names, res.Unusable, res.Base,
				tc.secure, tc.records, tc.names, tc.unusable)
		}
	}
	for _, host := range []string{"bogus.example.org", "bogus-a.example.org"} {
		if _, err := r.TLSA(ctx, host, 25); !temporary(err) {
			t.Errorf("TLSA(%s): %v, want a temporary error", host, err)
		}
	}
	if _, err := r.TLSA(ctx, "mx.example.org", 0); err == nil {
		t.Error("TLSA with port 0: no error")
	}
	if _, err := r.TLSA(ctx, "bad..name", 25); err == nil || temporary(err) {
		t.Errorf("TLSA(bad..name): %v, want a permanent error", err)
	}
}

// TestTemporaryFailures: every way the resolver can fail is temporary,
// never "no DANE".
func TestTemporaryFailures(t *testing.T) {
	srv, _ := newTestResolver(t)
	srv.Add("mx.example.org. 300 IN A 192.0.2.1")
	srv.Secure("mx.example.org")
	ctx := context.Background()
	for _, f := range []dnstest.Failure{dnstest.ServFail, dnstest.Refused, dnstest.Timeout} {
		srv.Fail("_25._tcp.mx.example.org", dns.TypeTLSA, f)
		r := NewResolver([]string{srv.Addr()}, 300*time.Millisecond)
		if _, err := r.TLSA(ctx, "mx.example.org", 25); !temporary(err) {
			t.Errorf("%v: %v, want a temporary error", f, err)
		}
	}
	// A cancelled context.
	srv.Fail("_25._tcp.mx.example.org", dns.TypeTLSA, 0)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	r := NewResolver([]string{srv.Addr()}, time.Second)
	if _, err := r.TLSA(cctx, "mx.example.org", 25); !temporary(err) {
		t.Errorf("cancelled: %v, want a temporary error", err)
	}
}

// TestNextServer: a server that fails is passed over for the next.
func TestNextServer(t *testing.T) {
	bad := dnstest.NewServer(t)
	bad.Fail("mx.example.org", dns.TypeANY, dnstest.ServFail)
	bad.Fail("_25._tcp.mx.example.org", dns.TypeANY, dnstest.ServFail)
	good := dnstest.NewServer(t)
	good.Add("mx.example.org. 300 IN A 192.0.2.1", "_25._tcp.mx.example.org. 300 IN TLSA 3 1 1 "+hashA)
	good.Secure("mx.example.org", "_25._tcp.mx.example.org")
	r := NewResolver([]string{bad.Addr(), good.Addr()}, time.Second)
	res, err := r.TLSA(context.Background(), "mx.example.org", 25)
	if err != nil || !res.Active() {
		t.Fatalf("TLSA = %+v, %v; want the good server's records", res, err)
	}
}

// TestTruncatedOverTCP: a TLSA RRset too large for UDP is fetched again
// over TCP.
func TestTruncatedOverTCP(t *testing.T) {
	srv, r := newTestResolver(t)
	srv.Add("mx.example.org. 300 IN A 192.0.2.1")
	for range 6 {
		c := makeCert(t, certSpec{cn: "mx.example.org", dnsNames: []string{"mx.example.org"}}, nil)
		srv.Add("_25._tcp.mx.example.org. 300 IN TLSA " + rec(3, 0, 0, c.cert).String())
	}
	srv.Secure("mx.example.org", "_25._tcp.mx.example.org")
	res, err := r.TLSA(context.Background(), "mx.example.org", 25)
	if err != nil || len(res.Records) != 6 {
		t.Fatalf("TLSA = %d records, %v; want 6", len(res.Records), err)
	}
}

func TestNoServers(t *testing.T) {
	r := &Resolver{err: errors.New("none")}
	if _, err := r.TLSA(context.Background(), "mx.example.org", 25); !temporary(err) {
		t.Errorf("no servers: %v, want a temporary error", err)
	}
}

// TestTLSAResultOwner: only records owned by the queried name, or the end
// of its CNAME chain, are read from an answer.
func TestTLSAResultOwner(t *testing.T) {
	const name = "_25._tcp.mx.example.org."
	m := new(dns.Msg)
	for _, text := range []string{
		name + " 300 IN CNAME _dane.Example.net.",
		"_dane.example.net. 300 IN TLSA 3 1 1 " + hashA,
		"stray.example. 300 IN TLSA 3 1 1 " + hashB,
	} {
		rr, err := dns.NewRR(text)
		if err != nil {
			t.Fatal(err)
		}
		m.Answer = append(m.Answer, rr)
	}
	res := tlsaResult(m, name)
	if got := res.Strings(); !slices.Equal(got, []string{"3 1 1 " + hashA}) {
		t.Fatalf("records %q, want only the chain's", got)
	}
}
