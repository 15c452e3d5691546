package acmecert

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
	"golang.org/x/net/netutil"
)

// Options are what the manager takes from the rest of moat.
type Options struct {
	Hostname string // the default name
	DataDir  string // the default cache is <DataDir>/acme
	// Extra names to serve besides acme.names (mta-sts.<domain>).
	Extra  []string
	Logger *zap.Logger
}

// Manager serves the ACME certificates of its names.
type Manager struct {
	cfg   Config
	names []string
	auto  *autocert.Manager
	log   *zap.Logger

	mu    sync.Mutex
	leafs map[string]*x509.Certificate // the last certificate served per name

	cache closingCache

	httpLn, tlsLn net.Listener
	httpSrv       *http.Server
	cancel        context.CancelFunc
	done          sync.WaitGroup
}

// New builds the manager; nothing is fetched until Start or a handshake.
func New(cfg Config, opt Options) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	names := Names(cfg, opt.Hostname, opt.Extra)
	for _, n := range names {
		if err := CheckName(n); err != nil {
			return nil, fmt.Errorf("acme.names: %w", err)
		}
	}
	dir := cfg.CacheDir
	if dir == "" {
		dir = filepath.Join(opt.DataDir, "acme")
	}
	client := &acme.Client{DirectoryURL: cfg.DirectoryURL, UserAgent: "moat"}
	if cfg.CARootsFile != "" {
		pem, err := loadRoots(cfg.CARootsFile)
		if err != nil {
			return nil, fmt.Errorf("acme.ca_roots_file: %w", err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		client.HTTPClient = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	}
	log := opt.Logger
	if log == nil {
		log = zap.NewNop()
	}
	m := &Manager{cfg: cfg, names: names, log: log, leafs: map[string]*x509.Certificate{}}
	m.cache.dir = autocert.DirCache(dir)
	m.auto = &autocert.Manager{
		Prompt:      autocert.AcceptTOS,
		Cache:       &m.cache,
		HostPolicy:  autocert.HostWhitelist(names...),
		RenewBefore: cfg.RenewBefore,
		Client:      client,
		Email:       cfg.Email,
	}
	return m, nil
}

// Names is acme.names (default the hostname) plus extra, lower-case,
// without duplicates, in order.
func Names(cfg Config, hostname string, extra []string) []string {
	base := cfg.Names
	if len(base) == 0 {
		base = []string{hostname}
	}
	var out []string
	for _, n := range append(slices.Clone(base), extra...) {
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		if n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// Names lists the names the manager serves.
func (m *Manager) Names() []string { return slices.Clone(m.names) }

// Owns reports whether the handshake is for one of the names, or is a
// TLS-ALPN-01 challenge (which autocert answers for names it has an
// order for, and refuses otherwise).
func (m *Manager) Owns(hello *tls.ClientHelloInfo) bool {
	if isChallenge(hello) {
		return true
	}
	return slices.Contains(m.names, strings.ToLower(strings.TrimSuffix(hello.ServerName, ".")))
}

// GetCertificate returns the certificate for the hello's name, obtaining
// it from the CA the first time (the handshake waits), and notes it for
// Leaf.
// A name not in the list (or none: a client without SNI) gets the
// certificate of the first name, as a file default would be served.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if isChallenge(hello) {
		return m.auto.GetCertificate(hello)
	}
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if !slices.Contains(m.names, name) {
		h := *hello
		h.ServerName, name = m.names[0], m.names[0]
		hello = &h
	}
	cert, err := m.auto.GetCertificate(hello)
	if err != nil {
		return nil, err
	}
	m.note(name, cert)
	return cert, nil
}

func (m *Manager) note(name string, cert *tls.Certificate) {
	leaf := cert.Leaf
	if leaf == nil && len(cert.Certificate) > 0 {
		leaf, _ = x509.ParseCertificate(cert.Certificate[0])
	}
	if leaf == nil {
		return
	}
	m.mu.Lock()
	m.leafs[strings.ToLower(strings.TrimSuffix(name, "."))] = leaf
	m.mu.Unlock()
}

// Leaf is the certificate in force for name (for the expiry metric):
// the one in the cache, which autocert rewrites when it renews, else the
// one last served; nil before the first.
func (m *Manager) Leaf(name string) *x509.Certificate {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// autocert's cache key of the ECDSA certificate is the name itself
	// (the RSA one, for old clients, has a suffix).
	if data, err := m.cache.Get(ctx, name); err == nil {
		if leaf := firstCert(data); leaf != nil {
			return leaf
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leafs[name]
}

// firstCert is the first certificate in a cache entry (a private key,
// then the chain, in PEM); nil if none parses.
func firstCert(data []byte) *x509.Certificate {
	for len(data) > 0 {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			return nil
		}
		if b.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil
			}
			return c
		}
	}
	return nil
}

