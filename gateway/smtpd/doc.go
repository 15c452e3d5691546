// Package smtpd owns moat's server side of the SMTP protocol: the command
// loop of each connection, its reads and writes, command and parameter
// parsing, the DATA and BDAT transfer, STARTTLS and AUTH. What a command
// means for mail (who may relay, what is spooled) is the business of the
// Session (and AuthSession) it calls: small interfaces of its own, that
// answer with reply.Reply values, the success after DATA included.
// Every reply smtpd writes itself is a named reply in replies.go; no
// code is written inline (TestRepliesNamed).
//
// Implemented: RFC 5321 (§3.1 greeting, §4.1.1 commands, §4.1.4 order,
// §4.5.2 dot-stuffing, §4.5.1 the bare <Postmaster> recipient, §4.5.3
// limits, §3.8 421 before closing), PIPELINING (RFC 2920), 8BITMIME (RFC
// 6152), ENHANCEDSTATUSCODES (RFC 2034, RFC 3463), CHUNKING/BDAT (RFC
// 3030), SIZE (RFC 1870), SMTPUTF8 (RFC 6531), STARTTLS (RFC 3207), AUTH
// (RFC 4954, mechanisms from the session through go-sasl), LIMITS (RFC
// 9422). HELP gets 214 (RFC 5321 §4.1.1.8); a command that is not
// recognized, whatever its shape, gets 500 5.5.2 and a known command with
// bad arguments 501 (§4.2.4). Sequence errors are 503 5.5.1; unknown
// MAIL/RCPT parameters are
// refused with 555 5.5.4 (RFC 5321 §4.1.1.11). A path that is not UTF-8
// is bad address syntax (501 5.1.7 or 5.1.3) with or without SMTPUTF8;
// whether a non-ASCII address is allowed (RFC 6531 §3.5) and its domain
// valid is the session's decision.
//
// Why not go-smtp's server loop: it keeps, for the whole life of every
// connection, a goroutine that never gets below 8 KiB of stack plus
// net/textproto's 4 KiB read and 4 KiB write buffers; moat's issue #4
// asks for at most 12 KiB per idle connection. Here a connection that
// waits for its next command holds neither buffer: it waits for the
// socket to become readable through syscall.RawConn (found by unwrapping
// the listener's wrappers with NetConn or Unwrap), with the read deadline
// set. Its goroutine's stack shrinks to 4 KiB at the next garbage
// collection: the runtime halves a stack only while less than a quarter
// of it, counting an 800-octet allowance, is in use, so no goroutine
// parked in the network poller gets to 2 KiB. Then it takes a read buffer from a
// sync.Pool, reads through the whole wrapper chain (the connection guard
// must see every byte), runs every complete command, keeps a partial line
// in a small slice of its own and gives the buffer back. Replies gather in
// a pooled buffer and are written in one write when the loop is about to
// wait for input or closes (RFC 2920 §3.2), except that each 5xx is
// written at once so the guard can delay it (its tarpit). A wrapper that
// reads ahead of the server must say so with a Buffered() int method;
// over TLS (implicit or after STARTTLS) crypto/tls keeps its own buffers
// and may hold decrypted bytes the socket does not show, so there is no
// waiting on the socket: a connection with no partial line reads into a
// 256-byte array on its stack and takes a read buffer only when bytes
// come (crypto/tls keeps the rest of a record for the next read). Its
// goroutine, parked inside crypto/tls, keeps an 8 KiB stack.
//
// Every read has a deadline (Config.ReadTimeout, or a wrapper's shorter
// StressTimeout under overload), every write too (Config.WriteTimeout);
// a message must also keep up Config.MinDataRate and end within
// Config.DataTimeout (421 4.4.2 otherwise, as Postfix's
// smtpd_min_data_rate). Lines, commands and message data alike, are
// bounded by Config.MaxLineLength octets counting the CRLF (RFC 5321
// §4.5.3.1.6), and a longer one ends the connection with 500 5.4.0
// without being buffered.
// DATA ends only at <CRLF>.<CRLF>, with the same line-start states as
// net/textproto's DotReader (and the guard's tracker), and CR and LF are
// handed to the session as they came, so that the gateway decides about
// bare line ends (RFC 5321 §2.3.8). BDAT chunks are gathered, bounded by
// Config.MaxMessageBytes, and handed over at LAST.
package smtpd
