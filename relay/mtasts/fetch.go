package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"time"
)

// DefaultFetchTimeout bounds one policy fetch, connection to last byte.
const DefaultFetchTimeout = 20 * time.Second

// FetchError is a failed policy fetch; Invalid is true when the server
// answered but the policy did not parse (TLS-RPT sts-policy-invalid
// rather than sts-policy-fetch-error, RFC 8460 §4.3.2.2).
type FetchError struct {
	Domain  string
	Invalid bool
	Err     error
}

func (e *FetchError) Error() string {
	return fmt.Sprintf("fetching the MTA-STS policy of %s: %v", e.Domain, e.Err)
}

func (e *FetchError) Unwrap() error { return e.Err }

// Fetcher fetches policy files over HTTPS.
type Fetcher struct {
	client *http.Client
}

// FetcherOptions configure a Fetcher.
type FetcherOptions struct {
	// RootCAs verify the policy server's certificate; nil is the
	// system's roots.
	RootCAs *x509.CertPool
	// Timeout bounds each fetch; default DefaultFetchTimeout.
	Timeout time.Duration
	// DialContext, when set, replaces the dialer (tests send
	// mta-sts.<domain>:443 to a loopback server).
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// NewFetcher returns a Fetcher.
func NewFetcher(o FetcherOptions) *Fetcher {
	if o.Timeout <= 0 {
		o.Timeout = DefaultFetchTimeout
	}
	dial := o.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: o.Timeout}).DialContext
	}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            dial,
		TLSClientConfig:        &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    o.Timeout,
		ResponseHeaderTimeout:  o.Timeout,
		MaxIdleConns:           10,
		IdleConnTimeout:        30 * time.Second,
		MaxResponseHeaderBytes: 16 << 10,
	}
	return &Fetcher{client: &http.Client{
		Transport: tr,
		Timeout:   o.Timeout,
		// §3.3: "HTTP 3xx redirects MUST NOT be followed".
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// URL is where the policy of domain is published (§3.3).
func URL(domain string) string {
	return "https://mta-sts." + domain + "/.well-known/mta-sts.txt"
}

// Fetch fetches and parses the policy of domain. Every error is a
// *FetchError.
func (f *Fetcher) Fetch(ctx context.Context, domain string) (*Policy, error) {
	fail := func(invalid bool, err error) (*Policy, error) {
		return nil, &FetchError{Domain: domain, Invalid: invalid, Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, URL(domain), nil)
	if err != nil {
		return fail(false, err)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return fail(false, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// A redirect lands here too: it is not followed.
		return fail(false, fmt.Errorf("HTTP status %s", resp.Status))
	}
	// §3.2: the policy is served as "text/plain".
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		return fail(true, fmt.Errorf("content type %q is not text/plain", resp.Header.Get("Content-Type")))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPolicySize+1))
	if err != nil {
		return fail(false, err)
	}
	if len(body) > MaxPolicySize {
		return fail(true, fmt.Errorf("policy larger than %d bytes", MaxPolicySize))
	}
	p, err := Parse(body)
	if err != nil {
		return fail(true, err)
	}
	return p, nil
}
