package arc

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"moat/internal/dnsres"
	"moat/policy"
	"moat/policy/dkim"
)

// amsHeaders are the fields the ARC-Message-Signature signs (RFC 8617
// §4.1.2: as DKIM, RFC 6376 §5.4.1; never ARC-Seal, §4.1.2 "MUST NOT
// include"): those of moat's DKIM signatures plus the DKIM-Signature
// fields present. Not Authentication-Results: the next hop removes those
// that claim its name (RFC 8601 §5), which must not break the seal.
var amsHeaders = []string{
	"From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To",
	"References", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
	"Reply-To", "DKIM-Signature",
}

// SealerOptions make a Sealer.
type SealerOptions struct {
	Domain   string        // d= of the seal and signature
	Selector string        // s=
	Key      crypto.Signer // RSA (≥ 2048 bits, as dkimsign loads it)
	// Resolver validates the incoming chain for cv= (nil: a message
	// that carries ARC fields is not sealed).
	Resolver dnsres.Resolver
	Verify   Options
	Now      func() time.Time // nil: time.Now
}

// Sealer adds ARC sets to forwarded mail. It is safe for concurrent use.
type Sealer struct{ o SealerOptions }

// NewSealer checks the options.
func NewSealer(o SealerOptions) (*Sealer, error) {
	if o.Domain == "" || o.Selector == "" || o.Key == nil {
		return nil, errors.New("arc: sealer needs a domain, a selector and a key")
	}
	// rsa-sha256 only: dkimpy's ARC (and so the verifiers built on it)
	// refuses ed25519-sha256 ("unknown signature algorithm"), and a seal
	// the next hop cannot verify is a broken chain. Verify accepts both.
	switch o.Key.(type) {
	case *rsa.PrivateKey:
	case ed25519.PrivateKey:
		return nil, errors.New("arc: the sealing key is Ed25519; ARC verifiers (dkimpy among them) take rsa-sha256 only: give the sealing domain an RSA dkim.sign key")
	default:
		return nil, fmt.Errorf("arc: unsupported key type %T", o.Key)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Sealer{o: o}, nil
}

// Domain is the sealing domain.
func (s *Sealer) Domain() string { return s.o.Domain }

// ErrNotSealed is returned (wrapped) when the chain is not sealed by
// choice: it failed, could not be validated now, or is full.
var ErrNotSealed = errors.New("arc: not sealed")

// Seal returns the ARC set to prepend to msg (head, moat's fields, then
// raw, the message as received): ARC-Seal, ARC-Message-Signature and
// ARC-Authentication-Results, in that order from the top, each ending in
// CRLF. authResults is the value of moat's Authentication-Results
// ("authserv-id; method=result ..."). raw alone is validated for cv=.
func (s *Sealer) Seal(ctx context.Context, head, raw []byte, authResults string) (string, error) {
	rhdr, _, err := splitMessage(raw)
	if err != nil {
		return "", err
	}
	prev, perr := parseSets(rhdr)
	cv := "none"
	if perr != nil {
		return "", fmt.Errorf("%w: incoming chain broken: %v", ErrNotSealed, perr)
	}
	if prev != nil {
		if s.o.Resolver == nil {
			return "", fmt.Errorf("%w: no resolver to validate the incoming chain", ErrNotSealed)
		}
		res := Verify(ctx, s.o.Resolver, raw, s.o.Verify)
		switch res.Result {
		case string(policy.ResultPass):
			cv = "pass"
		default:
			return "", fmt.Errorf("%w: incoming chain %s: %s", ErrNotSealed, res.Result, res.Reason)
		}
		if len(prev)-1 >= MaxInstances {
			return "", fmt.Errorf("%w: %d ARC sets already", ErrNotSealed, MaxInstances)
		}
	}
	n := 1
	if prev != nil {
		n = len(prev)
	}
	msg := make([]byte, 0, len(head)+len(raw))
	msg = append(append(msg, head...), raw...)
	hdr, body, err := splitMessage(msg)
	if err != nil {
		return "", err
	}
	algo := "rsa-sha256"
	if _, ok := s.o.Key.(ed25519.PrivateKey); ok {
		algo = "ed25519-sha256"
	}
	now := strconv.FormatInt(s.o.Now().Unix(), 10)
	in := strconv.Itoa(n)

	// §4.1.1: the AAR carries moat's results under i=.
	aar := []byte(fieldAAR + ": i=" + in + "; " + strings.TrimSpace(authResults) + "\r\n")

	// §4.1.2: the AMS, a DKIM signature with i= and no v=.
	var names []string
	for _, h := range amsHeaders {
		for f := range dkim.Fields(hdr) {
			if strings.EqualFold(fieldName(f), h) {
				names = append(names, h)
			}
		}
	}
	bh := base64.StdEncoding.EncodeToString(dkim.BodyHash(body, true))
	ams := fieldAMS + ": i=" + in + "; a=" + algo + "; c=relaxed/relaxed; d=" + s.o.Domain +
		"; s=" + s.o.Selector + "; t=" + now + ";\r\n\th=" + strings.Join(names, ":") +
		";\r\n\tbh=" + bh + ";\r\n\tb="
	h := sha256.New()
	dkim.WriteSignedHeaders(h, hdr, names, true)
	h.Write(dkim.CanonHeader([]byte(ams), true, false))
	sig, err := s.sign(h.Sum(nil))
	if err != nil {
		return "", err
	}
	amsField := []byte(ams + fold(sig) + "\r\n")

	// §4.1.3, §5.1.1: the seal over every set, this one last.
	seal := fieldSeal + ": i=" + in + "; a=" + algo + "; cv=" + cv + "; d=" + s.o.Domain +
		"; s=" + s.o.Selector + "; t=" + now + ";\r\n\tb="
	sets := append([]set{}, prev...)
	if len(sets) == 0 {
		sets = []set{{}}
	}
	sets = append(sets, set{aar: aar, ams: amsField, seal: []byte(seal)})
	sig, err = s.sign(sealDigest(sets, nil))
	if err != nil {
		return "", err
	}
	return seal + fold(sig) + "\r\n" + string(amsField) + string(aar), nil
}

func (s *Sealer) sign(digest []byte) (string, error) {
	var sig []byte
	var err error
	switch k := s.o.Key.(type) {
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, digest) // RFC 8463 §3: over the SHA-256 hash
	default:
		sig, err = s.o.Key.Sign(rand.Reader, digest, crypto.SHA256)
	}
	if err != nil {
		return "", fmt.Errorf("arc: signing: %w", err)
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// fold breaks a base64 value into lines of 72 characters (RFC 6376
// §3.7: folding white space in b= is ignored).
func fold(b64 string) string {
	var out strings.Builder
	for len(b64) > 72 {
		out.WriteString(b64[:72])
		out.WriteString("\r\n\t ")
		b64 = b64[72:]
	}
	out.WriteString(b64)
	return out.String()
}
