package analysis

import (
	"context"
	"net/mail"
	"strings"
	"testing"
	"time"

	"moat/policy/content"
)

// Fuzz targets for every parser of message input. Each iteration is
// small: the inputs are bounded by the fuzzer and every loop by Options.

func FuzzURLs(f *testing.F) {
	for _, s := range []string{
		"see https://WWW.Example.COM./path now", "www.a.example", "http://0x7f000001/", "http://0177.1/",
		"http://[::1]:99999/", "http://bank.example@evil.example/", "http://bücher.example/", "http://xn--80ak6aa92e.com/",
		"https:\\\\evil.example\\x", "http://%65vil.example/", "http://", "www.", "http://a@b@c:1:2/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := 0
		scanText(s, 100, func(u string) {
			n++
			if got, ok := parseURL(u, "text"); ok && got.Host == "" {
				t.Fatalf("empty host from %q", u)
			}
		})
		if n > 100 {
			t.Fatalf("%d URLs past the limit", n)
		}
		parseURL(s, "href")
		inetAton(s)
		mixedScript(s)
		linkTextMismatch(anchor{href: s, text: s})
	})
}

func FuzzHTML(f *testing.F) {
	for _, s := range []string{
		`<p>Hello <b>world</b></p>`, `<div style="display:none">x</div>`, `<font color=#fff>x</font>`,
		`<a href="http://evil.example">www.bank.example</a>`, `<td bgcolor="#000"><span style="color:rgb(1,2,3);font-size:1px">x`,
		`<script>"</script><style>x{}</style><img src=x><form action=y><iframe src=z>`, `<a href="`, `<<<>>>&amp;&#x41;`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := content.Parse(htmlMsg(s), content.Options{})
		if err != nil {
			return
		}
		r := Analyze(context.Background(), m, Input{Options: Options{MaxURLs: 50, MaxHTMLBytes: 64 << 10}})
		h := r.HTML()
		if h.Bytes > 64<<10 {
			t.Fatalf("tokenised %d bytes", h.Bytes)
		}
		if u := r.URLs(); len(u.List) > 50 {
			t.Fatalf("kept %d URLs", len(u.List))
		}
		if tx := r.Text(); tx.Words != countWords(r.visible) {
			t.Fatalf("text words %d, countWords %d", tx.Words, countWords(r.visible))
		}
		parseColor(s)
		tinySize(s)
	})
}

func FuzzZipList(f *testing.F) {
	f.Add(zipBytes(f, "a.txt", "b.pdf.exe"))
	f.Add(zipBomb(65535))
	f.Add(zipBomb(1))
	f.Add([]byte("PK\x05\x06"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &Result{opt: Options{MaxZipMembers: 20}.withDefaults()}
		r.listZip(&Part{data: data})
		if len(r.mime.ZipMembers) > 20 {
			t.Fatalf("listed %d members", len(r.mime.ZipMembers))
		}
	})
}

func FuzzHeaderFields(f *testing.F) {
	for _, s := range []string{
		"Thu, 03 Dec 2026 10:00:00 +0000", "3 Dec 26 10:00 GMT", "<abc@example.org>", "<a@[1.2.3.4]> (comment)",
		`<"quoted"@x>`, "from a.example (a.example [10.0.0.1]) by b; Thu, 03 Dec 2026 10:00:00 +0000", "%RND_MAILER",
		`"x@bank.example" <y@evil.example>`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// the fast path reads what net/mail reads, as net/mail does
		if got, ok := ParseDate(s); ok {
			if want, err := mail.ParseDate(s); err != nil || !got.Equal(want) {
				t.Fatalf("ParseDate(%q) = %v, net/mail says %v, %v", s, got, want, err)
			}
		}
		validMessageID(s)
		dotAtom(s)
		forgedMailer(s, true)
		nameHoldsOtherAddress(s, "example.org")
		bracketIP(s)
		privateClaimsPublic(s, s)
		r := &Result{opt: DefaultOptions()}
		r.received([]string{s, s})
	})
}

func FuzzMIME(f *testing.F) {
	f.Add("multipart/mixed; boundary=b", "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n", "")
	f.Add("text/plain; charset=utf-8", "caf\xc3\xa9 http://x.example", "quoted-printable")
	f.Add("application/zip; name=a.zip", "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==", "base64")
	f.Add("message/rfc822", "Content-Type: multipart/alternative; boundary=q\r\n\r\n--q\r\n\r\n<p>x</p>", "8bit")
	f.Fuzz(func(t *testing.T, ctype, body, cte string) {
		if strings.ContainsAny(ctype+cte, "\r\n") {
			return
		}
		raw := msg(stdHdr+"\nContent-Type: "+ctype+"\nContent-Transfer-Encoding: "+cte, body)
		m, err := content.Parse(raw, content.Options{})
		if err != nil {
			return
		}
		r := Analyze(context.Background(), m, Input{Now: time.Unix(0, 0), Options: Options{MaxParts: 50, MaxDepth: 8}})
		r.All()
		if r.MIME().Parts > 50 {
			t.Fatalf("visited %d parts", r.MIME().Parts)
		}
	})
}

func FuzzAnalyze(f *testing.F) {
	f.Add(string(textMsg("hello http://x.example")))
	f.Add(string(htmlMsg(`<a href="http://0x7f000001">www.bank.example</a>`)))
	f.Add(string(attachMsg("application/zip", "a.zip", "base64", zipBomb(3))))
	for _, name := range []string{"rspamd/spam.eml", "rspamd/newsletter.eml", "rspamd/exe_attm.eml", "enmime/mail/html-mime-inline.raw"} {
		if b, err := readFile(corpusDir + "/" + name); err == nil {
			f.Add(string(b))
		}
	}
	f.Fuzz(func(t *testing.T, raw string) {
		m, err := content.Parse([]byte(raw), content.Options{})
		if err != nil {
			return
		}
		r := Analyze(context.Background(), m, Input{Sender: "a@b.example", Options: Options{MaxParts: 50}})
		r.All()
		r.VisibleText()
		r.HiddenText()
		r.Parts()
	})
}
