package analysis

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// msg builds a message from header lines and a body.
func msg(hdr string, body string) []byte {
	h := strings.ReplaceAll(strings.TrimSpace(hdr), "\n", "\r\n")
	return []byte(h + "\r\n\r\n" + body)
}

const stdHdr = `From: Alice <alice@sender.example>
To: bob@rcpt.example
Subject: hello there
Date: Thu, 03 Dec 2026 10:00:00 +0000
Message-ID: <abc.123@sender.example>`

func htmlMsg(html string) []byte {
	return msg(stdHdr+"\nContent-Type: text/html; charset=utf-8", html)
}

func textMsg(text string) []byte {
	return msg(stdHdr+"\nContent-Type: text/plain; charset=utf-8", text)
}

// multipart builds a multipart body from whole parts (header + body each).
func multipart(kind, boundary string, parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		fmt.Fprintf(&b, "--%s\r\n%s\r\n", boundary, p)
	}
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	return b.String()
}

// factCase is a message and a check of one group of its facts.
type factCase[F any] struct {
	name  string
	raw   []byte
	check func(*F) bool
}

// checkFacts analyzes each case's message and checks the group's facts.
func checkFacts[F any](t *testing.T, tests []factCase[F], group func(*Result) *F) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if f := group(analyze(t, tt.raw, Input{})); !tt.check(f) {
				t.Errorf("facts %+v", *f)
			}
		})
	}
}

func TestURLFacts(t *testing.T) {
	tests := []factCase[URLFacts]{
		{"plain text URL", textMsg("see https://WWW.Example.COM./path now"), func(f *URLFacts) bool {
			return f.Count == 1 && f.List[0].Host == "www.example.com" && f.List[0].Domain == "example.com" && f.List[0].Source == "text"
		}},
		{"bare www host", textMsg("visit www.shop.example.co.uk today."), func(f *URLFacts) bool {
			return f.Count == 1 && f.List[0].Domain == "example.co.uk" && f.List[0].Scheme == ""
		}},
		{"href and src", htmlMsg(`<a href="http://a.example/x">go</a><img src="https://img.example/p.png">`), func(f *URLFacts) bool {
			return f.Count == 2 && slices.Equal(f.Hosts, []string{"a.example", "img.example"})
		}},
		{"URL as HTML text", htmlMsg(`<p>go to http://t.example/x now</p>`), func(f *URLFacts) bool {
			return f.Count == 1 && f.List[0].Host == "t.example" && f.List[0].Source == "text"
		}},
		{"mailto skipped", htmlMsg(`<a href="mailto:x@y.example">mail</a>`), func(f *URLFacts) bool { return f.Count == 0 }},
		{"hex IP", textMsg("http://0x7f000001/x"), func(f *URLFacts) bool {
			return f.IP && f.ObfuscatedIP && f.List[0].Host == "127.0.0.1"
		}},
		{"decimal IP", textMsg("http://2130706433/"), func(f *URLFacts) bool { return f.ObfuscatedIP && f.List[0].Host == "127.0.0.1" }},
		{"octal IP", textMsg("http://0177.0.0.1/"), func(f *URLFacts) bool { return f.ObfuscatedIP && f.List[0].Host == "127.0.0.1" }},
		{"dotted IP", textMsg("http://192.0.2.1:8080/"), func(f *URLFacts) bool { return f.IP && !f.ObfuscatedIP && f.OddPort }},
		{"IPv6", textMsg("http://[2001:db8::1]/"), func(f *URLFacts) bool { return f.IP && f.List[0].Host == "2001:db8::1" }},
		{"userinfo", textMsg("http://bank.example@evil.example/login"), func(f *URLFacts) bool {
			return f.Userinfo && f.List[0].Domain == "evil.example"
		}},
		{"usual ports", textMsg("https://a.example:443/ http://b.example:80/"), func(f *URLFacts) bool { return !f.OddPort && f.Count == 2 }},
		{"shortener", textMsg("https://bit.ly/abc"), func(f *URLFacts) bool { return f.Shorteners == 1 && f.List[0].Shortener }},
		{"punycode", textMsg("http://xn--80ak6aa92e.com/"), func(f *URLFacts) bool { return f.Punycode }},
		{"IDN to A-label", textMsg("http://bücher.example/"), func(f *URLFacts) bool {
			return f.Punycode && f.List[0].Host == "xn--bcher-kva.example"
		}},
		{"mixed script", textMsg("http://pаypal.com/"), func(f *URLFacts) bool { return f.MixedScript && f.Punycode }},
		{"one script", textMsg("http://яндекс.рф/"), func(f *URLFacts) bool { return !f.MixedScript && f.Punycode }},
		{"link text mismatch", htmlMsg(`<a href="http://evil.example/">www.bank.example</a>`), func(f *URLFacts) bool { return f.TextMismatch }},
		{"link text bare domain", htmlMsg(`<a href="http://evil.example/">paypal.com</a>`), func(f *URLFacts) bool { return f.TextMismatch }},
		{"link text same domain", htmlMsg(`<a href="http://www.bank.example/login">https://bank.example</a>`), func(f *URLFacts) bool { return !f.TextMismatch }},
		{"link text words", htmlMsg(`<a href="http://evil.example/">click here.</a>`), func(f *URLFacts) bool { return !f.TextMismatch }},
		{"form action", htmlMsg(`<form action="http://phish.example/post"><input></form>`), func(f *URLFacts) bool {
			return f.Count == 1 && f.List[0].Source == "action"
		}},
		{"no URLs", textMsg("nothing here, not even http or www"), func(f *URLFacts) bool { return f.Count == 0 && !f.Truncated }},
	}
	checkFacts(t, tests, (*Result).URLs)
}

