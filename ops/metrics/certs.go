package metrics

import (
	"crypto/x509"
	"sort"
	"sync"
	"time"
)

// The certificates TLSCertificate exports, for the status page: each
// one's name and when it expires, read at each call so that a reloaded
// certificate shows at once.

// maxCerts bounds the certificates listed (one per configured name).
const maxCerts = 256

type certList struct {
	mu    sync.Mutex
	names map[string]func() *x509.Certificate
}

func (c *certList) add(name string, leaf func() *x509.Certificate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.names == nil {
		c.names = map[string]func() *x509.Certificate{}
	}
	if _, ok := c.names[name]; ok || len(c.names) >= maxCerts {
		return // the first stays, as for the metric
	}
	c.names[name] = leaf
}

// CertExpiry is one certificate's expiry.
type CertExpiry struct {
	Name     string    // as in moat_tls_certificate_not_after_seconds{name}
	Subject  string    // the leaf's subject common name, or its first DNS name
	NotAfter time.Time // zero: no certificate loaded under the name
}

// Certificates lists the certificates TLSCertificate was given, by name.
func (m *Metrics) Certificates() []CertExpiry {
	m.certs.mu.Lock()
	leaves := make(map[string]func() *x509.Certificate, len(m.certs.names))
	for n, f := range m.certs.names {
		leaves[n] = f
	}
	m.certs.mu.Unlock()
	out := make([]CertExpiry, 0, len(leaves))
	for n, f := range leaves {
		c := CertExpiry{Name: n}
		if l := f(); l != nil {
			c.NotAfter, c.Subject = l.NotAfter, l.Subject.CommonName
			if c.Subject == "" && len(l.DNSNames) > 0 {
				c.Subject = l.DNSNames[0]
			}
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
