package guard

import (
	"context"
	"net/netip"
	"strings"

	"moat/internal/reply"
	"moat/policy/dnsbl"
)

// DNSBLDecision is the guard's decision on the DNS lists' answer for one
// client, made in one place for the listener (at accept) and for the
// offline `moat rules test`. reason is "" to admit; ReasonDNSBL when the
// total score reaches guard.dnsbl.threshold (detail: the lists that
// named the client, DNSWL zones excluded); ReasonDNSBLError, with
// guard.dnsbl.on_error: tempfail, when lists failed whose weights could
// have brought the score to the threshold (detail: those lists). rp is
// the reply written in place of the greeting (RFC 5321 §3.1). A failed
// list is otherwise no answer: DNS failures are temporary errors, never
// a listing.
func DNSBLDecision(cfg DNSBL, host string, ip netip.Addr, r dnsbl.Result) (reason string, rp *reply.Reply, detail string) {
	if r.Score < cfg.Threshold {
		if cfg.OnError != DNSBLTempfail || len(r.Failed) == 0 {
			return "", nil, ""
		}
		// Fail closed only where the missing answers matter.
		could := r.Score
		var names []string
		for _, f := range r.Failed {
			if f.Weight > 0 {
				could += f.Weight
				names = append(names, f.Zone)
			}
		}
		if could < cfg.Threshold {
			return "", nil, ""
		}
		detail = strings.Join(names, ",")
		return ReasonDNSBLError, replyDNSBLError.Format(detail, ip).WithHost(host), detail
	}
	var names []string
	for _, h := range r.Hits {
		if !h.Allowed {
			names = append(names, h.Zone)
		}
	}
	detail = strings.Join(names, ",")
	if cfg.Reply == 421 {
		return ReasonDNSBL, replyDNSBLTemp.Format(ip, detail).WithHost(host), detail
	}
	return ReasonDNSBL, replyDNSBL.Format(ip, detail).WithHost(host), detail
}

// DenyReply is the reply written to a client on guard.deny (RFC 5321
// §3.1: 554 in place of the greeting).
func DenyReply(host string, ip netip.Addr) *reply.Reply {
	return replyDenyList.Format(ip).WithHost(host)
}

// Screen is the guard's list decision for a client without a connection
// (the offline `moat rules test`): the deny list, then, for a client not
// on the allow list, the DNS lists, decided by DNSBLDecision as at accept.
// reason is "" when the client is admitted; else rp is the reply the
// listener writes. Rate limits and the pregreet test are not part of it.
func (g *Guard) Screen(ctx context.Context, ip netip.Addr) (facts ConnFacts, reason string, rp *reply.Reply) {
	st := g.state.Load()
	if st.deny.Contains(ip) {
		return facts, ReasonDenyList, DenyReply(g.host, ip)
	}
	facts.Allowlisted = st.allow.Contains(ip)
	if facts.Allowlisted || !st.dnsbl.Enabled() {
		return facts, "", nil
	}
	r := st.dnsbl.Check(ctx, ip)
	facts.DNSBL, facts.DNSBLFailed = r.DNSBL, r.FailedZones()
	if reason, rp, _ := DNSBLDecision(st.cfg.DNSBL, g.host, ip, r); reason != "" {
		return facts, reason, rp
	}
	return facts, "", nil
}
