package gateway

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"moat/internal/dnsres"
	"moat/internal/dnstest"
	"moat/policy/bayes"
	"moat/policy/content"
	"moat/policy/uribl"
	"moat/rules"
)

// contentRun runs msg offline through rules that read the content facts.
func contentRun(t *testing.T, o ContentOptions, ruleText, msg string) *OfflineResult {
	t.Helper()
	checks := &Checks{Rules: loadRules(t, ruleText, rules.LoadOptions{FactGroups: ContentFactGroups(o)})}
	s := offlineSession("")
	s.Message = []byte(msg)
	return RunOffline(context.Background(), PipelineOptions{Hostname: "mx.example.org", Checks: checks}, s)
}

func hitNames(res *OfflineResult) []string {
	var out []string
	for _, h := range res.Hits {
		out = append(out, h.Rule)
	}
	return out
}

const contentRules = `rules:
  - name: html-only-ip-link
    stage: data
    when: html.only && urls.ip
    action: score
    score: 3
  - name: userinfo
    stage: data
    when: urls.userinfo && any(urls.list, .userinfo && .domain == "evil.example")
    action: score
    score: 2
  - name: no-msgid
    stage: data
    when: hdr.msgid_missing && !hdr.date_missing
    action: score
    score: 1
  - name: hidden-exe
    stage: data
    when: mime.executable
    action: score
    score: 5
  - name: cyrillic
    stage: data
    when: text.script == "cyrillic"
    action: score
    score: 1
  - name: phish-meta
    stage: data
    when: '"html-only-ip-link" in hits && "userinfo" in hits'
    action: reject
    reply: "550 5.7.1 Looks like phishing"
`

// TestContentFactsReachRules: every analysis group is readable by rules in
// an offline run, and meta rules combine them through hits.
func TestContentFactsReachRules(t *testing.T) {
	phish := "From: Bank <service@bank.example>\r\nTo: alice@example.org\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\n" +
		"Subject: verify\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" +
		`<p>Verify your account at <a href="http://192.0.2.7/login">www.bank.example</a> or ` +
		`<a href="http://bank.example@evil.example/x">here</a></p>` + "\r\n"
	res := contentRun(t, ContentOptions{}, contentRules, phish)
	got := strings.Join(hitNames(res), ",")
	for _, want := range []string{"html-only-ip-link", "userinfo", "no-msgid", "phish-meta"} {
		if !strings.Contains(got, want) {
			t.Errorf("hits %s: %s missing", got, want)
		}
	}
	if res.Final.Code != 550 {
		t.Errorf("final %d %s, want the meta rule's 550", res.Final.Code, res.Final.Text)
	}

	exe := "From: <a@far.example>\r\nMessage-ID: <1@far.example>\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\nSubject: x\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=koi8-r\r\n\r\n" +
		"\xf0\xd2\xc9\xd7\xc5\xd4 \xcd\xc9\xd2\r\n--b\r\nContent-Type: application/pdf; name=\"invoice.pdf.exe\"\r\n" +
		"Content-Disposition: attachment; filename=\"invoice.pdf.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--b--\r\n"
	res = contentRun(t, ContentOptions{}, contentRules, exe)
	got = strings.Join(hitNames(res), ",")
	if !strings.Contains(got, "hidden-exe") || !strings.Contains(got, "cyrillic") || strings.Contains(got, "no-msgid") {
		t.Errorf("hits %q, want hidden-exe and cyrillic, not no-msgid", got)
	}
}

