package gateway

import (
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"moat/internal/smtptest"
	"moat/mailbox"
	"moat/policy/authlimit"
)

// Issue 27 item 3: every spelling of a login name is the one user, for
// the password, the lock-out, the sending limits, the send-as check and
// the log. The real directory and the real limiter, end to end.

const bobPassword = "tr0ub4dor&3"

// loginVariants of bob@moat.test: each logs in as bob.
var loginVariants = []string{
	"bob@moat.test",
	"BOB@moat.test",
	"Bob@Moat.Test",
	"bob@moat.test.",
	"BOB@MOAT.TEST.",
	" bob@moat.test ",
	"\tbob@moat.test.",
	"bob@ｍｏａｔ.test",
	"bob@moat。test",
	"bob@mo\u00adat.test",
	"ｂｏｂ@moat.test",
}

// tagVariants are bob's subaddresses (RFC 5233): no login, but their
// failures are bob's and they are locked out with him.
var tagVariants = []string{"bob+tag@moat.test", "BOB+Other@moat.test.", " bob+@moat.test"}

type realAuth struct {
	dir *mailbox.Directory
	lim *authlimit.Limiter
	ts  *testServer
	log *observer.ObservedLogs
}

func startRealSubmission(t *testing.T, mutate func(*authlimit.Config)) *realAuth {
	t.Helper()
	hash, err := mailbox.HashPassword(bobPassword)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := mailbox.New(mailbox.Config{Root: t.TempDir(), Users: map[string]mailbox.UserConfig{
		"bob@moat.test":   {PasswordHash: hash},
		"alice@moat.test": {PasswordHash: hash},
	}, Aliases: map[string]any{"sales@moat.test": "bob@moat.test"}}, []string{"moat.test"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := authlimit.DefaultConfig()
	cfg.Auth.DelayBase = 0 // no tarpit sleeps in tests
	cfg.Auth.PerIP.MaxFailures = 0
	if mutate != nil {
		mutate(&cfg)
	}
	lim, err := authlimit.New(cfg, authlimit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	ts := startServer(t, func(o *Options) {
		o.Listeners = []Listener{{Name: "sub", Address: "127.0.0.1:0", Mode: "submission", TLS: "starttls"}}
		o.TLS = smtptest.ServerTLS(t, "mx.example.org")
		o.State.Users = dir
		o.Checks = &Checks{AuthLimits: lim}
		o.Logger = zap.New(core)
	})
	return &realAuth{dir: dir, lim: lim, ts: ts, log: logs}
}

func TestLoginVariantsShareLockout(t *testing.T) {
	ra := startRealSubmission(t, nil)
	for i := range authlimit.DefaultConfig().Auth.PerUser.MaxFailures {
		c := dialTLS(t, ra.ts.addr)
		err := c.Auth(sasl.NewPlainClient("", "bob@moat.test", "wrong"))
		if !isReply(err, 535, "5.7.8") {
			t.Fatalf("wrong password %d: %v", i, err)
		}
	}
	for _, v := range append(loginVariants, tagVariants...) {
		c := dialTLS(t, ra.ts.addr)
		if err := c.Auth(sasl.NewPlainClient("", v, bobPassword)); !isReply(err, 454, "4.7.0") {
			t.Errorf("AUTH as %q while bob@moat.test is locked out: %v, want 454 4.7.0", v, err)
		}
	}
	// alice is not bob: her login still works.
	c := dialTLS(t, ra.ts.addr)
	if err := c.Auth(sasl.NewPlainClient("", "alice@moat.test", bobPassword)); err != nil {
		t.Fatalf("alice: %v", err)
	}
}

// A failure under any spelling counts toward bob's one threshold.
func TestLoginVariantsCountTogether(t *testing.T) {
	all := append(loginVariants, tagVariants...)
	ra := startRealSubmission(t, func(c *authlimit.Config) { c.Auth.PerUser.MaxFailures = len(all) })
	for _, v := range all {
		c := dialTLS(t, ra.ts.addr)
		if err := c.Auth(sasl.NewPlainClient("", v, "wrong")); !isReply(err, 535, "5.7.8") {
			t.Fatalf("wrong password as %q: %v", v, err)
		}
	}
	c := dialTLS(t, ra.ts.addr)
	if err := c.Auth(sasl.NewPlainClient("", "bob@moat.test", bobPassword)); !isReply(err, 454, "4.7.0") {
		t.Fatalf("after one failure per spelling: %v, want the lock-out", err)
	}
}

func TestLoginVariantsShareSendLimit(t *testing.T) {
	ra := startRealSubmission(t, func(c *authlimit.Config) { c.Send.MessagesPerHour = 1 })
	msg := "From: bob@moat.test\r\nTo: x@far.example\r\nSubject: s\r\n\r\nhi\r\n"
	for i, v := range loginVariants {
		c := dialTLS(t, ra.ts.addr)
		if err := c.Auth(sasl.NewPlainClient("", v, bobPassword)); err != nil {
			t.Fatalf("AUTH as %q: %v", v, err)
		}
		err := c.SendMail("bob@moat.test", []string{"x@far.example"}, strings.NewReader(msg))
		switch {
		case i == 0 && err != nil:
			t.Fatalf("first message: %v", err)
		case i > 0 && !isReply(err, 450, "4.7.1"):
			t.Errorf("logged in as %q: second message of the hour: %v, want 450 4.7.1", v, err)
		}
	}
}

// After AUTH the session's user is the canonical address: send-as, the
// log line and the limiter see bob@moat.test.
func TestLoginVariantIsCanonicalUser(t *testing.T) {
	ra := startRealSubmission(t, nil)
	for _, v := range tagVariants {
		c := dialTLS(t, ra.ts.addr)
		if err := c.Auth(sasl.NewPlainClient("", v, bobPassword)); !isReply(err, 535, "5.7.8") {
			t.Errorf("AUTH as %q: %v, want 535 5.7.8 (a subaddress is no login)", v, err)
		}
	}
	for _, v := range loginVariants {
		c := dialTLS(t, ra.ts.addr)
		if err := c.Auth(sasl.NewPlainClient("", v, bobPassword)); err != nil {
			t.Fatalf("AUTH as %q: %v", v, err)
		}
		// bob may send as himself and his alias, whatever he typed.
		msg := "From: Sales <sales@moat.test>\r\nTo: x@far.example\r\nSubject: s\r\n\r\nhi\r\n"
		if err := c.SendMail("sales@moat.test", []string{"x@far.example"}, strings.NewReader(msg)); err != nil {
			t.Errorf("logged in as %q: sending as sales@: %v", v, err)
		}
	}
	n := 0
	for _, e := range ra.log.FilterMessage("authenticated").All() {
		n++
		if u := e.ContextMap()["user"]; u != "bob@moat.test" {
			t.Errorf("logged user %q, want bob@moat.test", u)
		}
	}
	if n != len(loginVariants) {
		t.Errorf("%d authenticated lines, want %d", n, len(loginVariants))
	}
}

// Send-as with the real directory: any spelling of bob's own addresses,
// a subaddress of them included, is his; another user's is not, in the
// address or in the display name.
func TestSendAsCanonical(t *testing.T) {
	ra := startRealSubmission(t, nil)
	c := dialTLS(t, ra.ts.addr)
	if err := c.Auth(sasl.NewPlainClient("", "Bob@Moat.Test.", bobPassword)); err != nil {
		t.Fatal(err)
	}
	send := func(from, header string) error {
		msg := header + "To: x@far.example\r\nSubject: s\r\n\r\nhi\r\n"
		return c.SendMail(from, []string{"x@far.example"}, strings.NewReader(msg))
	}
	for _, h := range []string{
		"From: BOB@moat.test\r\n",
		"From: bob+lists@moat.test\r\n",
		"From: Sales <SALES+x@Moat.Test>\r\nSender: bob@moat.test\r\n",
		"From: \"bob@moat.test\" <bob@moat.test>\r\n",
	} {
		if err := send("bob+lists@moat.test.", h); err != nil {
			t.Errorf("%q: %v", h, err)
		}
	}
	for _, h := range []string{
		"From: alice@moat.test\r\n",
		"From: \"alice@moat.test\" <bob@moat.test>\r\n",
		"From: bob@moat.test\r\nSender: Alice <ALICE@moat.test>\r\n",
		"From: bob@moat.test\r\nResent-From: alice+x@moat.test\r\n",
	} {
		if err := send("bob@moat.test", h); !isReply(err, 550, "5.7.1") {
			t.Errorf("%q: %v, want 550 5.7.1", h, err)
		}
	}
	if err := c.Mail("alice@moat.test.", nil); !isReply(err, 550, "5.7.1") {
		t.Errorf("MAIL FROM alice: %v", err)
	}
}

// RFC 4616 §2 authzid: any spelling of the user's own name is fine,
// another user's is refused.
func TestAuthzidCanonical(t *testing.T) {
	ra := startRealSubmission(t, nil)
	c := dialTLS(t, ra.ts.addr)
	if err := c.Auth(sasl.NewPlainClient("alice@moat.test", "bob@moat.test", bobPassword)); !isReply(err, 535, "5.7.8") {
		t.Fatalf("authzid alice for bob: %v", err)
	}
	c = dialTLS(t, ra.ts.addr)
	if err := c.Auth(sasl.NewPlainClient("BOB@moat.test.", "bob@moat.test", bobPassword)); err != nil {
		t.Fatalf("authzid is bob spelt otherwise: %v", err)
	}
}
