// Package dkim verifies the DKIM signatures of a message (RFC 6376 §6)
// with go-msgauth, looking keys up through moat's resolver, and reports
// each signature as a policy.DKIMSignature.
//
// Results (RFC 8601 §2.7.1):
//   - pass: the signature verified.
//   - fail: the body hash or the signature did not verify (RFC 6376 §6.1.3).
//   - permerror: the signature or key record is broken or unacceptable:
//     missing or malformed tags, no key (NXDOMAIN), revoked key, expired
//     x=, and — by RFC 8301 — rsa-sha1 (§3.1 "MUST NOT be considered
//     valid") and RSA keys shorter than 1024 bits (§3.2). We report those
//     two as permerror, always (not fail): they are refused before any
//     cryptography, like other unacceptable signatures.
//   - policy: the signature uses l= (a body length limit, RFC 6376 §3.5)
//     that leaves content after the signed part unsigned (§8.2); the
//     signature's UnsignedBytes says how many octets. An l= covering the
//     whole body is judged like a signature without l= (length.go).
//   - temperror: the key lookup failed temporarily (RFC 6376 §6.1.2), or
//     verification was interrupted; never pass.
//   - neutral: signatures beyond Options.MaxVerifications are not
//     verified.
//
// The DKIM Result is pass if any signature passed; otherwise the most
// telling result in the order temperror, fail, policy, permerror, neutral;
// none if the message is unsigned (RFC 8601 §2.7.1).
package dkim

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"moat/internal/deadline"
	"moat/internal/dnsres"
	"moat/policy"
)

// Defaults of Options.
const (
	DefaultMaxVerifications = 5
	DefaultLookupTimeout    = 5 * time.Second
	// DefaultMaxHeaderBytes bounds the header block read (RFC 5322 does
	// not bound it; this is ours).
	DefaultMaxHeaderBytes = 1 << 20
)

// Options tune verification. The zero value uses the defaults.
type Options struct {
	// MaxVerifications caps the signatures verified per message (cost
	// bound); later ones are reported neutral. Default 5.
	MaxVerifications int
	// LookupTimeout bounds each key lookup. Default 5s; the parent ctx of
	// Verify bounds them all.
	LookupTimeout time.Duration
	// MaxHeaderBytes bounds the header block. Default 1 MiB; a larger
	// header gives permerror.
	MaxHeaderBytes int
}

