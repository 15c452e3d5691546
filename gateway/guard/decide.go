package guard

import (
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
