// Package dmarc evaluates DMARC (RFC 7489) for one message: it finds the
// RFC5322.From domain (§6.6.1), discovers the policy record at that domain
// or at its organizational domain (§6.6.3, §3.2), checks relaxed or strict
// identifier alignment of the SPF and DKIM results (§3.1), and applies p=,
// sp= and pct= (§6.3, §6.6.4). Record syntax is parsed by go-msgauth's dmarc
// package; everything else is evaluated here. The result is a policy.DMARC
// fact; rules decide what to do with it.
//
// Decisions that the RFC leaves open, and what this package does:
//   - §6.6.1: a message with no From field, more than one From field, a From
//     field that does not parse, or From addresses of more than one domain
//     gets Result permerror with Policy "reject" ("reject-worthy"; the rules
//     decide). Several addresses of the same domain are evaluated once.
//   - §6.6.3: a record without a valid p= (or with an invalid sp=) is treated
//     as p=none when it has a rua= tag, as the RFC says; any other record
//     syntax error gives permerror (RFC 7489 §11.2: "syntactically
//     incorrect DMARC record") with Policy "".
//   - more than one DMARC record at a name: no policy applies (§6.6.3
//     step 5 ends discovery: "if the remaining set contains multiple
//     records ..., DMARC processing is not applied"), Result none; it does
//     not fall back to the organizational domain, which only a name
//     without any DMARC record does (§6.6.3 step 3).
//   - §4.1, RFC 7208 §2.4: with a null reverse-path SPF checked the HELO
//     identity, and that identity is the one aligned with the From domain.
//   - §6.6.4: pct= is applied here and only here: a message not sampled
//     gets the next policy down in Policy (reject → quarantine →
//     none) and Sampled false. Policy is the policy to apply; the rules
//     engine does not lower it again.
//   - DNS temporary failure at either lookup: temperror, never pass.
package dmarc

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/mail"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"

	"moat/internal/dnsres"
	"moat/internal/mailname"
	"moat/policy"
)

// maxFromAddresses bounds the addresses read from the From field.
const maxFromAddresses = 50

// Input is what DMARC evaluation needs from the message and the other checks.
type Input struct {
	// From holds the value of each From header field of the message, one
	// element per field, unfolded or folded (RFC 5322 §3.6.2).
	From []string
	SPF  policy.SPF
	DKIM policy.DKIM
	// Rand returns a number in [0, 1) used for pct= sampling (RFC 7489
	// §6.6.4). Nil uses math/rand/v2.
	Rand func() float64
}

// Evaluate runs DMARC for one message. It never panics: a panic inside is
// recovered and reported as temperror.
func Evaluate(ctx context.Context, r dnsres.Resolver, in Input) (res policy.DMARC) {
	defer func() {
		if p := recover(); p != nil {
			res = policy.DMARC{Result: policy.ResultTempError, Reason: fmt.Sprintf("internal error: %v", p)}
		}
	}()
	return evaluate(ctx, r, in)
}

func evaluate(ctx context.Context, r dnsres.Resolver, in Input) policy.DMARC {
	from, err := FromDomain(in.From)
	if err != nil {
		// §6.6.1: reject-worthy; rules decide.
		return policy.DMARC{Result: policy.ResultPermError, Policy: "reject", Reason: err.Error()}
	}
	out := policy.DMARC{Domain: from, Sampled: true}
	org := OrgDomain(from)
	if org == "" {
		// A public suffix itself as From domain: §3.2 gives no org domain;
		// use the From domain so alignment is only strict.
		org = from
	}
	out.OrgDomain = org

	// §6.6.3: policy discovery.
	rec, at, err := discover(ctx, r, from, org)
	switch {
	case errors.Is(err, errTemp):
		out.Result = policy.ResultTempError
		out.Reason = err.Error()
		return out
	case errors.Is(err, errNoPolicy):
		out.Result = policy.ResultNone
		out.Reason = "no DMARC record"
		return out
	case errors.Is(err, errMultiple):
		// §6.6.3 step 5: DMARC is not applied.
		out.Result = policy.ResultNone
		out.Reason = err.Error()
		return out
	case err != nil:
		out.Result = policy.ResultPermError
		out.Reason = err.Error()
		return out
	}

	// §3.1: identifier alignment. The SPF identity is the MAIL FROM
	// domain, or the HELO name when the reverse-path was null (§4.1:
	// "the RFC5321.HELO identity is used"; RFC 7208 §2.4); policy/spf says
	// which in Identity and checks the HELO only for the null sender.
	if in.SPF.Result == policy.ResultPass {
		out.SPFAligned = Aligned(in.SPF.Domain, from, string(rec.SPFAlignment) == "s")
	}
	for _, d := range in.DKIM.PassingDomains() {
		if Aligned(d, from, string(rec.DKIMAlignment) == "s") {
			out.DKIMAligned = true
			break
		}
	}

	// §6.3: sp= applies when the record was found at the organizational
	// domain for a subdomain From.
	out.Published = published(rec, at)
	p := rec.Policy
	if at != from && rec.SubdomainPolicy != "" {
		p = rec.SubdomainPolicy
	}
	out.Policy = string(p)

	if out.SPFAligned || out.DKIMAligned {
		out.Result = policy.ResultPass
		out.Reason = "aligned " + alignedWhat(out)
		return out
	}
	// A temporary error on an aligned identifier might have been the pass
	// DMARC needed (RFC 7208 §2.6.6, RFC 6376 §6.1.2 TEMPFAIL): the
	// result is then temporary too, never a fail that could reject.
	if tempAligned(in, from, rec) {
		out.Result = policy.ResultTempError
		out.Reason = "temporary error checking an aligned SPF or DKIM identity"
		return out
	}
	out.Result = policy.ResultFail
	out.Reason = "no aligned pass of SPF or DKIM"

	// §6.6.4: pct= sampling. A message not sampled gets the next lower
	// policy: quarantine → none, reject → quarantine.
	if rec.Percent != nil && *rec.Percent < 100 {
		rnd := in.Rand
		if rnd == nil {
			rnd = rand.Float64
		}
		if rnd()*100 >= float64(*rec.Percent) {
			out.Sampled = false
			switch p {
			case dmarc.PolicyReject:
				out.Policy = "quarantine"
			case dmarc.PolicyQuarantine:
				out.Policy = "none"
			}
			out.Reason += fmt.Sprintf(", not sampled (pct=%d)", *rec.Percent)
		}
	}
	return out
}

