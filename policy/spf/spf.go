// Package spf checks the Sender Policy Framework (RFC 7208) for a client:
// the MAIL FROM identity, or the HELO identity when the reverse-path is
// null (RFC 7208 §2.4), using blitiri.com.ar/go/spf over moat's resolver.
// It produces a policy.SPF fact.
//
// RFC 7208 points and where they are decided:
//   - §2.3, §2.4: a null sender (or one without a domain) is checked as
//     "postmaster@<HELO>" and reported with Identity "helo".
//   - §2.3: a HELO that is not a domain name (an address literal, no dot)
//     gives "none" without any lookup.
//   - §4.6.4: at most 10 DNS-querying terms and 2 void lookups per check
//     (the library's defaults, which are the RFC's); exceeding them is
//     permerror.
//   - §2.6.6, §4.4: a temporary DNS failure (SERVFAIL, timeout) is
//     temperror; every error our resolver returns is mapped to the
//     *net.DNSError shape the library classifies.
//   - §4.5, §3.2: several SPF records, or a malformed record, is permerror.
//   - §4.6: every record is checked against the whole grammar (§12) before
//     the library evaluates it, so a syntax error anywhere in it is
//     permerror even after an earlier match (record.go).
//   - §7.3: %{p} is expanded (validated PTR name, "unknown" without one)
//     and a domain-spec with "/" (§7.1) is looked up as written; the
//     library does neither, so session.go does it for the library.
package spf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"blitiri.com.ar/go/spf"

	"moat/internal/dnsres"
	"moat/policy"
)

// Identities, RFC 8601 §2.7.2.
const (
	IdentityMailFrom = "mailfrom"
	IdentityHELO     = "helo"
)

// Check evaluates SPF for a message from ip that said helo in EHLO/HELO
// and sender in MAIL FROM ("" for the null reverse-path). The ctx deadline
// bounds every lookup. It never panics: a panic inside becomes temperror.
func Check(ctx context.Context, r dnsres.Resolver, ip netip.Addr, helo, sender string) (res policy.SPF) {
	defer func() {
		if p := recover(); p != nil {
			res.Result = policy.ResultTempError
			res.Reason = fmt.Sprintf("internal error: %v", p)
		}
	}()

	helo = strings.TrimSuffix(strings.TrimSpace(helo), ".")
	local, domain := splitAddr(sender)
	res = policy.SPF{Identity: IdentityMailFrom, Domain: domain}
	if domain == "" {
		// RFC 7208 §2.4: null reverse-path → postmaster@HELO, and the
		// identity checked is the HELO name.
		res.Identity = IdentityHELO
		res.Domain = helo
		domain = helo
		local = "postmaster"
		if !isDomainName(helo) {
			// §2.3: only a HELO that is a domain name is checked.
			res.Result = policy.ResultNone
			res.Reason = "HELO is not a domain name"
			return res
		}
	}
	if local == "" {
		local = "postmaster" // §4.3
	}
	if !ip.IsValid() {
		res.Result = policy.ResultPermError
		res.Reason = "no client address"
		return res
	}

	ip = ip.Unmap()
	sess := &session{r: r, ip: ip, helo: helo, sender: local + "@" + domain, local: local, domain: domain}
	result, err := spf.CheckHostWithSender(net.IP(ip.AsSlice()), helo, sess.sender,
		spf.WithContext(ctx),
		spf.WithResolver(adapter{sess}),
	)
	res.Result = policy.Result(result)
	switch res.Result {
	case policy.ResultNone, policy.ResultNeutral, policy.ResultPass, policy.ResultFail,
		policy.ResultSoftFail, policy.ResultTempError, policy.ResultPermError:
	default:
		res.Result = policy.ResultPermError
	}
	if err != nil && !errors.Is(err, spf.ErrNoResult) && !errors.Is(err, spf.ErrMatchedAll) {
		res.Reason = err.Error()
	}
	if sess.syntaxErr != nil && res.Result == policy.ResultPermError {
		res.Reason = sess.syntaxErr.Error()
	}
	return res
}

// splitAddr splits a mailbox at its last "@"; a missing or empty domain
// gives "".
func splitAddr(a string) (local, domain string) {
	a = strings.TrimSpace(a)
	a = strings.TrimSuffix(strings.TrimPrefix(a, "<"), ">")
	i := strings.LastIndexByte(a, '@')
	if i < 0 {
		return a, ""
	}
	return a[:i], strings.TrimSuffix(a[i+1:], ".")
}

// isDomainName: at least two non-empty labels of at most 63 octets, not an
// address literal (RFC 7208 §2.3, §4.3).
func isDomainName(s string) bool {
	if s == "" || len(s) > 253 || strings.HasPrefix(s, "[") {
		return false
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return false
	}
	labels := strings.Split(s, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return false
		}
	}
	return true
}

func netError(name string, err error) error {
	if err == nil {
		return nil
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		if de.IsNotFound {
			return &net.DNSError{Err: de.Err, Name: name, IsNotFound: true}
		}
		if !de.IsTemporary && !de.IsTimeout {
			// A permanent failure that is not "not found" (a name that is
			// not a valid DNS name, a CNAME loop): RFC 7208 §4.3 and
			// §4.6.4/§5 treat an invalid target name as non-existent.
			return &net.DNSError{Err: de.Err, Name: name, IsNotFound: true}
		}
	}
	// Anything else (context ended, unknown error) is temporary: DNS
	// failures are never a pass nor a permanent verdict.
	return &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true}
}
