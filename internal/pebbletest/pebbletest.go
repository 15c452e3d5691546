// Package pebbletest runs Let's Encrypt's ACME test server, Pebble, in
// the test process (its ca, va, wfe and db packages) for the ACME tests:
// a real RFC 8555 server that validates HTTP-01 and TLS-ALPN-01
// challenges by connecting to the names, resolved through a DNS server
// on loopback (moat/internal/dnstest). Test helpers only.
package pebbletest

import (
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
)

// CA is a Pebble on 127.0.0.1 over HTTPS.
type CA struct {
	// DirectoryURL is the ACME directory.
	DirectoryURL string
	// RootsFile is a PEM file of the root that the directory's HTTPS
	// certificate chains to (acme.ca_roots_file).
	RootsFile string
	// Validity of the certificates issued; set before Run. Zero: Pebble's
	// default (90 days).
	Validity time.Duration

	srv     *httptest.Server
	handler atomic.Pointer[http.Handler]
	ready   chan struct{}
	ca      *ca.CAImpl
}

// New starts the HTTPS front; requests wait (up to 20 s) until Run.
// The split lets a test bind its challenge listeners, whose ports the
// validation authority needs, after it knows the directory URL.
func New(t testing.TB) *CA {
	t.Helper()
	c := &CA{ready: make(chan struct{})}
	c.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-c.ready:
		case <-time.After(20 * time.Second):
			http.Error(w, "pebbletest: not running", http.StatusServiceUnavailable)
			return
		}
		(*c.handler.Load()).ServeHTTP(w, r)
	}))
	c.srv.StartTLS()
	t.Cleanup(c.srv.Close)
	c.DirectoryURL = c.srv.URL + "/dir"
	c.RootsFile = filepath.Join(t.TempDir(), "acme-server-roots.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.srv.Certificate().Raw})
	if err := os.WriteFile(c.RootsFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// Run starts the CA: its validation authority resolves names through
// dnsAddr and connects to httpPort (HTTP-01) and tlsPort (TLS-ALPN-01)
// on the address found. Pebble's random validation delay and its
// deliberate bad nonces are off (PEBBLE_VA_NOSLEEP, PEBBLE_WFE_NONCEREJECT).
func (c *CA) Run(t *testing.T, dnsAddr string, httpPort, tlsPort int) {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	logger := log.New(io.Discard, "", 0)
	if testing.Verbose() {
		logger = log.New(os.Stderr, "pebble ", log.Lmicroseconds)
	}
	store := db.NewMemoryStore()
	c.ca = ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {
		Description:    "default",
		ValidityPeriod: uint64(c.Validity / time.Second),
	}})
	v := va.New(logger, httpPort, tlsPort, false, dnsAddr, store)
	w := wfe.New(logger, store, v, c.ca, []string{"pebble.letsencrypt.org"}, false, false, 1, 1)
	h := w.Handler()
	c.handler.Store(&h)
	close(c.ready)
}

// Roots is a pool of the CA's issuing root, which the certificates it
// issues chain to.
func (c *CA) Roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.ca.GetRootCert(0).Cert)
	return p
}
