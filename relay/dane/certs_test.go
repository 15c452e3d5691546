package dane

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

// testNow is the clock of the verification tests.
var testNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// certSpec describes a certificate made in a test.
type certSpec struct {
	cn        string
	dnsNames  []string
	ca        bool
	notBefore time.Time
	notAfter  time.Time
}

type testCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var serial int64

// makeCert makes a certificate for spec signed by parent (nil: self-signed).
func makeCert(t testing.TB, spec certSpec, parent *testCert) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if spec.notBefore.IsZero() {
		spec.notBefore = testNow.Add(-24 * time.Hour)
	}
	if spec.notAfter.IsZero() {
		spec.notAfter = testNow.Add(90 * 24 * time.Hour)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: spec.cn},
		DNSNames:              spec.dnsNames,
		NotBefore:             spec.notBefore,
		NotAfter:              spec.notAfter,
		BasicConstraintsValid: true,
		IsCA:                  spec.ca,
	}
	if spec.ca {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCert{cert: c, key: key}
}

// rec makes a record of usage, selector and matching type for c.
func rec(usage, selector, mtype uint8, c *x509.Certificate) Record {
	sel := c.Raw
	if selector == SelectorSPKI {
		sel = c.RawSubjectPublicKeyInfo
	}
	var data []byte
	switch mtype {
	case MatchFull:
		data = append([]byte(nil), sel...)
	case MatchSHA256:
		s := sha256.Sum256(sel)
		data = s[:]
	case MatchSHA512:
		s := sha512.Sum512(sel)
		data = s[:]
	}
	return Record{Usage: usage, Selector: selector, MatchingType: mtype, Data: data}
}
