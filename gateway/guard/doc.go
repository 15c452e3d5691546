// Package guard is moat's connection guard: it stands in front of the
// SMTP server (gateway/smtpd) as a net.Listener wrapper and admits only the
// connections that pass, in the spirit of Postfix's postscreen. In order,
// for each connection:
//
//  1. connection slots, counted over connections being screened and
//     connections being served: the global cap guard.max_connections,
//     the listener's own cap (ListenerOptions.MaxConnections), and for
//     listeners that are not submission ones the global cap less
//     guard.submission_reserve, so that port 25 cannot take the places
//     of 587/465 (slots.go). A full listener answers 421 4.7.0 (RFC 5321
//     §3.8), on an implicit-TLS listener over TLS after a handshake of
//     at most two seconds;
//  2. a PROXY protocol v1/v2 header, read under a deadline and required
//     from guard.trusted_proxies on a proxy_protocol listener; the address
//     it carries becomes the client for everything below and for the
//     session (Conn.RemoteAddr);
//  3. the static deny list (554 5.7.1, RFC 5321 §3.1) and allow list;
//  4. per-IP and per-prefix (IPv4 /24, IPv6 /64) connection rate (token
//     buckets) and concurrency, kept in bounded LRUs (421 4.7.0,
//     RFC 5321 §3.8);
//  5. DNS block and allow lists (package policy/dnsbl; a list that fails
//     counts as no answer, or with guard.dnsbl.on_error: tempfail refuses
//     with 421 4.7.0 when it could have listed the client: DNSBLDecision
//     decides), run in parallel with
//  6. the pregreet test: "220-<host> ESMTP" is written, and a client that
//     talks before the server's final "220 " line is refused with 521
//     (RFC 5321 §4.3.1: the client waits for the greeting; RFC 7504 §3):
//     held until the greet delay ends, by default, so that a bot pays the
//     whole delay for every attempt (guard.pregreet.action: hold), or at
//     once (drop). Clients that pass are remembered for
//     guard.pregreet.pass_ttl.
//
// Stress mode (guard.stress, as Postfix's): while a listener's count,
// or the guard's, is above a share of its cap, the admitted connections
// say so with StressTimeout, and the SMTP server cuts each wait for the
// client to it; each change is logged and told to Options.OnStress.
//
// With Options.Shared (package policy/cluster, over Redis) the rate
// buckets of 4 and the pass cache of 6 are shared with the other nodes of
// a cluster, the local ones kept as the fallback; concurrency stays per
// node, since a live connection belongs to one node (see SharedState).
//
// Screening runs in a goroutine per connection; Accept only hands over
// connections that passed, so slow or silent clients never hold it up.
//
// An admitted connection is a *Conn. It keeps watching the bytes of both
// sides with a small fixed state (the first 32 bytes of the current
// command line): HTTP requests or a TLS ClientHello where SMTP commands
// belong, too many RSET/NOOP/HELO/EHLO, and too many 5xx replies (with a
// growing delay, the tarpit, before each 5xx reply past tarpit.after). It
// follows DATA (RFC 5321 §4.1.1.4) and BDAT (RFC 3030 §2) so that message
// content is never taken for commands, and stops inspecting after
// STARTTLS (RFC 3207 §4).
//
// Every rejection is counted by reason (Stats) and passed to
// Options.OnReject, and logged in one line, at most guard.log_limit
// lines a second for each reason: a flood of bots is counted in full but
// does not turn into a flood of log writes; the next line let through
// says how many were not logged.
//
// The rejection itself (count, log, reply) allocates nothing: the
// banner line and the fixed reply lines are built once per Guard, and a
// log line only when the logger would write it.
package guard
