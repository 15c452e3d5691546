package gateway

import (
	"bytes"
	"context"
	"io"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"

	"moat/internal/dnstest"
	"moat/internal/sevenbit"
	"moat/internal/smtptest"
	"moat/policy"
	"moat/policy/dkim"
	"moat/policy/dkimsign"
)

// signingSubmission runs a submission listener that signs alice's mail
// for example.org, and the DNS server that publishes the key.
func signingSubmission(t *testing.T) (*testServer, *dnstest.Server) {
	t.Helper()
	dnsSrv := dnstest.NewServer(t)
	priv, txt, err := dkimsign.GenerateKey("rsa-2048")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "k.pem")
	if err := os.WriteFile(keyFile, priv, 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := dkimsign.NewSigner([]dkimsign.Key{{Domain: "example.org", Selector: "sub", KeyFile: keyFile}})
	if err != nil {
		t.Fatal(err)
	}
	dnsSrv.Add(`sub._domainkey.example.org. 300 IN TXT "` + txt + `"`)
	ts := startServer(t, func(o *Options) {
		o.Listeners = []Listener{{Name: "sub", Address: "127.0.0.1:0", Mode: "submission", TLS: "starttls"}}
		o.TLS = smtptest.ServerTLS(t, "mx.example.org")
		o.State.Users = fakeUsers{"alice@example.org": "correct horse"}
		o.Checks = &Checks{Signer: signer, AuthLimits: &fakeLimiter{}}
	})
	return ts, dnsSrv
}

// submit sends msg as alice and returns what was spooled, after checking
// that moat's signature on it verifies.
func submit(t *testing.T, ts *testServer, dnsSrv *dnstest.Server, msg string) []byte {
	t.Helper()
	c := dialTLS(t, ts.addr)
	if err := c.Auth(sasl.NewPlainClient("", "alice@example.org", "correct horse")); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("alice@example.org", []string{"friend@far.example"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	all := ts.spool.all()
	data := all[len(all)-1].data
	res := dkim.Verify(context.Background(), dnsresFor(t, dnsSrv), bytes.NewReader(data), dkim.Options{})
	if res.Result != policy.ResultPass || len(res.Signatures) != 1 {
		t.Fatalf("signature: %+v\n%s", res, data)
	}
	return data
}

// fieldCount counts the fields called name in the header of data.
func fieldCount(t *testing.T, data []byte, name string) []string {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return m.Header[name]
}

// RFC 6409 §8.2, §8.3: a submitted message without Date or Message-ID
// gets them before it is signed, so that the signature covers them and
// no later hop has to add them (which would break it).
func TestSubmissionAddsDateAndMessageID(t *testing.T) {
	ts, dnsSrv := signingSubmission(t)
	data := submit(t, ts, dnsSrv, "From: Alice <alice@example.org>\r\nTo: friend@far.example\r\nSubject: bare\r\n\r\nHello.\r\n")
	dates, ids := fieldCount(t, data, "Date"), fieldCount(t, data, "Message-Id")
	if len(dates) != 1 || len(ids) != 1 {
		t.Fatalf("Date %q, Message-ID %q:\n%s", dates, ids, data)
	}
	if _, err := mail.ParseDate(dates[0]); err != nil {
		t.Errorf("Date %q: %v", dates[0], err)
	}
	if id := ids[0]; !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@mx.example.org>") || strings.Count(id, "@") != 1 {
		t.Errorf("Message-ID %q", id)
	}
	sig := string(data[:bytes.Index(data, []byte("\r\n\r\n"))])
	sig = sig[strings.Index(sig, "DKIM-Signature:"):]
	if h := strings.ToLower(sig); !strings.Contains(h, "date") || !strings.Contains(h, "message-id") {
		t.Errorf("the signature does not cover Date and Message-ID:\n%s", sig)
	}
	// A message that has both keeps them, unchanged and alone.
	data = submit(t, ts, dnsSrv, "From: Alice <alice@example.org>\r\nDate: Thu, 3 Dec 2026 21:00:00 +0000\r\nmessage-id: <own@laptop.example>\r\nSubject: dressed\r\n\r\nHello.\r\n")
	dates, ids = fieldCount(t, data, "Date"), fieldCount(t, data, "Message-Id")
	if len(dates) != 1 || dates[0] != "Thu, 3 Dec 2026 21:00:00 +0000" || len(ids) != 1 || ids[0] != "<own@laptop.example>" {
		t.Fatalf("Date %q, Message-ID %q:\n%s", dates, ids, data)
	}
}

func TestHeaderHas(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want bool
	}{
		{"Date: x\r\n\r\nbody", true},
		{"DATE : x\r\n\r\n", true},
		{"Subject: a\r\n date: folded\r\n\r\n", false},
		{"Dated: x\r\n\r\n", false},
		{"Subject: a\r\n\r\nDate: in the body\r\n", false},
		{"Subject: a\nDate: x\n", true},
		{"", false},
	} {
		if got := headerHas([]byte(tc.raw), "Date"); got != tc.want {
			t.Errorf("%q: %v", tc.raw, got)
		}
	}
}

// Issue 23 items 9 and 10 with DKIM (RFC 6376 §5.3): mail moat signs is
// made 7-bit, without lines over 998 octets, BEFORE it is signed, so that
// no hop has to re-encode it later and break the signature.
func TestSubmissionConvertedBeforeSigning(t *testing.T) {
	ts, dnsSrv := signingSubmission(t)
	long := strings.Repeat("word ", 400)
	body := "Gr\xc3\xbc\xc3\x9fe!\r\n" + long + "\r\n"
	data := submit(t, ts, dnsSrv, "From: Alice <alice@example.org>\r\nSubject: wide\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"+body)
	for _, l := range strings.Split(string(data), "\r\n") {
		if len(l) > 998 {
			t.Fatalf("a line of %d octets spooled", len(l))
		}
	}
	if need, err := sevenbit.Scan(bytes.NewReader(data)); err != nil || need != 0 {
		t.Fatalf("spooled message still needs %v:\n%s", need, data)
	}
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if cte := m.Header.Get("Content-Transfer-Encoding"); cte != "quoted-printable" {
		t.Fatalf("Content-Transfer-Encoding %q", cte)
	}
	got, err := io.ReadAll(quotedprintable.NewReader(m.Body))
	if err != nil || string(got) != body {
		t.Fatalf("content changed: %v\n%q", err, got)
	}
}

// FuzzHeaderHas: headerHas reads client data; it never panics, and a
// field it finds is in the header block.
func FuzzHeaderHas(f *testing.F) {
	f.Add([]byte("Date: x\r\n\r\nbody"), "Date")
	f.Add([]byte("Subject: a\r\n message-id : <x>\r\n\r\n"), "Message-ID")
	f.Add([]byte("\r\nDate: x\r\n"), "Date")
	f.Fuzz(func(t *testing.T, raw []byte, name string) {
		if name == "" {
			return
		}
		if headerHas(raw, name) && !bytes.Contains(bytes.ToLower(raw), bytes.ToLower([]byte(name))) {
			t.Fatalf("found %q in %q", name, raw)
		}
	})
}