func TestHTMLFacts(t *testing.T) {
	tests := []factCase[HTMLFacts]{
		{"html only", htmlMsg(`<p>Hello <b>world</b></p>`), func(f *HTMLFacts) bool {
			return f.Present && f.Only && f.Words == 2 && !f.HiddenText
		}},
		{"with plain alternative", msg(stdHdr+"\nContent-Type: multipart/alternative; boundary=b1", multipart("alternative", "b1",
			"Content-Type: text/plain\r\n\r\nHello world", "Content-Type: text/html\r\n\r\n<p>Hello world</p>")),
			func(f *HTMLFacts) bool { return f.Present && !f.Only }},
		{"display none", htmlMsg(`<p>Buy</p><div style="display: none">lorem ipsum dolor</div>`), func(f *HTMLFacts) bool {
			return f.HiddenText && f.Invisible && f.HiddenChars == 15 && f.Words == 1
		}},
		{"visibility hidden", htmlMsg(`<span style="VISIBILITY:hidden">x y z</span>`), func(f *HTMLFacts) bool { return f.Invisible }},
		{"tiny font", htmlMsg(`<span style="font-size:1px">salad words</span>`), func(f *HTMLFacts) bool { return f.TinyText && f.HiddenText }},
		{"zero font", htmlMsg(`<span style="font-size:0">salad</span>`), func(f *HTMLFacts) bool { return f.TinyText }},
		{"normal font", htmlMsg(`<span style="font-size:12px">normal</span>`), func(f *HTMLFacts) bool { return !f.HiddenText }},
		{"white on white", htmlMsg(`<body><font color="#FFFFFF">hidden salad</font></body>`), func(f *HTMLFacts) bool { return f.LowContrast }},
		{"near background", htmlMsg(`<td bgcolor="#000000"><span style="color:#080808">dark</span></td>`), func(f *HTMLFacts) bool { return f.LowContrast }},
		{"contrast fine", htmlMsg(`<td bgcolor="#000000"><span style="color:white">visible</span></td>`), func(f *HTMLFacts) bool { return !f.HiddenText }},
		{"image only", htmlMsg(`<a href="http://x.example"><img src="http://x.example/a.jpg"></a>`), func(f *HTMLFacts) bool {
			return f.Images == 1 && f.ImageOnly && f.Links == 1
		}},
		{"forms scripts frames", htmlMsg(`<form></form><script>var a="<p>not text</p>"</script><iframe src="http://f.example"></iframe><object data="x"></object>`),
			func(f *HTMLFacts) bool {
				return f.Forms == 1 && f.Scripts == 1 && f.IFrames == 1 && f.Objects == 1 && f.Words == 0
			}},
		{"text ratio", htmlMsg(`<p>abcd</p>`), func(f *HTMLFacts) bool { return f.TextRatio > 0.3 && f.TextRatio < 0.5 }},
		{"class hides", htmlMsg(`<style>/* c */ .pre, .x { display : none }</style><p>Hi</p><div class="a x">salad</div>`), func(f *HTMLFacts) bool {
			return f.Invisible && f.HiddenChars == 5 && f.Words == 1
		}},
		{"media rule skipped", htmlMsg(`<style>@media (max-width:600px){ .m{display:none} }</style><div class="m">shown</div>`), func(f *HTMLFacts) bool {
			return !f.HiddenText && f.Words == 1
		}},
		{"font-size 0 layout trick", htmlMsg(`<div style="font-size:0"> <span style="font-size:14px">column one</span> </div>`), func(f *HTMLFacts) bool {
			return !f.HiddenText && f.Words == 2
		}},
		{"contrast not inherited", htmlMsg(`<div style="color:#fff"><p style="color:#000">readable</p></div>`), func(f *HTMLFacts) bool { return !f.HiddenText }},
		{"text over picture", htmlMsg(`<td background="http://i.example/bg.jpg" style="color:#ffffff">banner</td>`), func(f *HTMLFacts) bool {
			return !f.HiddenText && f.Images == 0
		}},
		{"visibility undone", htmlMsg(`<div style="visibility:hidden"><p style="visibility:visible">seen</p></div>`), func(f *HTMLFacts) bool { return !f.HiddenText }},
		{"no html", textMsg("plain"), func(f *HTMLFacts) bool { return !f.Present && !f.Only }},
	}
	checkFacts(t, tests, (*Result).HTML)
}

