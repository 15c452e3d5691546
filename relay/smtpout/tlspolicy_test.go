package smtpout

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"moat/internal/dnsres"
	"moat/internal/dnstest"
	"moat/internal/smtptest"
	"moat/relay/dane"
	"moat/relay/mtasts"
	"moat/relay/mx"
	"moat/relay/route"
	"moat/relay/tlsrpt"
	"moat/relay/transport"
)

// results is a tlsrpt.Sink that keeps what it gets, and the metric.
type results struct {
	mu      sync.Mutex
	list    []tlsrpt.Result
	metrics []string
}

func (r *results) RecordTLS(x tlsrpt.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, x)
}

func (r *results) count(policy, result string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.metrics = append(r.metrics, policy+"/"+result)
}

func (r *results) take() ([]tlsrpt.Result, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l, m := r.list, r.metrics
	r.list, r.metrics = nil, nil
	return l, m
}

// stsServer serves policy for every mta-sts.* name on loopback with a
// certificate of ca.
func stsServer(t *testing.T, ca *smtptest.CA, policy string) *mtasts.Fetcher {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, policy)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.IssueNow(t, "mta-sts.example.test")}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	return mtasts.NewFetcher(mtasts.FetcherOptions{RootCAs: ca.Pool, Timeout: 5 * time.Second,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}})
}

type tlsEnv struct {
	ca   *smtptest.CA
	dns  *dnstest.Server
	res  *results
	b    *backend
	addr string
	ln   *smtptest.Listener
}

// newTLSEnv starts an SMTP server presenting cert (none: no STARTTLS)
// as mx.example.test, the MX of example.test.
func newTLSEnv(t *testing.T, ca *smtptest.CA, cert *tls.Certificate) *tlsEnv {
	t.Helper()
	e := &tlsEnv{ca: ca, dns: dnstest.NewServer(t), res: &results{}, b: &backend{}}
	e.addr, e.ln = startServer(t, e.b, func(s *smtp.Server) {
		if cert != nil {
			s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}}
		}
	})
	e.dns.Add("example.test. 300 IN MX 10 mx.example.test.", "mx.example.test. 300 IN A 127.0.0.1")
	return e
}

