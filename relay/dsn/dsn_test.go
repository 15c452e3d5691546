package dsn

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
)

var when = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

func params() Params {
	return Params{
		ReportingMTA: "mx.example.org",
		To:           "alice@example.org",
		QueueID:      "0ABCdef123456789",
		EnvelopeID:   "env-1",
		ReceivedFrom: "client.example",
		ArrivalDate:  when.Add(-time.Hour),
		Date:         when,
		MessageID:    "<dsn1@mx.example.org>",
		Headers:      []byte("From: alice@example.org\r\nTo: bob@example.net\r\nSubject: hello\r\n\r\nbody must not appear\r\n"),
		Recipients: []Recipient{
			{Address: "bob@example.net", Action: Failed, Status: "5.1.1", DiagnosticCode: "smtp; 550 5.1.1 <bob@example.net>: no such user", RemoteMTA: "mx.example.net", LastAttempt: when},
			{Address: "carol@example.net", Action: Failed, Status: "4.4.7", DiagnosticCode: "delivery time expired"},
		},
	}
}

func TestBuildParse(t *testing.T) {
	p := params()
	msg, err := Build(p)
	if err != nil {
		t.Fatal(err)
	}
	checkLines(t, msg)
	if bytes.Contains(msg, []byte("body must not appear")) {
		t.Error("original body included")
	}

	// Our parser.
	r, err := Parse(msg)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, msg)
	}
	if r.ReportingMTA != "mx.example.org" || r.QueueID != p.QueueID || r.EnvelopeID != "env-1" ||
		r.ReceivedFrom != "client.example" || !r.ArrivalDate.Equal(p.ArrivalDate) || r.Global {
		t.Errorf("per-message fields: %+v", r)
	}
	if r.From != "Mail Delivery System <MAILER-DAEMON@mx.example.org>" || r.To != "<alice@example.org>" ||
		r.AutoSubmitted != "auto-replied" || r.MessageID != p.MessageID || !r.Date.Equal(when) {
		t.Errorf("header fields: %+v", r)
	}
	if len(r.Recipients) != 2 {
		t.Fatalf("recipients: %+v", r.Recipients)
	}
	b := r.Recipients[0]
	if b.Address != "bob@example.net" || b.Action != Failed || b.Status != "5.1.1" ||
		b.DiagnosticCode != "smtp; 550 5.1.1 <bob@example.net>: no such user" || b.RemoteMTA != "mx.example.net" || !b.LastAttempt.Equal(when) {
		t.Errorf("recipient 1: %+v", b)
	}
	if c := r.Recipients[1]; c.DiagnosticCode != "smtp; delivery time expired" || c.Status != "4.4.7" {
		t.Errorf("recipient 2: %+v", c)
	}
	if !strings.Contains(string(r.Headers), "Subject: hello\r\n") {
		t.Errorf("headers part: %q", r.Headers)
	}
	if !strings.Contains(r.Human, "bob@example.net") {
		t.Errorf("human part: %q", r.Human)
	}

	// go-message sees the same structure.
	e, err := message.Read(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	mt, mp, _ := e.Header.ContentType()
	if mt != "multipart/report" || mp["report-type"] != "delivery-status" {
		t.Errorf("Content-Type %s %v", mt, mp)
	}
	mr := e.MultipartReader()
	var types []string
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		pt, _, _ := part.Header.ContentType()
		types = append(types, pt)
		body, _ := io.ReadAll(part.Body)
		if pt == "message/delivery-status" && !bytes.Contains(body, []byte("Final-Recipient: rfc822; bob@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n")) {
			t.Errorf("delivery-status part:\n%s", body)
		}
	}
	if strings.Join(types, ",") != "text/plain,message/delivery-status,text/rfc822-headers" {
		t.Errorf("parts %v", types)
	}
}