func TestHiddenAndVisibleText(t *testing.T) {
	r := analyze(t, htmlMsg(`<p>Dear friend</p><div style="display:none">spam salad</div>`), Input{})
	if !strings.Contains(r.HiddenText(), "spam salad") || strings.Contains(r.VisibleText(), "salad") || !strings.Contains(r.VisibleText(), "Dear friend") {
		t.Errorf("visible %q hidden %q", r.VisibleText(), r.HiddenText())
	}
}

func zipBytes(t testing.TB, names ...string) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, n := range names {
		w, err := zw.Create(n)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("data"))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func attachMsg(ctype, name, cte string, data []byte) []byte {
	body := string(data)
	switch cte {
	case "base64":
		body = base64.StdEncoding.EncodeToString(data)
	case "base64-chunked":
		body, cte = chunked(data), "base64"
	}
	disp := ""
	if name != "" {
		disp = "\r\nContent-Disposition: attachment; filename=\"" + name + "\""
	}
	part := "Content-Type: " + ctype + "\r\nContent-Transfer-Encoding: " + cte + disp + "\r\n\r\n" + body
	return msg(stdHdr+"\nContent-Type: multipart/mixed; boundary=zz", multipart("mixed", "zz", "Content-Type: text/plain\r\n\r\nsee attached", part))
}

// chunked base64-encodes b in padded 7-byte chunks, one per line.
func chunked(b []byte) string {
	var out strings.Builder
	for len(b) > 0 {
		n := min(7, len(b))
		out.WriteString(base64.StdEncoding.EncodeToString(b[:n]) + "\r\n")
		b = b[n:]
	}
	return out.String()
}

var peHeader = append([]byte("MZ\x90\x00"), make([]byte, 200)...)

