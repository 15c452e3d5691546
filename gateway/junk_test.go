package gateway

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"moat/internal/dnstest"
	"moat/rules"
)

func TestStripSpamHeaders(t *testing.T) {
	const body = "\r\nX-Spam-Flag: NO\r\nbody line\r\n"
	tests := []struct{ name, in, want string }{
		{"none", "Subject: a\r\nFrom: b@c\r\n" + body, "Subject: a\r\nFrom: b@c\r\n" + body},
		{"flag", "Subject: a\r\nX-Spam-Flag: NO\r\nFrom: b@c\r\n" + body, "Subject: a\r\nFrom: b@c\r\n" + body},
		{"top", "X-Spam-Status: No, score=-5\r\nSubject: a\r\n" + body, "Subject: a\r\n" + body},
		{"bottom", "Subject: a\r\nX-Spam-Score: -9.9\r\n" + body, "Subject: a\r\n" + body},
		{"case", "subject: a\r\nx-spam-FLAG: no\r\nX-SPAM-LEVEL: \r\n" + body, "subject: a\r\n" + body},
		{"folded", "Subject: a\r\nX-Spam-Status: No, score=0.0 required=5.0 tests=A,\r\n\tB,\r\n C\r\nFrom: b@c\r\n" + body, "Subject: a\r\nFrom: b@c\r\n" + body},
		{"folded other field kept", "Subject: a\r\n b\r\nX-Spam-Report: x\r\n  y\r\nTo: c@d\r\n" + body, "Subject: a\r\n b\r\nTo: c@d\r\n" + body},
		{"space before colon", "X-Spam-Flag : NO\r\nX-Spam-Flag\t: NO\r\nSubject: a\r\n" + body, "Subject: a\r\n" + body},
		{"any X-Spam field", "X-Spam-Checker-Version: SA\r\nX-Spam-Bar: +++\r\nX-Spam-: x\r\nSubject: a\r\n" + body, "Subject: a\r\n" + body},
		{"not ours", "X-Spammy: 1\r\nX-Spam: 1\r\nX-Spam-Flag-Looking-Line-Without-Colon\r\nXX-Spam-Flag: YES\r\n" + body, "X-Spammy: 1\r\nX-Spam: 1\r\nX-Spam-Flag-Looking-Line-Without-Colon\r\nXX-Spam-Flag: YES\r\n" + body},
		{"only in body", "Subject: a\r\n\r\nX-Spam-Flag: YES\r\n", "Subject: a\r\n\r\nX-Spam-Flag: YES\r\n"},
		{"empty header", "\r\nX-Spam-Flag: YES\r\n", "\r\nX-Spam-Flag: YES\r\n"},
		{"no body", "Subject: a\r\nX-Spam-Flag: YES\r\n", "Subject: a\r\n"},
		{"no final line end", "Subject: a\r\nX-Spam-Flag: YES", "Subject: a\r\n"},
		{"all of them", "X-Spam-Flag: YES\r\nX-Spam-Score: 1\r\n" + body, body},
		{"bare LF", "Subject: a\nX-Spam-Flag: NO\n x\nTo: b@c\n\nX-Spam-Flag: NO\n", "Subject: a\nTo: b@c\n\nX-Spam-Flag: NO\n"},
		{"leading continuation kept", " x\r\nX-Spam-Flag: NO\r\n" + body, " x\r\n" + body},
		{"many", strings.Repeat("X-Spam-Flag: NO\r\nReceived: x\r\n", 1000) + body, strings.Repeat("Received: x\r\n", 1000) + body},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.in)
			orig := bytes.Clone(in)
			if got := string(stripSpamHeaders(in)); got != tt.want {
				t.Fatalf("got\n%q\nwant\n%q", got, tt.want)
			}
			if !bytes.Equal(in, orig) {
				t.Fatal("input changed in place")
			}
		})
	}
}

