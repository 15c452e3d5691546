package gateway

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"moat/internal/reply"
	"moat/internal/smtptest"
)

// fakeVerifier knows one backend user and refuses the rest; after three
// unknowns from one client it answers 421 (a harvest).
type fakeVerifier struct{ unknown map[netip.Addr]int }

func (f *fakeVerifier) Verifies(route string) bool { return route == "backend" }
func (f *fakeVerifier) Check(_ context.Context, client netip.Addr, route, rcpt string) error {
	if strings.HasPrefix(rcpt, "known@") {
		return nil
	}
	if f.unknown[client]++; f.unknown[client] > 3 {
		return reply.New(421, 7, 0, "Too many unknown recipients")
	}
	return reply.NoSuchUser
}

func TestRelayRecipientVerification(t *testing.T) {
	ts := startServer(t, func(o *Options) {
		o.State.Verifier = &fakeVerifier{unknown: map[netip.Addr]int{}}
	})
	rc := smtptest.DialRaw(t, ts.addr)
	rc.Expect("EHLO c.example", 250, "")
	rc.Expect("MAIL FROM:<s@far.example>", 250, "")
	rc.Expect("RCPT TO:<known@corp.example>", 250, "")
	for i := 0; i < 3; i++ {
		rc.Expect("RCPT TO:<nobody@corp.example>", 550, "5.1.1")
	}
	rc.Expect("RCPT TO:<nobody@corp.example>", 421, "4.7.0")
	// The channel is closed after a 421 (RFC 5321 §3.8).
	if code, text := rc.Cmd("NOOP"); code != 0 {
		t.Fatalf("session still open after 421: %q", text)
	}
}
