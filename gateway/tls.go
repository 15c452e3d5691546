package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
)

// TLSFiles is the `tls:` key: the certificate chain and key in PEM.
type TLSFiles struct {
	CertFile string `mapstructure:"cert_file"`
	KeyFile  string `mapstructure:"key_file"`
}

// Configured reports whether a certificate is set.
func (t TLSFiles) Configured() bool { return t.CertFile != "" || t.KeyFile != "" }

// Validate checks that both files are set together and load.
func (t TLSFiles) Validate() error {
	if !t.Configured() {
		return nil
	}
	if t.CertFile == "" || t.KeyFile == "" {
		return errors.New("tls: cert_file and key_file must be set together")
	}
	if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
		return fmt.Errorf("tls.cert_file: %w", err)
	}
	return nil
}

// Certificates holds the server certificate and swaps it on Reload, so a
// renewed certificate is used by new handshakes without a restart.
type Certificates struct {
	files TLSFiles
	cur   atomic.Pointer[tls.Certificate]
}

// LoadCertificates loads the pair once.
func LoadCertificates(f TLSFiles) (*Certificates, error) {
	c := &Certificates{files: f}
	return c, c.Reload()
}

// Leaf is the certificate in use (for its expiry: metrics); nil if it
// cannot be parsed, which LoadX509KeyPair has already refused.
func (c *Certificates) Leaf() *x509.Certificate {
	cur := c.cur.Load()
	if cur == nil {
		return nil
	}
	if cur.Leaf != nil {
		return cur.Leaf
	}
	if len(cur.Certificate) == 0 {
		return nil
	}
	leaf, err := x509.ParseCertificate(cur.Certificate[0])
	if err != nil {
		return nil
	}
	return leaf
}

// Reload reads the files again; on error the old certificate stays.
func (c *Certificates) Reload() error {
	cert, err := tls.LoadX509KeyPair(c.files.CertFile, c.files.KeyFile)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	c.cur.Store(&cert)
	return nil
}

// ServerConfig returns the listener TLS configuration: TLS 1.2 at least
// (RFC 8996 deprecates older versions; RFC 8314 §4.1) and, for TLS 1.2,
// only AEAD suites with forward secrecy. TLS 1.3 suites are Go's.
func (c *Certificates) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.cur.Load(), nil
		},
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}
}
