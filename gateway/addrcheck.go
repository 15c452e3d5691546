package gateway

import (
	"errors"
	"strings"
	"unicode/utf8"

	"moat/internal/reply"
	"moat/relay/route"
)

// replyNonASCII refuses an address with a non-ASCII octet in a
// transaction whose MAIL did not carry SMTPUTF8: RFC 6531 §3.5 asks for
// 553 5.6.7, "non-ASCII addresses not permitted for that
// sender/recipient" (RFC 6533 §3, the X.6.7 code of RFC 3463's registry).
var replyNonASCII = reply.New(553, 6, 7, "Non-ASCII address not permitted without SMTPUTF8 (RFC 6531 §3.5)")

// checkEnvelopeAddr checks an address of MAIL FROM or RCPT TO as the
// client sent it (issue 27 item 4, issue 23 item 8), before anything
// routes by it; syntax is the reply for bad syntax (reply.BadSenderSyntax
// or reply.BadRcptSyntax).
//
//   - Octets that are not UTF-8 are a syntax error, with or without
//     SMTPUTF8 (RFC 6531 §3.3 extends the grammar with UTF-8 characters
//     only, RFC 3629). smtpd refuses them first; this is for the callers
//     that do not come through it.
//   - Any non-ASCII octet without SMTPUTF8: 553 5.6.7 (RFC 6531 §3.5).
//   - The domain must be valid as sent: A-labels that decode, U-labels
//     that need no UTS #46 mapping (route.WireDomain). A fullwidth or
//     ideographic full stop, fullwidth letters or a soft hyphen would
//     otherwise be routed as another name than the one written, and
//     sent on in a form the next hop refuses.
//
// The address itself is kept as sent; relay/smtpout writes its domain in
// A-label form (route.WireAddress), the form routing uses.
func checkEnvelopeAddr(addr string, smtputf8 bool, syntax *reply.Reply) error {
	ascii := true
	for i := 0; i < len(addr); i++ {
		if addr[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if !ascii {
		if !utf8.ValidString(addr) {
			return syntax.With(errors.New("address is not UTF-8"))
		}
		if !smtputf8 {
			return replyNonASCII
		}
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 || strings.HasPrefix(addr[at+1:], "[") {
		// The bare <Postmaster>, or an address literal: decided by the
		// callers.
		return nil
	}
	if _, err := route.WireDomain(addr[at+1:]); err != nil {
		return syntax.With(err)
	}
	return nil
}
