package analysis

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"moat/policy/content"
)

// realistic builds a ~20 KB newsletter-like message: a text/plain and a
// text/html alternative with links, images, styles and a hidden block.
func realistic() []byte {
	var plain, html strings.Builder
	html.WriteString(`<html><head><style>p{margin:0}</style><title>News</title></head><body bgcolor="#ffffff"><table>`)
	for i := 0; plain.Len() < 7000; i++ {
		fmt.Fprintf(&plain, "Item %d: Our weekly offers are here, read more at https://shop.example.com/item/%d?utm=news\r\n", i, i)
	}
	for i := 0; html.Len() < 12000; i++ {
		fmt.Fprintf(&html, `<tr><td style="font-family:Arial;font-size:14px;color:#333333"><p>Item %d: Our weekly offers are here.</p>`+
			`<a href="https://shop.example.com/item/%d?utm=news">Read more</a> <img src="https://img.example-cdn.net/i/%d.png" width="120" height="80" alt="item"></td></tr>`, i, i, i)
	}
	html.WriteString(`</table><div style="display:none">preheader text for the inbox</div><p><a href="https://bit.ly/xyz">www.shop.example.com</a></p></body></html>`)
	body := multipart("alternative", "BOUNDARY",
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"+plain.String(),
		"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"+html.String())
	hdr := stdHdr + "\nReply-To: news@shop.example.com\nX-Mailer: Newsletter 1.0\n" +
		"Received: from out.shop.example.com (out.shop.example.com [192.0.2.10]) by mx.rcpt.example; Thu, 03 Dec 2026 10:00:05 +0000\n" +
		"MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=BOUNDARY"
	return msg(hdr, body)
}

func BenchmarkAnalyzeAll(b *testing.B) {
	raw := realistic()
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := content.Parse(raw, content.Options{})
		if err != nil {
			b.Fatal(err)
		}
		r := Analyze(context.Background(), m, Input{Sender: "bounce@shop.example.com", Now: now})
		r.All()
	}
}

func BenchmarkHeadersOnly(b *testing.B) {
	raw := realistic()
	b.ReportAllocs()
	for b.Loop() {
		m, _ := content.Parse(raw, content.Options{})
		Analyze(context.Background(), m, Input{}).Headers()
	}
}

func TestRealisticSize(t *testing.T) {
	raw := realistic()
	if len(raw) < 18000 || len(raw) > 24000 {
		t.Fatalf("benchmark message is %d bytes", len(raw))
	}
	r := analyze(t, raw, Input{})
	if r.URLs().Count < 50 || !r.HTML().HiddenText || r.URLs().Shorteners != 1 || !r.URLs().TextMismatch {
		t.Errorf("urls %+v html %+v", summary(r.URLs()), *r.HTML())
	}
}
