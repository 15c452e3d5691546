//go:build interop

package interop

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"moat/internal/dnsres"
	"moat/internal/smtptest"
	"moat/relay/dane"
	"moat/test/testenv"
)

// TestDANEThroughUnbound: a zone signed in the test with ldns-signzone,
// served on loopback, validated by a real unbound whose trust anchor is
// the zone's DS. relay/dane trusts what unbound marks AD, treats the
// unsigned zone as "no DANE", and a record tampered with after signing
// (bogus: SERVFAIL) as a temporary error.
func TestDANEThroughUnbound(t *testing.T) {
	cert, _ := smtptest.Cert(t, "mx.dane.test")
	d := testenv.StartDNSSEC(t, testenv.DNSSECOptions{
		Records: []string{
			"@ IN MX 10 mx.dane.test.",
			"mx IN A 127.0.0.2",
			testenv.TLSA3("mx.dane.test", 25, cert.Leaf),
			"alias IN CNAME mx.dane.test.",
			"plain IN A 127.0.0.3",
			"pkix IN A 127.0.0.4",
			"_25._tcp.pkix IN TLSA 1 1 1 8CB0FC6C527506A053F4F14C8464BEBBD6DEDE2738D11468DD953D7D6A3021F1",
			"bad IN A 127.0.0.5",
			testenv.TLSA3("bad.dane.test", 25, cert.Leaf),
			"bad-a IN A 127.0.0.7",
			testenv.TLSA3("bad-a.dane.test", 25, cert.Leaf),
		},
		UnsignedRecords: []string{
			"@ IN MX 10 mx.insecure.test.",
			"mx IN A 127.0.0.6",
			testenv.TLSA3("mx.insecure.test", 25, cert.Leaf),
		},
	})
	d.Tamper("_25._tcp.bad.dane.test", dns.TypeTLSA)
	d.Tamper("bad-a.dane.test", dns.TypeA)
	r := dane.NewResolver([]string{d.Resolver}, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	defer func() {
		if t.Failed() {
			t.Logf("unbound log:\n%s", d.Log())
		}
	}()

	hosts, secure, err := r.MX(ctx, "dane.test")
	if err != nil || !secure || !slices.Equal(hosts, []string{"mx.dane.test"}) {
		t.Fatalf("MX(dane.test) = %v, %v, %v; want [mx.dane.test], secure", hosts, secure, err)
	}
	hosts, secure, err = r.MX(ctx, "insecure.test")
	if err != nil || secure || !slices.Equal(hosts, []string{"mx.insecure.test"}) {
		t.Fatalf("MX(insecure.test) = %v, %v, %v; want [mx.insecure.test], insecure", hosts, secure, err)
	}

	res, err := r.TLSA(ctx, "mx.dane.test", 25)
	if err != nil || !res.Active() || len(res.Records) != 1 {
		t.Fatalf("TLSA(mx.dane.test) = %+v, %v; want one secure record", res, err)
	}
	if err := dane.Verify(res, []*x509.Certificate{cert.Leaf}, time.Now()); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	// A real handshake through TLSConfig against a server with the cert.
	if err := handshakeDANE(t, cert, res); err != nil {
		t.Fatalf("handshake: %v", err)
	}

	res, err = r.TLSA(ctx, "alias.dane.test", 25)
	if err != nil || !res.Active() || !slices.Equal(res.Names, []string{"alias.dane.test", "mx.dane.test"}) {
		t.Fatalf("TLSA(alias.dane.test) = %+v, %v; want mx's records, both names", res, err)
	}
	// Secure denial (NSEC): no TLSA, DANE does not apply.
	res, err = r.TLSA(ctx, "plain.dane.test", 25)
	if err != nil || !res.Secure || res.Active() || res.Unusable {
		t.Fatalf("TLSA(plain.dane.test) = %+v, %v; want secure, no records", res, err)
	}
	// Secure NXDOMAIN (NSEC): the host does not exist, no DANE.
	res, err = r.TLSA(ctx, "nothere.dane.test", 25)
	if err != nil || !res.Secure || res.Active() || res.Unusable {
		t.Fatalf("TLSA(nothere.dane.test) = %+v, %v; want secure, no records", res, err)
	}
	res, err = r.TLSA(ctx, "pkix.dane.test", 25)
	if err != nil || !res.Secure || !res.Unusable || !res.RequireTLS() {
		t.Fatalf("TLSA(pkix.dane.test) = %+v, %v; want secure and unusable", res, err)
	}
	res, err = r.TLSA(ctx, "mx.insecure.test", 25)
	if err != nil || res.Secure || res.Active() {
		t.Fatalf("TLSA(mx.insecure.test) = %+v, %v; want insecure", res, err)
	}
	for _, host := range []string{"bad.dane.test", "bad-a.dane.test"} {
		_, err = r.TLSA(ctx, host, 25)
		var de *dnsres.Error
		if !errors.As(err, &de) || !de.Temporary() {
			t.Fatalf("TLSA(%s): %v; want a temporary error (bogus)", host, err)
		}
	}
	// The SERVFAIL is unbound's verdict on the signature, not a fault of
	// the server (val-log-level 2 logs each validation failure).
	if log := d.Log(); !strings.Contains(log, "validation failure <_25._tcp.bad.dane.test. TLSA IN>") {
		t.Fatalf("unbound logged no validation failure for the tampered TLSA record:\n%s", log)
	}
}

func handshakeDANE(t *testing.T, cert tls.Certificate, res dane.Result) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}}).Handshake()
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return tls.Client(c, dane.TLSConfig(nil, "mx.dane.test", res)).Handshake()
}
