package gateway

import (
	"bytes"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-sasl"

	"moat/internal/maillog"
	"moat/internal/smtptest"
)

// syncBuf is a bytes.Buffer safe for the session goroutine and the test.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) { b.mu.Lock(); defer b.mu.Unlock(); return b.b.Write(p) }
func (b *syncBuf) lines(t *testing.T) []maillog.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []maillog.Event
	for l := range strings.Lines(b.b.String()) {
		e, err := maillog.Parse(l)
		if err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		out = append(out, e)
	}
	return out
}

type refusalRec struct{ stage, reason, kind, client string }

// Every recipient refused at RCPT gets a mail log line naming the client,
// the sender, that recipient, the reply and the reason, and is counted.
func TestRcptRefusalLoggedAndCounted(t *testing.T) {
	cases := []struct {
		rcpt, reply, reason string
	}{
		{"someone@far.example", "554 5.7.1", "relay_denied"},
		{"nobody@example.org", "550 5.1.1", "unknown_user"},
		{"user%far.example@example.org", "554 5.7.1", "relay_denied"},
		{"user@exämple.org", "553 5.6.7", "address"},
		{"@example.org", "501 5.5.2", "bad_syntax"},
	}
	for _, tc := range cases {
		t.Run(tc.rcpt, func(t *testing.T) {
			var buf syncBuf
			var mu sync.Mutex
			var got []refusalRec
			ts := startServer(t, func(o *Options) {
				o.Checks = &Checks{MailLog: maillog.New(&buf), Refusal: func(stage, reason, kind, client string) {
					mu.Lock()
					got = append(got, refusalRec{stage, reason, kind, client})
					mu.Unlock()
				}}
			})
			rc := smtptest.DialRaw(t, ts.addr)
			rc.Expect("EHLO c.example", 250, "")
			rc.Expect("MAIL FROM:<s@far.example>", 250, "")
			rc.Expect("RCPT TO:<alice@example.org>", 250, "")
			code, _ := strconv.Atoi(tc.reply[:3])
			rc.Expect("RCPT TO:<"+tc.rcpt+">", code, tc.reply[4:])
			rc.Expect("QUIT", 221, "")
			ts.srv.Shutdown(t.Context())
			lines := buf.lines(t)
			if len(lines) != 1 {
				t.Fatalf("%d mail log lines: %+v", len(lines), lines)
			}
			e := lines[0]
			if e.Kind != maillog.Rejected || e.Stage != "rcpt" || e.Client != "127.0.0.1" || e.Sender != "s@far.example" ||
				len(e.Recipients) != 1 || e.Recipients[0] != tc.rcpt || !strings.HasPrefix(e.Reply, tc.reply) || e.Reason == "" ||
				(tc.reason != "" && e.Reason != tc.reason) {
				t.Fatalf("line %+v", e)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) != 1 || got[0] != (refusalRec{"rcpt", e.Reason, maillog.Rejected, "127.0.0.1"}) {
				t.Fatalf("counted %+v", got)
			}
		})
	}
}

// The AUTH line shows the reply the client got.
func TestAuthFailureLogsReplySent(t *testing.T) {
	var buf syncBuf
	var stages []string
	ts := startServer(t, func(o *Options) {
		o.Listeners = []Listener{{Name: "sub", Address: "127.0.0.1:0", Mode: "submission", TLS: "starttls"}}
		o.TLS = smtptest.ServerTLS(t, "mx.example.org")
		o.State.Users = fakeUsers{"alice@example.org": "correct horse"}
		o.Checks = &Checks{AuthLimits: &fakeLimiter{}, MailLog: maillog.New(&buf),
			Refusal: func(stage, reason, kind, client string) { stages = append(stages, stage+":"+reason) }}
	})
	c := dialTLS(t, ts.addr)
	err := c.Auth(sasl.NewPlainClient("", "alice@example.org", "wrong"))
	if !isReply(err, 535, "5.7.8") {
		t.Fatalf("wrong password: %v", err)
	}
	c.Quit()
	ts.srv.Shutdown(t.Context())
	lines := buf.lines(t)
	if len(lines) != 1 || lines[0].Reply != "535 5.7.8 Authentication failed" || lines[0].Stage != "auth" || lines[0].Reason != "bad_password" {
		t.Fatalf("lines %+v", lines)
	}
	if len(stages) != 1 || stages[0] != "auth:bad_password" {
		t.Fatalf("counted %v", stages)
	}
}

// A MAIL that smtpd refuses for its syntax is logged and counted too.
func TestMailSyntaxRefusalLogged(t *testing.T) {
	var buf syncBuf
	var got []string
	ts := startServer(t, func(o *Options) {
		o.Checks = &Checks{MailLog: maillog.New(&buf), Refusal: func(stage, reason, kind, client string) {
			got = append(got, stage+":"+reason+":"+kind)
		}}
	})
	rc := smtptest.DialRaw(t, ts.addr)
	rc.Expect("EHLO c.example", 250, "")
	rc.Expect("MAIL FROM:<a b@far.example>", 501, "")
	rc.Expect("QUIT", 221, "")
	ts.srv.Shutdown(t.Context())
	lines := buf.lines(t)
	if len(lines) != 1 || lines[0].Stage != "mail" || lines[0].Reason != "bad_syntax" || lines[0].Sender != "a" ||
		!strings.HasPrefix(lines[0].Reply, "501 ") {
		t.Fatalf("lines %+v", lines)
	}
	if len(got) != 1 || got[0] != "mail:bad_syntax:rejected" {
		t.Fatalf("counted %v", got)
	}
}