func TestDelayedAndGlobal(t *testing.T) {
	p := params()
	p.To = "jöran@example.org"
	p.Headers = []byte("Subject: grüße\n") // bare LF becomes CRLF
	p.Recipients = []Recipient{{Address: "ünï@example.net", Action: Delayed, Status: "4.4.1",
		DiagnosticCode: "smtp; 451 4.4.1 " + strings.Repeat("long ", 400), WillRetryUntil: when.Add(96 * time.Hour)}}
	msg, err := Build(p)
	if err != nil {
		t.Fatal(err)
	}
	checkLines(t, msg)
	r, err := Parse(msg)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Global || r.Subject != "Delayed Mail (still being retried)" {
		t.Errorf("global=%v subject=%q", r.Global, r.Subject)
	}
	rc := r.Recipients[0]
	if rc.Address != "ünï@example.net" || rc.Action != Delayed || !rc.WillRetryUntil.Equal(when.Add(96*time.Hour)) {
		t.Errorf("recipient: %+v", rc)
	}
	if string(r.Headers) != "Subject: grüße\r\n" {
		t.Errorf("headers %q", r.Headers)
	}
}

func TestBuildRejects(t *testing.T) {
	for name, mod := range map[string]func(*Params){
		"null sender":  func(p *Params) { p.To = "" },
		"no hostname":  func(p *Params) { p.ReportingMTA = "" },
		"bad hostname": func(p *Params) { p.ReportingMTA = "a b" },
		"no rcpts":     func(p *Params) { p.Recipients = nil },
		"bad status":   func(p *Params) { p.Recipients[0].Status = "550" },
		"bad action":   func(p *Params) { p.Recipients[0].Action = "bounced" },
		"no address":   func(p *Params) { p.Recipients[0].Address = "" },
	} {
		p := params()
		mod(&p)
		if _, err := Build(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestHostileInput(t *testing.T) {
	p := params()
	// Header injection attempts and an over-long header line.
	p.Recipients[0].DiagnosticCode = "smtp; 550 x\r\nBcc: victim@example.com"
	p.Headers = append([]byte("X-Long: "+strings.Repeat("a", 5000)+"\r\n"), bytes.Repeat([]byte("X-Many: 1\r\n"), 10000)...)
	msg, err := Build(p)
	if err != nil {
		t.Fatal(err)
	}
	checkLines(t, msg)
	if bytes.Contains(msg, []byte("\r\nBcc:")) {
		t.Error("CRLF in a diagnostic reached the message")
	}
	r, err := Parse(msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Headers) > MaxHeaders {
		t.Errorf("kept %d bytes of header", len(r.Headers))
	}
}

func TestParseRejects(t *testing.T) {
	good, _ := Build(params())
	for name, msg := range map[string]string{
		"empty":         "",
		"not multipart": "Content-Type: text/plain\r\n\r\nhi\r\n",
		"wrong report":  "Content-Type: multipart/report; report-type=disposition-notification; boundary=x\r\n\r\n--x\r\n\r\n--x--\r\n",
		"no status":     "Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x--\r\n",
		"no recipient":  "Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; a\r\n--x--\r\n",
		"too big":       string(good) + strings.Repeat("x", MaxReportSize),
	} {
		if _, err := Parse([]byte(msg)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParse(f *testing.F) {
	good, _ := Build(params())
	f.Add(good)
	p := params()
	p.Recipients[0].Address = "ü@example.net"
	global, _ := Build(p)
	f.Add(global)
	f.Add([]byte("Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; a\r\n\r\nFinal-Recipient: rfc822; b\r\nAction: failed\r\nStatus: 5.0.0\r\n--x--\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		r, err := Parse(msg)
		if err != nil {
			return
		}
		if r.ReportingMTA == "" || len(r.Recipients) == 0 || len(r.Recipients) > maxRecipients {
			t.Fatalf("accepted report without required fields: %+v", r)
		}
	})
}

// checkLines: CRLF only, no line over 998 octets (RFC 5322 §2.1.1).
func checkLines(t *testing.T, msg []byte) {
	t.Helper()
	for i, line := range bytes.Split(msg, []byte("\r\n")) {
		if bytes.ContainsAny(line, "\r\n") {
			t.Fatalf("line %d has a bare CR or LF: %q", i+1, line)
		}
		if len(line) > maxLine {
			t.Fatalf("line %d has %d octets", i+1, len(line))
		}
	}
	if !bytes.HasSuffix(msg, []byte("\r\n")) {
		t.Fatal("message does not end in CRLF")
	}
}

// attackHeader is the header of issue 27's backscatter test: 1,036 lines
// of an attacker's header fields, some folded, and a body that must
// never come back.
func attackHeader() []byte {
	var b bytes.Buffer
	b.WriteString("From: attacker@far.example\r\nTo: nobody@corp.example\r\nSubject: hello\r\n")
	for lines := 3; lines < 1036; {
		if lines%10 == 9 && lines+2 <= 1036 {
			// A folded field: its continuation line belongs to it (RFC 5322 §2.2.3).
			b.WriteString("X-Folded-" + strings.Repeat("f", 8) + ": start of a long value\r\n\tcontinued " + strings.Repeat("c", 40) + "\r\n")
			lines += 2
			continue
		}
		b.WriteString("X-Spam-Payload-" + strings.Repeat("p", 10) + ": " + strings.Repeat("buy now ", 5) + "\r\n")
		lines++
	}
	b.WriteString("\r\nbody must not appear\r\n")
	return b.Bytes()
}

// Issue 27 item 1: a notice returns at most MaxHeaders bytes of the
// original header, cut between whole fields, says so in the human part,
// and never carries the body: a 1,036-line header bounces in a notice of
// under 6 KB.
func TestHeadersCapped(t *testing.T) {
	h := attackHeader()
	if n := bytes.Count(h[:bytes.Index(h, []byte("\r\n\r\n"))+2], []byte("\r\n")); n != 1036 {
		t.Fatalf("test header has %d lines, want 1036", n)
	}
	p := params()
	p.Headers = h
	msg, err := Build(p)
	if err != nil {
		t.Fatal(err)
	}
	checkLines(t, msg)
	if len(msg) >= 6000 {
		t.Errorf("notice is %d bytes, want under 6000", len(msg))
	}
	if bytes.Contains(msg, []byte("body must not appear")) {
		t.Error("original body included")
	}
	r, err := Parse(msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Headers) > MaxHeaders || len(r.Headers) < MaxHeaders/2 {
		t.Errorf("kept %d bytes of header, want at most %d and not much less", len(r.Headers), MaxHeaders)
	}
	// Cut between fields: the kept part is a prefix of the original
	// header that ends where the next field starts.
	if !bytes.HasPrefix(h, r.Headers) {
		t.Fatalf("kept header is not a prefix of the original:\n%s", r.Headers)
	}
	if next := h[len(r.Headers)]; next == ' ' || next == '\t' {
		t.Errorf("cut inside a folded field: next byte %q", next)
	}
	if !strings.Contains(r.Human, "shortened") {
		t.Errorf("human part does not say the header was cut:\n%s", r.Human)
	}

	// A header that fits is kept whole and no note is added.
	p = params()
	msg, _ = Build(p)
	r, _ = Parse(msg)
	if strings.Contains(r.Human, "shortened") || string(r.Headers) != "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: hello\r\n" {
		t.Errorf("small header: human %q headers %q", r.Human, r.Headers)
	}
}

// FuzzHeaders: whatever the original header, the kept part is at most
// MaxHeaders bytes of whole CRLF lines of at most 998 octets, and a
// header that fits is not reported as cut.
func FuzzHeaders(f *testing.F) {
	f.Add(attackHeader())
	f.Add([]byte("Subject: a\r\n\tfolded\r\n\r\nbody\r\n"))
	f.Add([]byte(" starts folded\nX: bare LF\rY: bare CR\n"))
	f.Add([]byte("X-Long: " + strings.Repeat("a", 5000) + "\r\n"))
	f.Fuzz(func(t *testing.T, h []byte) {
		out, cut := normalize(h)
		if len(out) > MaxHeaders {
			t.Fatalf("kept %d bytes", len(out))
		}
		if len(out) > 0 && !bytes.HasSuffix(out, []byte("\r\n")) {
			t.Fatalf("kept part does not end in CRLF: %q", out)
		}
		for _, l := range bytes.Split(bytes.TrimSuffix(out, []byte("\r\n")), []byte("\r\n")) {
			if len(l) > maxLine || bytes.ContainsAny(l, "\r\n") {
				t.Fatalf("bad line %q", l)
			}
		}
		if cut && len(h) <= MaxHeaders/2 {
			t.Fatalf("a %d-byte header reported as cut", len(h))
		}
	})
}
