package dane

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"time"

	"moat/relay/tlsrpt"
)

// maxPeerChain bounds the certificates of a presented chain that are looked
// at; longer chains are cut (no real server sends more).
const maxPeerChain = 16

// VerifyError is a failed DANE authentication. Kind is the TLS-RPT
// result type the failure is reported as (RFC 8460 §4.3).
type VerifyError struct {
	Kind   tlsrpt.ResultType
	Detail string
}

func (e *VerifyError) Error() string {
	return "dane: " + string(e.Kind) + ": " + e.Detail
}

// Verify checks a server's certificate chain (leaf first, as presented)
// against res at time now.
//
// DANE-EE(3) records match the leaf's certificate or public key, with
// names and validity dates ignored (RFC 7672 §3.1.1). DANE-TA(2) records
// match a certificate of the presented chain (or, for "2 1 0", the key
// that signed one), from which the leaf must chain within its validity,
// and the leaf must bear one of res.Names (RFC 7672 §3.1.2, §3.2.2,
// §3.2.3). One matching record is enough (RFC 6698 §4.1).
//
// A secure but unusable RRset (res.Unusable) authenticates nothing and
// Verify returns nil: TLS was required, which the caller enforces, and
// the certificate is not checked (RFC 7672 §2.2). Any other res without
// usable records is an error, never a pass.
func Verify(res Result, chain []*x509.Certificate, now time.Time) error {
	recs := usable(res.Records)
	if !res.Secure {
		return &VerifyError{Kind: tlsrpt.ValidationFailure, Detail: "no secure TLSA records"}
	}
	if len(recs) == 0 {
		if res.Unusable {
			return nil
		}
		return &VerifyError{Kind: tlsrpt.TLSAInvalid, Detail: "no usable TLSA records"}
	}
	var certs []*x509.Certificate
	for _, c := range chain {
		if c != nil && len(certs) < maxPeerChain {
			certs = append(certs, c)
		}
	}
	chain = certs
	if len(chain) == 0 {
		return &VerifyError{Kind: tlsrpt.ValidationFailure, Detail: "no certificate presented"}
	}
	leaf := chain[0]
	for _, r := range recs {
		if r.Usage == UsageDANEEE && matches(r, leaf) {
			return nil // RFC 7672 §3.1.1: no name, no expiry checks
		}
	}
	var found *VerifyError
	for _, r := range recs {
		if r.Usage != UsageDANETA {
			continue
		}
		for _, ta := range anchors(r, chain) {
			err := verifyTA(leaf, chain, ta, res.Names, now)
			if err == nil {
				return nil
			}
			if found == nil || rank(err.Kind) > rank(found.Kind) {
				found = err
			}
		}
	}
	if found != nil {
		return found
	}
	return &VerifyError{Kind: tlsrpt.ValidationFailure, Detail: "no TLSA record matches the certificate chain"}
}

// rank orders the failures of trust-anchor candidates: the most specific
// one is reported.
func rank(k tlsrpt.ResultType) int {
	switch k {
	case tlsrpt.CertificateHostMismatch:
		return 3
	case tlsrpt.CertificateExpired:
		return 2
	}
	return 1
}

// anchors are the trust anchors a DANE-TA record names among the
// presented chain: certificates above the leaf that match it; or, when
// none is sent, the record's own full certificate ("2 0 0"), or a
// certificate made from its full public key ("2 1 0") to stand for the
// anchor (RFC 7671 §5.2.2).
func anchors(r Record, chain []*x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range chain[1:] {
		if matches(r, c) {
			out = append(out, c)
		}
	}
	if len(out) == 0 && r.Selector == SelectorCert && r.MatchingType == MatchFull {
		// RFC 7671 §5.2.2: with the whole anchor certificate in DNS the
		// server need not send it.
		if c, err := x509.ParseCertificate(r.Data); err == nil {
			out = append(out, c)
		}
	}
	if len(out) == 0 && r.Selector == SelectorSPKI && r.MatchingType == MatchFull {
		if pub, err := x509.ParsePKIXPublicKey(r.Data); err == nil {
			for _, c := range chain {
				key := &x509.Certificate{PublicKey: pub, RawSubject: c.RawIssuer}
				if key.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil {
					out = append(out, bareAnchor(c, pub))
					break
				}
			}
		}
	}
	return out
}

