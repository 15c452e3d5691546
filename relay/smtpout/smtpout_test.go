package smtpout

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"moat/internal/reply"
	"moat/internal/smtptest"
	"moat/relay/route"
	"moat/relay/transport"
)

func byRcpt(rs []transport.Result) map[string]error {
	m := map[string]error{}
	for _, r := range rs {
		m[r.Recipient] = r.Err
	}
	return m
}

func TestAcceptAll(t *testing.T) {
	b := &backend{}
	addr, _ := startServer(t, b, nil)
	c := NewSMTP(Options{Hostname: "moat.test", Address: addr, TLS: route.TLSNone})
	defer c.Close()
	rs := c.Deliver(context.Background(), testMsg(testBody), []string{"x@example.net", "y@example.net", "x@example.net"})
	if len(rs) != 3 {
		t.Fatalf("%d results", len(rs))
	}
	for _, r := range rs {
		if r.Err != nil {
			t.Errorf("%s: %v", r.Recipient, r.Err)
		}
		// The mail log's relay= and reply= (issue 24 item 8).
		if !strings.Contains(r.Relay, addr) || !strings.HasPrefix(r.Reply, "250 ") {
			t.Errorf("%s: relay %q, reply %q", r.Recipient, r.Relay, r.Reply)
		}
	}
	got := b.received()
	if len(got) != 1 || got[0].data != testBody || strings.Join(got[0].rcpts, ",") != "x@example.net,y@example.net" || got[0].from != "a@example.org" {
		t.Errorf("received %+v", got)
	}
}

func TestPerRecipient(t *testing.T) {
	b := &backend{rcptErr: byPrefix(map[string]error{
		"busy": &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "mailbox busy"},
		"gone": &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"},
	})}
	addr, _ := startServer(t, b, nil)
	c := NewSMTP(Options{Address: addr, TLS: route.TLSNone})
	defer c.Close()
	res := byRcpt(c.Deliver(context.Background(), testMsg(testBody), []string{"ok@example.net", "busy@example.net", "gone@example.net"}))
	if res["ok@example.net"] != nil {
		t.Errorf("ok: %v", res["ok@example.net"])
	}
	busy := smtptest.AsReply(t, res["busy@example.net"])
	if busy.Code != 450 || busy.Enhanced != (reply.Enhanced{4, 2, 1}) || transport.IsPermanent(busy) || !strings.Contains(busy.Text, addr) || !strings.Contains(busy.Text, "mailbox busy") {
		t.Errorf("busy: %v", busy)
	}
	gone := smtptest.AsReply(t, res["gone@example.net"])
	if gone.Code != 550 || gone.Enhanced != (reply.Enhanced{5, 1, 1}) || !transport.IsPermanent(gone) {
		t.Errorf("gone: %v", gone)
	}
	if got := b.received(); len(got) != 1 || len(got[0].rcpts) != 1 {
		t.Errorf("received %+v", got)
	}
}

func TestMailRejected(t *testing.T) {
	b := &backend{mailErr: func(string) error {
		return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "sender refused"}
	}}
	addr, _ := startServer(t, b, nil)
	c := NewSMTP(Options{Address: addr, TLS: route.TLSNone})
	defer c.Close()
	for _, r := range c.Deliver(context.Background(), testMsg(testBody), []string{"a@example.net", "b@example.net"}) {
		rp := smtptest.AsReply(t, r.Err)
		if rp.Code != 553 || rp.Enhanced != (reply.Enhanced{5, 7, 1}) || !strings.Contains(rp.Text, "MAIL FROM") {
			t.Errorf("%s: %v", r.Recipient, rp)
		}
	}
}

func TestDataRejected(t *testing.T) {
	b := &backend{dataErr: func() error {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	}}
	addr, _ := startServer(t, b, nil)
	c := NewSMTP(Options{Address: addr, TLS: route.TLSNone})
	defer c.Close()
	for _, r := range c.Deliver(context.Background(), testMsg(testBody), []string{"a@example.net", "b@example.net"}) {
		if rp := smtptest.AsReply(t, r.Err); rp.Code != 451 || transport.IsPermanent(rp) {
			t.Errorf("%s: %v", r.Recipient, rp)
		}
	}
}

