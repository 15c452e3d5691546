//go:build interop

package interop

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"moat/internal/dnsres"
	"moat/internal/dnstest"
	"moat/internal/smtptest"
	"moat/relay/dane"
	"moat/relay/mtasts"
	"moat/relay/mx"
	"moat/relay/smtpout"
	"moat/relay/tlsrpt"
	"moat/relay/transport"
	"moat/test/testenv"
)

// tlsSink keeps the TLS-RPT results moat's MX client emits (deliveries
// here are sequential).
type tlsSink struct{ got []string }

func (s *tlsSink) RecordTLS(r tlsrpt.Result) {
	s.got = append(s.got, fmt.Sprintf("%s/%v/%s", r.Policy, r.Success, r.Failure))
}

func outMsg(to, marker string) *transport.Message {
	body := smtptest.Message("sender@moat.test", to, marker+"@moat.test", marker+"\r\n")
	return &transport.Message{ID: marker, Sender: "sender@moat.test", Size: int64(len(body)),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }}
}

// TestMTASTSToPostfix: moat's MX client (relay/smtpout) delivers to a
// real Postfix whose smtpd presents a certificate of a test CA, under an
// MTA-STS policy in mode enforce served over HTTPS on loopback: with a
// certificate for the MX name the message lands in Postfix's Maildir;
// with one for another name it is deferred (a temporary error naming the
// policy and the reason), and Postfix receives nothing, in TLS or in
// clear.
func TestMTASTSToPostfix(t *testing.T) {
	pf := testenv.StartPostfix(t, "example.test", []string{"alice"})
	ca := smtptest.NewCA(t)
	dir := t.TempDir()
	goodCert, goodKey := smtptest.WritePEM(t, dir, "good", ca.IssueNow(t, "mx.example.test"))
	otherCert, otherKey := smtptest.WritePEM(t, dir, "other", ca.IssueNow(t, "other.example.test"))
	pf.EnableTLS(goodCert, goodKey)

	// The policy, over HTTPS with a certificate of the same CA.
	web := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, "version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmax_age: 86400\r\n")
	}))
	web.TLS = &tls.Config{Certificates: []tls.Certificate{ca.IssueNow(t, "mta-sts.example.test")}}
	web.StartTLS()
	defer web.Close()
	webAddr := web.Listener.Addr().String()

	ns := dnstest.NewServer(t)
	ns.Add("example.test. 300 IN MX 10 mx.example.test.", "mx.example.test. 300 IN A 127.0.0.1")
	ns.AddTXT("_mta-sts.example.test.", "v=STSv1; id=1")
	r, err := dnsres.New(dnsres.Config{Servers: []string{ns.Addr()}, Timeout: 2 * time.Second, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	sts, err := mtasts.NewManager(mtasts.Options{Resolver: r, Fetcher: mtasts.NewFetcher(mtasts.FetcherOptions{
		RootCAs: ca.Pool, Timeout: 10 * time.Second,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, webAddr)
		}})})
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(pf.Addr)
	sink := &tlsSink{}
	c := smtpout.NewMX(smtpout.Options{Hostname: "moat.test", Resolver: r, Port: port, Self: mx.Self{AllowLoopback: true},
		TLSConfig: &tls.Config{RootCAs: ca.Pool}, MTASTS: sts, TLSResults: sink,
		Timeouts: smtpout.Timeouts{Connect: 10 * time.Second, Greeting: 30 * time.Second}})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	res := c.Deliver(ctx, outMsg("alice@example.test", "sts-good"), []string{"alice@example.test"})[0]
	if res.Err != nil {
		t.Fatalf("right name: %v\n%s", res.Err, pf.Log())
	}
	if !testenv.WaitFor(20*time.Second, func() bool { return len(pf.Delivered("alice@example.test")) == 1 }) {
		t.Fatalf("not delivered\n%s", pf.Log())
	}
	if !strings.Contains(pf.Log(), "TLS connection established from") {
		t.Errorf("Postfix logged no TLS session:\n%s", pf.Log())
	}

	pf.EnableTLS(otherCert, otherKey)
	c.Close() // no pooled session with the old certificate
	c2 := smtpout.NewMX(smtpout.Options{Hostname: "moat.test", Resolver: r, Port: port, Self: mx.Self{AllowLoopback: true},
		TLSConfig: &tls.Config{RootCAs: ca.Pool}, MTASTS: sts, TLSResults: sink,
		Timeouts: smtpout.Timeouts{Connect: 10 * time.Second, Greeting: 30 * time.Second}})
	defer c2.Close()
	// Postfix's reload is asynchronous: until its new smtpd presents the
	// other certificate, deliveries still succeed; bounded retries.
	var lastErr error
	for i := 0; i < 20 && lastErr == nil; i++ {
		if i > 0 {
			time.Sleep(500 * time.Millisecond)
		}
		lastErr = c2.Deliver(ctx, outMsg("alice@example.test", "sts-other-"+strconv.Itoa(i)), []string{"alice@example.test"})[0].Err
	}
	if lastErr == nil {
		t.Fatal("Postfix kept the right certificate after reload")
	}
	if transport.IsPermanent(lastErr) || !strings.Contains(lastErr.Error(), "MTA-STS policy of example.test") ||
		!strings.Contains(lastErr.Error(), "certificate-host-mismatch") {
		t.Fatalf("other name: %v, want a temporary failure naming the policy", lastErr)
	}
	before := len(pf.Delivered("alice@example.test"))
	time.Sleep(time.Second) // nothing may arrive late
	if n := len(pf.Delivered("alice@example.test")); n != before {
		t.Errorf("%d messages arrived after the deferral", n-before)
	}
	if !strings.Contains(strings.Join(sink.got, ","), "sts/false/certificate-host-mismatch") {
		t.Errorf("TLS-RPT results %v", sink.got)
	}
}

