package sevenbit

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"
	"testing/iotest"
)

func TestScan(t *testing.T) {
	long := strings.Repeat("x", MaxLine)
	for _, tc := range []struct {
		msg  string
		want Need
	}{
		{"Subject: a\r\n\r\nhello\r\n", 0},
		{"Subject: a\r\n\r\n" + long + "\r\n", 0},
		{"Subject: a\r\n\r\n" + long + "\n", 0},
		{"Subject: a\r\n\r\n" + long + "x\r\n", LongLine},
		{"Subject: a\r\n\r\n" + long + "x", LongLine},
		{"Subject: a\r\n\r\n" + long + "\r", 0},
		{"Subject: " + long + "\r\n\r\nb\r\n", LongLine},
		{"Subject: a\r\n\r\nd\xc3\xa9j\xc3\xa0\r\n", EightBit},
		{"Subject: a\r\n\r\nd\xc3\xa9j\xc3\xa0 " + long + "\r\n", EightBit | LongLine},
	} {
		for _, r := range []io.Reader{strings.NewReader(tc.msg), iotest.OneByteReader(strings.NewReader(tc.msg)), iotest.HalfReader(strings.NewReader(tc.msg))} {
			got, err := Scan(r)
			if err != nil || got != tc.want {
				t.Errorf("%.40q…: %v %v, want %v", tc.msg, got, err, tc.want)
			}
		}
	}
}

// leaf is one decoded leaf part: its media type and content.
type leaf struct {
	typ     string
	content string
}

// leaves decodes a message the way a reader would: every leaf part,
// transfer encoding undone, in order.
func leaves(t *testing.T, msg []byte) []leaf {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("%v\n%s", err, msg)
	}
	var out []leaf
	walk(t, textprotoHeader(m.Header), m.Body, "text/plain", &out)
	return out
}

type hdr interface{ Get(string) string }

func textprotoHeader(h mail.Header) hdr { return h }

func walk(t *testing.T, h hdr, body io.Reader, deflt string, out *[]leaf) {
	t.Helper()
	mt, params := deflt, map[string]string{}
	if ct := h.Get("Content-Type"); ct != "" {
		var err error
		mt, params, err = mime.ParseMediaType(ct)
		if err != nil {
			t.Fatal(err)
		}
	}
	var r io.Reader = body
	switch strings.ToLower(h.Get("Content-Transfer-Encoding")) {
	case "quoted-printable":
		r = quotedprintable.NewReader(body)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, &noCRLF{body})
	}
	switch {
	case strings.HasPrefix(mt, "multipart/"):
		mr := multipart.NewReader(r, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			walk(t, p.Header, p, "text/plain", out)
		}
	case mt == "message/rfc822":
		m, err := mail.ReadMessage(r)
		if err != nil {
			t.Fatal(err)
		}
		walk(t, m.Header, m.Body, "text/plain", out)
	default:
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("%s: %v", mt, err)
		}
		*out = append(*out, leaf{mt, string(b)})
	}
}

// noCRLF drops line ends (base64.NewDecoder ignores them itself, but
// spell it out).
type noCRLF struct{ r io.Reader }

func (n *noCRLF) Read(p []byte) (int, error) {
	k, err := n.r.Read(p)
	j := 0
	for _, c := range p[:k] {
		if c != '\r' && c != '\n' {
			p[j] = c
			j++
		}
	}
	return j, err
}

// converted checks that out fits and reads the same as in.
func converted(t *testing.T, in string, need Need) []byte {
	t.Helper()
	out, did, err := Convert([]byte(in), need)
	if err != nil {
		t.Fatal(err)
	}
	if did == 0 {
		t.Fatalf("nothing converted:\n%s", out)
	}
	got, err := Scan(bytes.NewReader(out))
	if err != nil || got&need != 0 {
		t.Fatalf("still %v after conversion:\n%s", got, out)
	}
	a, b := leaves(t, []byte(in)), leaves(t, out)
	if len(a) != len(b) {
		t.Fatalf("%d leaves, want %d:\n%s", len(b), len(a), out)
	}
	for i := range a {
		if a[i] != b[i] {
			t.Errorf("leaf %d: %q\nwant %q", i, b[i], a[i])
		}
	}
	return out
}

func TestConvertLongLinePlain(t *testing.T) {
	line := strings.Repeat("0123456789 ", 300) // 3300 octets
	in := "From: a@example.org\r\nSubject: long\r\n\r\nfirst\r\n" + line + "\r\nlast\r\n"
	out := converted(t, in, LongLine|EightBit)
	if !bytes.Contains(out, []byte("MIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")) {
		t.Errorf("header:\n%s", out)
	}
}