func TestDropMidData(t *testing.T) {
	b := &backend{onData: func(c *smtp.Conn, r io.Reader) {
		io.ReadFull(r, make([]byte, 10))
		c.Close()
	}}
	addr, _ := startServer(t, b, nil)
	c := NewSMTP(Options{Address: addr, TLS: route.TLSNone, Timeouts: short})
	defer c.Close()
	body := testBody + strings.Repeat("x", 200000) + "\r\n"
	for _, r := range c.Deliver(context.Background(), testMsg(body), []string{"a@example.net", "b@example.net"}) {
		if r.Err == nil || transport.IsPermanent(r.Err) {
			t.Errorf("%s: %v, want a temporary error", r.Recipient, r.Err)
		}
	}
	if got := b.received(); len(got) != 0 {
		t.Errorf("received %d messages", len(got))
	}
}

// wantTimeout delivers the test message to addr with the short timeouts
// and wants a temporary failure.
func wantTimeout(t *testing.T, addr string) {
	t.Helper()
	c := NewSMTP(Options{Address: addr, TLS: route.TLSNone, Timeouts: short})
	defer c.Close()
	for _, r := range c.Deliver(context.Background(), testMsg(testBody), []string{"a@example.net"}) {
		if r.Err == nil || transport.IsPermanent(r.Err) {
			t.Errorf("%v, want temporary", r.Err)
		}
	}
}

func TestTimeouts(t *testing.T) {
	t.Run("greeting", func(t *testing.T) {
		addr := startScripted(t, &scripted{hang: true})
		wantTimeout(t, addr)
	})
	t.Run("final dot", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		b := &backend{onData: func(c *smtp.Conn, r io.Reader) {
			io.Copy(io.Discard, r)
			<-release
		}}
		addr, _ := startServer(t, b, nil)
		wantTimeout(t, addr)
	})
	t.Run("context", func(t *testing.T) {
		addr := startScripted(t, &scripted{hang: true})
		c := NewSMTP(Options{Address: addr, TLS: route.TLSNone})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		for _, r := range c.Deliver(ctx, testMsg(testBody), []string{"a@example.net"}) {
			if r.Err == nil || transport.IsPermanent(r.Err) {
				t.Errorf("%v, want temporary", r.Err)
			}
		}
	})
}

func TestSizeTooSmall(t *testing.T) {
	b := &backend{}
	addr, _ := startServer(t, b, func(s *smtp.Server) { s.MaxMessageBytes = 50 })
	c := NewSMTP(Options{Address: addr, TLS: route.TLSNone})
	defer c.Close()
	for _, r := range c.Deliver(context.Background(), testMsg(testBody+strings.Repeat("y", 100)), []string{"a@example.net"}) {
		if rp := smtptest.AsReply(t, r.Err); rp.Code != 552 || rp.Enhanced != (reply.Enhanced{5, 3, 4}) {
			t.Errorf("%v", rp)
		}
	}
	if b.mails != 0 {
		t.Errorf("MAIL was sent")
	}
}

func TestSMTPUTF8Missing(t *testing.T) {
	b := &backend{}
	addr, _ := startServer(t, b, func(s *smtp.Server) { s.EnableSMTPUTF8 = false })
	c := NewSMTP(Options{Address: addr, TLS: route.TLSNone})
	defer c.Close()
	m := testMsg(testBody)
	m.UTF8 = true
	for _, r := range c.Deliver(context.Background(), m, []string{"ü@example.net"}) {
		if rp := smtptest.AsReply(t, r.Err); rp.Enhanced != (reply.Enhanced{5, 6, 7}) {
			t.Errorf("%v", rp)
		}
	}
}

