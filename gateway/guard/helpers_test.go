package guard

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

const testHost = "mx.test"

// testConfig is DefaultConfig with limits loose enough for tests.
func testConfig() Config {
	cfg := DefaultConfig()
	cfg.PerIP = Limit{RatePerMinute: 6000, Burst: 1000, MaxConcurrent: 100}
	cfg.PerPrefix.Limit = Limit{RatePerMinute: 6000, Burst: 1000, MaxConcurrent: 1000}
	cfg.Tarpit.Base = 0
	return cfg
}

// server is a guard listener with a small go-smtp server behind it.
type server struct {
	g     *Guard
	ln    net.Listener
	smtp  *smtp.Server
	addr  string
	facts chan ConnFacts // one per session start (also after STARTTLS)
}

type testOpts struct {
	listener ListenerOptions
	opt      Options
	tls      *tls.Config
}

func startServer(t testing.TB, cfg Config, o testOpts) *server {
	t.Helper()
	if o.opt.Hostname == "" {
		o.opt.Hostname = testHost
	}
	g, err := New(cfg, o.opt)
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if o.listener.Name == "" {
		o.listener.Name = "mx"
	}
	s := &server{g: g, addr: inner.Addr().String(), facts: make(chan ConnFacts, 64)}
	s.ln = g.Listen(inner, o.listener)
	s.smtp = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		f, ok := FactsOf(c.Conn())
		if ok {
			select {
			case s.facts <- f:
			default:
			}
		}
		return &session{remote: c.Conn().RemoteAddr().String()}, nil
	}))
	s.smtp.Domain = testHost
	s.smtp.ReadTimeout = 30 * time.Second
	s.smtp.WriteTimeout = 30 * time.Second
	s.smtp.AllowInsecureAuth = true
	s.smtp.ErrorLog = log.New(io.Discard, "", 0)
	s.smtp.TLSConfig = o.tls
	done := make(chan struct{})
	go func() { defer close(done); s.smtp.Serve(s.ln) }()
	t.Cleanup(func() { s.smtp.Close(); <-done })
	return s
}

type session struct{ remote string }

func (s *session) AuthPlain(string, string) error { return errors.New("no") }
func (s *session) Mail(string, *smtp.MailOptions) error {
	return nil
}
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if strings.HasPrefix(to, "bad") {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
	}
	return nil
}
func (s *session) Data(r io.Reader) error { _, err := io.Copy(io.Discard, r); return err }
func (s *session) Reset()                 {}
func (s *session) Logout() error          { return nil }

// client is a raw TCP client from a chosen loopback source address.
type client struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dial(t testing.TB, addr, src string) *client {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

// line reads one line; "" with err at EOF.
func (c *client) line() (string, error) {
	l, err := c.br.ReadString('\n')
	return l, err
}

func (c *client) expect(prefix string) string {
	c.t.Helper()
	l, err := c.line()
	if err != nil || !strings.HasPrefix(l, prefix) {
		c.t.Fatalf("got %q (%v), want a line starting %q", l, err, prefix)
	}
	return l
}

// expectClosed reads until EOF and fails on more than max lines.
func (c *client) expectClosed() {
	c.t.Helper()
	for i := 0; i < 20; i++ {
		l, err := c.line()
		if err != nil {
			return
		}
		_ = l
	}
	c.t.Fatal("connection not closed")
}

// reply reads a whole reply of code: "code-" lines, then "code ".
func (c *client) reply(code string) {
	c.t.Helper()
	for {
		if l := c.expect(code); strings.HasPrefix(l, code+" ") {
			return
		}
	}
}

// greeting reads the banner, "220-" (pregreet) then "220 ".
func (c *client) greeting() {
	c.t.Helper()
	c.reply("220")
}

// ehlo sends EHLO and reads the whole 250 reply.
func (c *client) ehlo() {
	c.t.Helper()
	c.send("EHLO x\r\n")
	c.reply("250")
}

// rejected reads c to its end, then waits until the guard has counted
// n rejections for reason.
func (s *server) rejected(t testing.TB, c *client, reason string, n uint64) {
	t.Helper()
	c.expectClosed()
	waitFor(t, reason+" count", func() bool { return s.g.Stats().Rejected(reason) == n })
}

// waitFor polls cond until it holds (bounded); it is not a timing
// assertion, only a wait for asynchronous bookkeeping.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (s *server) nextFacts(t testing.TB) ConnFacts {
	t.Helper()
	select {
	case f := <-s.facts:
		return f
	case <-time.After(10 * time.Second):
		t.Fatal("no session started")
	}
	return ConnFacts{}
}
