package arc

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"moat/internal/dnsres"
	"moat/policy"
	"moat/policy/dkim"
)

// Options tune Verify. The zero value uses the defaults.
type Options struct {
	// LookupTimeout bounds each key lookup; default dkim.DefaultLookupTimeout.
	LookupTimeout time.Duration
}

// Verify validates the ARC chain of msg (the whole message, CRLF line
// endings; RFC 8617 §5.2). It never panics: a panic inside is reported
// as temperror.
func Verify(ctx context.Context, r dnsres.Resolver, msg []byte, opt Options) (res policy.ARC) {
	defer func() {
		if p := recover(); p != nil {
			res = policy.ARC{Result: string(policy.ResultTempError), Reason: fmt.Sprintf("internal error: %v", p)}
		}
	}()
	v := &verifier{ctx: ctx, r: r, opt: opt, keys: map[string]keyResult{}}
	return v.verify(msg)
}

type keyResult struct {
	key  crypto.PublicKey
	res  policy.Result
	why  string
	algo string
}

type verifier struct {
	ctx    context.Context
	r      dnsres.Resolver
	opt    Options
	keys   map[string]keyResult
	hdr    []byte
	body   []byte
	bodyBH map[bool][]byte // body hash by relaxed
	sets   []set
}

func fail(res policy.ARC, why string) policy.ARC {
	res.Result, res.Reason, res.OldestPass, res.AAR = string(policy.ResultFail), why, 0, ""
	return res
}

func (v *verifier) verify(msg []byte) policy.ARC {
	hdr, body, err := splitMessage(msg)
	if err != nil {
		return fail(policy.ARC{}, err.Error())
	}
	sets, err := parseSets(hdr)
	if err != nil {
		return fail(policy.ARC{}, err.Error())
	}
	if sets == nil {
		return policy.ARC{Result: string(policy.ResultNone)}
	}
	v.hdr, v.body, v.sets, v.bodyBH = hdr, body, sets, map[bool][]byte{}
	n := len(sets) - 1
	res := policy.ARC{Instances: n, CV: strings.ToLower(sets[n].sealTags["cv"]), Domain: sets[n].sealTags["d"]}
	// §5.2 step 2: the newest seal's own verdict on the chain before it.
	if res.CV == "fail" {
		return fail(res, fmt.Sprintf("ARC-Seal i=%d says cv=fail", n))
	}
	// §5.1.2 / step 3: i=1 cv=none, every later one cv=pass.
	for i := 1; i <= n; i++ {
		cv, want := strings.ToLower(sets[i].sealTags["cv"]), "pass"
		if i == 1 {
			want = "none"
		}
		if cv != want {
			return fail(res, fmt.Sprintf("ARC-Seal i=%d has cv=%.8q, want %s", i, cv, want))
		}
	}
	// Step 4: the newest ARC-Message-Signature.
	temp := false
	r, why := v.verifyAMS(n)
	switch r {
	case policy.ResultPass:
	case policy.ResultTempError:
		temp = true
	default:
		return fail(res, fmt.Sprintf("ARC-Message-Signature i=%d: %s", n, why))
	}
	// Step 6: every seal, newest first.
	for i := n; i >= 1; i-- {
		r, why := v.verifySeal(i)
		switch r {
		case policy.ResultPass:
		case policy.ResultTempError:
			temp = true
		default:
			return fail(res, fmt.Sprintf("ARC-Seal i=%d: %s", i, why))
		}
	}
	if temp {
		res.Result, res.Reason = string(policy.ResultTempError), "key lookup failed for now"
		return res
	}
	// Step 5: the oldest set whose message signature still holds.
	oldest := n
	for i := n - 1; i >= 1; i-- {
		if r, _ := v.verifyAMS(i); r != policy.ResultPass {
			break
		}
		oldest = i
	}
	res.Result, res.OldestPass = string(policy.ResultPass), oldest
	_, res.AAR, _ = aarInstance(fieldValue(sets[oldest].aar))
	return res
}

// algorithms maps a= to the key type (RFC 8617 §4.1.2 and §4.1.3 use
// DKIM's; RFC 8301 §3.1: no rsa-sha1).
func keyAlgo(a string) (string, bool) {
	switch strings.ToLower(a) {
	case "rsa-sha256":
		return "rsa", true
	case "ed25519-sha256":
		return "ed25519", true
	}
	return "", false
}

