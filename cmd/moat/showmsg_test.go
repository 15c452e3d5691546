package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"moat/ops/admin"
	"moat/relay/quarantine"
	"moat/relay/spool"
)

func TestPrintHeaders(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"folded with a tab", "Received: from a\r\n\tby b; Fri, 4 Dec 2026\r\n", "  Received: from a\n  \tby b; Fri, 4 Dec 2026\n"},
		{"folded with spaces", "Subject: one\r\n two\r\n", "  Subject: one\n   two\n"},
		{"non-ASCII kept (RFC 6532)", "Subject: Grüße 你好\r\n", "  Subject: Grüße 你好\n"},
		{"encoded word left as it is", "Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n", "  Subject: =?UTF-8?B?R3LDvMOfZQ==?=\n"},
		{"escape sequence", "Subject: \x1b[31mred\r\n", "  Subject: ?[31mred\n"},
		{"C1 control and DEL", "X: a\u009bb\x7fc\r\n", "  X: a?b?c\n"},
		{"invalid UTF-8", "X: \xff\r\n", "  X: \ufffd\n"},
		{"bare LF ends", "A: 1\nB: 2\n", "  A: 1\n  B: 2\n"},
		{"CR inside a line", "A: 1\r2\r\n", "  A: 1?2\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			printHeaders(&b, tc.in)
			if b.String() != tc.want {
				t.Errorf("printHeaders(%q) = %q, want %q", tc.in, b.String(), tc.want)
			}
		})
	}
}

func TestTermSafe(t *testing.T) {
	var b bytes.Buffer
	in := []byte("a\tb\r\n\x1b]0;x\x07é\u009b")
	n, err := termSafe{&b}.Write(in)
	if err != nil || n != len(in) || b.String() != "a\tb\r\n?]0;x?é?" {
		t.Errorf("termSafe: %d %v %q", n, err, b.String())
	}
}

// afterMarker returns what show --body printed after the message: line.
func afterMarker(t *testing.T, out string) string {
	t.Helper()
	i := strings.Index(out, "\n"+bodyMarker+"\n")
	if i < 0 {
		t.Fatalf("no %q line in:\n%s", bodyMarker, out)
	}
	return out[i+len(bodyMarker)+2:]
}

// The whole message, with --body, is exactly the stored bytes, from the
// daemon and offline; the header section is then not printed twice.
func TestQueueShowBody(t *testing.T) {
	f := newQueueFixture(t, 1)
	stored := func(id string) string {
		r, err := f.sp.Open(id)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		var b bytes.Buffer
		b.ReadFrom(r)
		return b.String()
	}
	id := f.ids[0]
	want := stored(id)
	if !strings.Contains(want, "\x1b[31m") {
		t.Fatalf("fixture message: %q", want)
	}
	cfg := f.config(t, f.serve(t, "tok"), "tok")
	out, errOut, err := runQueue("--config", cfg, "show", "--body", id)
	if err != nil || errOut != "" {
		t.Fatalf("show --body: %v %s", err, errOut)
	}
	if got := afterMarker(t, out); got != want {
		t.Errorf("show --body printed %q, stored %q", got, want)
	}
	if strings.Contains(out, "headers:") {
		t.Errorf("show --body also printed the headers:\n%s", out)
	}
	out, _, err = runQueue("--config", cfg, "show", id)
	if err != nil || strings.Contains(out, bodyMarker) || strings.Contains(out, "body\r\n") || !strings.Contains(out, "headers:\n  Subject: t?[31m"+id) {
		t.Errorf("show: %v\n%q", err, out)
	}
	if _, _, err := runQueue("--config", cfg, "show", "--body", "NoSuchMessage0000"); err == nil || !strings.Contains(err.Error(), "no such message") {
		t.Errorf("show --body of an unknown id: %v", err)
	}

	// Offline: the same bytes, read from the spool.
	f.sp.Close()
	cfg = f.config(t, deadAddr(t), "")
	out, errOut, err = runQueue("--config", cfg, "show", "--body", id)
	if err != nil || !strings.Contains(errOut, "directly") {
		t.Fatalf("offline show --body: %v %s", err, errOut)
	}
	if got := afterMarker(t, out); got != want {
		t.Errorf("offline show --body printed %q, stored %q", got, want)
	}
}