// published is rec as an aggregate report states it (RFC 7489 §6.3
// defaults: adkim and aspf "r", pct 100, ri 86400).
func published(rec *dmarc.Record, at string) *policy.DMARCPublished {
	pub := &policy.DMARCPublished{Domain: at, ADKIM: "r", ASPF: "r", P: string(rec.Policy),
		SP: string(rec.SubdomainPolicy), Pct: 100, RI: 86400}
	if rec.DKIMAlignment == dmarc.AlignmentStrict {
		pub.ADKIM = "s"
	}
	if rec.SPFAlignment == dmarc.AlignmentStrict {
		pub.ASPF = "s"
	}
	if rec.Percent != nil {
		pub.Pct = *rec.Percent
	}
	if rec.ReportInterval > 0 {
		pub.RI = int(rec.ReportInterval.Seconds())
	}
	pub.RUA = append([]string(nil), rec.ReportURIAggregate...)
	return pub
}

// tempAligned reports a temperror of SPF (the MAIL FROM identity) or of
// a DKIM signature whose domain aligns with the From domain.
func tempAligned(in Input, from string, rec *dmarc.Record) bool {
	if in.SPF.Result == policy.ResultTempError &&
		Aligned(in.SPF.Domain, from, string(rec.SPFAlignment) == "s") {
		return true
	}
	for _, sig := range in.DKIM.Signatures {
		if sig.Result == policy.ResultTempError && Aligned(sig.Domain, from, string(rec.DKIMAlignment) == "s") {
			return true
		}
	}
	return false
}

func alignedWhat(d policy.DMARC) string {
	switch {
	case d.SPFAligned && d.DKIMAligned:
		return "spf and dkim"
	case d.SPFAligned:
		return "spf"
	default:
		return "dkim"
	}
}

var (
	errTemp     = errors.New("dns temporary failure")
	errNoPolicy = errors.New("no policy")
	errMultiple = errors.New("more than one DMARC record")
)

// discover finds the record for from, then for org (§6.6.3). It returns the
// record and the domain where it was found. Only a name without any DMARC
// record falls back to the organizational domain (§6.6.3 step 3); several
// records end discovery with errMultiple (§6.6.3 step 5).
func discover(ctx context.Context, r dnsres.Resolver, from, org string) (*dmarc.Record, string, error) {
	rec, err := lookup(ctx, r, from)
	if err == nil || !errors.Is(err, errNoPolicy) || org == from {
		return rec, from, err
	}
	rec, err = lookup(ctx, r, org)
	return rec, org, err
}

func lookup(ctx context.Context, r dnsres.Resolver, domain string) (*dmarc.Record, error) {
	txts, err := r.LookupTXT(ctx, "_dmarc."+domain)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return nil, errNoPolicy
		}
		return nil, fmt.Errorf("%w: _dmarc.%s: %v", errTemp, domain, err)
	}
	var found []string
	for _, t := range txts {
		// §6.6.3 step 3: records that do not start with "v=DMARC1" are
		// discarded (the v tag is case-sensitive, §6.3 "MUST have the value
		// DMARC1"); whitespace around "=" is allowed by §6.4 ABNF.
		if isDMARC1(t) {
			found = append(found, t)
		}
	}
	switch len(found) {
	case 0:
		// §6.6.3 step 3: no record here.
		return nil, errNoPolicy
	case 1:
	default:
		// §6.6.3 step 5: several records: DMARC is not applied.
		return nil, fmt.Errorf("%w at _dmarc.%s", errMultiple, domain)
	}
	return ParseRecord(found[0])
}

