package content

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func load(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "corpus", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCorpus(t *testing.T) {
	tests := []struct {
		file        string
		subject     string
		from        string
		textHas     string
		attachments []string // names
		malformed   bool
	}{
		{file: "spamassassin/spam/gtube.eml", subject: "GTUBE", from: "sender@example.com", textHas: "GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL"},
		{file: "spamassassin/spam/gtubedcc_crlf.eml", textHas: "GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL"},
		{file: "rspamd/gtube.eml", textHas: "GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL"},
		{file: "rspamd/exe_attm.eml", from: "root@srv.example.com", textHas: "This is a test mailing", attachments: []string{"hello_world.exe"}},
		{file: "rspamd/bad_ext.dotted_file_name.eml", attachments: []string{"bad_ext.dotted_file_name.exe"}},
		{file: "enmime/mail/qp-utf8-header.raw", subject: "MIME UTF8 Test \u00a2 More Text"},
		{file: "enmime/mail/attachment.raw", attachments: []string{"test.html"}},
		{file: "spamassassin/nice/cjk/iso-2022-jp.2", subject: "[ports-jp 8947] Re: ipv6 & ruby"},
		{file: "enmime/mail/multipart-wo-boundary.raw", malformed: true},
		{file: "rspamd/ham.eml"},
		{file: "rspamd/newsletter.eml"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			m, err := Parse(load(t, tt.file), Options{})
			if err != nil {
				t.Fatal(err)
			}
			if tt.subject != "" && strings.TrimSpace(m.Subject()) != tt.subject {
				t.Errorf("subject %q, want %q", m.Subject(), tt.subject)
			}
			if tt.from != "" && m.From() != tt.from {
				t.Errorf("from %q, want %q", m.From(), tt.from)
			}
			if !strings.Contains(m.Text(), tt.textHas) {
				t.Errorf("text %q does not contain %q", m.Text(), tt.textHas)
			}
			var names []string
			for _, a := range m.Attachments() {
				names = append(names, a.Name)
			}
			if strings.Join(names, ",") != strings.Join(tt.attachments, ",") {
				t.Errorf("attachments %q, want %q", names, tt.attachments)
			}
			if m.Malformed() != tt.malformed {
				t.Errorf("malformed %v, want %v", m.Malformed(), tt.malformed)
			}
		})
	}
}

// mustParse parses raw with the default options or fails the test.
func mustParse(t *testing.T, raw string) *Message {
	t.Helper()
	m, err := Parse([]byte(raw), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestHTMLStripped(t *testing.T) {
	raw := "From: a@b.example\r\nContent-Type: text/html\r\n\r\n<html><style>p{}</style><script>x()</script><!-- c --><p>Hello&nbsp;<b>world</b></p></html>"
	m := mustParse(t, raw)
	got := strings.Join(strings.Fields(m.Text()), " ")
	if got != "Hello world" {
		t.Errorf("text %q", got)
	}
}

func TestBounds(t *testing.T) {
	t.Run("header too big", func(t *testing.T) {
		raw := "Subject: " + strings.Repeat("x", 2000) + "\r\n\r\nbody"
		if _, err := Parse([]byte(raw), Options{MaxHeaderBytes: 1000}); err == nil {
			t.Fatal("want error")
		}
	})
	t.Run("text bounded", func(t *testing.T) {
		raw := "Subject: x\r\n\r\n" + strings.Repeat("a", 5000)
		m, _ := Parse([]byte(raw), Options{MaxText: 100})
		if len(m.Text()) != 100 {
			t.Errorf("len %d", len(m.Text()))
		}
	})
	t.Run("header fields bounded", func(t *testing.T) {
		raw := strings.Repeat("X-A: 1\r\n", 50) + "Subject: s\r\n\r\nb"
		m, _ := Parse([]byte(raw), Options{MaxHeaderFields: 10})
		if !m.HeaderMalformed() || len(m.HeaderValues("X-A")) != 10 {
			t.Errorf("malformed %v, fields %d", m.HeaderMalformed(), len(m.HeaderValues("X-A")))
		}
	})
	t.Run("depth bounded", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("Subject: deep\r\n")
		for i := 0; i < 30; i++ {
			b.WriteString("Content-Type: multipart/mixed; boundary=b" + string(rune('a'+i%26)) + string(rune('0'+i/26)) + "\r\n\r\n--b" + string(rune('a'+i%26)) + string(rune('0'+i/26)) + "\r\n")
		}
		b.WriteString("Content-Type: text/plain\r\n\r\ndeep text\r\n")
		m, _ := Parse([]byte(b.String()), Options{MaxDepth: 5})
		if !m.Malformed() {
			t.Error("want malformed")
		}
	})
	t.Run("headers only", func(t *testing.T) {
		m, err := Parse([]byte("Subject: only"), Options{})
		if err != nil || m.Subject() != "only" || m.Text() != "" {
			t.Errorf("subject %q text %q err %v", m.Subject(), m.Text(), err)
		}
	})
}

func FuzzParse(f *testing.F) {
	filepath.WalkDir(filepath.Join("testdata", "corpus"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(p, ".md") && !strings.Contains(p, "LICENSE") && !strings.Contains(p, "NOTICE") {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
		return nil
	})
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := Parse(raw, Options{MaxText: 4096, MaxParts: 50})
		if err != nil {
			return
		}
		_ = m.Subject()
		_ = m.Header("Content-Type")
		if len(m.Text()) > 4096 {
			t.Fatalf("text %d bytes", len(m.Text()))
		}
		if len(m.Attachments()) > 100 {
			t.Fatal("too many attachments")
		}
		_ = m.Malformed()
	})
}