// TestDANEToPostfix: delivery to a real Postfix through a validating
// unbound in front of a zone signed in the test: the TLSA record of the
// Postfix port matches its (self-signed) certificate and the mail goes;
// with a record for another key it is deferred and nothing is sent.
func TestDANEToPostfix(t *testing.T) {
	pf := testenv.StartPostfix(t, "dane.test", []string{"alice"})
	dir := t.TempDir()
	cert, _ := smtptest.Cert(t, "mx.dane.test")
	certFile, keyFile := smtptest.WritePEM(t, dir, "mx", cert)
	pf.EnableTLS(certFile, keyFile)
	otherCert, _ := smtptest.Cert(t, "x.test")
	_, portStr, _ := net.SplitHostPort(pf.Addr)
	port, _ := strconv.Atoi(portStr)
	d := testenv.StartDNSSEC(t, testenv.DNSSECOptions{
		Records: []string{
			"@ IN MX 10 mx.dane.test.",
			"mx IN A 127.0.0.1",
			testenv.TLSA3("mx.dane.test", port, cert.Leaf),
			"wrong IN MX 10 mx2.dane.test.",
			"mx2 IN A 127.0.0.1",
			testenv.TLSA3("mx2.dane.test", port, otherCert.Leaf),
		},
	})
	r, err := dnsres.New(dnsres.Config{Servers: []string{d.Resolver}, Timeout: 5 * time.Second, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	sink := &tlsSink{}
	c := smtpout.NewMX(smtpout.Options{Hostname: "moat.test", Resolver: r, Port: portStr, Self: mx.Self{AllowLoopback: true},
		DANE: dane.NewResolver([]string{d.Resolver}, 5*time.Second), TLSResults: sink,
		Timeouts: smtpout.Timeouts{Connect: 10 * time.Second, Greeting: 30 * time.Second}})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if res := c.Deliver(ctx, outMsg("alice@dane.test", "dane-good"), []string{"alice@dane.test"})[0]; res.Err != nil {
		t.Fatalf("matching TLSA: %v\nunbound:\n%s\npostfix:\n%s", res.Err, d.Log(), pf.Log())
	}
	if !testenv.WaitFor(20*time.Second, func() bool { return len(pf.Delivered("alice@dane.test")) == 1 }) {
		t.Fatalf("not delivered\n%s", pf.Log())
	}
	// wrong.dane.test's exchanger has a TLSA record for another key.
	res := c.Deliver(ctx, outMsg("alice@wrong.dane.test", "dane-wrong"), []string{"alice@wrong.dane.test"})[0]
	if res.Err == nil || transport.IsPermanent(res.Err) || !strings.Contains(res.Err.Error(), "DANE") {
		t.Fatalf("mismatching TLSA: %v, want a temporary DANE failure", res.Err)
	}
	got := strings.Join(sink.got, ",")
	if !strings.Contains(got, "tlsa/true/") || !strings.Contains(got, "tlsa/false/") {
		t.Errorf("TLS-RPT results %v", sink.got)
	}
}