// quarantineWithReason puts, next to the messages of quarantineData, one
// message quarantined with a reason, and returns its id and bytes.
func quarantineWithReason(t *testing.T, q *spool.Spool) (string, string) {
	t.Helper()
	raw := "Received: from mx\r\n\tby moat\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= Grüße\r\n\r\nbuy now\r\n"
	env := &spool.Envelope{
		ID:         q.NewID(),
		Sender:     "spammer@example.net",
		Recipients: []spool.Recipient{{Address: "victim@example.org", Route: "local", Status: spool.StatusPending}},
		Received:   time.Now().Add(-time.Minute),
		Quarantine: &spool.Reason{
			Rule: "suspicious_links", Score: 7.5, Incident: "inc123",
			Facts: []string{"suspicious_links: links.shortener=true", "suspicious_links: spf.result=fail\x1b[2J"},
		},
	}
	if err := q.Put(context.Background(), env, strings.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	return env.ID, raw
}

func TestQuarantineShowReasonAndBody(t *testing.T) {
	dataDir, q, main, ids := quarantineData(t, 1, true)
	id, raw := quarantineWithReason(t, q)
	s, err := admin.New(admin.Options{Address: "127.0.0.1:0", Quarantine: quarantine.New(q, main, func(string) {})})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	cfg := (&queueFixture{dataDir: dataDir}).config(t, s.Addr().String(), "")

	check := func(mode, cfg string) {
		out, _, err := runQuarantine("--config", cfg, "show", id)
		if err != nil {
			t.Fatalf("%s show: %v", mode, err)
		}
		for _, want := range []string{
			"rule:         suspicious_links\n",
			"score:        7.50\n",
			"incident:     inc123 (moat rules explain inc123)\n",
			"facts:\n  suspicious_links: links.shortener=true\n  suspicious_links: spf.result=fail?[2J\n",
			"headers:\n  Received: from mx\n  \tby moat\n  Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= Grüße\n",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("%s show lacks %q:\n%s", mode, want, out)
			}
		}
		out, _, err = runQuarantine("--config", cfg, "show", "--body", id)
		if err != nil {
			t.Fatalf("%s show --body: %v", mode, err)
		}
		if got := afterMarker(t, out); got != raw {
			t.Errorf("%s show --body printed %q, stored %q", mode, got, raw)
		}
		out, _, err = runQuarantine("--config", cfg, "list")
		if err != nil || !strings.Contains(out, "RULE") || !lineWith(out, id, "suspicious_links") {
			t.Errorf("%s list does not name the rule:\n%s", mode, out)
		}
		// An entry stored before the reason existed still shows, without one.
		out, _, err = runQuarantine("--config", cfg, "show", ids[0])
		if err != nil || strings.Contains(out, "rule:") || !strings.Contains(out, "s0@example.net") {
			t.Errorf("%s show of an entry without a reason: %v\n%s", mode, err, out)
		}
	}
	check("live", cfg)
	q.Close()
	main.Close()
	check("offline", (&queueFixture{dataDir: dataDir}).config(t, deadAddr(t), ""))
}

// A release leaves the reason behind: the delivery queue's record has none.
func TestQuarantineReleaseDropsReason(t *testing.T) {
	_, q, main, _ := quarantineData(t, 0, true)
	id, _ := quarantineWithReason(t, q)
	newID, err := quarantine.New(q, main, func(string) {}).Release(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	env, err := main.Get(newID)
	if err != nil || env.Quarantine != nil {
		t.Errorf("released: %v %+v", err, env)
	}
}

// Whatever a message holds, what show prints of it on a terminal has no
// control character but tab (headers) or tab, CR and LF (the body).
func FuzzShowTerminalSafe(f *testing.F) {
	f.Add([]byte("Subject: a\r\n\tb \x1b[31m\u009b\xff\r\n\r\nbody\x07\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h strings.Builder
		printHeaders(&h, string(b))
		var m bytes.Buffer
		termSafe{&m}.Write(b)
		for _, tc := range []struct{ out, allowed string }{{h.String(), "\t\n"}, {m.String(), "\t\r\n"}} {
			for _, r := range tc.out {
				if (r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0)) && !strings.ContainsRune(tc.allowed, r) {
					t.Fatalf("control character %U in %q", r, tc.out)
				}
			}
		}
	})
}

// lineWith reports whether a line of out holds both a and b.
func lineWith(out, a, b string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, a) && strings.Contains(l, b) {
			return true
		}
	}
	return false
}
