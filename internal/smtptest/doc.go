// Package smtptest holds the small SMTP helpers that unit tests of
// several packages share, all on 127.0.0.1 and all in the test process:
// a raw client that sends exact bytes and reads exact replies (Raw,
// DialRaw, NewRaw), seeds of command lines for fuzz targets
// (CommandSeeds), self-signed certificates for STARTTLS tests (Cert,
// ServerTLS, SelfSigned), a go-smtp client that submits one message
// (Send, Message, ReplyCode), a recording sink (StartSink) that counts
// the Message-IDs it accepts, Serve, which runs a test's own go-smtp
// server on a Listener that counts connections, and ServeConns, which
// hands each connection to a test's hand-written (often misbehaving) peer.
// AsReply finds the reply value inside an error a client returned.
//
// Every read and write has a deadline. The peers' harness that starts
// real processes (moat itself, Postfix, Dovecot, redis, Chromium) stays
// in test/testenv, for the interop and chaos tests.
package smtptest
