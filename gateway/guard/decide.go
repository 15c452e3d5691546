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
// offline `moat rules test`: refuse is whether the total score reaches
// guard.dnsbl.threshold, rp the reply written in place of the greeting
// (RFC 5321 §3.1) and zones the lists that named the client (DNSWL zones
// excluded).
func DNSBLDecision(cfg DNSBL, host string, ip netip.Addr, r dnsbl.Result) (refuse bool, rp *reply.Reply, zones string) {
	if r.Score < cfg.Threshold {
		return false, nil, ""
	}
	var names []string
	for _, h := range r.Hits {
		if !h.Allowed {
			names = append(names, h.Zone)
		}
	}
	zones = strings.Join(names, ",")
	if cfg.Reply == 421 {
		return true, replyDNSBLTemp.Format(ip, zones).WithHost(host), zones
	}
	return true, replyDNSBL.Format(ip, zones).WithHost(host), zones
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
	if refuse, rp, _ := DNSBLDecision(st.cfg.DNSBL, g.host, ip, r); refuse {
		return facts, ReasonDNSBL, rp
	}
	return facts, "", nil
}
