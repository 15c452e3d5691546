package dane

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"strconv"
	"strings"
)

// Certificate usages, selectors and matching types (RFC 6698 §2.1,
// RFC 7218 acronyms).
const (
	UsagePKIXTA  = 0 // not used for SMTP (RFC 7672 §3.1.3)
	UsagePKIXEE  = 1 // not used for SMTP (RFC 7672 §3.1.3)
	UsageDANETA  = 2
	UsageDANEEE  = 3
	SelectorCert = 0 // the full certificate (DER)
	SelectorSPKI = 1 // the SubjectPublicKeyInfo (DER)
	MatchFull    = 0 // the selected content itself
	MatchSHA256  = 1
	MatchSHA512  = 2
)

// maxFullData bounds the data of a "Full" record (a certificate or key);
// a TLSA RRset fits in a DNS message, so this is only a guard.
const maxFullData = 65535

// Record is one TLSA record (RFC 6698 §2.1).
type Record struct {
	Usage, Selector, MatchingType uint8
	Data                          []byte
}

// Usable reports whether r can authenticate an SMTP server: usage
// DANE-TA or DANE-EE, a known selector and matching type, and data of
// the length its matching type fixes (RFC 7672 §3.1.3, RFC 7671 §4).
func (r Record) Usable() bool {
	if r.Usage != UsageDANETA && r.Usage != UsageDANEEE {
		return false
	}
	if r.Selector != SelectorCert && r.Selector != SelectorSPKI {
		return false
	}
	switch r.MatchingType {
	case MatchFull:
		// The data is the certificate or key itself: it must parse (RFC
		// 6698 §2.1.3; what cannot be parsed can never match).
		if len(r.Data) == 0 || len(r.Data) > maxFullData {
			return false
		}
		if r.Selector == SelectorCert {
			_, err := x509.ParseCertificate(r.Data)
			return err == nil
		}
		_, err := x509.ParsePKIXPublicKey(r.Data)
		return err == nil
	case MatchSHA256:
		return len(r.Data) == sha256.Size
	case MatchSHA512:
		return len(r.Data) == sha512.Size
	}
	return false
}

// String is the record in presentation form: "3 1 1 ABCD…" (RFC 6698 §2.2).
func (r Record) String() string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(int(r.Usage)))
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(int(r.Selector)))
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(int(r.MatchingType)))
	b.WriteByte(' ')
	b.WriteString(strings.ToUpper(hex.EncodeToString(r.Data)))
	return b.String()
}

// Result is what DNS says about DANE for one MX host and port.
type Result struct {
	// Records are the usable records only: DANE-TA(2) and DANE-EE(3);
	// PKIX usages and malformed records are dropped (RFC 7672 §3.1.3).
	Records []Record
	// Secure is true when the answer (records, NXDOMAIN or no data) and
	// every step before it (address lookup, CNAME chain) was validated.
	// Secure with no Records and not Unusable: the host has no TLSA
	// records, so DANE does not apply to it.
	Secure bool
	// Names are the reference identifiers for DANE-TA name checks (RFC
	// 7672 §3.2.2): the MX host and, after a secure CNAME, the expanded
	// name. §3.2.2 also accepts the next-hop domain (the recipient's
	// domain) when the MX lookup was secure: a caller may append it.
	Names []string
	// Base is the TLSA base domain, the name the records were found under
	// (the expanded name or the MX host); TLSConfig sends it in SNI (RFC
	// 7672 §8.1, RFC 7671 §7).
	Base string
	// Unusable is true when a secure TLSA RRset exists but holds no
	// usable record: the server must still be reached over TLS (never
	// plaintext), without authenticating it (RFC 7672 §2.2, §3.1).
	Unusable bool
}

// Active reports whether DANE authentication applies: a secure RRset
// with at least one usable record.
func (r Result) Active() bool { return r.Secure && len(r.Records) > 0 }

// RequireTLS reports whether DNS says TLS is mandatory for this host:
// DANE applies, or the TLSA RRset is unusable (RFC 7672 §2.2).
func (r Result) RequireTLS() bool { return r.Active() || r.Secure && r.Unusable }

// Strings are the records in presentation form, for the TLS-RPT
// "policy-string" (RFC 8460 §4.4).
func (r Result) Strings() []string {
	out := make([]string, 0, len(r.Records))
	for _, rec := range r.Records {
		out = append(out, rec.String())
	}
	return out
}

// usable keeps the usable records of recs.
func usable(recs []Record) []Record {
	var out []Record
	for _, r := range recs {
		if r.Usable() {
			out = append(out, r)
		}
	}
	return out
}