func TestMIMEFacts(t *testing.T) {
	pe := bytes.Clone(peHeader)
	copy(pe[0x3c:], []byte{0x80, 0, 0, 0})
	pe = append(pe[:0x80], append([]byte("PE\x00\x00"), make([]byte, 64)...)...)
	pdf := []byte("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n")
	tests := []factCase[MIMEFacts]{
		{"simple", textMsg("hi"), func(f *MIMEFacts) bool {
			return f.Parts == 1 && f.Depth == 0 && !f.Malformed && slices.Equal(f.Types, []string{"text/plain"})
		}},
		{"pdf ok", attachMsg("application/pdf", "a.pdf", "base64", pdf), func(f *MIMEFacts) bool {
			return !f.TypeMismatch && f.Attachments == 1 && f.Parts == 3 && f.Depth == 1
		}},
		{"pdf as jpeg", attachMsg("image/jpeg", "a.jpg", "base64", pdf), func(f *MIMEFacts) bool {
			return f.TypeMismatch && f.Mismatches[0] == "image/jpeg>application/pdf"
		}},
		{"exe as pdf", attachMsg("application/pdf", "invoice.pdf", "base64", pe), func(f *MIMEFacts) bool {
			return f.HiddenExe && f.Executable && f.TypeMismatch
		}},
		{"double extension", attachMsg("application/octet-stream", "invoice.pdf.exe", "base64", []byte("x")), func(f *MIMEFacts) bool {
			return f.DoubleExt && f.Executable
		}},
		{"padded double extension", attachMsg("application/octet-stream", "photo.jpg    .scr", "base64", []byte("x")), func(f *MIMEFacts) bool {
			return f.DoubleExt
		}},
		{"zip members", attachMsg("application/zip", "a.zip", "base64", zipBytes(t, "readme.txt", "Invoice.PDF.exe")), func(f *MIMEFacts) bool {
			return f.Archives == 1 && slices.Equal(f.ZipMembers, []string{"readme.txt", "invoice.pdf.exe"}) && f.ZipExecutable
		}},
		{"zip clean", attachMsg("application/octet-stream", "a.zip", "base64", zipBytes(t, "a.txt")), func(f *MIMEFacts) bool {
			return f.Archives == 1 && !f.ZipExecutable && !f.TypeMismatch
		}},
		{"bad base64", attachMsg("application/octet-stream", "a.bin", "base64", nil), func(f *MIMEFacts) bool { return !f.BadBase64 }},
		{"bad base64 chars", msg(stdHdr+"\nContent-Type: text/plain\nContent-Transfer-Encoding: base64", "aGVsbG8*!gd29ybGQ="), func(f *MIMEFacts) bool { return f.BadBase64 }},
		{"chunk padding", attachMsg("application/zip", "a.zip", "base64-chunked", zipBytes(t, "x.exe")), func(f *MIMEFacts) bool {
			return f.BadBase64 && f.Archives == 1 && f.ZipExecutable
		}},
		{"bad qp", msg(stdHdr+"\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable", "a=ZZb"), func(f *MIMEFacts) bool { return f.BadQP }},
		{"8bit in 7bit", msg(stdHdr+"\nContent-Type: text/plain; charset=utf-8", "caf\xc3\xa9"), func(f *MIMEFacts) bool { return f.EightBit7Bit && !f.CharsetMismatch }},
		{"us-ascii with 8bit", msg(stdHdr+"\nContent-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: 8bit", "caf\xe9"), func(f *MIMEFacts) bool {
			return f.CharsetMismatch && !f.EightBit7Bit
		}},
		{"invalid utf-8", msg(stdHdr+"\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit", "caf\xe9 \xff"), func(f *MIMEFacts) bool {
			return f.InvalidUTF8 && f.CharsetMismatch
		}},
		{"unknown charset", msg(stdHdr+"\nContent-Type: text/plain; charset=x-klingon", "qapla"), func(f *MIMEFacts) bool { return f.UnknownCharset }},
		{"unknown cte", msg(stdHdr+"\nContent-Type: text/plain\nContent-Transfer-Encoding: x-uuencode", "x"), func(f *MIMEFacts) bool { return f.BadEncoding }},
		{"no boundary", msg(stdHdr+"\nContent-Type: multipart/mixed", "x"), func(f *MIMEFacts) bool { return f.Malformed }},
		{"unclosed multipart", msg(stdHdr+"\nContent-Type: multipart/mixed; boundary=q", "--q\r\n\r\nbody"), func(f *MIMEFacts) bool {
			return f.Malformed && f.Parts == 2
		}},
		{"bad content-type", msg(stdHdr+"\nContent-Type: ;;;", "x"), func(f *MIMEFacts) bool { return f.Malformed }},
		{"rfc822 inside", msg(stdHdr+"\nContent-Type: message/rfc822", "Content-Type: text/html\r\n\r\n<p>x</p>"), func(f *MIMEFacts) bool {
			return f.Parts == 2 && f.Depth == 1 && slices.Equal(f.Types, []string{"text/html"})
		}},
	}
	checkFacts(t, tests, (*Result).MIME)
}

