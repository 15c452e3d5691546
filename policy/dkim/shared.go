package dkim

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"io"
	"iter"
	"time"

	"moat/internal/dnsres"
	"moat/policy"
)

// The DKIM pieces that ARC (RFC 8617) reuses: §4.1.2 and §4.1.3 build the
// ARC-Message-Signature and ARC-Seal on DKIM's canonicalization (RFC 6376
// §3.4), key records (§3.6) and algorithms (§3.3, RFC 8463); policy/arc
// calls these rather than keep a second copy.

// Fields yields the fields of a header block as they are (folded lines
// and line ends kept), stopping at the blank line.
func Fields(hdr []byte) iter.Seq[[]byte] { return fields(hdr) }

// CanonHeader canonicalizes one field, simple or relaxed (RFC 6376
// §3.4.1, §3.4.2); withCRLF false leaves the line end off (the signature
// field itself, §3.7).
func CanonHeader(f []byte, relaxed, withCRLF bool) []byte { return canonHeader(f, relaxed, withCRLF) }

// WithoutB returns a signature field with the value of its b= tag
// emptied (RFC 6376 §3.7).
func WithoutB(field []byte) []byte { return withoutB(field) }

// WriteSignedHeaders writes the canonical fields that an h= list names,
// bottom-up per name (RFC 6376 §5.4.2).
func WriteSignedHeaders(w io.Writer, hdr []byte, names []string, relaxed bool) {
	writeSignedHeaders(w, hdr, names, relaxed)
}

// BodyHash is the SHA-256 of the canonical body (RFC 6376 §3.4.3,
// §3.4.4, §3.7).
func BodyHash(body []byte, relaxed bool) []byte {
	h := sha256.New()
	c := bodyCanonicalizer{relaxed: relaxed, out: func(b []byte) { h.Write(b) }}
	c.Write(body)
	c.Close()
	return h.Sum(nil)
}

// LookupKey fetches and parses the key record <selector>._domainkey.<domain>
// for keyAlgo ("rsa" or "ed25519") through r, under timeout. A non-empty
// result is the failure: temperror for a DNS failure that may pass,
// permerror for a missing, revoked or unacceptable key (RFC 8301 §3.2).
func LookupKey(ctx context.Context, r dnsres.Resolver, timeout time.Duration, selector, domain, keyAlgo string) (crypto.PublicKey, policy.Result, string) {
	if timeout <= 0 {
		timeout = DefaultLookupTimeout
	}
	return lookupKey(selector, domain, keyAlgo, keyLookup(ctx, r, timeout))
}

// VerifyDigest checks sig over a SHA-256 digest with key (rsa-sha256:
// PKCS#1 v1.5; ed25519-sha256: RFC 8463 §3, the signature is over the
// hash).
func VerifyDigest(key crypto.PublicKey, digest, sig []byte) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig) == nil
	case ed25519.PublicKey:
		return ed25519.Verify(k, digest, sig)
	}
	return false
}