func isDMARC1(t string) bool {
	t = strings.TrimLeft(t, " \t")
	k, v, ok := strings.Cut(t, "=")
	if !ok || strings.TrimSpace(k) != "v" {
		return false
	}
	v, _, _ = strings.Cut(v, ";")
	return strings.TrimSpace(v) == "DMARC1"
}

// ParseRecord parses a DMARC record (RFC 7489 §6.3, §6.4). Per §6.6.3, a
// record whose p= is missing or invalid, or whose sp= is invalid, but which
// has a rua= tag, is read as p=none. Unknown tags are ignored (§6.3).
func ParseRecord(txt string) (*dmarc.Record, error) {
	rec, err := dmarc.Parse(txt)
	if err == nil {
		return rec, nil
	}
	// §6.6.3: fall back to p=none if rua= is present.
	tags := map[string]string{}
	for _, part := range strings.Split(txt, ";") {
		k, v, ok := strings.Cut(part, "=")
		if ok {
			tags[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	if tags["v"] == "DMARC1" && strings.TrimSpace(tags["rua"]) != "" {
		fixed := make([]string, 0, len(tags))
		for k, v := range tags {
			if k == "p" || k == "sp" || k == "v" {
				continue
			}
			fixed = append(fixed, k+"="+v)
		}
		if rec2, err2 := dmarc.Parse("v=DMARC1; p=none; " + strings.Join(fixed, "; ")); err2 == nil {
			return rec2, nil
		}
	}
	return nil, fmt.Errorf("invalid DMARC record: %v", err)
}

// FromDomain returns the RFC5322.From domain of a message given the values
// of its From fields (RFC 7489 §6.6.1). It fails when there is no From
// field, more than one, a field that does not parse, an address without a
// domain, or addresses of more than one domain.
func FromDomain(fields []string) (string, error) {
	switch len(fields) {
	case 0:
		return "", errors.New("no From field")
	case 1:
	default:
		return "", errors.New("more than one From field")
	}
	v := fields[0]
	if len(v) > 64*1024 {
		return "", errors.New("From field too long")
	}
	addrs, err := mail.ParseAddressList(v)
	if err != nil {
		return "", errors.New("From field does not parse")
	}
	if len(addrs) == 0 {
		return "", errors.New("From field without address")
	}
	if len(addrs) > maxFromAddresses {
		return "", errors.New("too many From addresses")
	}
	domain := ""
	for _, a := range addrs {
		i := strings.LastIndexByte(a.Address, '@')
		if i < 0 || i == len(a.Address)-1 {
			return "", errors.New("From address without domain")
		}
		d := normalize(a.Address[i+1:])
		if d == "" || !mailname.ValidDomain(d) {
			return "", errors.New("From address with invalid domain")
		}
		if domain != "" && d != domain {
			return "", errors.New("From addresses of more than one domain")
		}
		domain = d
	}
	return domain, nil
}

func normalize(d string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
}

// OrgDomain returns the organizational domain of d (RFC 7489 §3.2): the
// public suffix plus one label, using golang.org/x/net/publicsuffix (which
// embeds its own copy of the Public Suffix List, ICANN and private
// sections). It returns "" when d is itself a public suffix or invalid.
func OrgDomain(d string) string {
	d = normalize(d)
	if d == "" || strings.HasPrefix(d, ".") {
		return ""
	}
	ascii := d
	for i := 0; i < len(d); i++ {
		if d[i] >= 0x80 {
			// The embedded list is in A-label form: look up the A-label
			// and give the answer back in the input's form (RFC 5890).
			a, err := idna.Lookup.ToASCII(d)
			if err != nil {
				return ""
			}
			ascii = a
			break
		}
	}
	org, err := publicsuffix.EffectiveTLDPlusOne(ascii)
	if err != nil {
		return ""
	}
	if ascii != d {
		u, err := idna.Lookup.ToUnicode(org)
		if err != nil {
			return ""
		}
		return u
	}
	return org
}

// Aligned reports whether identifier id is aligned with the From domain
// from (RFC 7489 §3.1.1, §3.1.2): equal in strict mode, same
// organizational domain in relaxed mode.
func Aligned(id, from string, strict bool) bool {
	id, from = normalize(id), normalize(from)
	if id == "" || from == "" {
		return false
	}
	if id == from {
		return true
	}
	if strict {
		return false
	}
	o1, o2 := OrgDomain(id), OrgDomain(from)
	return o1 != "" && o1 == o2
}
