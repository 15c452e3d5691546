package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
)

// TLSFiles is the `tls:` key: the certificate chain and key in PEM
// (cert_file, key_file: the default certificate) and more certificates
// chosen by the name the client asks for (certificates:, RFC 6066 §3
// server_name). With no cert_file the first of certificates is the
// default.
type TLSFiles struct {
	CertFile     string      `mapstructure:"cert_file"`
	KeyFile      string      `mapstructure:"key_file"`
	Certificates []CertFiles `mapstructure:"certificates"`
}

// CertFiles is one certificate chain and its key in PEM.
type CertFiles struct {
	CertFile string `mapstructure:"cert_file"`
	KeyFile  string `mapstructure:"key_file"`
}

// Configured reports whether a certificate is set.
func (t TLSFiles) Configured() bool {
	return t.CertFile != "" || t.KeyFile != "" || len(t.Certificates) > 0
}

// Pairs lists the certificates, the default first, each with the key
// that names it in errors.
func (t TLSFiles) Pairs() []CertFiles {
	var out []CertFiles
	if t.CertFile != "" || t.KeyFile != "" {
		out = append(out, CertFiles{CertFile: t.CertFile, KeyFile: t.KeyFile})
	}
	return append(out, t.Certificates...)
}

// keyOf is the configuration key of the i-th pair of Pairs.
func (t TLSFiles) keyOf(i int) string {
	if t.CertFile != "" || t.KeyFile != "" {
		if i == 0 {
			return "tls"
		}
		i--
	}
	return fmt.Sprintf("tls.certificates[%d]", i)
}

// Equal reports whether two `tls:` sections name the same files.
func (t TLSFiles) Equal(o TLSFiles) bool {
	return t.CertFile == o.CertFile && t.KeyFile == o.KeyFile && slices.Equal(t.Certificates, o.Certificates)
}

// maxCertificates bounds tls.certificates: each is loaded into memory
// and its names indexed.
const maxCertificates = 1000

// Validate checks that both files of each pair are set together and load.
func (t TLSFiles) Validate() error {
	if !t.Configured() {
		return nil
	}
	if len(t.Certificates) > maxCertificates {
		return fmt.Errorf("tls.certificates: %d entries, at most %d", len(t.Certificates), maxCertificates)
	}
	_, err := loadSet(t)
	return err
}

// certSet is one loaded generation of the certificates.
type certSet struct {
	all   []*tls.Certificate // in Pairs order; all[0] is the default
	leafs []*x509.Certificate
	exact map[string]*tls.Certificate // lower-case DNS name → certificate
	wild  map[string]*tls.Certificate // "example.org" for "*.example.org"
}

// loadSet loads every pair; any error refuses the whole set, naming the key.
func loadSet(t TLSFiles) (*certSet, error) {
	s := &certSet{exact: map[string]*tls.Certificate{}, wild: map[string]*tls.Certificate{}}
	for i, p := range t.Pairs() {
		key := t.keyOf(i)
		if p.CertFile == "" || p.KeyFile == "" {
			return nil, fmt.Errorf("%s: cert_file and key_file must be set together", key)
		}
		cert, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s.cert_file: %w", key, err)
		}
		leaf := cert.Leaf
		if leaf == nil {
			if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
				return nil, fmt.Errorf("%s.cert_file: %w", key, err)
			}
		}
		c := &cert
		s.all = append(s.all, c)
		s.leafs = append(s.leafs, leaf)
		names := leaf.DNSNames
		if len(names) == 0 && leaf.Subject.CommonName != "" {
			names = []string{leaf.Subject.CommonName} // a certificate without SANs
		}
		for _, n := range names {
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			idx, name := s.exact, n
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				idx, name = s.wild, rest
			}
			if _, dup := idx[name]; !dup { // the first certificate for a name wins
				idx[name] = c
			}
		}
	}
	if len(s.all) == 0 {
		return nil, errors.New("tls: no certificate")
	}
	return s, nil
}

// pick chooses the certificate for the name a client asked for: the
// exact name, then a wildcard for its parent (one label, RFC 6125
// §6.4.3), then the default. No name (no SNI) gets the default.
func (s *certSet) pick(name string) *tls.Certificate {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name != "" {
		if c := s.exact[name]; c != nil {
			return c
		}
		if _, parent, ok := strings.Cut(name, "."); ok {
			if c := s.wild[parent]; c != nil {
				return c
			}
		}
	}
	return s.all[0]
}

