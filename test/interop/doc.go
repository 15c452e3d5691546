// Package interop holds moat's interoperability tests against real peers:
// Postfix's smtp-source and smtp-sink, swaks, Dovecot LMTP, a private
// Postfix instance as the backend behind moat, a redis-server shared by a
// fleet of three moat nodes, Python's aiosmtpd as a strict next hop (no
// line over 998 octets, no 8-bit data without 8BITMIME), and headless
// Chromium loading the admin
// status page, and a validating unbound in front of a zone signed in the
// test (DANE). They are built only with the interop tag (`make interop`,
// which installs the peers first with scripts/peers.sh), so `go test
// ./...` skips them.
package interop
