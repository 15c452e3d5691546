// Package verify decides at RCPT time whether a recipient in a relay
// domain exists, so that mail for unknown users is refused during the
// SMTP dialogue (550 5.1.1) instead of being accepted and bounced later:
// accept-then-bounce sends backscatter to forged senders (RFC 5321 §6.2
// and RFC 3834 §2 ask not to send bounces that nobody asked for, and
// RFC 5321 §3.6.2 ties a relay's acceptance to its ability to deliver).
//
// It owns three things:
//
//   - The per-route mode (routes.<name>.verify_recipients, parsed by
//     relay/route): "none" accepts every recipient; "list" looks the
//     address up in a recipients file (ParseList, one address or
//     "@domain" a line, case-insensitive, reloaded when the file
//     changes); "callahead" asks the route's backend.
//   - The callahead (a "recipient verification probe" in Postfix's
//     terms): on a connection kept open to the backend, EHLO <hostname>
//     (RFC 5321 §4.1.1.1), STARTTLS as the route's tls setting says
//     (RFC 3207), MAIL FROM:<> (the null reverse-path of RFC 5321
//     §4.5.5, so that a probe can never cause a bounce), RCPT TO:<x>,
//     RSET (RFC 5321 §4.1.1.5). No DATA is ever sent. Answers are cached
//     in a bounded LRU (positive, negative and temporary answers each
//     with their own lifetime), concurrent questions for the same
//     address share one probe, and a bounded number of connections per
//     backend carry them, one probe at a time per connection.
//   - The directory-harvest defence: unknown-recipient answers are
//     counted per client (an IPv4 address or an IPv6 /64) in a bounded
//     LRU; past Config.HarvestLimit within Config.HarvestWindow the
//     client gets 421 4.7.0 (or 450 4.7.1, Config.HarvestCode) at every
//     RCPT, without any lookup or probe, until the window ends. RFC 5321
//     §3.8: after a 421 the session must be closed, which is the
//     caller's job. Cached negative answers absorb repeated addresses.
//
// Reply mapping (RFC 5321 §4.2, RFC 3463):
//
//   - a 2yz answer to RCPT (250, 251, and 252 "cannot verify, will
//     accept") is "known";
//   - a 5yz answer to RCPT is "unknown" and gives 550 with the backend's
//     enhanced code when it is 5.1.x (X.1 is the addressing subject,
//     RFC 3463 §3.2), 5.1.1 otherwise; the backend's text is kept as the
//     cause, for logs only;
//   - everything else (no connection, a 4yz answer or a 5yz answer
//     before RCPT, a timeout, a dropped connection, a reply that does
//     not parse) is a temporary failure: 451 4.4.3 ("directory server
//     failure", RFC 3463 §3.5) unless callahead_tempfail is "accept".
//
// Why not github.com/emersion/go-smtp's client: its STARTTLS helper says
// EHLO as "localhost" before the handshake and its Reset forces a new
// EHLO before the next MAIL; a probe is five fixed commands, so this
// package speaks them itself, with bounded reply reading (reply.Read:
// at most reply.MaxLines lines of at most maxLine octets, RFC 5321
// §4.5.3.1.5)
// and a deadline on every read and write.
package verify
