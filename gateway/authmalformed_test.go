package gateway

import (
	"crypto/tls"
	"encoding/base64"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"moat/internal/smtptest"
)

// dialRawTLS opens a raw client to a starttls listener and says EHLO
// again over TLS.
func dialRawTLS(t *testing.T, addr string) *smtptest.Raw {
	t.Helper()
	rc := smtptest.DialRaw(t, addr)
	rc.Expect("EHLO laptop.example.org", 250, "STARTTLS")
	rc.Expect("STARTTLS", 220, "")
	tc := tls.Client(rc.Conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	r := smtptest.NewRaw(t, tc)
	r.Expect("EHLO laptop.example.org", 250, "AUTH")
	return r
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// Issue 27 item 5: a malformed AUTH exchange is a syntax error, 501
// 5.5.2 (RFC 4954 §4; RFC 4616 §2 for PLAIN's message), and a failed
// attempt: the limiter and the failure metric count it.
func TestAuthMalformedIs501AndCounted(t *testing.T) {
	cases := []struct {
		name string
		cmds []string // the last one gets the 501
	}{
		{"plain no NUL", []string{"AUTH PLAIN " + b64("alice@example.orgcorrect horse")}},
		{"plain one NUL", []string{"AUTH PLAIN " + b64("alice@example.org\x00correct horse")}},
		{"plain four fields", []string{"AUTH PLAIN " + b64("\x00alice@example.org\x00correct horse\x00x")}},
		{"plain NUL in the name", []string{"AUTH PLAIN " + b64("\x00alice\x00@example.org\x00correct horse")}},
		{"plain empty authcid", []string{"AUTH PLAIN " + b64("\x00\x00correct horse")}},
		{"plain empty password", []string{"AUTH PLAIN " + b64("\x00alice@example.org\x00")}},
		{"plain not UTF-8", []string{"AUTH PLAIN " + b64("\x00alice\xff@example.org\x00correct horse")}},
		{"plain =", []string{"AUTH PLAIN ="}},
		{"plain bad base64", []string{"AUTH PLAIN !!!notbase64"}},
		{"plain after challenge =", []string{"AUTH PLAIN", "="}},
		{"plain after challenge bad base64", []string{"AUTH PLAIN", "%%%"}},
		{"plain after challenge no NUL", []string{"AUTH PLAIN", b64("alice")}},
		{"login NUL in user", []string{"AUTH LOGIN", b64("alice\x00@example.org")}},
		{"login empty user", []string{"AUTH LOGIN", "="}},
		{"login NUL in password", []string{"AUTH LOGIN " + b64("alice@example.org"), b64("correct\x00horse")}},
		{"login bad base64", []string{"AUTH LOGIN", "@@@"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lim := &fakeLimiter{}
			var mu sync.Mutex
			var reasons []string
			ts := startServer(t, func(o *Options) {
				o.Listeners = []Listener{{Name: "sub", Address: "127.0.0.1:0", Mode: "submission", TLS: "starttls"}}
				o.TLS = smtptest.ServerTLS(t, "mx.example.org")
				o.State.Users = fakeUsers{"alice@example.org": "correct horse"}
				o.Checks = &Checks{AuthLimits: lim, AuthFailure: func(r string) {
					mu.Lock()
					reasons = append(reasons, r)
					mu.Unlock()
				}}
			})
			rc := dialRawTLS(t, ts.addr)
			for i, cmd := range tc.cmds {
				code, text := rc.Cmd(cmd)
				if i < len(tc.cmds)-1 {
					if code != 334 {
						t.Fatalf("%q: %d %s, want 334", cmd, code, text)
					}
					continue
				}
				if code != 501 || !strings.Contains(text, "5.5.2") {
					t.Fatalf("%q: %d %s, want 501 5.5.2", cmd, code, text)
				}
			}
			// The session goes on: a good AUTH still works.
			rc.Expect("AUTH PLAIN "+b64("\x00alice@example.org\x00correct horse"), 235, "")
			lim.mu.Lock()
			failures := lim.failures
			lim.mu.Unlock()
			mu.Lock()
			defer mu.Unlock()
			if failures != 1 || len(reasons) != 1 || reasons[0] != "malformed" {
				t.Fatalf("counted: limiter %d, metric %v; want 1 and [malformed]", failures, reasons)
			}
		})
	}
}

// FuzzParsePlain: parsePlain accepts exactly the RFC 4616 §2 messages:
// two NULs, a non-empty identity and password, UTF-8; what it returns
// joins back into the input.
func FuzzParsePlain(f *testing.F) {
	for _, s := range []string{"\x00alice@example.org\x00pw", "az\x00a\x00p", "a\x00b", "\x00\x00p", "\x00a\x00", "a\x00b\x00c\x00d", "\x00a\xff\x00p", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		az, id, pw, err := parsePlain(b)
		if err != nil {
			return
		}
		if id == "" || pw == "" || strings.ContainsRune(az+id+pw, 0) || !utf8.Valid(b) {
			t.Fatalf("parsePlain(%q) = %q, %q, %q", b, az, id, pw)
		}
		if az+"\x00"+id+"\x00"+pw != string(b) {
			t.Fatalf("parsePlain(%q) lost bytes", b)
		}
	})
}

// FuzzNameAddresses: bounded, and every result has text on both sides
// of an @.
func FuzzNameAddresses(f *testing.F) {
	for _, s := range []string{"bob@example.org", "Bob <bob@example.org>", "bob\uff20example.org", "a @ b", "x@y@z", "", strings.Repeat("a@b ", 20)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		out := nameAddresses(name)
		if len(out) > maxNameAddresses {
			t.Fatalf("%d addresses", len(out))
		}
		for _, a := range out {
			if i := strings.IndexByte(a, '@'); a != tooManyNameAddresses && (i <= 0 || i == len(a)-1) {
				t.Fatalf("nameAddresses(%q) gave %q", name, a)
			}
		}
	})
}