// TestContentURIBL: a listed link domain reaches uribl.*, a list that
// fails is an error and never a listing, and nothing is asked of DNS
// when no rule reads uribl.
func TestContentURIBL(t *testing.T) {
	srv := dnstest.NewServer(t)
	srv.Add("evil.example.dbl.test. 300 IN A 127.0.1.2")
	srv.Fail("broken.example.dbl.test.", dns.TypeA, dnstest.ServFail)
	c, err := uribl.New(uribl.Config{Zones: []uribl.Zone{{Zone: "dbl.test", Weight: 4}}, Timeout: 5 * time.Second},
		dnsres.ForTest(srv.Addr()), uribl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	o := ContentOptions{URIBL: c}
	const readsURIBL = `rules:
  - name: uribl-listed
    stage: data
    when: uribl.listed && uribl.score >= 4 && "dbl.test" in uribl.hits
    action: reject
    reply: "554 5.7.1 Message links to a listed domain"
  - name: uribl-failed
    stage: data
    when: uribl.errors > 0
    action: score
    score: 0.1
`
	msg := func(host string) string {
		return "From: <a@far.example>\r\nSubject: x\r\n\r\nsee http://www." + host + "/offer\r\n"
	}
	if res := contentRun(t, o, readsURIBL, msg("evil.example")); res.Final.Code != 554 {
		t.Errorf("listed: final %d %s", res.Final.Code, res.Final.Text)
	}
	res := contentRun(t, o, readsURIBL, msg("broken.example"))
	if res.Final.Code != 250 || !strings.Contains(strings.Join(hitNames(res), ","), "uribl-failed") {
		t.Errorf("failing list: final %d, hits %v", res.Final.Code, hitNames(res))
	}
	before := srv.Queries()
	contentRun(t, o, "rules:\n  - name: big\n    stage: data\n    when: size > 1000000\n    action: reject\n", msg("other.example"))
	if n := srv.Queries() - before; n != 0 {
		t.Errorf("%d DNS queries for a rule set that does not read uribl", n)
	}
}

// TestContentBayes: the classifier's facts, ready only once enough of both
// classes were learned.
func TestContentBayes(t *testing.T) {
	cl := bayes.New(bayes.NewMemStore(), bayes.Options{MinSpam: 3, MinHam: 3})
	learn := func(raw string, c bayes.Class) {
		m, err := content.Parse([]byte(raw), content.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Learn(context.Background(), ClassifierInput(m), bayes.DigestOf(m.Header("Message-ID"), []byte(raw)), c); err != nil {
			t.Fatal(err)
		}
	}
	const ruleText = `rules:
  - name: bayes-spam
    stage: data
    when: bayes.ready && bayes.probability > 0.9
    action: score
    score: 5
`
	spam := func(i int) string {
		return fmt.Sprintf("From: <win%d@lottery.example>\r\nMessage-ID: <%d@lottery.example>\r\nSubject: claim your prize now\r\n\r\nWinner! Claim the lottery prize money, send your bank details %d\r\n", i, i, i)
	}
	ham := func(i int) string {
		return fmt.Sprintf("From: <bob@example.org>\r\nMessage-ID: <%d@example.org>\r\nSubject: meeting notes\r\n\r\nHere are the notes of the meeting about the build schedule %d\r\n", i, i)
	}
	if res := contentRun(t, ContentOptions{Bayes: cl}, ruleText, spam(99)); len(res.Hits) != 0 {
		t.Errorf("an untrained classifier scored: %v", hitNames(res))
	}
	for i := range 3 {
		learn(spam(i), bayes.ClassSpam)
		learn(ham(i), bayes.ClassHam)
	}
	if res := contentRun(t, ContentOptions{Bayes: cl}, ruleText, spam(99)); !strings.Contains(strings.Join(hitNames(res), ","), "bayes-spam") {
		t.Errorf("spam: hits %v", hitNames(res))
	}
	if res := contentRun(t, ContentOptions{Bayes: cl}, ruleText, ham(99)); len(res.Hits) != 0 {
		t.Errorf("ham: hits %v", hitNames(res))
	}
}

func TestReceivedTime(t *testing.T) {
	m, _ := content.Parse([]byte("Received: from a by b; Tue, 3 Apr 2007 10:00:00 -0400\r\nDate: Mon, 1 Jan 2001 00:00:00 +0000\r\n\r\nx"), content.Options{})
	if got := ReceivedTime(m).UTC(); got != time.Date(2007, 4, 3, 14, 0, 0, 0, time.UTC) {
		t.Errorf("ReceivedTime %v", got)
	}
	m, _ = content.Parse([]byte("Date: Mon, 1 Jan 2001 00:00:00 +0000\r\n\r\nx"), content.Options{})
	if got := ReceivedTime(m).UTC(); got.Year() != 2001 {
		t.Errorf("ReceivedTime from Date %v", got)
	}
}

// BenchmarkContentFacts is the content side of one message: the message
// parsed, every analysis group and the classifier (a warm in-memory
// store) over a 20 KB newsletter-like message. Target: under 1 ms of CPU.
func BenchmarkContentFacts(b *testing.B) {
	raw := benchNewsletter()
	cl := bayes.New(bayes.NewMemStore(), bayes.Options{MinSpam: 1, MinHam: 1})
	m0, _ := content.Parse(raw, content.Options{})
	cl.Learn(context.Background(), ClassifierInput(m0), bayes.Digest{1}, bayes.ClassHam)
	o := ContentOptions{Bayes: cl}
	groups := ContentFactGroups(o)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := content.Parse(raw, content.Options{})
		if err != nil {
			b.Fatal(err)
		}
		f := &rules.Facts{Message: m}
		f.Env.Sender = "bounce@shop.example.com"
		for _, g := range groups {
			if g.Name != GroupURIBL {
				g.Compute(context.Background(), f)
			}
		}
	}
}

// benchNewsletter builds a ~20 KB multipart/alternative message with
// links, images and a hidden pre-header.
func benchNewsletter() []byte {
	var plain, html strings.Builder
	for i := 0; plain.Len() < 7000; i++ {
		fmt.Fprintf(&plain, "Item %d: this week's offers, read more at https://shop.example.com/item/%d?utm=news\r\n", i, i)
	}
	html.WriteString(`<html><body><table>`)
	for i := 0; html.Len() < 12000; i++ {
		fmt.Fprintf(&html, `<tr><td style="font-size:14px;color:#333"><p>Item %d: this week's offers.</p><a href="https://shop.example.com/item/%d">Read more</a> <img src="https://img.example.net/%d.png"></td></tr>`+"\r\n", i, i, i)
	}
	html.WriteString(`</table><div style="display:none">pre-header</div></body></html>`)
	return []byte("From: Shop <news@shop.example.com>\r\nTo: alice@example.org\r\nMessage-ID: <n1@shop.example.com>\r\n" +
		"Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nSubject: Weekly offers\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/alternative; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
		plain.String() + "\r\n--B\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html.String() + "\r\n--B--\r\n")
}
