// Package arc validates the Authenticated Received Chain of incoming mail
// and seals the mail moat forwards (ARC, RFC 8617). go-msgauth has no
// ARC; the canonicalization, key records and signature algorithms are
// DKIM's and come from policy/dkim (RFC 8617 §4.1.2, §4.1.3).
//
// Validation (Verify, §5.2) gives the facts of policy.ARC:
//   - none: no ARC header field (§5.2 step 1);
//   - fail: the chain is broken: a set is missing or doubled, an instance
//     is outside 1..50 (§4.2.1), the newest seal says cv=fail, instance 1
//     says other than cv=none or a later one other than cv=pass (§5.1.2),
//     the newest ARC-Message-Signature or any ARC-Seal does not verify
//     (steps 2–6); a key that is missing or unacceptable counts as a
//     failed signature;
//   - temperror: a key lookup failed for now (never pass, never fail);
//   - pass: all of it verified.
//
// OldestPass (step 5, optional in the RFC, done here) is found by
// verifying older ARC-Message-Signatures from the newest down; the
// ARC-Authentication-Results of that set is the AAR fact: the results
// the earliest hop whose signature still holds saw (what a receiver
// would use to override DMARC for a known forwarder, §7.2.1).
//
// Sealing (Sealer, §5.1) adds the set i=N+1 to a forwarded message:
// ARC-Authentication-Results with moat's own results, an
// ARC-Message-Signature (rsa-sha256: Ed25519 keys are refused, as
// dkimpy's ARC does not verify them; relaxed/relaxed,
// signing the same fields as moat's DKIM signatures plus the fields moat
// adds) and an ARC-Seal over all sets, with cv= from the validation of
// the incoming chain (none or pass). A chain that fails validation, or
// that has 50 sets already (§4.2.1), gets no set from moat: a broken
// chain cannot be mended, and the arc= result in the
// Authentication-Results says it; a chain whose validation failed for now
// (temperror) is not sealed either, since cv= has no value for it.
//
// Bounds: at most 50 sets (150 ARC fields) are read; the header block is
// bounded (MaxHeaderBytes); at most MaxHeaderBytes are parsed.
package arc

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"moat/policy/dkim"
)

// Limits.
const (
	// MaxInstances is the highest i= (RFC 8617 §4.2.1: "The maximum
	// number of ARC Sets that can be attached to a message is 50").
	MaxInstances = 50
	// MaxHeaderBytes bounds the header block read.
	MaxHeaderBytes = 1 << 20
)

// Field names (RFC 8617 §4.1).
const (
	fieldAAR  = "ARC-Authentication-Results"
	fieldAMS  = "ARC-Message-Signature"
	fieldSeal = "ARC-Seal"
)

// set is one ARC set as found in the header: the raw fields, folded and
// with their line ends, and the tags of AMS and AS.
type set struct {
	aar, ams, seal []byte
	amsTags        map[string]string
	sealTags       map[string]string
}

// splitMessage cuts msg into its header block (with the blank line) and
// body. A message with no blank line is all header.
func splitMessage(msg []byte) (hdr, body []byte, err error) {
	i := bytes.Index(msg, []byte("\r\n\r\n"))
	if i < 0 {
		if len(msg) > MaxHeaderBytes {
			return nil, nil, fmt.Errorf("header larger than %d bytes", MaxHeaderBytes)
		}
		return append(append([]byte{}, msg...), "\r\n"...), nil, nil
	}
	if i+4 > MaxHeaderBytes {
		return nil, nil, fmt.Errorf("header larger than %d bytes", MaxHeaderBytes)
	}
	return msg[:i+4], msg[i+4:], nil
}

// fieldName returns the name of a raw field.
func fieldName(f []byte) string {
	name, _, _ := bytes.Cut(f, []byte(":"))
	return strings.TrimRight(string(name), " \t")
}

// fieldValue returns the value of a raw field.
func fieldValue(f []byte) string {
	_, v, _ := bytes.Cut(f, []byte(":"))
	return string(v)
}

// instance reads i= of a tag list.
func instance(tags map[string]string) (int, error) {
	v, ok := tags["i"]
	if !ok {
		return 0, errors.New("no i= tag")
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxInstances || len(v) > 2 {
		return 0, fmt.Errorf("i=%.8q is not an instance 1..%d", v, MaxInstances)
	}
	return n, nil
}

// aarInstance reads the i= that starts an ARC-Authentication-Results value
// (RFC 8617 §4.1.1: "i=" instance ";" authres-payload).
func aarInstance(v string) (int, string, error) {
	head, rest, ok := strings.Cut(v, ";")
	if !ok {
		return 0, "", errors.New("ARC-Authentication-Results without results")
	}
	n, err := instance(dkim.ParseTags(head))
	return n, strings.TrimSpace(unfold(rest)), err
}

// unfold removes the line breaks of a folded value.
func unfold(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "")
	return strings.ReplaceAll(s, "\n", "")
}

// parseSets collects the ARC sets of a header block, indexed 1..n. An
// error means the chain is structurally broken (fail). n is 0 when there
// is no ARC field at all.
func parseSets(hdr []byte) ([]set, error) {
	sets := make([]set, MaxInstances+1)
	n, count := 0, 0
	for f := range dkim.Fields(hdr) {
		name := fieldName(f)
		var kind int
		switch {
		case strings.EqualFold(name, fieldAAR):
			kind = 0
		case strings.EqualFold(name, fieldAMS):
			kind = 1
		case strings.EqualFold(name, fieldSeal):
			kind = 2
		default:
			continue
		}
		count++
		if count > 3*MaxInstances {
			return nil, fmt.Errorf("more than %d ARC sets", MaxInstances)
		}
		var i int
		var err error
		var tags map[string]string
		if kind == 0 {
			i, _, err = aarInstance(fieldValue(f))
		} else {
			tags = dkim.ParseTags(fieldValue(f))
			i, err = instance(tags)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %v", name, err)
		}
		s := &sets[i]
		var slot *[]byte
		switch kind {
		case 0:
			slot = &s.aar
		case 1:
			slot, s.amsTags = &s.ams, tags
		case 2:
			slot, s.sealTags = &s.seal, tags
		}
		if *slot != nil {
			return nil, fmt.Errorf("two %s with i=%d", name, i)
		}
		*slot = f
		n = max(n, i)
	}
	if n == 0 {
		return nil, nil
	}
	for i := 1; i <= n; i++ {
		if sets[i].aar == nil || sets[i].ams == nil || sets[i].seal == nil {
			return nil, fmt.Errorf("ARC set i=%d is incomplete", i)
		}
	}
	return sets[:n+1], nil
}
