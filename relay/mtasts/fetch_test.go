package mtasts

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"moat/internal/smtptest"
)

const goodPolicy = "version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmax_age: 86400\r\n"

// policyServer is an HTTPS server on loopback presenting cert; every
// name dials it (FetcherOptions.DialContext).
type policyServer struct {
	srv     *httptest.Server
	hits    atomic.Int32
	handler atomic.Pointer[http.HandlerFunc]
}

func startPolicyServer(t *testing.T, cert tls.Certificate) *policyServer {
	t.Helper()
	ps := &policyServer{}
	ps.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ps.hits.Add(1)
		if r.URL.Path != "/.well-known/mta-sts.txt" {
			http.NotFound(w, r)
			return
		}
		if h := ps.handler.Load(); h != nil {
			(*h)(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte(goodPolicy))
	}))
	ps.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	ps.srv.StartTLS()
	t.Cleanup(func() { ps.srv.CloseClientConnections(); ps.srv.Close() })
	return ps
}

func (ps *policyServer) set(h http.HandlerFunc) { ps.handler.Store(&h) }

func (ps *policyServer) fetcher(ca *smtptest.CA, timeout time.Duration) *Fetcher {
	addr := ps.srv.Listener.Addr().String()
	return NewFetcher(FetcherOptions{RootCAs: ca.Pool, Timeout: timeout,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}})
}

func TestFetch(t *testing.T) {
	ca := smtptest.NewCA(t)
	ps := startPolicyServer(t, ca.IssueNow(t, "mta-sts.example.test"))
	f := ps.fetcher(ca, 5*time.Second)
	p, err := f.Fetch(context.Background(), "example.test")
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != ModeEnforce || !p.Match("mx.example.test") {
		t.Errorf("%+v", p)
	}
}

func TestFetchFailures(t *testing.T) {
	ca := smtptest.NewCA(t)
	ps := startPolicyServer(t, ca.IssueNow(t, "mta-sts.example.test"))
	f := ps.fetcher(ca, 5*time.Second)
	tests := []struct {
		name    string
		h       http.HandlerFunc
		invalid bool
		err     string
	}{
		{name: "redirect refused (§3.3)", h: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://mta-sts.example.test/other", http.StatusFound)
		}, err: "302"},
		{name: "not found", h: func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }, err: "404"},
		{name: "content type", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte(goodPolicy))
		}, invalid: true, err: "content type"},
		{name: "huge", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte(goodPolicy))
			chunk := []byte(strings.Repeat("x: yyyyyyyyyyyyyyyyyyyyyyyy\n", 1000))
			for range 100 { // 2.8 MB: far beyond the limit
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}, invalid: true, err: "larger"},
		{name: "malformed", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte("version: STSv1\nmode: sometimes\n"))
		}, invalid: true, err: "mode"},
	}
	for _, tt := range tests {
		ps.set(tt.h)
		_, err := f.Fetch(context.Background(), "example.test")
		var fe *FetchError
		if !errors.As(err, &fe) || fe.Invalid != tt.invalid || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: %v (invalid=%v), want %q invalid=%v", tt.name, err, fe != nil && fe.Invalid, tt.err, tt.invalid)
		}
	}
}

func TestFetchSlow(t *testing.T) {
	ca := smtptest.NewCA(t)
	ps := startPolicyServer(t, ca.IssueNow(t, "mta-sts.example.test"))
	release := make(chan struct{})
	defer close(release)
	ps.set(func(w http.ResponseWriter, r *http.Request) {
		select { // never answers while the fetch waits
		case <-release:
		case <-r.Context().Done():
		}
	})
	f := ps.fetcher(ca, 300*time.Millisecond)
	if _, err := f.Fetch(context.Background(), "example.test"); err == nil {
		t.Fatal("a server that never answers gave a policy")
	}
}

func TestFetchCertificates(t *testing.T) {
	ca := smtptest.NewCA(t)
	other := smtptest.NewCA(t)
	now := time.Now()
	tests := []struct {
		name string
		cert tls.Certificate
	}{
		{name: "other name", cert: ca.IssueNow(t, "mta-sts.other.test")},
		{name: "expired", cert: ca.Issue(t, now.Add(-48*time.Hour), now.Add(-24*time.Hour), "mta-sts.example.test")},
		{name: "untrusted CA", cert: other.IssueNow(t, "mta-sts.example.test")},
		{name: "self-signed", cert: func() tls.Certificate { c, _ := smtptest.Cert(t, "mta-sts.example.test"); return c }()},
	}
	for _, tt := range tests {
		ps := startPolicyServer(t, tt.cert)
		if _, err := ps.fetcher(ca, 5*time.Second).Fetch(context.Background(), "example.test"); err == nil {
			t.Errorf("%s: fetched", tt.name)
		}
		if n := ps.hits.Load(); n != 0 {
			t.Errorf("%s: %d requests reached the server", tt.name, n)
		}
	}
}