func FuzzStripSpamHeaders(f *testing.F) {
	for _, s := range []string{
		"X-Spam-Flag: YES\r\nSubject: a\r\n\r\nbody\r\n",
		"Subject: a\r\nx-spam-status: No,\r\n\ttests=A\r\n\r\nX-Spam-Flag: YES\r\n",
		"X-Spam-Flag : NO\nTo: b\n\n",
		" cont\r\nX-SPAM-X: 1\r\n",
		"\r\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		out := stripSpamHeaders(raw)
		// Nothing added, the body untouched, and no X-Spam-* field
		// left in the header block.
		if len(out) > len(raw) {
			t.Fatalf("grew: %q -> %q", raw, out)
		}
		// The rest from the first empty line on (the body with its
		// separator) is the same.
		if _, rb := splitHead(raw); !bytes.Equal(rb, func() []byte { _, ob := splitHead(out); return ob }()) {
			t.Fatalf("body changed: %q -> %q", raw, out)
		}
		if again := stripSpamHeaders(out); !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q -> %q -> %q", raw, out, again)
		}
		for _, line := range bytes.SplitAfter(out, []byte("\n")) {
			if string(line) == "\r\n" || string(line) == "\n" {
				break
			}
			if isSpamField(line) {
				t.Fatalf("X-Spam field left: %q in %q", line, out)
			}
		}
	})
}

// splitHead cuts b before its first empty line (CRLF or LF alone).
func splitHead(b []byte) (head, rest []byte) {
	for off := 0; off < len(b); {
		line := b[off:]
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line = line[:i+1]
		}
		if string(line) == "\n" || string(line) == "\r\n" {
			return b[:off], b[off:]
		}
		off += len(line)
	}
	return b, nil
}

const forgedMsg = "From: Boss <boss@far.example>\r\nTo: alice@example.org\r\nSubject: win\r\n" +
	"Message-ID: <forged@far.example>\r\n" +
	"X-Spam-Flag: NO\r\nX-Spam-Status: No, score=-100.0 required=5.0\r\n\ttests=ALL_TRUSTED\r\n" +
	"X-Spam-Score: -100\r\n\r\nX-Spam-Flag: NO stays in the body\r\n"

// A message that arrives with forged X-Spam-* fields leaves with moat's
// own; the junk rule sets the envelope's Junk flag.
func TestJunkRuleReplacesForgedSpamHeaders(t *testing.T) {
	dnsSrv := dnstest.NewServer(t)
	ruleText := "rules:\n  - {name: WIN_SUBJECT, stage: data, action: junk, when: 'subject == \"win\"'}\n" +
		"  - {name: SOME_SCORE, stage: data, action: score, score: 1.5}\n"
	ts := startServer(t, withChecks(t, dnsSrv, ruleText, nil))
	if code, text := sendRaw(t, ts.addr, "boss@far.example", "alice@example.org", forgedMsg); code != 250 {
		t.Fatalf("got %d %s", code, text)
	}
	msgs := ts.spool.all()
	if len(msgs) != 1 {
		t.Fatalf("%d messages spooled", len(msgs))
	}
	m := msgs[0]
	if !m.env.Junk {
		t.Error("envelope not marked junk")
	}
	head, body, _ := strings.Cut(string(m.data), "\r\n\r\n")
	for _, bad := range []string{"X-Spam-Flag: NO", "score=-100", "ALL_TRUSTED", "X-Spam-Score: -100"} {
		if strings.Contains(head, bad) {
			t.Errorf("forged %q left in the header:\n%s", bad, head)
		}
	}
	for _, want := range []string{"\r\nX-Spam-Flag: YES\r\n", "\r\nX-Spam-Score: 1.5\r\n", "\r\nX-Spam-Level: *\r\n",
		"\r\nX-Spam-Status: Yes, score=1.5 required=5.0 tests=SOME_SCORE,WIN_SUBJECT\r\n", "\r\nSubject: win\r\n"} {
		if !strings.Contains(head+"\r\n", want) {
			t.Errorf("header lacks %q:\n%s", want, head)
		}
	}
	if body != "X-Spam-Flag: NO stays in the body\r\n" {
		t.Errorf("body changed: %q", body)
	}
}