// TestTextParts: the text parts are joined by one newline each; a part
// that adds nothing adds no newline, and MaxText cuts the joined text.
func TestTextParts(t *testing.T) {
	part := func(ct, body string) string {
		return "--b\r\nContent-Type: " + ct + "\r\n\r\n" + body + "\r\n"
	}
	raw := "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		part("text/plain", "one") + part("text/plain", "") + part("text/html", "<p>two</p>") + part("text/plain", "three") + "--b--\r\n"
	m := mustParse(t, raw)
	if got := m.Text(); got != "one\n two \nthree" {
		t.Errorf("text %q", got)
	}
	for max, want := range map[int]string{4: "one", 6: "one\nth", 9: "one\n tw\nt"} {
		m, _ := Parse([]byte(raw), Options{MaxText: max})
		if got := m.Text(); got != want {
			t.Errorf("MaxText %d: text %q, want %q", max, got, want)
		}
	}
}

func TestLinkTargetsKept(t *testing.T) {
	raw := "Content-Type: text/html\r\n\r\n<p>Click <a class=x HREF=\"http://evil.example/login\">www.bank.example</a>" +
		"<img src='http://img.example/p.gif'> <a name=top>\u0130\u0130<a href=http://plain.example>x</a></p>"
	m := mustParse(t, raw)
	for _, want := range []string{"http://evil.example/login", "http://img.example/p.gif", "http://plain.example", "www.bank.example"} {
		if !strings.Contains(m.Text(), want) {
			t.Errorf("text %q lacks %q", m.Text(), want)
		}
	}
	if strings.Contains(m.Text(), "class") {
		t.Errorf("text %q keeps tag attributes", m.Text())
	}
}

func TestRawAccessors(t *testing.T) {
	raw := "Subject: =?utf-8?q?hi?=\r\nX-A: 1\r\nX-A: 2\r\n\r\nbody\r\n"
	m := mustParse(t, raw)
	if got := m.RawHeader("subject"); got != "=?utf-8?q?hi?=" {
		t.Errorf("RawHeader = %q", got)
	}
	fs := m.Fields()
	if len(fs) != 3 || fs[1].Name != "X-A" || fs[2].Value != "2" {
		t.Errorf("Fields = %q", fs)
	}
	if string(m.Body()) != "body\r\n" || len(m.Raw()) != len(raw) {
		t.Errorf("Body = %q", m.Body())
	}
}

func TestFromLegacyCharset(t *testing.T) {
	raw := "From: =?windows-1251?B?wO3k8OXpIM/u8uDv7uI=?= <Info@Sender.example>\r\nTo: a@b.example\r\n\r\nx"
	m := mustParse(t, raw)
	if m.From() != "info@sender.example" {
		t.Errorf("From = %q", m.From())
	}
}
