package dkim

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"moat/policy"
)

// Signatures with a body length count (l=, RFC 6376 §3.5) are verified
// here: go-msgauth refuses every one of them before looking at the body.
// RFC 6376 §8.2 warns that l= lets content be appended after the signed
// part; the verifiers people compare us with (dkimpy, OpenDKIM,
// Mail::DKIM) pass a signature whose l= covers the whole body. So:
//   - l= equal to the length of the canonicalized body: the same result as
//     without l= (pass when it verifies);
//   - l= shorter: the signed part verified but content follows that the
//     signer did not sign: result policy (RFC 8601 §2.7.1 "the message
//     was signed, but some aspect of the signature or signatures was not
//     acceptable"), UnsignedBytes says how many octets;
//   - l= longer than the body: fail. §3.5 says of l= "This value MUST NOT
//     be larger than the actual number of octets in the canonicalized
//     message body"; such a body is not the one that was signed.
//     (Mail::DKIM passes it when the hash of the whole body matches; we
//     are stricter.)
//
// The rest follows go-msgauth's checks (§6.1.1 tags, §3.6 key record,
// RFC 8301 hash and key size, RFC 8463 ed25519).

// lengthCheck follows the body for one l= signature as go-msgauth reads
// the message: it canonicalizes the body (§3.4.3, §3.4.4), hashes the
// first limit octets and counts them all.
type lengthCheck struct {
	index int               // of the signature, in header order
	tags  map[string]string // all its tags, white space removed
	field []byte            // the raw DKIM-Signature field
	limit int64
	bad   error // an l= that does not parse
	hash  hash.Hash
	total int64
	canon bodyCanonicalizer
}

func newLengthCheck(i int, field []byte) *lengthCheck {
	_, value, _ := bytes.Cut(field, []byte(":"))
	lc := &lengthCheck{index: i, tags: ParseTags(string(value)), field: field, hash: sha256.New()}
	// §3.5: l= is 1*76DIGIT.
	l := lc.tags["l"]
	n, err := strconv.ParseInt(l, 10, 64)
	if err != nil || n < 0 || len(l) > 76 || strings.ContainsAny(l, "+-") {
		lc.bad = fmt.Errorf("malformed l= %q", clip(l))
	}
	lc.limit = n
	_, bodyCan, _ := strings.Cut(lc.tags["c"], "/")
	lc.canon.relaxed = bodyCan == "relaxed"
	lc.canon.out = lc.write
	return lc
}

func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}

// write receives canonical body octets.
func (lc *lengthCheck) write(b []byte) {
	if rest := lc.limit - lc.total; rest > 0 {
		lc.hash.Write(b[:min(int64(len(b)), rest)])
	}
	lc.total += int64(len(b))
}

// bodyCanonicalizer is the streaming "simple" (§3.4.3) or "relaxed"
// (§3.4.4) body canonicalization: lines end in CRLF, empty lines at the
// end are dropped, and relaxed also drops white space at line ends and
// turns runs of it into one SP. Input that is not proper CRLF text is
// treated as go-msgauth treats it, so that a body hashes the same with
// and without l=: a bare LF is a line end; relaxed holds every run of CR
// and LF octets as a line break, written only when data follows.
type bodyCanonicalizer struct {
	relaxed bool
	out     func([]byte)

	prevCR bool // the last octet was CR

	// simple
	pendingCR   bool // a CR waiting to see whether LF follows
	lineHasData bool // something of this line was written
	emptyLines  int  // empty lines held back: written only if data follows
	wroteAny    bool

	// relaxed
	wsp    bool   // white space seen and not written
	breaks []byte // CR and LF octets held back
}

var crlfBytes = []byte("\r\n")

func (c *bodyCanonicalizer) Write(p []byte) (int, error) {
	for _, ch := range p {
		if ch == '\n' && !c.prevCR {
			c.octet('\r') // a bare LF is a line end
		}
		c.prevCR = ch == '\r'
		c.octet(ch)
	}
	return len(p), nil
}