func TestTLS(t *testing.T) {
	cert, roots := smtptest.Cert(t, "sink.test", "localhost", "mx1.test", "127.0.0.1")
	withTLS := func(s *smtp.Server) { s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}} }
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)

	tests := []struct {
		name     string
		server   func(*smtp.Server)
		opts     Options
		authPass string
		wantOK   bool
		wantTLS  bool
		wantPerm bool
		wantAuth int
	}{
		{name: "opportunistic self-signed", server: withTLS, opts: Options{TLS: route.TLSOpportunistic}, wantOK: true, wantTLS: true},
		{name: "opportunistic not offered", opts: Options{TLS: route.TLSOpportunistic}, wantOK: true},
		{name: "opportunistic handshake fails, clear", server: func(s *smtp.Server) {
			s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: tls.VersionTLS11}
		}, opts: Options{TLS: route.TLSOpportunistic}, wantOK: true},
		{name: "required not offered", opts: Options{TLS: route.TLSRequired}},
		{name: "required untrusted", server: withTLS, opts: Options{TLS: route.TLSRequired}},
		{name: "required verified", server: withTLS, opts: Options{TLS: route.TLSRequired, TLSConfig: &tls.Config{RootCAs: roots}}, wantOK: true, wantTLS: true},
		{name: "required skip verify", server: withTLS, opts: Options{TLS: route.TLSRequired, TLSSkipVerify: true}, wantOK: true, wantTLS: true},
		{name: "auth over tls", server: withTLS, authPass: "s3cret",
			opts: Options{TLS: route.TLSRequired, TLSConfig: &tls.Config{RootCAs: roots}, Username: "u", PasswordFile: pw}, wantOK: true, wantTLS: true, wantAuth: 1},
		{name: "auth wrong password is temporary", server: withTLS, authPass: "other",
			opts: Options{TLS: route.TLSRequired, TLSConfig: &tls.Config{RootCAs: roots}, Username: "u", Password: "s3cret"}},
		{name: "auth never in clear", authPass: "s3cret", server: func(s *smtp.Server) { s.AllowInsecureAuth = true },
			opts: Options{TLS: route.TLSOpportunistic, Username: "u", Password: "s3cret"}, wantPerm: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &backend{authPass: tt.authPass}
			addr, _ := startServer(t, b, tt.server)
			o := tt.opts
			o.Address = addr
			o.Timeouts = Timeouts{Connect: 5 * time.Second}
			c := NewSMTP(o)
			defer c.Close()
			r := c.Deliver(context.Background(), testMsg(testBody), []string{"a@example.net"})[0]
			got := b.received()
			if tt.wantOK {
				if r.Err != nil || len(got) != 1 || got[0].tls != tt.wantTLS {
					t.Fatalf("err %v, received %+v", r.Err, got)
				}
			} else {
				if r.Err == nil || transport.IsPermanent(r.Err) != tt.wantPerm {
					t.Fatalf("err %v (permanent %v), want permanent=%v", r.Err, transport.IsPermanent(r.Err), tt.wantPerm)
				}
				if len(got) != 0 || b.mails != 0 {
					t.Fatalf("sent anyway: %+v", got)
				}
			}
			if b.authed != tt.wantAuth {
				t.Errorf("authenticated %d times", b.authed)
			}
		})
	}
}

func TestXForward(t *testing.T) {
	tests := []struct {
		offer string
		want  string
	}{
		{"XFORWARD NAME ADDR PROTO HELO", "XFORWARD NAME=client.example ADDR=IPV6:2001:db8::1 PROTO=ESMTP HELO=bad+20helo+2B+3D"},
		{"XFORWARD ADDR", "XFORWARD ADDR=IPV6:2001:db8::1"},
		{"8BITMIME", ""},
	}
	for _, tt := range tests {
		s := &scripted{ehlo: []string{tt.offer, "PIPELINING"}}
		addr := startScripted(t, s)
		c := NewSMTP(Options{Address: addr, TLS: route.TLSNone})
		m := testMsg(testBody)
		m.ClientName, m.ClientIP, m.Protocol, m.HELO = "client.example", "2001:db8::1", "ESMTP", "bad helo+="
		for _, r := range c.Deliver(context.Background(), m, []string{"a@example.net"}) {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
		}
		c.Close()
		var xf []string
		var sawMail bool
		for _, l := range s.commands() {
			if strings.HasPrefix(l, "XFORWARD") {
				if sawMail {
					t.Errorf("XFORWARD after MAIL")
				}
				xf = append(xf, l)
			}
			sawMail = sawMail || strings.HasPrefix(l, "MAIL")
		}
		if got := strings.Join(xf, "|"); got != tt.want {
			t.Errorf("offer %q: sent %q, want %q", tt.offer, got, tt.want)
		}
	}
}