// Start binds the challenge listeners (acme.http_listener for http-01,
// acme.tls_listener when set, served with tlsConf, which must route
// challenges here: gateway.Certificates.ServerConfig does) and fetches
// the certificate of every name in the background, retrying with
// backoff until it has one; autocert then renews it ahead of expiry.
func (m *Manager) Start(tlsConf *tls.Config) error {
	if m.cfg.Challenge == HTTP01 {
		ln, err := net.Listen("tcp", m.cfg.HTTPListener)
		if err != nil {
			return fmt.Errorf("acme.http_listener %q: %w", m.cfg.HTTPListener, err)
		}
		m.httpLn = ln
	}
	if m.cfg.TLSListener != "" {
		ln, err := net.Listen("tcp", m.cfg.TLSListener)
		if err != nil {
			if m.httpLn != nil {
				m.httpLn.Close()
			}
			return fmt.Errorf("acme.tls_listener %q: %w", m.cfg.TLSListener, err)
		}
		m.tlsLn = ln
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	if m.httpLn != nil {
		// Only the challenge path; anything else is 404 (autocert's own
		// fallback would redirect to HTTPS).
		h := m.auto.HTTPHandler(http.NotFoundHandler())
		m.httpSrv = &http.Server{
			// autocert checks the Host header against the names as it
			// is: a port in it (":80", or a test's port) would fail.
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if host, _, err := net.SplitHostPort(r.Host); err == nil {
					r.Host = host
				}
				h.ServeHTTP(w, r)
			}),
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      10 * time.Second,
			MaxHeaderBytes:    8 << 10,
		}
		m.done.Add(1)
		go func() {
			defer m.done.Done()
			if err := m.httpSrv.Serve(netutil.LimitListener(m.httpLn, maxConns)); err != nil && !errors.Is(err, http.ErrServerClosed) {
				m.log.Error("acme http listener stopped", zap.Error(err))
			}
		}()
	}
	if m.tlsLn != nil {
		m.done.Add(1)
		go func() {
			defer m.done.Done()
			m.serveTLS(m.tlsLn, tlsConf)
		}()
	}
	// Close does not wait for an attempt under way (autocert bounds it);
	// the loop ends at its next turn.
	for _, n := range m.names {
		go m.prefetch(ctx, n)
	}
	return nil
}

// HTTPAddr is the bound HTTP-01 listener (nil when off).
func (m *Manager) HTTPAddr() net.Addr {
	if m.httpLn == nil {
		return nil
	}
	return m.httpLn.Addr()
}

// TLSAddr is the bound dedicated TLS-ALPN-01 listener (nil when off).
func (m *Manager) TLSAddr() net.Addr {
	if m.tlsLn == nil {
		return nil
	}
	return m.tlsLn.Addr()
}

// serveTLS completes handshakes (a challenge needs nothing more) and
// closes, at most maxConns at once, each bounded by a deadline.
func (m *Manager) serveTLS(ln net.Listener, conf *tls.Config) {
	ln = netutil.LimitListener(ln, maxConns)
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			tls.Server(c, conf).Handshake()
		}()
	}
}

// isChallenge: a TLS-ALPN-01 validation offers acme-tls/1 alone (RFC
// 8737 §3), as autocert also checks.
func isChallenge(hello *tls.ClientHelloInfo) bool {
	return len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acme.ALPNProto
}

// maxConns bounds the connections each challenge listener serves at once.
const maxConns = 64

// hello is what prefetch asks with: a client that takes ECDSA, so the
// certificate obtained is the one modern clients get.
func hello(name string) *tls.ClientHelloInfo {
	return &tls.ClientHelloInfo{
		ServerName:        name,
		CipherSuites:      []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		SignatureSchemes:  []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
		SupportedCurves:   []tls.CurveID{tls.CurveP256},
		SupportedVersions: []uint16{tls.VersionTLS13, tls.VersionTLS12},
	}
}

// prefetch obtains name's certificate (from the cache or the CA), with
// backoff from a minute to six hours between failures; it ends on
// success (autocert renews from then on) or when the manager stops.
func (m *Manager) prefetch(ctx context.Context, name string) {
	wait := time.Minute
	for {
		// autocert bounds each attempt to 5 minutes of its own.
		_, err := m.GetCertificate(hello(name))
		if err == nil {
			m.log.Info("acme certificate in force", zap.String("name", name), zap.Time("not_after", m.Leaf(name).NotAfter))
			return
		}
		m.log.Error("acme certificate not obtained; retrying", zap.String("name", name), zap.Duration("in", wait), zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, 6*time.Hour)
	}
}

// Close stops the listeners and the fetch loops, and the cache takes no
// more writes (autocert's renewal timers cannot be stopped; a renewal
// after Close fails to store and is not used).
func (m *Manager) Close(ctx context.Context) {
	m.cache.close()
	if m.cancel != nil {
		m.cancel()
	}
	if m.httpSrv != nil {
		m.httpSrv.Shutdown(ctx)
	}
	if m.tlsLn != nil {
		m.tlsLn.Close()
	}
	m.done.Wait()
}

// closingCache is the directory cache, closed with the manager: no write
// is under way when close returns, and none starts after.
type closingCache struct {
	dir    autocert.DirCache
	mu     sync.RWMutex
	closed bool
}

var errClosed = errors.New("acme: manager closed")

func (c *closingCache) Get(ctx context.Context, key string) ([]byte, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return nil, autocert.ErrCacheMiss
	}
	return c.dir.Get(ctx, key)
}

func (c *closingCache) Put(ctx context.Context, key string, data []byte) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return errClosed
	}
	return c.dir.Put(ctx, key, data)
}

func (c *closingCache) Delete(ctx context.Context, key string) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return errClosed
	}
	return c.dir.Delete(ctx, key)
}

func (c *closingCache) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
}
