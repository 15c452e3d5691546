package reply

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	cases := []struct {
		in      string
		code    int
		enh     string
		text    string
		wantErr string
	}{
		{"550 5.7.1 Go away", 550, "5.7.1", "Go away", ""},
		{"451 Try later", 451, "4.0.0", "Try later", ""},
		{"421 4.7.0", 421, "4.7.0", "", ""},
		{"250 2.0.0 Ok", 250, "2.0.0", "Ok", ""},
		{"550 4.7.1 mismatch", 0, "", "", "disagrees"},
		{"350 3.0.0 no", 0, "", "", "class"},
		{"699 x", 0, "", "", "2yz, 4yz or 5yz"},
		{"55 short", 0, "", "", "three-digit"},
		{"abc def", 0, "", "", "three-digit"},
		{"570 5.7.1 bad second digit", 0, "", "", "second digit"},
		{"550 5.1000.1 long part", 0, "", "", "1 to 3 digits"},
	}
	for _, c := range cases {
		r, err := Parse(c.in)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("Parse(%q) = %v, want error with %q", c.in, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", c.in, err)
			continue
		}
		if r.Code != c.code || r.Enhanced.String() != c.enh || r.Text != c.text {
			t.Errorf("Parse(%q) = %d %s %q", c.in, r.Code, r.Enhanced, r.Text)
		}
	}
}

func TestFromNeverLeaksInternals(t *testing.T) {
	r := From(fmt.Errorf("open /var/spool/x: %w", errors.New("permission denied")), "S1")
	if r.Code != 451 || r.Enhanced != (Enhanced{4, 3, 0}) || strings.Contains(r.Text, "permission") || !strings.Contains(r.Text, "S1") {
		t.Fatalf("From = %+v", r)
	}
	wrapped := fmt.Errorf("context: %w", NoSuchUser.With(errors.New("lookup")))
	if got := From(wrapped, "S1"); got.Code != 550 || got.Enhanced != (Enhanced{5, 1, 1}) {
		t.Fatalf("wrapped reply lost: %+v", got)
	}
	if From(nil, "S1") != nil {
		t.Fatal("From(nil) != nil")
	}
}

func TestNamedRepliesAreValid(t *testing.T) {
	for _, r := range []*Reply{Queued, RelayDenied, NoSuchUser, BadSenderSyntax, BadRcptSyntax,
		MessageTooBig, StorageFull, TempLocal, ShuttingDown, BareLineEnding, BadSequence, NeedTLS,
		AuthFailed, AuthUnsupported, AuthUnknownMechanism} {
		if err := r.Validate(); err != nil {
			t.Errorf("%s: %v", r.Error(), err)
		}
	}
	if !TempLocal.Temporary() || TempLocal.Permanent() || !RelayDenied.Permanent() {
		t.Error("Temporary/Permanent")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"550 5.7.1 x", "451 y", "250 2.0.0", "599 5.9.999 z", "", "5", "550 5..1 x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("Parse(%q) gave an invalid reply: %v", s, err)
		}
		again, err := Parse(fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text))
		if err != nil || again.Code != r.Code || again.Enhanced != r.Enhanced || again.Text != r.Text {
			t.Fatalf("round trip of %q: %+v, %v", s, again, err)
		}
	})
}

func TestAppendWire(t *testing.T) {
	tests := []struct {
		r    *Reply
		want string
	}{
		{New(250, 1, 5, "Recipient ok"), "250 2.1.5 Recipient ok\r\n"},
		{Plain(250, "mx Hello\nPIPELINING\nSIZE 10"), "250-mx Hello\r\n250-PIPELINING\r\n250 SIZE 10\r\n"},
		{New(550, 7, 1, "a\nb\r\x00c"), "550-5.7.1 a\r\n550 5.7.1 b  c\r\n"},
		{Plain(354, "Go ahead"), "354 Go ahead\r\n"},
		{New(421, 4, 2, "Idle timeout").WithHost("mx.example"), "421 4.4.2 mx.example Idle timeout\r\n"},
		{New(250, 1, 0, "Sender <%s> ok").Format("a@b"), "250 2.1.0 Sender <a@b> ok\r\n"},
	}
	for _, tt := range tests {
		if got := string(tt.r.AppendWire(nil)); got != tt.want {
			t.Errorf("AppendWire(%+v) = %q, want %q", tt.r, got, tt.want)
		}
	}
	if got := Plain(220, "hi").Error(); got != "220 hi" {
		t.Errorf("Plain.Error = %q", got)
	}
}
