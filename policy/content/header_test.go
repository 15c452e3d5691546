package content

import (
	"slices"
	"strings"
	"testing"
)

// Issue 27 item 7: a line in the header section that is no field (no
// colon, a bad field name) and no continuation makes the header
// malformed, and the parse reads on to the blank line (RFC 5322 §2.2),
// so fields after it are seen by the rules and the send-as check.
func TestHeaderBadLineReadOn(t *testing.T) {
	cases := map[string]string{
		"no colon":              "X-Junk no colon here\r\n",
		"bare word":             "hello\r\n",
		"space in name":         "Bad Name: x\r\n",
		"empty name":            ": x\r\n",
		"non-ASCII name":        "Fr\u00f6m: x\r\n",
		"control in name":       "X-\x01: x\r\n",
		"no colon, continued":   "junk\r\n continued: still junk\r\n",
		"lone LF line":          "junk\n",
		"NUL line":              "\x00\r\n",
		"long line, no colon":   strings.Repeat("z", 5000) + "\r\n",
		"bad first line folded": "",
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			raw := "From: Alice <alice@example.org>\r\nTo: t@example.net\r\n" + bad +
				"From: Bob <bob@example.org>\r\nSender: carol@example.org\r\nSubject: after\r\n\r\nbody\r\n"
			if name == "bad first line folded" {
				raw = " folded first\r\n" + raw
			}
			m := mustParse(t, raw)
			if !m.HeaderMalformed() {
				t.Error("not header-malformed")
			}
			if got := m.HeaderValues("From"); !slices.Equal(got, []string{"Alice <alice@example.org>", "Bob <bob@example.org>"}) {
				t.Errorf("From fields %q", got)
			}
			if m.Header("Sender") != "carol@example.org" || m.Subject() != "after" {
				t.Errorf("Sender %q, Subject %q", m.Header("Sender"), m.Subject())
			}
			if string(m.Body()) != "body\r\n" || !strings.Contains(m.Text(), "body") {
				t.Errorf("body %q, text %q", m.Body(), m.Text())
			}
			for _, f := range m.Fields() {
				if strings.Contains(f.Name, "junk") || strings.Contains(f.Value, "junk") {
					t.Errorf("the bad line became a field: %q", f)
				}
			}
		})
	}
}

// A well-formed header is not marked, folded fields stay whole.
func TestHeaderFoldedIsFine(t *testing.T) {
	m := mustParse(t, "Subject: one\r\n two\r\nFrom: a@b.example\r\n\tX\r\nTo: c@d.example\r\n\r\nbody")
	if m.HeaderMalformed() || m.Subject() != "one two" || m.Header("From") != "a@b.example X" {
		t.Errorf("malformed %v, subject %q, from %q", m.HeaderMalformed(), m.Subject(), m.Header("From"))
	}
}

// FuzzScanHeader: the cleaned header is never longer than the input, and
// holds no line that a second scan would drop.
func FuzzScanHeader(f *testing.F) {
	f.Add([]byte("From: a@b\r\njunk\r\n cont\r\nSubject: s\r\n\r\nbody"))
	f.Add([]byte(" first\r\nX: y\r\n"))
	f.Add([]byte("A: 1\r\r\nB : 2\n\n"))
	f.Add([]byte(": x\r\n\x00\r\n\r\n"))
	f.Fuzz(func(t *testing.T, hdr []byte) {
		out, dropped := scanHeader(hdr)
		if len(out) > len(hdr) || !dropped && len(out) != len(hdr) {
			t.Fatalf("scanHeader(%q) = %q, %v", hdr, out, dropped)
		}
		if again, d := scanHeader(out); d || len(again) != len(out) {
			t.Fatalf("second scan of %q dropped more: %q", out, again)
		}
	})
}

func TestMailboxes(t *testing.T) {
	m := mustParse(t, "From: \"Bob <bob@example.org>\" <alice@example.org>, =?utf-8?q?carol=40x.example?= <c@example.org>\r\n"+
		"From: alice@example.org (comment@example.org)\r\nFrom: <<bad\r\nSender: team: a@example.org, b@example.org;\r\n\r\nx")
	got, err := m.Mailboxes("From")
	want := []Mailbox{{"Bob <bob@example.org>", "alice@example.org"}, {"carol@x.example", "c@example.org"}, {"comment@example.org", "alice@example.org"}}
	if err == nil || !slices.Equal(got, want) {
		t.Errorf("From: %q, %v; want %q and an error", got, err, want)
	}
	got, err = m.Mailboxes("Sender")
	if err != nil || len(got) != 2 || got[1].Address != "b@example.org" {
		t.Errorf("Sender: %q, %v", got, err)
	}
	if got, err := m.Mailboxes("Resent-From"); got != nil || err != nil {
		t.Errorf("absent: %q, %v", got, err)
	}
}
