package guard

import (
	"context"
	"net/netip"
	"strings"

	"moat/policy/dnsbl"
)

// DNSBLDecision is the guard's decision on the DNS lists' answer for one
// client, made in one place for the listener (at accept) and for the
// offline `moat rules test`: refuse is whether the total score reaches
// guard.dnsbl.threshold, reply the line written in place of the greeting
// (RFC 5321 §3.1, CRLF-terminated) and zones the lists that named the
// client (DNSWL zones excluded).
func DNSBLDecision(cfg DNSBL, host string, ip netip.Addr, r dnsbl.Result) (refuse bool, reply, zones string) {
	if r.Score < cfg.Threshold {
		return false, "", ""
	}
	var names []string
	for _, h := range r.Hits {
		if !h.Allowed {
			names = append(names, h.Zone)
		}
	}
	zones = strings.Join(names, ",")
	if cfg.Reply == 421 {
		return true, "421 4.7.1 " + host + " Service unavailable; client [" + ip.String() + "] blocked using " + zones + ", try again later\r\n", zones
	}
	return true, "550 5.7.1 " + host + " Service unavailable; client [" + ip.String() + "] blocked using " + zones + "\r\n", zones
}

// DenyReply is the line written to a client on guard.deny (RFC 5321
// §3.1: 554 in place of the greeting).
func DenyReply(host string, ip netip.Addr) string {
	return "554 5.7.1 " + host + " Access denied for [" + ip.String() + "]\r\n"
}

// Screen is the guard's list decision for a client without a connection
// (the offline `moat rules test`): the deny list, then, for a client not
// on the allow list, the DNS lists, decided by DNSBLDecision as at accept.
// reason is "" when the client is admitted; else reply is the line the
// listener writes. Rate limits and the pregreet test are not part of it.
func (g *Guard) Screen(ctx context.Context, ip netip.Addr) (facts ConnFacts, reason, reply string) {
	st := g.state.Load()
	if st.deny.Contains(ip) {
		return facts, ReasonDenyList, DenyReply(g.host, ip)
	}
	facts.Allowlisted = st.allow.Contains(ip)
	if facts.Allowlisted || !st.dnsbl.Enabled() {
		return facts, "", ""
	}
	r := st.dnsbl.Check(ctx, ip)
	facts.DNSBL, facts.DNSBLFailed = r.DNSBL, r.FailedZones()
	if refuse, line, _ := DNSBLDecision(st.cfg.DNSBL, g.host, ip, r); refuse {
		return facts, ReasonDNSBL, line
	}
	return facts, "", ""
}
