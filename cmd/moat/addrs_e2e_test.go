package main

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"moat/internal/smtptest"
)

// hop is a next hop without SMTPUTF8 (go-smtp's default) that records
// each envelope and message it takes.
type hop struct {
	mu   sync.Mutex
	msgs []hopMsg
}

type hopMsg struct {
	from  string
	utf8  bool
	rcpts []string
	data  []byte
}

type hopSession struct {
	h   *hop
	cur hopMsg
}

func (h *hop) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return &hopSession{h: h}, nil }

func (s *hopSession) Reset()        { s.cur = hopMsg{} }
func (s *hopSession) Logout() error { return nil }
func (s *hopSession) Mail(from string, o *gosmtp.MailOptions) error {
	s.cur.from, s.cur.utf8 = from, o != nil && o.UTF8
	return nil
}
func (s *hopSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	s.cur.rcpts = append(s.cur.rcpts, to)
	return nil
}
func (s *hopSession) Data(r io.Reader) error {
	b, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return err
	}
	s.cur.data = b
	s.h.mu.Lock()
	s.h.msgs = append(s.h.msgs, s.cur)
	s.h.mu.Unlock()
	return nil
}

// wait returns the n-th message (from 1) once it has come (bounded).
func (h *hop) wait(t *testing.T, n int) hopMsg {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		h.mu.Lock()
		if len(h.msgs) >= n {
			m := h.msgs[n-1]
			h.mu.Unlock()
			return m
		}
		h.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("the next hop got %d messages, want %d", n-1, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// End to end, issue 27 items 4 and 6, with a real next hop that does not
// offer SMTPUTF8: a NUL octet in DATA is not passed downstream
// (normalize mode removes it); an IDN recipient with an ASCII local part
// is relayed with its domain in A-label form, without SMTPUTF8; the
// look-alike forms of a domain are refused at RCPT.
func TestEndToEndNULAndIDN(t *testing.T) {
	h := &hop{}
	srv := gosmtp.NewServer(h)
	srv.Domain = "hop.test"
	hopAddr, _ := smtptest.Serve(t, srv)
	path := writeConfig(t, appConfig{
		relay: `{relay.example: backend, "b` + "\u00fc" + `cher.example": backend}`,
		extra: `routes: {backend: {type: smtp, address: "` + hopAddr + `", tls: none}}
smtp: {bare_line_endings: normalize}
queue: {retry_min: 200ms, retry_max: 1s}
`,
	})
	a, _ := runApp(t, path, testLog(t), nil)
	rc := smtptest.DialRaw(t, a.gw.Addr("mx").String())
	rc.Expect("EHLO client.far.example", 250, "SMTPUTF8")

	// The NUL payload of the public smuggling set.
	rc.Expect("MAIL FROM:<s@far.example>", 250, "")
	rc.Expect("RCPT TO:<u@relay.example>", 250, "")
	rc.Expect("DATA", 354, "")
	rc.Send("From: s@far.example\r\nTo: u@relay.example\r\nSubject: nul\r\nMessage-ID: <nul@far.example>\r\n\r\nouter\r\n\x00.\r\nMAIL FROM:<admin@spoofed.example>\r\n")
	rc.Expect(".", 250, "")
	m := h.wait(t, 1)
	if bytes.IndexByte(m.data, 0) >= 0 {
		t.Errorf("NUL passed downstream: %q", m.data)
	}
	if m.from != "s@far.example" || !bytes.Contains(m.data, []byte("outer\r\n.\r\nMAIL FROM:<admin@spoofed.example>\r\n")) {
		t.Errorf("from %q, data %q", m.from, m.data)
	}

	// Look-alikes without and with SMTPUTF8.
	rc.Expect("MAIL FROM:<s@far.example>", 250, "")
	rc.Expect("RCPT TO:<u@b\u00fccher.example>", 553, "5.6.7")
	rc.Expect("RCPT TO:<u@relay\uff0eexample>", 553, "5.6.7")
	rc.Expect("RSET", 250, "")
	rc.Expect("MAIL FROM:<s@far.example> SMTPUTF8", 250, "")
	rc.Expect("RCPT TO:<u@relay\u3002example>", 501, "5.1.3")
	rc.Expect("RCPT TO:<u@relay.exam\u00adple>", 501, "5.1.3")
	rc.Expect("RCPT TO:<u@b\u00fccher.example>", 250, "")
	rc.Expect("DATA", 354, "")
	// An ASCII header: the message does not need SMTPUTF8 downstream
	// (a UTF-8 header would: RFC 6532; relay/smtpout tests that case).
	rc.Send("From: s@far.example\r\nTo: u@xn--bcher-kva.example\r\nSubject: idn\r\nMessage-ID: <idn@far.example>\r\n\r\nhi\r\n")
	rc.Expect(".", 250, "")
	rc.Expect("QUIT", 221, "")
	m = h.wait(t, 2)
	if len(m.rcpts) != 1 || m.rcpts[0] != "u@xn--bcher-kva.example" || m.utf8 {
		t.Errorf("next hop got RCPT %q, SMTPUTF8 %v; want u@xn--bcher-kva.example without", m.rcpts, m.utf8)
	}
	if !strings.Contains(string(m.data), "Subject: idn") {
		t.Errorf("data %q", m.data)
	}
}