func (c *bodyCanonicalizer) octet(ch byte) {
	if c.relaxed {
		switch ch {
		case ' ', '\t':
			c.wsp = true
		case '\r', '\n':
			c.wsp = false
			c.breaks = append(c.breaks, ch)
		default:
			if len(c.breaks) > 0 {
				c.out(c.breaks)
				c.breaks = c.breaks[:0]
			}
			if c.wsp {
				c.wsp = false
				c.out([]byte{' '})
			}
			c.out([]byte{ch})
			c.wroteAny = true
		}
		return
	}
	if c.pendingCR {
		c.pendingCR = false
		if ch == '\n' {
			c.endLine()
			return
		}
		c.data('\r')
	}
	if ch == '\r' {
		c.pendingCR = true
		return
	}
	c.data(ch)
}

// data writes one octet of a simple line, after the empty lines held.
func (c *bodyCanonicalizer) data(ch byte) {
	if !c.lineHasData {
		for ; c.emptyLines > 0; c.emptyLines-- {
			c.out(crlfBytes)
		}
		c.lineHasData = true
		c.wroteAny = true
	}
	c.out([]byte{ch})
}

func (c *bodyCanonicalizer) endLine() {
	if c.lineHasData {
		c.out(crlfBytes)
		c.lineHasData = false
		return
	}
	c.emptyLines++
}

// Close ends the body: relaxed ends non-empty content with one CRLF;
// simple ends the last line with CRLF, and an empty body is one CRLF.
func (c *bodyCanonicalizer) Close() {
	if c.relaxed {
		if c.wroteAny {
			c.out(crlfBytes)
		}
		return
	}
	if c.pendingCR {
		c.pendingCR = false
		c.data('\r')
	}
	if c.lineHasData || !c.wroteAny {
		c.out(crlfBytes)
		c.lineHasData = false
	}
}

// bodyTee skips the header block of the message go-msgauth reads and
// hands the body to every lengthCheck.
type bodyTee struct {
	skip   int
	checks []*lengthCheck
}

func (t *bodyTee) Write(p []byte) (int, error) {
	n := len(p)
	if t.skip > 0 {
		k := min(t.skip, len(p))
		t.skip -= k
		p = p[k:]
	}
	if len(p) > 0 {
		for _, lc := range t.checks {
			lc.canon.Write(p)
		}
	}
	return n, nil
}