// A clean message is not junk: no X-Spam-Flag, X-Spam-Status says No.
func TestCleanMessageSpamStatusNo(t *testing.T) {
	dnsSrv := dnstest.NewServer(t)
	ts := startServer(t, withChecks(t, dnsSrv, "", nil))
	msg := strings.Replace(forgedMsg, "Subject: win", "Subject: lunch", 1)
	if code, text := sendRaw(t, ts.addr, "boss@far.example", "alice@example.org", msg); code != 250 {
		t.Fatalf("got %d %s", code, text)
	}
	m := ts.spool.all()[0]
	head, _, _ := strings.Cut(string(m.data), "\r\n\r\n")
	if m.env.Junk || strings.Contains(head, "X-Spam-Flag") || strings.Contains(head, "-100") {
		t.Errorf("junk %v, header:\n%s", m.env.Junk, head)
	}
	if !strings.Contains(head, "\r\nX-Spam-Status: No, score=0.0 required=5.0 tests=none") {
		t.Errorf("no X-Spam-Status: No:\n%s", head)
	}
}

// Mail of our own networks is not judged: its X-Spam-* fields are left
// alone (it is not inbound) and none are added; rules.score.headers off
// adds none for inbound mail, but still strips.
func TestSpamHeadersOnlyInbound(t *testing.T) {
	dnsSrv := dnstest.NewServer(t)
	junkRule := "rules:\n  - {name: J, stage: data, action: junk}\n"
	ts := startServer(t, func(o *Options) {
		withChecks(t, dnsSrv, junkRule, nil)(o)
		trusted(o)
	})
	if code, text := sendRaw(t, ts.addr, "alice@example.org", "bob@example.org", forgedMsg); code != 250 {
		t.Fatalf("got %d %s", code, text)
	}
	head, _, _ := strings.Cut(string(ts.spool.all()[0].data), "\r\n\r\n")
	if !strings.Contains(head, "X-Spam-Flag: NO") || strings.Contains(head, "X-Spam-Flag: YES") {
		t.Errorf("trusted network's header changed:\n%s", head)
	}

	off := startServer(t, func(o *Options) {
		withChecks(t, dnsSrv, junkRule, nil)(o)
		cfg := o.Checks.Rules.Set().Config()
		cfg.Score.Headers = false
		set, err := rules.Load(cfg, rules.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		o.Checks.Rules.Swap(set)
	})
	if code, text := sendRaw(t, off.addr, "boss@far.example", "alice@example.org", forgedMsg); code != 250 {
		t.Fatalf("got %d %s", code, text)
	}
	m := off.spool.all()[0]
	head, _, _ = strings.Cut(string(m.data), "\r\n\r\n")
	if strings.Contains(head, "X-Spam-") || !m.env.Junk {
		t.Errorf("headers off: junk %v, header:\n%s", m.env.Junk, head)
	}
}

// moat rules test (the offline path) says "junk".
func TestOfflineJunk(t *testing.T) {
	eng := loadRules(t, "rules:\n  - {name: J, stage: mail, action: junk}\n", rules.LoadOptions{})
	s := offlineSession("hi")
	s.Message = []byte("Subject: x\r\nX-Spam-Flag: NO\r\n\r\nhi\r\n")
	res := RunOffline(context.Background(), PipelineOptions{Checks: &Checks{Rules: eng}}, s)
	if res.Final.Code != 250 || res.Action != string(rules.Junk) || res.Rule != "J" {
		t.Fatalf("final %v action %q rule %q", res.Final, res.Action, res.Rule)
	}
	if !res.Txn.Junk || bytes.Contains(res.Txn.Raw, []byte("X-Spam-Flag: NO")) {
		t.Errorf("junk %v raw %q", res.Txn.Junk, res.Txn.Raw)
	}
	var flag bool
	for _, h := range res.Txn.Headers {
		flag = flag || h.Name == "X-Spam-Flag" && h.Value == "YES"
	}
	if !flag {
		t.Errorf("headers %v", res.Txn.Headers)
	}
}
