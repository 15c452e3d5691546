package smtpout

import (
	"context"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-message"

	"moat/internal/reply"
	"moat/internal/smtptest"
	"moat/relay/route"
)

// decoded returns the content of every leaf part of msg, transfer
// encodings undone, as a reader of the message sees it.
func decoded(t *testing.T, msg string) []string {
	t.Helper()
	e, err := message.Read(strings.NewReader(msg))
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		t.Fatalf("%v\n%s", err, msg)
	}
	var out []string
	err = e.Walk(func(_ []int, p *message.Entity, err error) error {
		if err != nil && !message.IsUnknownCharset(err) {
			return err
		}
		if p.MultipartReader() != nil {
			return nil
		}
		b, err := io.ReadAll(p.Body)
		if err != nil {
			return err
		}
		out = append(out, string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// through delivers body to a strict scripted next hop offering ext and
// returns the result, what arrived, the commands and the re-encodings
// counted.
func through(t *testing.T, ext []string, body string) (error, []string, []string, []string) {
	t.Helper()
	srv := &scripted{ehlo: ext, strict: true}
	addr := startScripted(t, srv)
	var mu sync.Mutex
	var counted []string
	c := NewSMTP(Options{Address: addr, TLS: route.TLSNone, Reencoded: func(reason string) {
		mu.Lock()
		counted = append(counted, reason)
		mu.Unlock()
	}})
	defer c.Close()
	res := c.Deliver(context.Background(), testMsg(body), []string{"b@example.net"})
	srv.mu.Lock()
	data := append([]string(nil), srv.data...)
	srv.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	return res[0].Err, data, srv.commands(), counted
}

const eightBitBody = "From: a@example.org\r\nTo: b@example.net\r\nSubject: 8-bit\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=zz\r\n\r\n" +
	"--zz\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9fe, d\xc3\xa9j\xc3\xa0 vu.\r\n.dot line\r\n" +
	"--zz\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\x01\xff\xfe\x80rest\r\n" +
	"--zz--\r\n"

// Issue 23 item 9, RFC 6152 §3: a next hop without 8BITMIME never gets
// 8-bit octets; the parts that hold them are re-encoded, and read the
// same after decoding.
func TestEightBitToSevenBitHop(t *testing.T) {
	err, data, cmds, counted := through(t, []string{"PIPELINING"}, eightBitBody)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != 1 {
		t.Fatalf("%d messages arrived", len(data))
	}
	for i := 0; i < len(data[0]); i++ {
		if data[0][i] >= 0x80 {
			t.Fatalf("8-bit octet at %d sent to a 7-bit next hop:\n%s", i, data[0])
		}
	}
	if got, want := decoded(t, data[0]), decoded(t, eightBitBody); !slices.Equal(got, want) {
		t.Errorf("content changed:\n%q\nwant %q", got, want)
	}
	if !slices.Equal(counted, []string{"8bit"}) {
		t.Errorf("counted %q", counted)
	}
	for _, c := range cmds {
		if strings.Contains(c, "BODY=8BITMIME") {
			t.Errorf("%q to a next hop without 8BITMIME", c)
		}
	}
	// With 8BITMIME the message goes as it is.
	err, data, cmds, counted = through(t, []string{"PIPELINING", "8BITMIME"}, eightBitBody)
	if err != nil || len(data) != 1 || data[0] != eightBitBody || len(counted) != 0 || !slices.Contains(cmds, "MAIL FROM:<a@example.org> BODY=8BITMIME") {
		t.Errorf("8BITMIME next hop: %v, counted %q, %q\n%q", err, counted, cmds, data)
	}
}

// Issue 23 item 10, RFC 5321 §4.5.3.1.6: no line over 998 octets is sent,
// even to a next hop with 8BITMIME; a text part is re-encoded as
// quoted-printable and reads the same.
func TestLongLineFolded(t *testing.T) {
	line := strings.Repeat("lorem ipsum ", 400)
	body := "From: a@example.org\r\nTo: b@example.net\r\nSubject: long\r\n\r\nbefore\r\n" + line + "\r\nd\xc3\xa9j\xc3\xa0\r\n"
	for _, ext := range [][]string{{"8BITMIME"}, {"PIPELINING", "8BITMIME"}, {}} {
		err, data, _, counted := through(t, ext, body)
		if err != nil {
			t.Fatalf("%v: %v", ext, err)
		}
		if len(data) != 1 {
			t.Fatalf("%v: %d messages arrived", ext, len(data))
		}
		for _, l := range strings.Split(data[0], "\r\n") {
			if len(l) > 998 {
				t.Fatalf("%v: a line of %d octets sent", ext, len(l))
			}
		}
		if got := decoded(t, data[0]); len(got) != 1 || got[0] != "before\r\n"+line+"\r\nd\xc3\xa9j\xc3\xa0\r\n" {
			t.Errorf("%v: content changed: %q", ext, got)
		}
		want := []string{"long_line"}
		if len(ext) == 0 {
			want = []string{"8bit", "long_line"}
		}
		if !slices.Equal(counted, want) {
			t.Errorf("%v: counted %q, want %q", ext, counted, want)
		}
	}
}

// What cannot be converted is not sent: it fails at once, permanently,
// with the reason (RFC 6152 §3; RFC 3463 §3.7 X.6.3, conversion required
// but not supported), before MAIL.
func TestUnconvertibleRefused(t *testing.T) {
	for name, tc := range map[string]struct {
		ext  []string
		body string
	}{
		"8-bit header, no 8BITMIME": {nil, "From: a@example.org\r\nSubject: Gr\xc3\xbc\xc3\x9fe\r\n\r\nhi\r\n"},
		"unfoldable header line":    {[]string{"8BITMIME"}, "From: a@example.org\r\nX-Blob: " + strings.Repeat("z", 1500) + "\r\n\r\nhi\r\n"},
	} {
		err, data, cmds, _ := through(t, tc.ext, tc.body)
		if rp := smtptest.AsReply(t, err); rp.Code != 554 || rp.Enhanced != (reply.Enhanced{5, 6, 3}) {
			t.Errorf("%s: %v, want 554 5.6.3", name, rp)
		}
		if len(data) != 0 || slices.ContainsFunc(cmds, func(c string) bool { return strings.HasPrefix(c, "MAIL") }) {
			t.Errorf("%s: sent anyway: %q", name, cmds)
		}
	}
}

// A message that fits goes byte for byte.
func TestFittingMessageUnchanged(t *testing.T) {
	err, data, _, counted := through(t, nil, testBody)
	if err != nil || len(data) != 1 || data[0] != testBody || len(counted) != 0 {
		t.Fatalf("%v %q %q", err, data, counted)
	}
}