// verifyLength verifies one l= signature once the body has been read.
// hdr is the header block; lookup is Verify's key lookup.
func (lc *lengthCheck) verify(hdr []byte, lookup func(string) ([]string, error), now time.Time) (policy.Result, string, int64) {
	lc.canon.Close()
	t := lc.tags
	if lc.bad != nil {
		return policy.ResultPermError, lc.bad.Error(), 0
	}
	if t["v"] != "1" {
		return policy.ResultPermError, "incompatible signature version", 0
	}
	for _, k := range []string{"a", "b", "bh", "d", "h", "s"} {
		if _, ok := t[k]; !ok {
			return policy.ResultPermError, "signature missing required tag " + k, 0
		}
	}
	d := t["d"]
	if i, ok := t["i"]; ok && !strings.HasSuffix(strings.ToLower(i), "@"+strings.ToLower(d)) && !strings.HasSuffix(strings.ToLower(i), "."+strings.ToLower(d)) {
		return policy.ResultPermError, "domain mismatch", 0
	}
	signed := strings.Split(t["h"], ":")
	hasFrom := false
	for _, h := range signed {
		hasFrom = hasFrom || strings.EqualFold(h, "from")
	}
	if !hasFrom {
		return policy.ResultPermError, "From field not signed", 0
	}
	if x, ok := t["x"]; ok {
		sec, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			return policy.ResultPermError, "malformed expiration time", 0
		}
		if now.After(time.Unix(sec, 0)) {
			return policy.ResultPermError, "signature has expired", 0
		}
	}
	if q, ok := t["q"]; ok && q != "dns/txt" {
		return policy.ResultPermError, "unsupported public key query method", 0
	}
	keyAlgo, hashAlgo, _ := strings.Cut(t["a"], "-")
	if hashAlgo != "sha256" {
		// RFC 8301 §3.1: rsa-sha1 MUST NOT be considered valid.
		return policy.ResultPermError, "unsupported hash algorithm " + clip(hashAlgo), 0
	}
	hdrCan, bodyCan, _ := strings.Cut(t["c"], "/")
	for _, c := range []string{hdrCan, bodyCan} {
		if c != "" && c != "simple" && c != "relaxed" {
			return policy.ResultPermError, "unsupported canonicalization " + clip(c), 0
		}
	}
	bh, err1 := base64.StdEncoding.DecodeString(t["bh"])
	sig, err2 := base64.StdEncoding.DecodeString(t["b"])
	if err1 != nil || err2 != nil {
		return policy.ResultPermError, "malformed bh= or b=", 0
	}

	key, res, why := lookupKey(t["s"], d, keyAlgo, lookup)
	if res != "" {
		return res, why, 0
	}

	// §3.5: a body shorter than l= cannot have been what was signed.
	if lc.total < lc.limit {
		return policy.ResultFail, fmt.Sprintf("l=%d is longer than the body (%d octets)", lc.limit, lc.total), 0
	}
	if subtle.ConstantTimeCompare(lc.hash.Sum(nil), bh) != 1 {
		return policy.ResultFail, "body hash did not verify", 0
	}
	h := sha256.New()
	writeSignedHeaders(h, hdr, signed, hdrCan == "relaxed")
	h.Write(canonHeader(withoutB(lc.field), hdrCan == "relaxed", false))
	digest := h.Sum(nil)
	switch k := key.(type) {
	case *rsa.PublicKey:
		if err := rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig); err != nil {
			return policy.ResultFail, "signature did not verify", 0
		}
	case ed25519.PublicKey:
		// RFC 8463 §3: the signature is over the SHA-256 hash.
		if !ed25519.Verify(k, digest, sig) {
			return policy.ResultFail, "signature did not verify", 0
		}
	}
	if unsigned := lc.total - lc.limit; unsigned > 0 {
		return policy.ResultPolicy, fmt.Sprintf("l=%d leaves %d body octets unsigned (RFC 6376 §8.2)", lc.limit, unsigned), unsigned
	}
	return policy.ResultPass, "", 0
}

// lookupKey fetches and parses the key record (RFC 6376 §3.6.1, §3.6.2).
// A non-empty result is the failure.
func lookupKey(selector, domain, keyAlgo string, lookup func(string) ([]string, error)) (crypto.PublicKey, policy.Result, string) {
	txts, err := lookup(selector + "._domainkey." + domain)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && (de.IsTemporary || de.IsTimeout) {
			return nil, policy.ResultTempError, "key unavailable: " + err.Error()
		}
		return nil, policy.ResultPermError, "no key for signature"
	}
	if len(txts) != 1 {
		return nil, policy.ResultPermError, "no single key record"
	}
	kt := ParseTags(txts[0])
	if v, ok := kt["v"]; ok && v != "DKIM1" {
		return nil, policy.ResultPermError, "incompatible public key version"
	}
	if h, ok := kt["h"]; ok && !strings.Contains(":"+h+":", ":sha256:") {
		return nil, policy.ResultPermError, "inappropriate hash algorithm"
	}
	if s, ok := kt["s"]; ok && !strings.Contains(":"+s+":", ":email:") && !strings.Contains(":"+s+":", ":*:") {
		return nil, policy.ResultPermError, "inappropriate service"
	}
	k := kt["k"]
	if k == "" {
		k = "rsa"
	}
	if k != keyAlgo {
		return nil, policy.ResultPermError, "inappropriate key algorithm"
	}
	p, ok := kt["p"]
	if !ok {
		return nil, policy.ResultPermError, "key syntax error: no p="
	}
	if p == "" {
		return nil, policy.ResultPermError, "key revoked"
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return nil, policy.ResultPermError, "key syntax error"
	}
	switch k {
	case "rsa":
		var pub *rsa.PublicKey
		if any, err := x509.ParsePKIXPublicKey(der); err == nil {
			pub, _ = any.(*rsa.PublicKey)
		} else if pk, err := x509.ParsePKCS1PublicKey(der); err == nil {
			pub = pk
		}
		if pub == nil {
			return nil, policy.ResultPermError, "key syntax error"
		}
		if pub.N.BitLen() < 1024 {
			// RFC 8301 §3.2.
			return nil, policy.ResultPermError, "RSA key shorter than 1024 bits"
		}
		return pub, "", ""
	case "ed25519":
		if len(der) != ed25519.PublicKeySize {
			return nil, policy.ResultPermError, "key syntax error"
		}
		return ed25519.PublicKey(der), "", ""
	}
	return nil, policy.ResultPermError, "unsupported key algorithm"
}