func (v *verifier) key(selector, domain, algo string) keyResult {
	k := strings.ToLower(selector + "\x00" + domain + "\x00" + algo)
	if kr, ok := v.keys[k]; ok {
		return kr
	}
	var kr keyResult
	kr.key, kr.res, kr.why = dkim.LookupKey(v.ctx, v.r, v.opt.LookupTimeout, selector, domain, algo)
	v.keys[k] = kr
	return kr
}

// check verifies sig over digest with the key of the tags' s= and d=.
func (v *verifier) check(tags map[string]string, digest []byte) (policy.Result, string) {
	algo, ok := keyAlgo(tags["a"])
	if !ok {
		return policy.ResultFail, fmt.Sprintf("unsupported algorithm a=%.20q", tags["a"])
	}
	sig, err := base64.StdEncoding.DecodeString(tags["b"])
	if err != nil || len(sig) == 0 {
		return policy.ResultFail, "malformed b="
	}
	if tags["s"] == "" || tags["d"] == "" {
		return policy.ResultFail, "no s= or d="
	}
	kr := v.key(tags["s"], tags["d"], algo)
	switch kr.res {
	case "":
	case policy.ResultTempError:
		return kr.res, kr.why
	default:
		return policy.ResultFail, kr.why
	}
	if !dkim.VerifyDigest(kr.key, digest, sig) {
		return policy.ResultFail, "signature did not verify"
	}
	return policy.ResultPass, ""
}

// verifyAMS verifies the ARC-Message-Signature of set i (§5.2 step 4,
// the DKIM process of RFC 6376 §6.1 with i= in place of the AUID).
func (v *verifier) verifyAMS(i int) (policy.Result, string) {
	s := v.sets[i]
	t := s.amsTags
	for _, k := range []string{"a", "b", "bh", "d", "s", "h"} {
		if _, ok := t[k]; !ok {
			return policy.ResultFail, "missing tag " + k + "="
		}
	}
	if _, ok := t["l"]; ok {
		return policy.ResultFail, "l= is not accepted"
	}
	hc, bc, _ := strings.Cut(strings.ToLower(t["c"]), "/")
	if hc == "" {
		hc = "simple"
	}
	if bc == "" {
		bc = "simple"
	}
	if (hc != "simple" && hc != "relaxed") || (bc != "simple" && bc != "relaxed") {
		return policy.ResultFail, fmt.Sprintf("unsupported canonicalization c=%.20q", t["c"])
	}
	bh, err := base64.StdEncoding.DecodeString(t["bh"])
	if err != nil {
		return policy.ResultFail, "malformed bh="
	}
	relaxedBody := bc == "relaxed"
	got, ok := v.bodyBH[relaxedBody]
	if !ok {
		got = dkim.BodyHash(v.body, relaxedBody)
		v.bodyBH[relaxedBody] = got
	}
	if subtle.ConstantTimeCompare(got, bh) != 1 {
		return policy.ResultFail, "body hash did not verify"
	}
	h := sha256.New()
	dkim.WriteSignedHeaders(h, v.hdr, strings.Split(t["h"], ":"), hc == "relaxed")
	h.Write(dkim.CanonHeader(dkim.WithoutB(s.ams), hc == "relaxed", false))
	return v.check(t, h.Sum(nil))
}

// verifySeal verifies the ARC-Seal of set i (§5.1.1: relaxed header
// canonicalization of every set 1..i, in the order AAR, AMS, AS, the
// seal itself last without b= and without line end).
func (v *verifier) verifySeal(i int) (policy.Result, string) {
	t := v.sets[i].sealTags
	if _, ok := t["h"]; ok {
		return policy.ResultFail, "ARC-Seal with h=" // §4.1.3: MUST fail
	}
	return v.check(t, sealDigest(v.sets[:i+1], nil))
}

// sealDigest hashes the sets 1..n for the seal of the last one; when
// newSeal is given it stands for the last seal (being signed).
func sealDigest(sets []set, newSeal []byte) []byte {
	n := len(sets) - 1
	h := sha256.New()
	for j := 1; j <= n; j++ {
		h.Write(dkim.CanonHeader(sets[j].aar, true, true))
		h.Write(dkim.CanonHeader(sets[j].ams, true, true))
		seal := sets[j].seal
		if j == n {
			if newSeal != nil {
				seal = newSeal
			}
			h.Write(dkim.CanonHeader(dkim.WithoutB(seal), true, false))
			continue
		}
		h.Write(dkim.CanonHeader(seal, true, true))
	}
	return h.Sum(nil)
}