func TestLMTP(t *testing.T) {
	b := &backend{lmtpErr: byPrefix(map[string]error{
		"full": &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"},
		"gone": &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"},
	})}
	addr, ln := startServer(t, b, func(s *smtp.Server) { s.LMTP = true })
	c := ForRoute(route.Route{Type: route.TypeLMTP, Address: addr}, Options{Hostname: "moat.test"}).(*Client)
	defer c.Close()
	for i := 0; i < 2; i++ {
		res := byRcpt(c.Deliver(context.Background(), testMsg(testBody), []string{"a@example.org", "full@example.org", "gone@example.org"}))
		if res["a@example.org"] != nil {
			t.Errorf("a: %v", res["a@example.org"])
		}
		if rp := smtptest.AsReply(t, res["full@example.org"]); rp.Code != 452 || rp.Enhanced != (reply.Enhanced{4, 2, 2}) {
			t.Errorf("full: %v", rp)
		}
		if rp := smtptest.AsReply(t, res["gone@example.org"]); rp.Code != 550 {
			t.Errorf("gone: %v", rp)
		}
	}
	if n := ln.Accepted(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
	if got := b.received(); len(got) != 2 || len(got[0].rcpts) != 1 {
		t.Errorf("received %+v", got)
	}
}

func TestReuse(t *testing.T) {
	b := &backend{}
	addr, ln := startServer(t, b, nil)
	c := NewSMTP(Options{Address: addr, TLS: route.TLSNone, MaxMessagesPerConn: 100})
	defer c.Close()
	for i := 0; i < 5; i++ {
		for _, r := range c.Deliver(context.Background(), testMsg(testBody), []string{"a@example.net"}) {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
		}
	}
	if n := ln.Accepted(); n != 1 {
		t.Errorf("%d connections for 5 messages, want 1", n)
	}
	if got := b.received(); len(got) != 5 {
		t.Errorf("received %d", len(got))
	}

	// A connection is retired after MaxMessagesPerConn messages.
	b2 := &backend{}
	addr2, ln2 := startServer(t, b2, nil)
	c2 := NewSMTP(Options{Address: addr2, TLS: route.TLSNone, MaxMessagesPerConn: 2})
	defer c2.Close()
	for i := 0; i < 5; i++ {
		c2.Deliver(context.Background(), testMsg(testBody), []string{"a@example.net"})
	}
	if n := ln2.Accepted(); n != 3 {
		t.Errorf("%d connections with 2 messages each, want 3", n)
	}

	// A pooled connection the server dropped is replaced.
	c3 := NewSMTP(Options{Address: addr, TLS: route.TLSNone})
	defer c3.Close()
	c3.Deliver(context.Background(), testMsg(testBody), []string{"a@example.net"})
	s := c3.pool.get(addr)
	if s == nil {
		t.Fatal("no pooled session")
	}
	s.raw.Close()
	c3.pool.put(s)
	for _, r := range c3.Deliver(context.Background(), testMsg(testBody), []string{"a@example.net"}) {
		if r.Err != nil {
			t.Errorf("after drop: %v", r.Err)
		}
	}
}

func TestIdleTimeout(t *testing.T) {
	b := &backend{}
	addr, _ := startServer(t, b, nil)
	c := NewSMTP(Options{Address: addr, TLS: route.TLSNone, IdleTimeout: time.Millisecond})
	defer c.Close()
	c.Deliver(context.Background(), testMsg(testBody), []string{"a@example.net"})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.pool.mu.Lock()
		n := c.pool.n
		c.pool.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("idle session never closed")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLimiter(t *testing.T) {
	l := newLimiter(2, 1)
	ctx := context.Background()
	acquire := func(ctx context.Context, key string) error {
		_, err := l.acquireOrRide(ctx, key, nil)
		return err
	}
	if err := acquire(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := acquire(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := acquire(short, "a"); err == nil {
		t.Fatal("per-destination limit not enforced")
	}
	got := make(chan error)
	go func() { got <- acquire(ctx, "c") }()
	l.release("a")
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if len(l.per) != 2 {
		t.Errorf("limiter map %v", l.per)
	}
}

func TestBadPeer(t *testing.T) {
	for _, greet := range []string{"554 5.7.1 go away", "421 busy", "hello there"} {
		addr := startScripted(t, &scripted{greet: greet})
		c := NewSMTP(Options{Address: addr, TLS: route.TLSNone, Timeouts: short})
		r := c.Deliver(context.Background(), testMsg(testBody), []string{"a@example.net"})[0]
		c.Close()
		if r.Err == nil {
			t.Errorf("greeting %q: delivered", greet)
		}
		if strings.HasPrefix(greet, "554") && smtptest.AsReply(t, r.Err).Enhanced != (reply.Enhanced{5, 7, 1}) {
			t.Errorf("greeting %q: %v", greet, r.Err)
		}
	}
}

func TestOpenFails(t *testing.T) {
	b := &backend{}
	addr, _ := startServer(t, b, nil)
	c := NewSMTP(Options{Address: addr, TLS: route.TLSNone})
	defer c.Close()
	m := testMsg(testBody)
	m.Open = func() (io.ReadCloser, error) { return nil, errors.New("disk gone") }
	if r := c.Deliver(context.Background(), m, []string{"a@example.net"})[0]; r.Err == nil || transport.IsPermanent(r.Err) {
		t.Errorf("%v", r.Err)
	}
	if len(b.received()) != 0 {
		t.Error("delivered a message that could not be read")
	}
}

// With PIPELINING offered, RSET (on a reused connection), MAIL, the RCPTs
// and DATA reach the server as one group (RFC 2920 §3.1); without it, each
// command waits for its reply.
func TestPipelining(t *testing.T) {
	for _, pipelined := range []bool{true, false} {
		s := &scripted{}
		if pipelined {
			s.ehlo = []string{"PIPELINING", "8BITMIME", "SIZE 1000000"}
		}
		addr := startScripted(t, s)
		c := NewSMTP(Options{Address: addr, TLS: route.TLSNone})
		for i := 0; i < 2; i++ {
			for _, r := range c.Deliver(context.Background(), testMsg(testBody), []string{"a@example.net", "b@example.net"}) {
				if r.Err != nil {
					t.Fatalf("pipelined=%v message %d: %s: %v", pipelined, i, r.Recipient, r.Err)
				}
			}
		}
		c.Close()
		if s.messages() != 2 {
			t.Errorf("pipelined=%v: %d messages", pipelined, s.messages())
		}
		var got []string
		lines, buf := s.commands(), s.buffer()
		for i, l := range lines {
			verb, _, _ := strings.Cut(l, " ")
			if verb == "EHLO" || verb == "QUIT" {
				continue
			}
			// The last line of a pipelined group (DATA) has nothing after it.
			if waited := buf[i] == 0; waited != (!pipelined || verb == "DATA") {
				t.Errorf("pipelined=%v: %q with %d bytes behind it", pipelined, l, buf[i])
			}
			got = append(got, l)
		}
		mail := "MAIL FROM:<a@example.org>"
		if pipelined {
			mail += fmt.Sprintf(" BODY=8BITMIME SIZE=%d", len(testBody))
		}
		want := []string{mail, "RCPT TO:<a@example.net>", "RCPT TO:<b@example.net>", "DATA",
			"RSET", mail, "RCPT TO:<a@example.net>", "RCPT TO:<b@example.net>", "DATA"}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("pipelined=%v: commands\n%s\nwant\n%s", pipelined, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

// A server that answers 354 to a pipelined DATA after refusing every
// recipient gets no message: the connection is dropped instead.
func TestPipelinedNoRecipient(t *testing.T) {
	s := &scripted{ehlo: []string{"PIPELINING"}, rcpt: "550 5.1.1 no such user"}
	addr := startScripted(t, s)
	c := NewSMTP(Options{Address: addr, TLS: route.TLSNone})
	defer c.Close()
	for _, r := range c.Deliver(context.Background(), testMsg(testBody), []string{"a@example.net", "b@example.net"}) {
		if rp := smtptest.AsReply(t, r.Err); rp.Code != 550 || !strings.Contains(rp.Text, "RCPT TO") {
			t.Errorf("%s: %v", r.Recipient, rp)
		}
	}
	if n := s.messages(); n != 0 {
		t.Errorf("%d messages sent without recipients", n)
	}
	if c.pool.get(addr) != nil {
		t.Error("the session was kept after a 354 without recipients")
	}
}