func TestConvert8BitMultipart(t *testing.T) {
	bin := string([]byte{0, 1, 2, 0xff, 0xfe, '\r', '\n', 0x80, 'x'})
	in := "From: a@example.org\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
		"preamble\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nd\xc3\xa9j\xc3\xa0 vu\r\nline two  \r\n" +
		"\r\n--b1\r\nContent-Type: text/plain\r\n\r\nplain ascii, unchanged\r\n" +
		"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n" + bin + "\r\n" +
		"--b1\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xe2\x82\xac 5\r\n" +
		"--b1--\r\nepilogue \xff\r\n"
	out := converted(t, in, EightBit)
	if !bytes.Contains(out, []byte("Content-Type: text/plain\r\n\r\nplain ascii, unchanged\r\n--b1")) {
		t.Errorf("a part that fits was changed:\n%s", out)
	}
	if bytes.Contains(out, []byte("8bit")) || bytes.Contains(out, []byte("binary")) {
		t.Errorf("8bit or binary left:\n%s", out)
	}
	// Only long lines asked for: the 8-bit message is left alone.
	if o, did, err := Convert([]byte(in), LongLine); err != nil || did != 0 || !bytes.Equal(o, []byte(in)) {
		t.Errorf("LongLine only: %v %v", did, err)
	}
}

func TestConvertRewrapsLongBase64(t *testing.T) {
	data := bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 600)
	in := "Subject: b\r\nMIME-Version: 1.0\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString(data) + "\r\n"
	converted(t, in, LongLine)
}

func TestConvertFoldsHeader(t *testing.T) {
	var to []string
	for i := 0; i < 80; i++ {
		to = append(to, "someone"+strings.Repeat("x", 5)+"@example.org")
	}
	in := "To: " + strings.Join(to, ", ") + "\r\nSubject: many\r\n\r\nhi\r\n"
	out := converted(t, in, LongLine)
	m, _ := mail.ReadMessage(bytes.NewReader(out))
	list, err := m.Header.AddressList("To")
	if err != nil || len(list) != 80 {
		t.Fatalf("To after folding: %d %v", len(list), err)
	}
}

func TestConvertRefuses(t *testing.T) {
	for name, in := range map[string]string{
		"8-bit header":      "Subject: d\xc3\xa9j\xc3\xa0\r\n\r\nhi\r\n",
		"unfoldable header": "X-Long: " + strings.Repeat("y", 1200) + "\r\n\r\nhi\r\n",
		"unknown encoding":  "Content-Type: text/plain\r\nContent-Transfer-Encoding: x-uue\r\n\r\n\xff\r\n",
	} {
		if _, _, err := Convert([]byte(in), EightBit|LongLine); !errors.Is(err, ErrCannotConvert) {
			t.Errorf("%s: %v", name, err)
		}
	}
	deep := "Content-Type: message/rfc822\r\n\r\n"
	in := strings.Repeat(deep, MaxDepth+2) + "\xff\r\n"
	if _, _, err := Convert([]byte(in), EightBit); !errors.Is(err, ErrCannotConvert) {
		t.Errorf("too deep: %v", err)
	}
}

func TestConvertNothingToDo(t *testing.T) {
	in := []byte("Subject: a\r\n\r\nhello\r\n")
	out, did, err := Convert(in, EightBit|LongLine)
	if err != nil || did != 0 || &out[0] != &in[0] {
		t.Fatalf("%v %v", did, err)
	}
}

// FuzzConvert: Convert never panics, and what it returns fits and is
// stable (converting it again changes nothing).
func FuzzConvert(f *testing.F) {
	f.Add([]byte("Subject: a\r\n\r\nhello\r\n"), uint8(3))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n\xff\r\n--b--\r\n"), uint8(1))
	f.Add([]byte("Content-Type: message/rfc822\r\n\r\nContent-Type: text/html\r\n\r\n\xe9\r\n"), uint8(1))
	f.Add([]byte("Content-Transfer-Encoding: base64\r\n\r\n"+strings.Repeat("QUJD", 300)+"\r\n"), uint8(2))
	f.Add([]byte("Content-Transfer-Encoding: quoted-printable\r\n\r\n=E9=\r\n"+strings.Repeat("a", 1100)+"\r\n"), uint8(2))
	f.Fuzz(func(t *testing.T, msg []byte, n uint8) {
		need := Need(n) & (EightBit | LongLine)
		out, _, err := Convert(msg, need)
		if err != nil {
			return
		}
		got, err := Scan(bytes.NewReader(out))
		if err != nil || got&need != 0 {
			t.Fatalf("still %v after conversion:\n%q", got, out)
		}
		again, did, err := Convert(out, need)
		if err != nil || did != 0 || !bytes.Equal(again, out) {
			t.Fatalf("not stable: %v %v", did, err)
		}
	})
}

// BenchmarkScan: the cost smtpout adds to every delivery (one read of the
// message): a 100 KiB message of 72-octet lines.
func BenchmarkScan(b *testing.B) {
	msg := []byte("Subject: bench\r\n\r\n" + strings.Repeat(strings.Repeat("x", 70)+"\r\n", 100<<10/72))
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if n, err := Scan(bytes.NewReader(msg)); n != 0 || err != nil {
			b.Fatal(n, err)
		}
	}
}
