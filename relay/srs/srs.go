// Package srs rewrites envelope senders for forwarded mail with the Sender
// Rewriting Scheme (SRS), in the form of Shevek's libsrs2 that Postfix
// sites use through postsrsd, and reverses the rewritten addresses when a
// bounce comes back to them.
//
// Why: a message forwarded by an alias to a remote address leaves moat
// with the original envelope sender; the next hop's SPF check (RFC 7208
// §2.4) then asks whether moat may send for the sender's domain, and it
// may not. SRS gives the forwarded copy an envelope sender in a domain of
// ours (srs.domain) that still names the original sender, so that a
// bounce (RFC 5321 §4.5.5, sent to the reverse-path) comes back to us and
// can be sent on.
//
// The forms (libsrs2's "guarded" scheme, separator "="):
//
//	SRS0=HHHH=TT=orig-domain=orig-local@srs.domain
//	SRS1=HHHH=first-srs-host==HHHH=TT=orig-domain=orig-local@srs.domain
//
// TT is a time stamp: days since the Unix epoch modulo 1024, two base32
// characters (5 bits each, alphabet A–Z 2–7). HHHH is the first four
// characters of the base64 HMAC-SHA1, under the signing secret, of the
// lower-cased fields (SRS0: TT, orig-domain, orig-local; SRS1:
// first-srs-host and the rest of the SRS0 part after "SRS0"). An address
// that is already SRS0 or SRS1 at another host becomes SRS1 (a second
// forwarder does not nest: the bounce goes back to the first forwarder
// only, which holds the original sender). The hash and the stamp are
// compared case-insensitively: some MTAs fold the case of local parts.
//
// Reversal accepts an SRS0 address whose hash verifies under any of the
// secrets (the first signs, the others are older ones kept for rotation)
// and whose stamp is at most MaxAge old; an SRS1 address whose hash
// verifies reverses to the SRS0 address at the first forwarder. Anything
// else is refused: only addresses we made reverse, so SRS is no open relay.
//
// The parser reads outside input (RCPT TO of any client): it is bounded
// (RFC 5321 §4.5.3.1.1: a local part of at most 64 octets is the limit
// for interoperation, but SRS addresses are longer; we accept at most 512
// octets in all) and never panics (FuzzReverse).
package srs

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Defaults.
const (
	// DefaultMaxAge is how long a rewritten address reverses (postsrsd's
	// default: 21 days).
	DefaultMaxAge = 21 * 24 * time.Hour
	// HashLength is the number of base64 characters of the hash kept
	// (libsrs2 and postsrsd: 4, 24 bits).
	HashLength = 4
	// MaxAddress bounds an address given to Reverse or Forward.
	MaxAddress = 512
	// MaxSecrets bounds the secrets read (rotation needs two or three).
	MaxSecrets = 16
)

const (
	base32Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	timeSlots      = 1024 // 2 base32 characters, 10 bits
	day            = 24 * time.Hour
)

// Errors of Reverse. All of them mean "refuse the address".
var (
	ErrNotSRS    = errors.New("srs: not an SRS address")
	ErrMalformed = errors.New("srs: malformed SRS address")
	ErrBadHash   = errors.New("srs: hash does not verify")
	ErrExpired   = errors.New("srs: time stamp expired or in the future")
)

// Rewriter forwards and reverses addresses for one SRS domain. It is safe
// for concurrent use.
type Rewriter struct {
	domain  string // lower case, no trailing dot
	secrets [][]byte
	maxAge  time.Duration
	now     func() time.Time
}

// Options configure a Rewriter.
type Options struct {
	Domain  string   // the SRS domain (srs.domain)
	Secrets []string // the first signs; all verify
	MaxAge  time.Duration
	Now     func() time.Time // nil: time.Now
}

// New makes a Rewriter.
func New(o Options) (*Rewriter, error) {
	d := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(o.Domain), "."))
	if d == "" || strings.ContainsAny(d, "@= \t") {
		return nil, fmt.Errorf("srs: domain %q is not a domain name", o.Domain)
	}
	if len(o.Secrets) == 0 {
		return nil, errors.New("srs: no secret")
	}
	if len(o.Secrets) > MaxSecrets {
		return nil, fmt.Errorf("srs: more than %d secrets", MaxSecrets)
	}
	r := &Rewriter{domain: d, maxAge: o.MaxAge, now: o.Now}
	for i, s := range o.Secrets {
		if s == "" {
			return nil, fmt.Errorf("srs: secret %d is empty", i+1)
		}
		r.secrets = append(r.secrets, []byte(s))
	}
	if r.maxAge <= 0 {
		r.maxAge = DefaultMaxAge
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r, nil
}

// Domain is the SRS domain, lower case.
func (r *Rewriter) Domain() string { return r.domain }

// IsSRSDomain reports whether domain is the SRS domain.
func (r *Rewriter) IsSRSDomain(domain string) bool {
	return strings.EqualFold(strings.TrimSuffix(domain, "."), r.domain)
}

// hash is the base64 HMAC-SHA1 of the lower-cased parts, truncated.
func hash(secret []byte, parts ...string) string {
	m := hmac.New(sha1.New, secret)
	for _, p := range parts {
		m.Write([]byte(strings.ToLower(p)))
	}
	return base64.StdEncoding.EncodeToString(m.Sum(nil))[:HashLength]
}

