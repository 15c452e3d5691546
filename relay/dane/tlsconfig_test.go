package dane

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"

	"moat/relay/tlsrpt"
)

// handshake runs a real TLS handshake on loopback between a server that
// presents chain and a client configured by TLSConfig; it returns the
// name the server saw in SNI and the client's error.
func handshake(t *testing.T, chain []*testCert, res Result, host string) (string, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cert := tls.Certificate{PrivateKey: chain[0].key}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.cert.Raw)
	}
	sni := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			sni <- ""
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		s := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		s.Handshake()
		sni <- s.ConnectionState().ServerName
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	base := &tls.Config{Time: func() time.Time { return testNow }, MinVersion: tls.VersionTLS12}
	cl := tls.Client(c, TLSConfig(base, host, res))
	herr := cl.Handshake()
	c.Close()
	return <-sni, herr
}

func TestTLSConfig(t *testing.T) {
	root := makeCert(t, certSpec{cn: "Root", ca: true}, nil)
	leaf := makeCert(t, certSpec{cn: "mx.example.org", dnsNames: []string{"mx.example.org"}}, root)
	self := makeCert(t, certSpec{cn: "nobody"}, nil)
	names := []string{"mx.example.org"}

	// DANE-EE on a self-signed certificate for no name: accepted, SNI sent.
	sni, err := handshake(t, []*testCert{self}, Result{Secure: true, Names: names, Records: []Record{rec(3, 1, 1, self.cert)}}, "mx.example.org.")
	if err != nil || sni != "mx.example.org" {
		t.Fatalf("DANE-EE: %v, SNI %q", err, sni)
	}
	// Records found under the expanded name: SNI names it.
	sni, err = handshake(t, []*testCert{self}, Result{Secure: true, Names: names, Base: "mx.hoster.example", Records: []Record{rec(3, 1, 1, self.cert)}}, "mx.example.org")
	if err != nil || sni != "mx.hoster.example" {
		t.Fatalf("DANE-EE with a base domain: %v, SNI %q", err, sni)
	}
	// DANE-TA with the root in the chain.
	_, err = handshake(t, []*testCert{leaf, root}, Result{Secure: true, Names: names, Records: []Record{rec(2, 0, 1, root.cert)}}, "mx.example.org")
	if err != nil {
		t.Fatalf("DANE-TA: %v", err)
	}
	// A mismatch fails the handshake with the VerifyError.
	_, err = handshake(t, []*testCert{self}, Result{Secure: true, Names: names, Records: []Record{rec(3, 1, 1, leaf.cert)}}, "mx.example.org")
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Kind != tlsrpt.ValidationFailure {
		t.Fatalf("mismatch: %v, want a validation-failure", err)
	}
	// The base config is not changed.
	base := &tls.Config{ServerName: "x"}
	_ = TLSConfig(base, "mx.example.org", Result{})
	if base.InsecureSkipVerify || base.VerifyConnection != nil || base.ServerName != "x" {
		t.Fatal("TLSConfig changed its base")
	}
	if TLSConfig(nil, "h", Result{}).ServerName != "h" {
		t.Fatal("TLSConfig(nil) has no ServerName")
	}
}

// FuzzVerify: records with any bytes never make Verify panic, and
// never authenticate a chain they do not describe.
func FuzzVerify(f *testing.F) {
	root := makeCert(f, certSpec{cn: "Root", ca: true}, nil)
	leaf := makeCert(f, certSpec{cn: "mx.example.org", dnsNames: []string{"mx.example.org"}}, root)
	for _, r := range []Record{rec(3, 1, 1, leaf.cert), rec(2, 0, 0, root.cert), rec(2, 1, 0, root.cert), rec(3, 0, 2, leaf.cert)} {
		f.Add(r.Usage, r.Selector, r.MatchingType, r.Data)
	}
	f.Add(uint8(2), uint8(1), uint8(0), []byte{0x30, 0x03, 0x01, 0x01, 0xff})
	chain := []*x509.Certificate{leaf.cert}
	f.Fuzz(func(t *testing.T, usage, selector, mtype uint8, data []byte) {
		r := Record{Usage: usage, Selector: selector, MatchingType: mtype, Data: data}
		_ = r.String()
		err := Verify(Result{Secure: true, Names: []string{"mx.example.org"}, Records: []Record{r}}, chain, testNow)
		if err == nil {
			// Only a record of the leaf, or the root's full key that
			// signed it, may pass.
			ok := r.Usage == UsageDANEEE && matches(r, leaf.cert) ||
				r.Usage == UsageDANETA && r.Selector == SelectorSPKI && r.MatchingType == MatchFull &&
					string(r.Data) == string(root.cert.RawSubjectPublicKeyInfo) ||
				r.Usage == UsageDANETA && r.Selector == SelectorCert && r.MatchingType == MatchFull &&
					string(r.Data) == string(root.cert.Raw)
			if !ok {
				t.Fatalf("record %s authenticated the chain", r)
			}
		}
	})
}
