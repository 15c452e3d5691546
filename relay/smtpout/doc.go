// Package smtpout hands messages on over the network: SMTP to a fixed
// next hop (a backend or smarthost route), LMTP to a local delivery
// agent, and SMTP to the recipient domain's mail exchangers. It uses
// github.com/emersion/go-smtp's client for EHLO, AUTH and QUIT and runs
// the mail transactions itself, since go-smtp's client does not
// pipeline; it owns the session around them: connecting, STARTTLS, AUTH,
// XFORWARD, timeouts, connection reuse, concurrency limits and turning
// every outcome into one result per recipient (relay/transport).
//
// Decisions, with the RFC sections they follow:
//
//   - Timeouts are those of RFC 5321 §4.5.3.2: connect 30 s (ours), the
//     greeting 5 min, MAIL 5 min, RCPT 5 min, the DATA command 2 min, each
//     data block 3 min, the reply to the final dot 10 min. All are
//     configurable (Timeouts). The context of Deliver also bounds the
//     whole delivery: when it ends the connection is closed.
//   - MX delivery (RFC 5321 §5.1, RFC 7505) resolves with relay/mx and
//     tries the exchangers in order. A connection failure or a failure
//     before the mail transaction starts (a 4yz or 5yz greeting, a failed
//     EHLO, STARTTLS or AUTH) moves on to the next address, at most
//     Options.MaxAttempts of them; once MAIL was sent, the replies of that
//     host stand: a reply to MAIL or DATA applies to every recipient, a
//     reply to RCPT to that recipient only (RFC 5321 §3.3).
//   - TLS (RFC 3207). "opportunistic" uses STARTTLS when offered and does
//     not verify the certificate (RFC 7435: encryption against passive
//     listeners only); if the handshake fails, the message goes in clear
//     on a new connection, as Postfix does. "required" never sends the
//     message in clear: no STARTTLS, or a failed handshake, is a
//     temporary failure. On a route with tls: required (or verify) the
//     certificate is verified against the host name of the route address
//     unless tls_skip_verify is set. After STARTTLS the client says EHLO
//     again and forgets what it knew (RFC 3207 §4.2); a server that sends
//     anything after its 220 reply to STARTTLS before the handshake is
//     refused (the STARTTLS command injection of CVE-2011-0411).
//   - TLS of MX delivery (tlspolicy.go). The policy of a recipient domain
//     comes from `tls_policy:` (exact domain, or ".parent" for its
//     subdomains), else the route's tls, else the automatic choice, made
//     per exchanger: DANE (RFC 7672, relay/dane) when the MX lookup and
//     the exchanger's TLSA lookup are DNSSEC-secure with usable records,
//     else the domain's MTA-STS policy (RFC 8461, relay/mtasts), else
//     opportunistic. DANE wins over MTA-STS (RFC 8461 §2). Under DANE the
//     handshake is verified with dane.TLSConfig; a secure TLSA RRset with
//     no usable record still requires TLS (RFC 7672 §3.1.3); a failed or
//     bogus lookup defers (§2.1.1). Under MTA-STS enforce only the
//     exchangers the policy lists are used (§4.1) and the certificate
//     must verify (WebPKI) for the MX name (§4.2); under testing the
//     failure is reported and the mail goes as with opportunistic TLS
//     (§5). "verify" requires TLS with a certificate valid for the MX
//     name; "dane" and "mta-sts" require that policy to be in place.
//     Whenever a policy requires TLS, there is no retry in clear, and
//     every failure is temporary, its reason (the policy, the exchanger,
//     the RFC 8460 result type) in the queue: the mail waits, it is never
//     sent in clear and never bounced at once. Each session to an
//     exchanger yields one tlsrpt.Result (Options.TLSResults) and one
//     count (Options.OutboundTLS: policy and result).
//   - AUTH PLAIN (RFC 4954, RFC 4616) is sent only over TLS; a route with
//     credentials and no TLS is a permanent configuration error, never a
//     password in clear (RFC 4954 §4 and §14). A refused AUTH is
//     temporary, like Postfix's smtp_sasl_auth_soft_bounce: a wrong
//     password should not bounce the queue.
//   - SIZE (RFC 1870): a message larger than the server's declared limit
//     fails at once for every recipient with 552 5.3.4, without sending.
//   - Internationalized addresses: MAIL and RCPT carry every domain in
//     A-label form (route.WireAddress), the form routing used, whatever
//     the server offers; the local part goes as it is.
//   - SMTPUTF8 (RFC 6531 §3.2): what needs it is not sent to a server
//     that does not offer it, and nothing is downgraded: a non-ASCII
//     local part fails for its recipient, a non-ASCII sender or message
//     header (RFC 6532) for all, permanently with 5.6.7. A message that
//     came with SMTPUTF8 but whose envelope (in A-label form) and header
//     are ASCII is sent without the parameter.
//   - Line length and 8BITMIME (sevenbit.go): no line over 998 octets is
//     ever sent (RFC 5321 §4.5.3.1.6), and no 8-bit octet to a next hop
//     that does not offer 8BITMIME (RFC 6152 §3): the parts that do not
//     fit are re-encoded (quoted-printable for text, base64 otherwise) so
//     their content survives, and counted (Options.Reencoded); what cannot
//     be converted fails permanently with 554 5.6.3, never sent raw.
//   - XFORWARD (Postfix's XFORWARD_README): when the server offers it, the
//     original client's NAME, ADDR, PROTO and HELO are sent after EHLO and
//     before each MAIL, only the attributes the server lists, values
//     xtext-encoded (RFC 3461 §4); a refused XFORWARD is ignored.
//   - PIPELINING (RFC 2920): when the server offers it, RSET (on a reused
//     connection), XFORWARD, MAIL, every RCPT and DATA go out in one write
//     and their replies are read in order (§3.1: DATA ends the group),
//     then the message and its final dot in a second write: two round
//     trips per message. A refused MAIL makes every recipient fail with
//     its reply, whatever the pipelined RCPTs got. A server that answers
//     354 when no recipient was accepted gets no message: the connection
//     is dropped, which discards the transaction. Without PIPELINING each
//     command waits for its reply.
//   - Chained transactions (chain.go): when every session to a
//     destination is busy and another delivery waits for one, its
//     commands follow the final dot of the message in progress, in the
//     same write (RFC 2920 §3.1), and it takes the session over once the
//     dot's reply has come: one round trip per message.
//   - LMTP (RFC 2033 §4.2): after the final dot there is one reply per
//     accepted recipient, and each one is that recipient's result.
//   - Connection reuse: after a transaction a connection goes back to a
//     bounded pool keyed by destination; the next message to the same
//     destination starts with RSET (RFC 5321 §4.1.1.5); a pooled connection
//     that fails it (the server closed it while idle) is replaced before
//     anything else counts. Idle
//     connections are closed after Options.IdleTimeout, and a connection
//     is retired after Options.MaxMessagesPerConn messages.
//   - Concurrency: at most Options.MaxConns sessions in use at once, and
//     at most Options.MaxConnsPerDest to one destination.
//
// Every error in a Result is a *reply.Reply carrying the remote reply
// (code and enhanced code as received, the host in the text), a
// transport.Permanent error, or a plain error, which the queue treats as
// temporary.
package smtpout