// CertSource supplies certificates for some names besides the files:
// ACME. Owns reports whether it serves the name (or the handshake is an
// ACME TLS-ALPN-01 challenge, RFC 8737).
type CertSource interface {
	Owns(hello *tls.ClientHelloInfo) bool
	GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error)
}

// Certificates holds the server certificates and swaps them on Reload,
// so a renewed certificate is used by new handshakes without a restart.
type Certificates struct {
	files TLSFiles
	cur   atomic.Pointer[certSet]
	extra atomic.Pointer[CertSource]
}

// LoadCertificates loads the pairs once. With no files configured it
// holds none: only a CertSource (SetSource) can then serve.
func LoadCertificates(f TLSFiles) (*Certificates, error) {
	c := &Certificates{files: f}
	if !f.Configured() {
		return c, nil
	}
	return c, c.Reload()
}

// SetSource adds a source of certificates for its own names (ACME).
func (c *Certificates) SetSource(s CertSource) { c.extra.Store(&s) }

// Files is the list of certificate files, default first (for the
// expiry metric's labels).
func (c *Certificates) Files() []CertFiles { return c.files.Pairs() }

// Leaf is the default certificate in use (for its expiry: metrics); nil
// if none.
func (c *Certificates) Leaf() *x509.Certificate { return c.LeafAt(0) }

// LeafAt is the i-th certificate of Files in use; nil if none.
func (c *Certificates) LeafAt(i int) *x509.Certificate {
	s := c.cur.Load()
	if s == nil || i < 0 || i >= len(s.leafs) {
		return nil
	}
	return s.leafs[i]
}

// Reload reads the files again; on any error every old certificate stays.
func (c *Certificates) Reload() error {
	if !c.files.Configured() {
		return nil
	}
	s, err := loadSet(c.files)
	if err != nil {
		return err
	}
	c.cur.Store(s)
	return nil
}

// GetCertificate is the tls.Config hook: a CertSource for its names,
// else the files by name; with no files, the CertSource for every name
// (it serves its default name for names it does not own).
func (c *Certificates) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	s := c.cur.Load()
	if p := c.extra.Load(); p != nil && (s == nil || (*p).Owns(hello)) {
		cert, err := (*p).GetCertificate(hello)
		if err == nil || isChallenge(hello) || s == nil {
			return cert, err
		}
		// ACME cannot serve the name yet: the files' certificate is
		// better than a failed handshake.
	}
	if s == nil {
		return nil, errors.New("tls: no certificate for " + hello.ServerName)
	}
	return s.pick(hello.ServerName), nil
}

// Covers reports whether a loaded file certificate is for name (exactly
// or by a one-label wildcard), not only the default.
func (c *Certificates) Covers(name string) bool {
	s := c.cur.Load()
	if s == nil {
		return false
	}
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if s.exact[name] != nil {
		return true
	}
	_, parent, ok := strings.Cut(name, ".")
	return ok && s.wild[parent] != nil
}

// acmeALPN is the protocol of the TLS-ALPN-01 challenge (RFC 8737 §6.2).
const acmeALPN = "acme-tls/1"

func isChallenge(hello *tls.ClientHelloInfo) bool {
	return len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acmeALPN
}

// ServerConfig returns the listener TLS configuration: TLS 1.2 at least
// (RFC 8996 deprecates older versions; RFC 8314 §4.1) and, for TLS 1.2,
// only AEAD suites with forward secrecy. TLS 1.3 suites are Go's. A
// TLS-ALPN-01 challenge (RFC 8737 §3: the only protocol offered is
// acme-tls/1) is answered on any listener, so the CA can validate through
// whichever of moat's TLS listeners port 443 reaches.
func (c *Certificates) ServerConfig() *tls.Config {
	base := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: c.GetCertificate,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}
	challenge := base.Clone()
	challenge.NextProtos = []string{acmeALPN}
	base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if isChallenge(hello) && c.extra.Load() != nil {
			return challenge, nil
		}
		return nil, nil
	}
	return base
}