func (e *tlsEnv) client(t *testing.T, o Options) *Client {
	t.Helper()
	r, err := dnsres.New(dnsres.Config{Servers: []string{e.dns.Addr()}, Timeout: time.Second, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(e.addr)
	o.Hostname = "moat.test"
	o.Resolver = r
	o.Port = port
	o.Self = mx.Self{AllowLoopback: true}
	o.Timeouts = Timeouts{Connect: 5 * time.Second}
	o.TLSConfig = &tls.Config{RootCAs: e.ca.Pool}
	o.TLSResults = e.res
	o.OutboundTLS = e.res.count
	c := NewMX(o)
	t.Cleanup(func() { c.Close() })
	return c
}

func (e *tlsEnv) sts(t *testing.T, mode string) *mtasts.Manager {
	t.Helper()
	e.dns.AddTXT("_mta-sts.example.test.", "v=STSv1; id=1")
	r, err := dnsres.New(dnsres.Config{Servers: []string{e.dns.Addr()}, Timeout: time.Second, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	m, err := mtasts.NewManager(mtasts.Options{Resolver: r,
		Fetcher: stsServer(t, e.ca, "version: STSv1\nmode: "+mode+"\nmx: mx.example.test\nmx: *.backup.test\nmax_age: 86400\n")})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func deliver(c *Client) error {
	return c.Deliver(context.Background(), testMsg(testBody), []string{"a@example.test"})[0].Err
}

// TestMTASTSEnforce: under mode enforce a certificate that does not
// verify for the MX name defers the mail with the reason and nothing is
// sent, in TLS or in clear.
func TestMTASTSEnforce(t *testing.T) {
	ca := smtptest.NewCA(t)
	now := time.Now()
	good := ca.IssueNow(t, "mx.example.test")
	other := ca.IssueNow(t, "other.example.test")
	expired := ca.Issue(t, now.Add(-48*time.Hour), now.Add(-time.Hour), "mx.example.test")
	self, _ := smtptest.Cert(t, "mx.example.test")
	tests := []struct {
		name    string
		cert    *tls.Certificate
		failure tlsrpt.ResultType
	}{
		{name: "right name", cert: &good},
		{name: "other name", cert: &other, failure: tlsrpt.CertificateHostMismatch},
		{name: "expired", cert: &expired, failure: tlsrpt.CertificateExpired},
		{name: "self-signed", cert: &self, failure: tlsrpt.CertificateNotTrusted},
		{name: "no STARTTLS", failure: tlsrpt.StartTLSNotSupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTLSEnv(t, ca, tt.cert)
			c := e.client(t, Options{MTASTS: e.sts(t, mtasts.ModeEnforce)})
			err := deliver(c)
			rs, ms := e.res.take()
			if tt.failure == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(e.b.received()) != 1 || len(rs) != 1 || !rs[0].Success || rs[0].Policy != tlsrpt.PolicySTS ||
					rs[0].MXHost != "mx.example.test" || len(ms) != 1 || ms[0] != "mta-sts/success" {
					t.Errorf("results %+v, metrics %v", rs, ms)
				}
				return
			}
			if err == nil || transport.IsPermanent(err) {
				t.Fatalf("%v, want a temporary failure", err)
			}
			if !strings.Contains(err.Error(), "MTA-STS policy of example.test") || !strings.Contains(err.Error(), string(tt.failure)) {
				t.Errorf("reason %q", err)
			}
			if n := len(e.b.received()); n != 0 {
				t.Errorf("%d messages sent", n)
			}
			if n := e.ln.Accepted(); n != 1 {
				t.Errorf("%d connections: a retry in clear?", n)
			}
			if len(rs) != 1 || rs[0].Success || rs[0].Failure != tt.failure || rs[0].ReceivingIP == "" || len(rs[0].PolicyStrings) == 0 {
				t.Errorf("results %+v", rs)
			}
			if len(ms) != 1 || ms[0] != "mta-sts/"+string(tt.failure) {
				t.Errorf("metrics %v", ms)
			}
		})
	}
}

// TestMTASTSTesting: mode testing delivers as opportunistic TLS and
// reports the failure.
func TestMTASTSTesting(t *testing.T) {
	ca := smtptest.NewCA(t)
	other := ca.IssueNow(t, "other.example.test")
	e := newTLSEnv(t, ca, &other)
	c := e.client(t, Options{MTASTS: e.sts(t, mtasts.ModeTesting)})
	if err := deliver(c); err != nil {
		t.Fatal(err)
	}
	if n := len(e.b.received()); n != 1 {
		t.Fatalf("%d messages", n)
	}
	rs, ms := e.res.take()
	if len(rs) != 1 || rs[0].Success || rs[0].Failure != tlsrpt.CertificateHostMismatch || rs[0].Policy != tlsrpt.PolicySTS {
		t.Errorf("results %+v", rs)
	}
	if len(ms) != 1 || ms[0] != "mta-sts/certificate-host-mismatch" {
		t.Errorf("metrics %v", ms)
	}
}

// TestMTASTSMXNotListed: an exchanger the enforced policy does not list
// is not used at all.
func TestMTASTSMXNotListed(t *testing.T) {
	ca := smtptest.NewCA(t)
	good := ca.IssueNow(t, "mx.other.test")
	e := newTLSEnv(t, ca, &good)
	e.dns.Clear()
	e.dns.Add("example.test. 300 IN MX 10 mx.other.test.", "mx.other.test. 300 IN A 127.0.0.1")
	c := e.client(t, Options{MTASTS: e.sts(t, mtasts.ModeEnforce)})
	err := deliver(c)
	if err == nil || transport.IsPermanent(err) || !strings.Contains(err.Error(), "not among the policy's mx patterns") {
		t.Fatalf("%v", err)
	}
	if n := e.ln.Accepted(); n != 0 {
		t.Errorf("%d connections", n)
	}
}

// TestMTASTSNoPolicyOpportunistic: without a policy (and without DANE)
// delivery is opportunistic: an unverifiable certificate is fine.
func TestMTASTSNoPolicyOpportunistic(t *testing.T) {
	ca := smtptest.NewCA(t)
	self, _ := smtptest.Cert(t, "whatever.test")
	e := newTLSEnv(t, ca, &self)
	r, _ := dnsres.New(dnsres.Config{Servers: []string{e.dns.Addr()}, Timeout: time.Second, CacheSize: -1})
	m, _ := mtasts.NewManager(mtasts.Options{Resolver: r, Fetcher: stsServer(t, ca, "")})
	c := e.client(t, Options{MTASTS: m})
	if err := deliver(c); err != nil {
		t.Fatal(err)
	}
	rs, ms := e.res.take()
	if len(rs) != 1 || !rs[0].Success || rs[0].Policy != tlsrpt.PolicyNotFound || len(ms) != 1 || ms[0] != "opportunistic/success" {
		t.Errorf("results %+v, metrics %v", rs, ms)
	}
}

// TestTLSPolicyMap: tls_policy verify requires a verified certificate;
// none sends in clear; an unknown domain takes the default.
func TestTLSPolicyMap(t *testing.T) {
	ca := smtptest.NewCA(t)
	other := ca.IssueNow(t, "other.example.test")
	e := newTLSEnv(t, ca, &other)
	e.dns.Add("sub.example.test. 300 IN MX 10 mx.example.test.")
	pol := TLSPolicies{"example.test": PolicyVerify, ".example.test": PolicyNone}
	if err := pol.Validate(); err != nil {
		t.Fatal(err)
	}
	c := e.client(t, Options{TLSPolicies: pol})
	if err := deliver(c); err == nil || transport.IsPermanent(err) || !strings.Contains(err.Error(), "certificate-host-mismatch") {
		t.Fatalf("verify: %v", err)
	}
	if r := c.Deliver(context.Background(), testMsg(testBody), []string{"a@sub.example.test"})[0]; r.Err != nil {
		t.Fatalf("none: %v", r.Err)
	}
	_, ms := e.res.take()
	if strings.Join(ms, ",") != "verify/certificate-host-mismatch,none/plaintext" {
		t.Errorf("metrics %v", ms)
	}
}

func TestTLSPoliciesValidate(t *testing.T) {
	for _, bad := range []TLSPolicies{{"example.com": "strict"}, {"": "none"}, {"a@b": "none"}, {"*.x.test": "verify"}, {"x.test.": "none"}} {
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "tls_policy.") {
			t.Errorf("%v: %v", bad, err)
		}
	}
	if n := (TLSPolicies{"Bücher.example": "verify", ".Bücher.example": "none"}).Normalized(); n["xn--bcher-kva.example"] != "verify" || n[".xn--bcher-kva.example"] != "none" {
		t.Errorf("normalized %v", n)
	}
	p := TLSPolicies{"a.test": "dane", ".a.test": "mta-sts", ".test": "none"}
	for d, want := range map[string]string{"a.test": "dane", "x.a.test": "mta-sts", "y.x.a.test": "mta-sts", "b.test": "none", "test": "", "b.example": ""} {
		if got := p.For(d); got != want {
			t.Errorf("For(%q) = %q, want %q", d, got, want)
		}
	}
}

func tlsaFor(c *x509.Certificate) string {
	h := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return "3 1 1 " + hex.EncodeToString(h[:])
}

// TestDANE: with a secure MX and usable TLSA records, DANE decides
// (over an MTA-STS policy too): the matching key delivers; a mismatch
// defers and never goes in clear.
func TestDANE(t *testing.T) {
	ca := smtptest.NewCA(t)
	good := ca.IssueNow(t, "other.example.test") // DANE-EE ignores names (RFC 7672 §3.1.1)
	for _, match := range []bool{true, false} {
		t.Run(fmt.Sprint("match=", match), func(t *testing.T) {
			e := newTLSEnv(t, ca, &good)
			_, port, _ := net.SplitHostPort(e.addr)
			leaf := good.Leaf
			if !match {
				c, _ := smtptest.Cert(t, "x.test")
				leaf = c.Leaf
			}
			e.dns.Add(fmt.Sprintf("_%s._tcp.mx.example.test. 300 IN TLSA %s", port, tlsaFor(leaf)))
			e.dns.Secure("example.test.", "mx.example.test.", "_"+port+"._tcp.mx.example.test.")
			c := e.client(t, Options{DANE: dane.NewResolver([]string{e.dns.Addr()}, time.Second), MTASTS: e.sts(t, mtasts.ModeEnforce)})
			err := deliver(c)
			rs, ms := e.res.take()
			if match {
				if err != nil {
					t.Fatal(err)
				}
				if len(rs) != 1 || !rs[0].Success || rs[0].Policy != tlsrpt.PolicyTLSA || len(ms) != 1 || ms[0] != "dane/success" {
					t.Errorf("results %+v metrics %v", rs, ms)
				}
				return
			}
			if err == nil || transport.IsPermanent(err) || !strings.Contains(err.Error(), "DANE") {
				t.Fatalf("%v", err)
			}
			if len(e.b.received()) != 0 || e.ln.Accepted() != 1 {
				t.Errorf("sent %d, %d connections", len(e.b.received()), e.ln.Accepted())
			}
			if len(rs) != 1 || rs[0].Success || rs[0].Policy != tlsrpt.PolicyTLSA {
				t.Errorf("results %+v", rs)
			}
		})
	}
}

// TestDANERequiredInsecure: tls_policy dane with an unsigned MX defers.
func TestDANERequiredInsecure(t *testing.T) {
	ca := smtptest.NewCA(t)
	good := ca.IssueNow(t, "mx.example.test")
	e := newTLSEnv(t, ca, &good)
	c := e.client(t, Options{DANE: dane.NewResolver([]string{e.dns.Addr()}, time.Second), TLSPolicies: TLSPolicies{"example.test": PolicyDANE}})
	if err := deliver(c); err == nil || transport.IsPermanent(err) || !strings.Contains(err.Error(), "not DNSSEC-secure") {
		t.Fatalf("%v", err)
	}
	if e.ln.Accepted() != 0 {
		t.Error("connected")
	}
}

// TestRouteTLSModes: an mx route takes verify/dane/mta-sts; "" is the
// automatic choice.
func TestRouteTLSModes(t *testing.T) {
	for _, m := range []string{"", route.TLSVerify, route.TLSDANE, route.TLSMTASTS, route.TLSRequired} {
		r := route.Route{Type: route.TypeMX, TLS: m}
		if err := r.Validate("out"); err != nil {
			t.Errorf("%q: %v", m, err)
		}
		c := ForRoute(r, Options{}).(*Client)
		if c.o.TLS != m {
			t.Errorf("%q: client mode %q", m, c.o.TLS)
		}
		c.Close()
	}
	if err := (route.Route{Type: route.TypeSMTP, Address: "a.test:25", TLS: route.TLSDANE}).Validate("x"); err == nil {
		t.Error("dane on an smtp route")
	}
}

// TestPoolKeepsPoliciesApart: a session opened for a domain under MTA-STS
// testing (its certificate failed, tolerated) is not reused for a domain
// whose policy is enforced on the same exchanger.
func TestPoolKeepsPoliciesApart(t *testing.T) {
	ca := smtptest.NewCA(t)
	other := ca.IssueNow(t, "other.example.test")
	e := newTLSEnv(t, ca, &other)
	e.dns.Add("strict.test. 300 IN MX 10 mx.example.test.")
	e.dns.AddTXT("_mta-sts.strict.test.", "v=STSv1; id=1")
	r, err := dnsres.New(dnsres.Config{Servers: []string{e.dns.Addr()}, Timeout: time.Second, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	// example.test publishes testing, strict.test enforce (one server
	// answers both; the mode depends on the host asked for).
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mode := "testing"
		if strings.HasPrefix(r.Host, "mta-sts.strict.test") {
			mode = "enforce"
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "version: STSv1\nmode: %s\nmx: mx.example.test\nmax_age: 600\n", mode)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.IssueNow(t, "mta-sts.example.test", "mta-sts.strict.test")}}
	srv.StartTLS()
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	f := mtasts.NewFetcher(mtasts.FetcherOptions{RootCAs: ca.Pool, Timeout: 5 * time.Second,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}})
	e.dns.AddTXT("_mta-sts.example.test.", "v=STSv1; id=1")
	m, err := mtasts.NewManager(mtasts.Options{Resolver: r, Fetcher: f})
	if err != nil {
		t.Fatal(err)
	}
	c := e.client(t, Options{MTASTS: m})
	if err := deliver(c); err != nil {
		t.Fatalf("testing: %v", err)
	}
	err = c.Deliver(context.Background(), testMsg(testBody), []string{"a@strict.test"})[0].Err
	if err == nil || !strings.Contains(err.Error(), "MTA-STS policy of strict.test") {
		t.Fatalf("enforce over a pooled testing session: %v", err)
	}
	if n := len(e.b.received()); n != 1 {
		t.Errorf("%d messages", n)
	}
}
