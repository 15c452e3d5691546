// Package interop holds moat's interoperability tests against real peers:
// Postfix's smtp-source and smtp-sink, swaks, and Dovecot LMTP. They are
// built only with the interop tag (`make interop`, which installs the
// peers first with scripts/peers.sh), so `go test ./...` skips them.
package interop