// writeSignedHeaders hashes the fields named in h=, each name taking the
// last field of that name not yet used (§5.4.2); a name with no field
// left adds nothing.
func writeSignedHeaders(w io.Writer, hdr []byte, names []string, relaxed bool) {
	var all [][]byte
	for f := range fields(hdr) {
		all = append(all, f)
	}
	used := make([]bool, len(all))
	for _, n := range names {
		n = strings.TrimSpace(n)
		for i := len(all) - 1; i >= 0; i-- {
			if used[i] {
				continue
			}
			name, _, ok := bytes.Cut(all[i], []byte(":"))
			if ok && strings.EqualFold(strings.TrimRight(string(name), " \t"), n) {
				used[i] = true
				w.Write(canonHeader(all[i], relaxed, true))
				break
			}
		}
	}
}

// canonHeader canonicalizes one field (§3.4.1, §3.4.2). The field ends
// in CRLF unless withCRLF is false (the signature field itself, §3.7).
func canonHeader(f []byte, relaxed, withCRLF bool) []byte {
	if !relaxed {
		f = bytes.TrimRight(f, "\r\n")
		if withCRLF {
			return append(append([]byte{}, f...), crlfBytes...)
		}
		return f
	}
	name, value, _ := bytes.Cut(f, []byte(":"))
	out := append(bytes.ToLower(bytes.TrimRight(name, " \t")), ':')
	out = append(out, bytes.Join(bytes.FieldsFunc(value, func(r rune) bool {
		return r == ' ' || r == '\t' || r == '\r' || r == '\n'
	}), []byte(" "))...)
	if withCRLF {
		out = append(out, crlfBytes...)
	}
	return out
}

// withoutB returns the signature field with the value of its b= tag
// removed, all else as it is (§3.7).
func withoutB(field []byte) []byte {
	name, value, ok := bytes.Cut(field, []byte(":"))
	if !ok {
		return field
	}
	out := append(append([]byte{}, name...), ':')
	for i, part := range bytes.Split(value, []byte(";")) {
		if i > 0 {
			out = append(out, ';')
		}
		k, _, hasEq := bytes.Cut(part, []byte("="))
		if hasEq && string(bytes.Trim(k, " \t\r\n")) == "b" {
			eq := bytes.IndexByte(part, '=')
			out = append(out, part[:eq+1]...)
			// keep a line end the value carried, as the field's end
			if bytes.HasSuffix(part, crlfBytes) {
				out = append(out, crlfBytes...)
			}
			continue
		}
		out = append(out, part...)
	}
	return out
}

// lengthChecks prepares a lengthCheck for every signature with l= among
// the first max of hdr.
func lengthChecks(hdr []byte, tags []map[string]string, max int) []*lengthCheck {
	var out []*lengthCheck
	i := 0
	for f := range fields(hdr) {
		name, _, ok := bytes.Cut(f, []byte(":"))
		if !ok || !bytes.EqualFold(bytes.TrimRight(name, " \t"), []byte("DKIM-Signature")) {
			continue
		}
		if i < max && i < len(tags) {
			if _, has := tags[i]["l"]; has {
				out = append(out, newLengthCheck(i, f))
			}
		}
		i++
	}
	return out
}
