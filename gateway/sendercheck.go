package gateway

import (
	"strings"

	"moat/policy"
	"moat/policy/dmarc"
	"moat/relay/spool"
)

// senderCheck says, for the spooled envelope, whether the envelope
// sender was shown to belong to the client, so that the queue may send
// it delivery status notifications (relay/queue withholds them from
// spool.SenderUnverified: a notice to a forged sender is backscatter,
// RFC 3834 §2, RFC 5321 §6.2). In order:
//
//   - an authenticated user (RFC 4954) or a client in trusted_networks:
//     our own users and hosts, whose senders the send-as checks and the
//     operator vouch for;
//   - SPF pass for the MAIL FROM identity (RFC 7208 §2.4, §2.6.3): the
//     sender's domain authorises this client;
//   - DMARC pass (RFC 7489 §4.2: aligned SPF or DKIM for the From:
//     domain) with the MAIL FROM domain in the same organizational
//     domain (relaxed alignment, RFC 7489 §3.1.2), so that the notice
//     goes to the domain that was authenticated;
//   - anything else is unverified, including every sender when the
//     authentication checks are off.
func (t *Txn) senderCheck() spool.SenderCheck {
	c := t.Facts.Conn
	switch {
	case c.AuthUser != "":
		return spool.SenderAuthenticated
	case c.Trusted:
		return spool.SenderTrusted
	}
	at := strings.LastIndexByte(t.Sender, '@')
	if at < 0 {
		return spool.SenderUnverified // the null sender: never notified anyway
	}
	domain := strings.TrimSuffix(strings.ToLower(t.Sender[at+1:]), ".")
	if s := t.Facts.SPF; s.Result == policy.ResultPass && s.Identity == "mailfrom" &&
		strings.EqualFold(strings.TrimSuffix(s.Domain, "."), domain) {
		return spool.SenderSPF
	}
	if d := t.Facts.DMARC; d.Result == policy.ResultPass {
		org := d.OrgDomain
		if org == "" {
			org = dmarc.OrgDomain(d.Domain)
		}
		if own := dmarc.OrgDomain(domain); own != "" && strings.EqualFold(own, org) {
			return spool.SenderDMARC
		}
	}
	return spool.SenderUnverified
}