// checkHash compares h with the hash under every secret, case-insensitively.
func (r *Rewriter) checkHash(h string, parts ...string) bool {
	if len(h) != HashLength {
		return false
	}
	ok := 0
	for _, s := range r.secrets {
		ok |= subtle.ConstantTimeCompare([]byte(strings.ToLower(hash(s, parts...))), []byte(strings.ToLower(h)))
	}
	return ok == 1
}

func stamp(t time.Time) string {
	d := (t.Unix() / int64(day/time.Second)) % timeSlots
	return string([]byte{base32Alphabet[(d>>5)&31], base32Alphabet[d&31]})
}

// checkStamp decodes a 2-character stamp and checks its age.
func (r *Rewriter) checkStamp(s string) error {
	if len(s) != 2 {
		return ErrMalformed
	}
	v := 0
	for i := 0; i < 2; i++ {
		j := strings.IndexByte(base32Alphabet, upper(s[i]))
		if j < 0 {
			return ErrMalformed
		}
		v = v<<5 | j
	}
	now := int((r.now().Unix() / int64(day/time.Second)) % timeSlots)
	age := (now - v + timeSlots) % timeSlots // days, modulo the 1024-day wrap
	if time.Duration(age)*day > r.maxAge {
		return ErrExpired
	}
	return nil
}

func upper(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

// split cuts an address at its last "@".
func split(addr string) (local, domain string, ok bool) {
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 || i == len(addr)-1 {
		return "", "", false
	}
	return addr[:i], addr[i+1:], true
}

// hasPrefixFold reports whether s starts with p, ignoring ASCII case.
func hasPrefixFold(s, p string) bool { return len(s) >= len(p) && strings.EqualFold(s[:len(p)], p) }

// Forward returns the SRS address to use as the envelope sender of a copy
// of mail from sender that we forward. The null sender is returned as is
// (RFC 5321 §4.5.5: a bounce must not cause another); so is an address at
// the SRS domain itself.
func (r *Rewriter) Forward(sender string) (string, error) {
	if sender == "" {
		return "", nil
	}
	if len(sender) > MaxAddress {
		return "", fmt.Errorf("srs: address longer than %d octets", MaxAddress)
	}
	local, domain, ok := split(sender)
	if !ok {
		return "", fmt.Errorf("srs: %q has no domain", sender)
	}
	if r.IsSRSDomain(domain) {
		return sender, nil
	}
	secret := r.secrets[0]
	switch {
	case hasPrefixFold(local, "SRS0") && len(local) > 4 && isSep(local[4]):
		// Already SRS0 elsewhere: SRS1 pointing at that forwarder.
		rest := local[4:] // "=HHHH=TT=d=l", separator included
		h := hash(secret, domain, rest)
		return "SRS1=" + h + "=" + domain + "=" + rest + "@" + r.domain, nil
	case hasPrefixFold(local, "SRS1") && len(local) > 4 && isSep(local[4]):
		// SRS1 elsewhere: keep the first forwarder, sign anew.
		parts := strings.SplitN(local[5:], "=", 3) // HHHH, first-host, "=HHHH=TT=d=l"
		if len(parts) == 3 && parts[1] != "" {
			h := hash(secret, parts[1], parts[2])
			return "SRS1=" + h + "=" + parts[1] + "=" + parts[2] + "@" + r.domain, nil
		}
	}
	t := stamp(r.now())
	h := hash(secret, t, domain, local)
	return "SRS0=" + h + "=" + t + "=" + domain + "=" + local + "@" + r.domain, nil
}

func isSep(c byte) bool { return c == '=' || c == '-' || c == '+' }

// IsSRS reports whether addr's local part looks like SRS0 or SRS1 (not
// whether it verifies).
func IsSRS(addr string) bool {
	local, _, ok := split(addr)
	if !ok {
		local = addr
	}
	return (hasPrefixFold(local, "SRS0") || hasPrefixFold(local, "SRS1")) && len(local) > 4 && isSep(local[4])
}

// Reverse returns the address a rewritten address stands for: the
// original sender for SRS0, the SRS0 address at the first forwarder for
// SRS1. addr must be at the SRS domain. Errors: ErrNotSRS, ErrMalformed,
// ErrBadHash, ErrExpired.
func (r *Rewriter) Reverse(addr string) (string, error) {
	if len(addr) > MaxAddress {
		return "", ErrMalformed
	}
	local, domain, ok := split(addr)
	if !ok || !r.IsSRSDomain(domain) || !IsSRS(local) {
		return "", ErrNotSRS
	}
	body := local[5:]
	if hasPrefixFold(local, "SRS1") {
		// HHHH=first-host==HHHH=TT=d=l  (the first "=" of the rest is
		// the separator kept from the SRS0 address).
		parts := strings.SplitN(body, "=", 3)
		if len(parts) != 3 || parts[1] == "" || len(parts[2]) < 2 || !isSep(parts[2][0]) {
			return "", ErrMalformed
		}
		if !r.checkHash(parts[0], parts[1], parts[2]) {
			return "", ErrBadHash
		}
		return "SRS0" + parts[2] + "@" + parts[1], nil
	}
	// HHHH=TT=orig-domain=orig-local; the local part may hold "=".
	parts := strings.SplitN(body, "=", 4)
	if len(parts) != 4 || parts[2] == "" || parts[3] == "" {
		return "", ErrMalformed
	}
	if !r.checkHash(parts[0], parts[1], parts[2], parts[3]) {
		return "", ErrBadHash
	}
	if err := r.checkStamp(parts[1]); err != nil {
		return "", err
	}
	return parts[3] + "@" + parts[2], nil
}
