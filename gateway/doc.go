// Package gateway owns moat's SMTP server side: the listeners, TLS, the
// SMTP session on top of moat's own protocol loop (gateway/smtpd, whose
// Session interface it implements), and the choice of the reply.Reply
// values that smtpd writes.
//
// The session is a state machine in three layers, each reset at the right
// moment (RFC 5321 §4.1.4):
//
//   - connection state (client address, HELO, TLS, authentication, facts
//     found at connect) lives for the whole TCP connection;
//   - envelope state (sender, recipients, routes, SPF) is reset by MAIL,
//     RSET, a new EHLO and the end of every DATA;
//   - message state (the bytes, DKIM, DMARC, the verdict) lives inside one
//     DATA or BDAT transfer.
//
// The two promises of moat are enforced here:
//
//   - no open relay: Rcpt accepts a recipient only when its domain is local
//     (and the mailbox exists), or a relay domain, unless the client is in
//     trusted_networks or authenticated (RFC 5321 §3.6.2, RFC 5068);
//   - no loss: Data answers 250 only after the spool says the message and
//     its envelope are durable.
//
// Every refusal goes through fail(), which logs it and turns it into the
// reply.Reply that smtpd writes (anything unexpected becomes 451 4.3.0
// with the session id, reply.From); Data answers with a reply.Reply, the
// 250 included. Internal text never reaches the client (smtpd itself
// also answers 451 4.3.0 to any other error).
//
// Bare CR and bare LF inside DATA (RFC 5321 §2.3.8) are the raw material
// of SMTP smuggling (CVE-2023-51764 class): smtpd only ends DATA at
// <CRLF>.<CRLF>, and this package rejects (default) or normalizes any
// other line ending inside the message, so a smuggled second envelope can
// never come out of the relay as a second message.
package gateway
