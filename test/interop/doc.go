// Package interop holds moat's interoperability tests against real peers:
// Postfix's smtp-source and smtp-sink, swaks, Dovecot LMTP, a private
// Postfix instance as the backend behind moat, a redis-server shared by a
// fleet of three moat nodes, and headless Chromium loading the admin
// status page. They are built only with the interop tag (`make interop`,
// which installs the peers first with scripts/peers.sh), so `go test
// ./...` skips them.
package interop
