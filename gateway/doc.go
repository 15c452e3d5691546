// Package gateway owns moat's SMTP server side: the listeners, TLS, the
// SMTP session on top of moat's own protocol loop (gateway/smtpd, which
// keeps go-smtp's session types), and the mapping of moat's reply values
// to the wire.
//
// The session is a state machine in three layers, each reset at the right
// moment (RFC 5321 §4.1.4):
//
//   - connection state (client address, HELO, TLS, authentication, facts
//     found at connect) lives for the whole TCP connection;
//   - envelope state (sender, recipients, routes, SPF; Txn.Reset) is reset by MAIL,
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
// The order of the checks and rules is written once, in Pipeline
// (pipeline.go, NewPipeline): per stage (connect, helo, mail, rcpt, data)
// the built-in checks (stagechecks.go: guard screen, iprev; mail policy,
// SPF; bare postmaster, address, route, recipient verification; message,
// DKIM, DMARC, submission), then Checks.Extra, then the stage's rules;
// the external scanners (Checks.Scanners, scanners.go) start right after
// the message check and are joined after Checks.Extra. A
// Check has optional per-stage methods (CheckMail, CheckRcpt, CheckData,
// ...), writes facts into the Txn and returns a reply value to refuse; it
// never writes to the client. A panic in a check is 451 4.3.0, and each
// check's latency goes to Checks.Observe under its name. The session
// drives the pipeline over its Txn; RunOffline drives the same pipeline
// without a socket (moat rules test), so both give the same replies.
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
// never come out of the relay as a second message. A NUL octet, which no
// 7bit or 8bitMIME message may hold (RFC 2045 §2.8) and which a next hop
// may read as the end of a line, follows the same setting: refused with
// 550 5.6.0, or removed.
package gateway