func (o Options) withDefaults() Options {
	if o.MaxVerifications <= 0 {
		o.MaxVerifications = DefaultMaxVerifications
	}
	if o.LookupTimeout <= 0 {
		o.LookupTimeout = DefaultLookupTimeout
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	return o
}

// Verify verifies every DKIM-Signature of msg (the whole message, CRLF line
// endings) and returns the results in header order. It never panics: a
// panic inside is recovered and reported as temperror.
func Verify(ctx context.Context, r dnsres.Resolver, msg io.Reader, opt Options) (res policy.DKIM) {
	defer func() {
		if p := recover(); p != nil {
			res = policy.DKIM{Result: policy.ResultTempError, Signatures: markAll(res.Signatures, policy.ResultTempError, fmt.Sprintf("internal error: %v", p))}
		}
	}()
	return verify(ctx, r, msg, opt.withDefaults())
}

// readers holds the 4 KiB buffered readers of verify: go-msgauth is done
// with one when Verify returns.
var readers = sync.Pool{New: func() any { return bufio.NewReader(nil) }}

func verify(ctx context.Context, r dnsres.Resolver, msg io.Reader, opt Options) policy.DKIM {
	start := int64(-1)
	if sk, ok := msg.(io.Seeker); ok {
		if at, err := sk.Seek(0, io.SeekCurrent); err == nil {
			start = at
		}
	}
	br := readers.Get().(*bufio.Reader)
	br.Reset(msg)
	defer func() { br.Reset(nil); readers.Put(br) }()
	hdr, whole, err := readHeader(br, opt.MaxHeaderBytes)
	if err != nil {
		return policy.DKIM{Result: policy.ResultPermError, Signatures: []policy.DKIMSignature{{Result: policy.ResultPermError, Reason: err.Error()}}}
	}
	tags := signatureTags(hdr)
	if len(tags) == 0 {
		return policy.DKIM{Result: policy.ResultNone}
	}
	sigs := make([]policy.DKIMSignature, len(tags))
	for i, t := range tags {
		sigs[i] = policy.DKIMSignature{
			Domain:    t["d"],
			Selector:  t["s"],
			Algorithm: t["a"],
			Identity:  t["i"],
		}
	}

	lookup := keyLookup(ctx, r, opt.LookupTimeout)

	// go-msgauth reads the whole message again: rewind and hand it our
	// buffered reader, which it uses as it is, rather than a new one.
	var full io.Reader = br
	if _, err := seekTo(msg, start); whole && err == nil {
		br.Reset(msg)
	} else {
		full = io.MultiReader(bytes.NewReader(hdr), br)
	}
	// l= signatures are verified in length.go: follow the body for them
	// as go-msgauth reads it, and read what it leaves.
	lchecks := lengthChecks(hdr, tags, opt.MaxVerifications)
	if len(lchecks) > 0 {
		full = io.TeeReader(full, &bodyTee{skip: len(hdr), checks: lchecks})
	}
	verifs, verr := dkim.VerifyWithOptions(full, &dkim.VerifyOptions{
		LookupTXT:        lookup,
		MaxVerifications: opt.MaxVerifications,
	})
	if len(lchecks) > 0 && (verr == nil || errors.Is(verr, dkim.ErrTooManySignatures)) {
		if _, err := io.Copy(io.Discard, full); err != nil && verr == nil {
			verr = err
		}
	}
	if verr != nil && !errors.Is(verr, dkim.ErrTooManySignatures) {
		// An unexpected error (read error, broken header): go-msgauth may
		// have cleared one Err; trust nothing.
		return policy.DKIM{Result: policy.ResultTempError, Signatures: markAll(sigs, policy.ResultTempError, "verification interrupted: "+verr.Error())}
	}
	if want := min(len(tags), opt.MaxVerifications); len(verifs) != want {
		// go-msgauth saw other fields than we did: label from its own
		// results only, so no result is attached to the wrong signature.
		sigs = make([]policy.DKIMSignature, len(verifs))
		tags = make([]map[string]string, len(verifs))
	}
	for i := range sigs {
		if i >= len(verifs) || verifs[i] == nil {
			sigs[i].Result = policy.ResultNeutral
			sigs[i].Reason = fmt.Sprintf("not verified: more than %d signatures", opt.MaxVerifications)
			continue
		}
		v := verifs[i]
		if v.Domain != "" {
			sigs[i].Domain = v.Domain
		}
		sigs[i].Result, sigs[i].Reason = classify(v.Err, tags[i])
	}
	for _, lc := range lchecks {
		if lc.index < len(sigs) && lc.index < len(verifs) && verifs[lc.index] != nil {
			s := &sigs[lc.index]
			s.Result, s.Reason, s.UnsignedBytes = lc.verify(hdr, lookup, time.Now())
		}
	}
	return policy.DKIM{Result: overall(sigs), Signatures: sigs}
}

// keyLookup is the TXT lookup of key records through r, each under
// timeout, with errors shaped as go-msgauth and lookupKey read them
// (net.DNSError: not found, permanent, or temporary).
func keyLookup(ctx context.Context, r dnsres.Resolver, timeout time.Duration) func(string) ([]string, error) {
	return func(name string) (txts []string, err error) {
		// go-msgauth calls this from its own goroutines when a message has
		// several signatures: a panic there would not reach Verify's
		// recover, so stop it here and make it a temporary failure.
		defer func() {
			if p := recover(); p != nil {
				txts, err = nil, &net.DNSError{Err: fmt.Sprintf("internal error: %v", p), Name: name, IsTemporary: true}
			}
		}()
		lctx, cancel := deadline.WithTimeout(ctx, timeout)
		defer cancel()
		txts, err = r.LookupTXT(lctx, name)
		if err != nil {
			// go-msgauth tells temporary from permanent with a type
			// assertion on net.Error: hand it exactly that.
			var de *net.DNSError
			if errors.As(err, &de) && de.IsNotFound {
				return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
			}
			if errors.As(err, &de) && !de.IsTemporary && !de.IsTimeout {
				// Permanent but not "not found" (invalid name, CNAME loop).
				return nil, &net.DNSError{Err: de.Err, Name: name}
			}
			return nil, &net.DNSError{Err: "temporary failure: " + err.Error(), Name: name, IsTemporary: true}
		}
		return txts, nil
	}
}

func classify(err error, tags map[string]string) (policy.Result, string) {
	switch {
	case err == nil:
		return policy.ResultPass, ""
	case dkim.IsTempFail(err):
		return policy.ResultTempError, trim(err)
	case dkim.IsPermFail(err):
		return policy.ResultPermError, trim(err)
	}
	if _, ok := tags["l"]; ok && strings.Contains(err.Error(), "body length") {
		// RFC 6376 §8.2: l= is a policy refusal, not a broken signature.
		return policy.ResultPolicy, trim(err)
	}
	return policy.ResultFail, trim(err)
}

func trim(err error) string { return strings.TrimPrefix(err.Error(), "dkim: ") }

func markAll(sigs []policy.DKIMSignature, r policy.Result, reason string) []policy.DKIMSignature {
	out := make([]policy.DKIMSignature, len(sigs))
	for i, s := range sigs {
		s.Result, s.Reason = r, reason
		out[i] = s
	}
	return out
}

var rank = map[policy.Result]int{
	policy.ResultTempError: 5,
	policy.ResultFail:      4,
	policy.ResultPolicy:    3,
	policy.ResultPermError: 2,
	policy.ResultNeutral:   1,
}

func overall(sigs []policy.DKIMSignature) policy.Result {
	best := policy.ResultNone
	for _, s := range sigs {
		if s.Result == policy.ResultPass {
			return policy.ResultPass
		}
		if rank[s.Result] > rank[best] {
			best = s.Result
		}
	}
	return best
}

// readHeader reads the header block up to and including the empty line
// (or to EOF), at most max bytes. whole is false when the separator was
// added because the message ended first.
func readHeader(br *bufio.Reader, max int) (hdr []byte, whole bool, err error) {
	for {
		line, err := br.ReadSlice('\n')
		if len(hdr)+len(line) > max {
			return nil, false, fmt.Errorf("header larger than %d bytes", max)
		}
		hdr = append(hdr, line...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			// RFC 5322 §3.5: a message may end after its fields, with no
			// empty line and no body; add the separator go-msgauth needs.
			if len(hdr) > 0 && hdr[len(hdr)-1] != '\n' {
				hdr = append(hdr, '\r', '\n')
			}
			return append(hdr, '\r', '\n'), false, nil
		}
		if err != nil {
			return nil, false, err
		}
		if len(line) == 2 && line[0] == '\r' || len(line) == 1 {
			return hdr, true, nil
		}
	}
}

// seekTo moves msg back to start, when it can.
func seekTo(msg io.Reader, start int64) (int64, error) {
	sk, ok := msg.(io.Seeker)
	if !ok || start < 0 {
		return 0, errors.ErrUnsupported
	}
	return sk.Seek(start, io.SeekStart)
}

// maxTags bounds the tags read from one signature field.
const maxTags = 64

// signatureTags returns the tag=value lists of the DKIM-Signature fields of
// a header block, in order, for labelling results (d=, s=, a=, i=, l=).
// Values have folding white space removed. Junk is skipped, never fatal:
// go-msgauth judges the signature itself.
func signatureTags(hdr []byte) []map[string]string {
	var out []map[string]string
	for f := range fields(hdr) {
		name, value, ok := bytes.Cut(f, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimRight(name, " \t"), []byte("DKIM-Signature")) {
			out = append(out, parseTags(string(value), labelTag))
		}
	}
	return out
}

// ParseTags parses an RFC 6376 §3.2 tag-list leniently: "t=v; t=v", white
// space removed from values, at most 64 tags, first occurrence kept.
func ParseTags(v string) map[string]string { return parseTags(v, nil) }

// labelTag reports the tags signatureTags keeps: not b= and bh=, the
// bulk of a signature, which only go-msgauth reads.
func labelTag(k string) bool { return k == "d" || k == "s" || k == "a" || k == "i" || k == "l" }

// parseTags is ParseTags keeping only the tags keep accepts (nil: all).
func parseTags(v string, keep func(string) bool) map[string]string {
	m := map[string]string{}
	for n := 0; v != "" && n < maxTags; n++ {
		var part string
		part, v, _ = strings.Cut(v, ";")
		k, val, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if _, dup := m[k]; dup || k == "" || (keep != nil && !keep(k)) {
			continue
		}
		m[k] = strings.Map(func(r rune) rune {
			if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, val)
	}
	return m
}

// fields yields the fields of a header block, each with its folded
// continuation lines and line ends as they are, without copying. A
// continuation line with no field before it starts a field of its own.
func fields(hdr []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		start, i := -1, 0
		for i < len(hdr) {
			end := len(hdr)
			if j := bytes.IndexByte(hdr[i:], '\n'); j >= 0 {
				end = i + j + 1
			}
			line := hdr[i:end]
			if len(bytes.TrimRight(line, "\r\n")) == 0 {
				break // the blank line ending the header section
			}
			if start < 0 || (line[0] != ' ' && line[0] != '\t') {
				if start >= 0 && !yield(hdr[start:i]) {
					return
				}
				start = i
			}
			i = end
		}
		if start >= 0 {
			yield(hdr[start:i])
		}
	}
}