// bareAnchor builds the self-contained anchor certificate for a bare key
// that signed c: the pool needs a certificate; its subject is c's issuer
// and its only content the key.
func bareAnchor(c *x509.Certificate, pub any) *x509.Certificate {
	return &x509.Certificate{
		PublicKey:             pub,
		PublicKeyAlgorithm:    publicKeyAlgorithm(pub),
		RawSubject:            c.RawIssuer,
		Subject:               c.Issuer,
		IsCA:                  true,
		MaxPathLen:            -1, // no constraint
		BasicConstraintsValid: true,
		NotBefore:             time.Time{},
		NotAfter:              time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC),
	}
}

// verifyTA checks that leaf chains to ta through the presented
// intermediates at now, and that it bears one of names.
func verifyTA(leaf *x509.Certificate, chain []*x509.Certificate, ta *x509.Certificate, names []string, now time.Time) *VerifyError {
	if leaf != ta {
		roots := x509.NewCertPool()
		roots.AddCert(ta)
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			if c != ta {
				inter.AddCert(c)
			}
		}
		_, err := leaf.Verify(x509.VerifyOptions{
			Roots:         roots,
			Intermediates: inter,
			CurrentTime:   now,
			// RFC 7672 §3.1.2 asks for a chain to the anchor; it puts no
			// extended key usage on SMTP servers.
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		})
		if err != nil {
			var inv x509.CertificateInvalidError
			if errors.As(err, &inv) && inv.Reason == x509.Expired {
				return &VerifyError{Kind: tlsrpt.CertificateExpired, Detail: "DANE-TA chain: " + err.Error()}
			}
			return &VerifyError{Kind: tlsrpt.ValidationFailure, Detail: "DANE-TA chain: " + err.Error()}
		}
	}
	if !nameMatches(leaf, names) {
		return &VerifyError{Kind: tlsrpt.CertificateHostMismatch,
			Detail: "DANE-TA: certificate is not for " + strings.Join(names, " or ")}
	}
	return nil
}

// matches reports whether r matches c (RFC 6698 §2.1.2, §2.1.3).
func matches(r Record, c *x509.Certificate) bool {
	var sel []byte
	switch r.Selector {
	case SelectorCert:
		sel = c.Raw
	case SelectorSPKI:
		sel = c.RawSubjectPublicKeyInfo
	default:
		return false
	}
	switch r.MatchingType {
	case MatchFull:
		return len(r.Data) > 0 && bytes.Equal(sel, r.Data)
	case MatchSHA256:
		sum := sha256.Sum256(sel)
		return bytes.Equal(sum[:], r.Data)
	case MatchSHA512:
		sum := sha512.Sum512(sel)
		return bytes.Equal(sum[:], r.Data)
	}
	return false
}

// nameMatches reports whether leaf bears one of names (RFC 7672 §3.2.3):
// its DNS subjectAltNames, or its subject common name when it has none; a
// wildcard is accepted only as the whole leftmost label and stands for
// exactly one label.
func nameMatches(leaf *x509.Certificate, names []string) bool {
	ids := leaf.DNSNames
	if len(ids) == 0 && leaf.Subject.CommonName != "" {
		ids = []string{leaf.Subject.CommonName}
	}
	for _, id := range ids {
		id = strings.TrimSuffix(strings.ToLower(id), ".")
		for _, n := range names {
			n = strings.TrimSuffix(strings.ToLower(n), ".")
			if n == "" {
				continue
			}
			if id == n {
				return true
			}
			if rest, ok := strings.CutPrefix(id, "*."); ok && rest != "" && !strings.Contains(rest, "*") {
				if _, parent, ok := strings.Cut(n, "."); ok && parent == rest {
					return true
				}
			}
		}
	}
	return false
}

// TLSConfig returns base (nil: an empty config) cloned, for tls.Client:
// ServerName is host, or res.Base when the records were found under
// another name (the TLSA base domain, RFC 7672 §8.1: SNI is always sent);
// the standard verification is off and VerifyConnection calls Verify
// with res at base's clock (base.Time, else the time of day).
func TLSConfig(base *tls.Config, host string, res Result) *tls.Config {
	var c *tls.Config
	if base != nil {
		c = base.Clone()
	} else {
		c = &tls.Config{}
	}
	c.ServerName = strings.TrimSuffix(host, ".")
	if res.Base != "" {
		c.ServerName = res.Base
	}
	c.InsecureSkipVerify = true // replaced by VerifyConnection below
	c.VerifyPeerCertificate = nil
	clock := c.Time
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		now := time.Now()
		if clock != nil {
			now = clock()
		}
		return Verify(res, cs.PeerCertificates, now)
	}
	return c
}