func TestHeaderFacts(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	base := func(repl ...string) []byte {
		h := stdHdr
		for i := 0; i+1 < len(repl); i += 2 {
			h = strings.Replace(h, repl[i], repl[i+1], 1)
		}
		return msg(h, "body")
	}
	tests := []struct {
		name   string
		raw    []byte
		sender string
		check  func(*HeaderFacts) bool
	}{
		{"clean", base(), "alice@sender.example", func(f *HeaderFacts) bool {
			return !f.DateMissing && !f.DateMalformed && !f.DateFuture && !f.DatePast && !f.MessageIDMissing && !f.MessageIDMalformed &&
				!f.ReplyToDiffers && !f.SenderDiffers && !f.Freemail && !f.SubjectCaps && !f.ToMissing && f.ToCount == 1 && f.FromDomain == "sender.example"
		}},
		{"date missing", base("Date: Thu, 03 Dec 2026 10:00:00 +0000\n", ""), "", func(f *HeaderFacts) bool { return f.DateMissing }},
		{"date malformed", base("Thu, 03 Dec 2026 10:00:00 +0000", "yesterday"), "", func(f *HeaderFacts) bool { return f.DateMalformed }},
		{"date future", base("03 Dec 2026", "05 Dec 2026"), "", func(f *HeaderFacts) bool { return f.DateFuture && !f.DatePast }},
		{"date past", base("03 Dec 2026", "03 Dec 2024"), "", func(f *HeaderFacts) bool { return f.DatePast }},
		{"date obsolete form", base("Thu, 03 Dec 2026 10:00:00 +0000", "3 Dec 26 10:00 GMT"), "", func(f *HeaderFacts) bool { return !f.DateMalformed }},
		{"msgid missing", base("Message-ID: <abc.123@sender.example>", "X-Other: 1"), "", func(f *HeaderFacts) bool { return f.MessageIDMissing }},
		{"msgid malformed", base("<abc.123@sender.example>", "abc123"), "", func(f *HeaderFacts) bool { return f.MessageIDMalformed }},
		{"msgid no right", base("<abc.123@sender.example>", "<abc@>"), "", func(f *HeaderFacts) bool { return f.MessageIDMalformed }},
		{"msgid literal", base("<abc.123@sender.example>", "<abc@[10.0.0.1]>"), "", func(f *HeaderFacts) bool { return !f.MessageIDMalformed }},
		{"name holds address", base("Alice <alice@sender.example>", `"service@bank.example" <x@evil.example>`), "", func(f *HeaderFacts) bool {
			return f.FromNameAddress
		}},
		{"name holds own address", base("Alice <alice@sender.example>", `"alice@sender.example" <alice@mail.sender.example>`), "", func(f *HeaderFacts) bool {
			return !f.FromNameAddress
		}},
		{"reply-to differs", base("To:", "Reply-To: x@gmail.com\nTo:"), "", func(f *HeaderFacts) bool { return f.ReplyToDiffers && f.ReplyToFreemail }},
		{"reply-to same org", base("To:", "Reply-To: x@lists.sender.example\nTo:"), "", func(f *HeaderFacts) bool { return !f.ReplyToDiffers }},
		{"sender differs", base(), "bounce@esp.example", func(f *HeaderFacts) bool { return f.SenderDiffers }},
		{"sender subdomain", base(), "bounce@mail.sender.example", func(f *HeaderFacts) bool { return !f.SenderDiffers }},
		{"freemail", base("alice@sender.example", "alice@GMail.com"), "", func(f *HeaderFacts) bool { return f.Freemail }},
		{"subject caps", base("hello there", "YOU HAVE WON A PRIZE"), "", func(f *HeaderFacts) bool { return f.SubjectCaps }},
		{"subject short caps", base("hello there", "RE: OK"), "", func(f *HeaderFacts) bool { return !f.SubjectCaps }},
		{"needless encoding", base("hello there", "=?utf-8?B?aGVsbG8gdGhlcmU=?="), "", func(f *HeaderFacts) bool { return f.SubjectNeedless }},
		{"needed encoding", base("hello there", "=?utf-8?Q?caf=C3=A9?="), "", func(f *HeaderFacts) bool { return !f.SubjectNeedless }},
		{"forged mailer", base("To:", "X-Mailer: Microsoft Outlook %RND_VERSION\nTo:"), "", func(f *HeaderFacts) bool { return f.MailerForged }},
		{"real mailer", base("To:", "X-Mailer: Apple Mail (2.3776.700.51)\nTo:"), "", func(f *HeaderFacts) bool { return !f.MailerForged && f.Mailer != "" }},
		{"to missing", base("To: bob@rcpt.example\n", ""), "", func(f *HeaderFacts) bool { return f.ToMissing }},
		{"undisclosed", base("bob@rcpt.example", "undisclosed-recipients:;"), "", func(f *HeaderFacts) bool { return f.ToUndisclosed && f.ToCount == 0 }},
		{"received ok", base("To:", "Received: from a.example (a.example [192.0.2.1]) by mx.example; Thu, 03 Dec 2026 10:01:00 +0000\n"+
			"Received: from b.example (b.example [192.0.2.2]) by a.example; Thu, 03 Dec 2026 10:00:30 +0000\nTo:"), "", func(f *HeaderFacts) bool {
			return f.Received == 2 && f.ReceivedBad == 0 && !f.ReceivedDateOrder && f.ReceivedPrivate == 0
		}},
		{"received forged", base("To:", "Received: garbage\n"+
			"Received: from mail.google.com (unknown [10.1.2.3]) by a.example; Thu, 03 Dec 2026 10:00:30 +0000\n"+
			"Received: from c.example ([192.0.2.3]) by b.example; Fri, 04 Dec 2026 10:00:30 +0000\nTo:"), "", func(f *HeaderFacts) bool {
			return f.Received == 3 && f.ReceivedBad == 1 && f.ReceivedPrivate == 1 && f.ReceivedDateOrder
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := analyze(t, tt.raw, Input{Sender: tt.sender, Now: now}).Headers()
			if !tt.check(f) {
				t.Errorf("facts %+v", *f)
			}
		})
	}
}

