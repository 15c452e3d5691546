package smtptest

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a test certificate authority: a self-signed root whose Pool a
// client trusts, issuing leaf certificates for chosen names and validity.
type CA struct {
	Cert *x509.Certificate
	Pool *x509.CertPool
	key  *ecdsa.PrivateKey
}

var serial atomic.Int64

// NewCA makes a CA valid from an hour ago for a day.
func NewCA(t testing.TB) *CA {
	t.Helper()
	k, _, c := newCert(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "moat test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, nil, nil)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return &CA{Cert: c, Pool: pool, key: k}
}

// Issue returns a server certificate for names (host names or IP
// addresses) valid from notBefore to notAfter, signed by the CA.
func (ca *CA) Issue(t testing.TB, notBefore, notAfter time.Time, names ...string) tls.Certificate {
	t.Helper()
	k, der, leaf := newCert(t, &x509.Certificate{
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca.Cert, ca.key, names...)
	return tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: k, Leaf: leaf}
}

// IssueNow is Issue valid from an hour ago for a day.
func (ca *CA) IssueNow(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	return ca.Issue(t, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), names...)
}

// WritePEM writes c's chain and key into dir as name.crt and name.key
// and returns their paths (for a peer such as Postfix).
func WritePEM(t testing.TB, dir, name string, c tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	writePEM(t, certFile, keyFile, c, 0o644)
	return certFile, keyFile
}
