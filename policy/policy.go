// Package policy holds the facts that moat's checks find about a session
// and a message. The checks live in sub-packages (policy/spf, policy/dkim,
// policy/dmarc, policy/iprev, policy/dnsbl, ...); each produces one of the
// fact types declared here, and package rules evaluates them. A check
// never writes to the client and never decides: checks produce facts,
// rules decide.
//
// Fact types are declared once, here, and read by rules and by the
// Authentication-Results writer.
package policy

import (
	"net/netip"
	"time"
)

// Result is the outcome of an authentication check, using the result
// names of RFC 8601 §2.7 (shared by SPF, DKIM, DMARC and iprev).
type Result string

// Results of RFC 8601 §2.7. Not every check uses every value: SPF uses all
// but "policy"; DKIM uses none, pass, fail, policy, neutral, temperror,
// permerror; DMARC none, pass, fail, temperror, permerror; iprev pass,
// fail, temperror, permerror.
const (
	ResultNone      Result = "none"
	ResultPass      Result = "pass"
	ResultFail      Result = "fail"
	ResultSoftFail  Result = "softfail"
	ResultNeutral   Result = "neutral"
	ResultPolicy    Result = "policy"
	ResultTempError Result = "temperror"
	ResultPermError Result = "permerror"
)

// Conn holds the facts about the client connection.
type Conn struct {
	ID         string     // conn_id
	IP         netip.Addr // the client (after a trusted PROXY header)
	Port       int
	PTR        string // first forward-confirmed reverse name, or ""
	HELO       string // the EHLO/HELO argument
	TLS        bool
	TLSVersion string // "TLS1.3"
	TLSCipher  string
	Listener   string // listener name
	Mode       string // "mx" or "submission"
	Trusted    bool   // in trusted_networks
	AuthUser   string // authenticated user, "" if none
}

// SPF holds the result of the SPF check (RFC 7208).
type SPF struct {
	Result   Result // none neutral pass fail softfail temperror permerror
	Domain   string // the domain checked: the MAIL FROM domain, or the HELO name for the null sender
	Identity string // "mailfrom" or "helo" (RFC 8601 §2.7.2 ptype smtp)
	Reason   string // short, for logs and the Authentication-Results comment
}

// DKIMSignature is the verification result of one DKIM-Signature header.
type DKIMSignature struct {
	Result    Result // pass fail neutral temperror permerror policy
	Domain    string // d=
	Selector  string // s=
	Algorithm string // a=, e.g. rsa-sha256, ed25519-sha256
	Identity  string // i=, if present
	Reason    string
	// UnsignedBytes counts the octets of the canonicalized body after the
	// l= count (RFC 6376 §3.5, §8.2): content the signature does not
	// cover, e.g. appended by a list or an attacker. It is 0 without l=
	// or when l= covers the whole body; a signature with unsigned content
	// has Result policy.
	UnsignedBytes int64
}

// DKIM holds the results of every DKIM signature verified on a message
// (RFC 6376), in header order.
type DKIM struct {
	Result     Result // pass if any signature passed; else the most telling result; none if unsigned
	Signatures []DKIMSignature
}

// PassingDomains returns the d= of every passing signature.
func (d DKIM) PassingDomains() []string {
	var out []string
	for _, s := range d.Signatures {
		if s.Result == ResultPass {
			out = append(out, s.Domain)
		}
	}
	return out
}

// UnsignedBytes is the largest DKIMSignature.UnsignedBytes of the
// message: body content that an l= signature leaves unsigned.
func (d DKIM) UnsignedBytes() int64 {
	var n int64
	for _, s := range d.Signatures {
		n = max(n, s.UnsignedBytes)
	}
	return n
}

// DMARC holds the DMARC evaluation of a message (RFC 7489).
type DMARC struct {
	Result      Result // none pass fail temperror permerror
	Policy      string // the policy to apply: none, quarantine, reject ("" when no record); already lowered for pct= (RFC 7489 §6.6.4)
	Domain      string // the RFC5322.From domain
	OrgDomain   string // its organizational domain
	SPFAligned  bool
	DKIMAligned bool
	Sampled     bool // false when pct= excluded this message from the policy (RFC 7489 §6.6.4)
	Reason      string
	// Published is the record that applied, as an aggregate report
	// states it (RFC 7489 §7.2.1.1 policy_published, and rua= for where
	// the report goes); nil when no record applied.
	Published *DMARCPublished
}

// DMARCPublished is a DMARC record as published (RFC 7489 §6.3).
type DMARCPublished struct {
	Domain string   // the name the record was found at (the From or the organizational domain)
	ADKIM  string   // "r" or "s"
	ASPF   string   // "r" or "s"
	P      string   // none, quarantine, reject
	SP     string   // "" when absent
	Pct    int      // 100 when absent
	RUA    []string // rua= URIs, as published (with any "!size")
	RI     int      // ri= in seconds; 86400 when absent
}

// IPRev holds the iprev result for the client (RFC 8601 §3).
type IPRev struct {
	Result Result // pass fail temperror permerror
	Names  []string
}

// DNSBLHit is one DNS list that listed the client.
type DNSBLHit struct {
	Zone    string
	Answer  netip.Addr
	Weight  float64
	Allowed bool // a DNSWL
}

// DNSBL holds the DNS list facts of the client.
type DNSBL struct {
	Score float64
	Hits  []DNSBLHit
	// Errors names the lists that failed (timeout, SERVFAIL): no answer,
	// neither listed nor unlisted.
	Errors []string
}

// Envelope holds the SMTP envelope of the current transaction.
type Envelope struct {
	Sender     string // MAIL FROM address, "" for the null sender
	Recipients []string
	Size       int64 // SIZE= declared, or the actual size at DATA
	Received   time.Time
}

// ARC is the validation of the message's ARC chain (RFC 8617 §5.2), the
// "arc" fact group of the rules (arc.result, arc.cv, ...).
type ARC struct {
	// Result: none (no ARC set), pass, fail, or temperror (a key lookup
	// failed for now; never pass). A plain string, as the rules compare
	// it with string literals; the values are those of Result.
	Result string `expr:"result"`
	// CV is the cv= of the newest ARC-Seal as its sealer wrote it (none,
	// pass, fail; "" without a chain).
	CV string `expr:"cv"`
	// Instances is the number of ARC sets (the newest i=).
	Instances int `expr:"instances"`
	// OldestPass is the oldest instance whose ARC-Message-Signature
	// still verifies, every newer one verifying too (§5.2 step 5;
	// 0 without a passing chain).
	OldestPass int `expr:"oldest_pass"`
	// AAR is the ARC-Authentication-Results of the OldestPass set, the
	// results that hop saw, without its "i=" tag ("" if none).
	AAR string `expr:"aar"`
	// Domain is the d= of the newest ARC-Seal.
	Domain string `expr:"domain"`
	// Reason says why the chain failed.
	Reason string `expr:"reason"`
}