func TestTextFacts(t *testing.T) {
	tests := []factCase[TextFacts]{
		{"latin", textMsg("Hello world, how are you"), func(f *TextFacts) bool { return f.Script == "latin" && f.Words == 5 && f.NonASCII == 0 }},
		{"cyrillic", textMsg("Привет мир, это письмо"), func(f *TextFacts) bool { return f.Script == "cyrillic" && f.NonASCII == 1 && f.Scripts == 1 }},
		{"mixed", textMsg("Hello Привет"), func(f *TextFacts) bool { return f.Scripts == 2 }},
		{"caps", textMsg("BUY NOW cheap"), func(f *TextFacts) bool { return f.Caps > 0.5 && f.Caps < 0.6 }},
		{"html visible only", htmlMsg(`<p>Γειά σου</p><div style="display:none">hidden latin words here</div>`), func(f *TextFacts) bool {
			return f.Script == "greek" && f.Words == 2
		}},
		{"empty", textMsg(""), func(f *TextFacts) bool { return f.Script == "" && f.Words == 0 }},
		{"legacy charset", msg(stdHdr+"\nContent-Type: text/plain; charset=koi8-r\nContent-Transfer-Encoding: 8bit", "\xf0\xd2\xc9\xd7\xc5\xd4"), func(f *TextFacts) bool {
			return f.Script == "cyrillic"
		}},
	}
	checkFacts(t, tests, (*Result).Text)
}

func TestLazyGroups(t *testing.T) {
	r := analyze(t, htmlMsg(`<a href="http://x.example">x</a>`), Input{})
	r.Headers()
	if r.walk != nil {
		t.Error("header facts walked the body")
	}
	r.MIME()
	if r.html.Present {
		t.Error("MIME facts scanned the HTML")
	}
}

func TestConcurrentUse(t *testing.T) {
	r := analyze(t, htmlMsg(`<p>hi <a href="http://x.example">x</a></p>`), Input{})
	done := make(chan struct{})
	for range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			r.All()
			_ = r.URLs().Count + r.Text().Words
		}()
	}
	for range 8 {
		<-done
	}
	if r.URLs().Count != 1 {
		t.Errorf("count %d", r.URLs().Count)
	}
}

func TestCorpusKnown(t *testing.T) {
	load := func(name string) *Result {
		raw := mustRead(t, corpusDir+"/"+name)
		return analyze(t, raw, Input{})
	}
	if r := load("rspamd/exe_attm.eml"); !r.MIME().Executable {
		t.Errorf("exe_attm: %+v", *r.MIME())
	}
	if r := load("rspamd/newsletter.eml"); !r.HTML().Only || r.URLs().Count == 0 {
		t.Errorf("newsletter: %+v %+v", *r.HTML(), *r.URLs())
	}
	if r := load("rspamd/spam.eml"); r.Text().Script != "cyrillic" || r.Headers().FromMissing {
		t.Errorf("spam: %+v %+v", *r.Text(), *r.Headers())
	}
	if r := load("rspamd/ham.eml"); r.MIME().Malformed || r.Headers().MessageIDMalformed {
		t.Errorf("ham: %+v %+v", *r.MIME(), *r.Headers())
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	m, err := readFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestHasHighBit: a byte from 0x80 is found at every offset, in the
// eight-byte steps and in the tail.
func TestHasHighBit(t *testing.T) {
	for n := 0; n <= 20; n++ {
		b := []byte(strings.Repeat("a", n))
		if hasHighBit(b) {
			t.Errorf("%d ASCII bytes: high bit found", n)
		}
		for i := 0; i < n; i++ {
			c := append([]byte(nil), b...)
			c[i] = 0x80 | byte(i)
			if !hasHighBit(c) {
				t.Errorf("0x%x at %d of %d: not found", c[i], i, n)
			}
		}
	}
}
