package verify

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"moat/internal/reply"
	"moat/internal/smtptest"
	"moat/internal/testclock"
	"moat/relay/route"
)

// sink is a go-smtp backend that knows some users (and every
// alice+tag): RCPT to them is 250, to anybody else 550 5.1.1, unless
// rcptErr says otherwise.
type sink struct {
	known   map[string]bool
	rcptErr map[string]error // per address, instead of the default answer
	mailErr error            // answer to MAIL
	hold    chan struct{}    // when set, RCPT waits for it to be closed

	rcpts   atomic.Int32
	helos   sync.Map // EHLO names seen
	tlsSeen atomic.Bool
	active  atomic.Int32
	maxAct  atomic.Int32
}

func (s *sink) NewSession(c *smtp.Conn) (smtp.Session, error) {
	n := s.active.Add(1)
	for {
		m := s.maxAct.Load()
		if n <= m || s.maxAct.CompareAndSwap(m, n) {
			break
		}
	}
	return &sinkSession{s: s, c: c}, nil
}

type sinkSession struct {
	s *sink
	c *smtp.Conn
}

func (ss *sinkSession) Reset()        {}
func (ss *sinkSession) Logout() error { ss.s.active.Add(-1); return nil }
func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	ss.s.helos.Store(ss.c.Hostname(), true)
	if from != "" {
		return errors.New("callahead must use the null sender")
	}
	return ss.s.mailErr
}

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.s.rcpts.Add(1)
	if _, ok := ss.c.TLSConnectionState(); ok {
		ss.s.tlsSeen.Store(true)
	}
	if ss.s.hold != nil {
		<-ss.s.hold
	}
	if err, ok := ss.s.rcptErr[strings.ToLower(to)]; ok {
		return err
	}
	if l := strings.ToLower(to); ss.s.known[l] || strings.HasPrefix(l, "alice+") {
		return nil
	}
	return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
}

func (ss *sinkSession) Data(r io.Reader) error { return errors.New("no DATA in a callahead") }

// startSink runs a go-smtp server for s on 127.0.0.1:0.
func startSink(t testing.TB, s *sink, mod func(*smtp.Server)) (string, *smtptest.Listener) {
	t.Helper()
	srv := smtp.NewServer(s)
	srv.Domain = "backend.test"
	if mod != nil {
		mod(srv)
	}
	return smtptest.Serve(t, srv)
}

// lineServer answers each command line with answer(line); "" hangs
// until the connection is closed, "CLOSE" drops it.
func lineServer(greet string, answer func(string) string) func(net.Conn) {
	return func(c net.Conn) {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if greet == "" {
			io.Copy(io.Discard, c)
			return
		}
		io.WriteString(c, greet)
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			a := answer(strings.TrimRight(line, "\r\n"))
			switch a {
			case "":
				io.Copy(io.Discard, br)
				return
			case "CLOSE":
				return
			}
			if _, err := io.WriteString(c, a); err != nil {
				return
			}
		}
	}
}

// smtpAnswers is a well-behaved line server whose RCPT answer is rcpt.
func smtpAnswers(rcpt string) func(string) string {
	return func(l string) string {
		switch u := strings.ToUpper(l); {
		case strings.HasPrefix(u, "EHLO"):
			return "250-raw.test\r\n250 8BITMIME\r\n"
		case strings.HasPrefix(u, "MAIL"), strings.HasPrefix(u, "RSET"):
			return "250 2.0.0 ok\r\n"
		case strings.HasPrefix(u, "RCPT"):
			return rcpt
		case strings.HasPrefix(u, "QUIT"):
			return "CLOSE"
		}
		return "500 5.5.1 what\r\n"
	}
}

// callaheadRoutes is a route table with one callahead route "backend".
func callaheadRoutes(addr string) map[string]route.Route {
	return map[string]route.Route{
		"backend": {Type: route.TypeSMTP, Address: addr, TLS: route.TLSNone, VerifyRecipients: route.VerifyCallahead},
		"plain":   {Type: route.TypeSMTP, Address: addr},
	}
}

// newTest builds a verifier with a fake clock, closed at the end.
func newTest(t testing.TB, cfg Config, routes map[string]route.Route, mod func(*Options)) (*Verifier, *testclock.Clock) {
	t.Helper()
	clk := testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	opt := Options{Hostname: "gw.test", Clock: clk.Now}
	if mod != nil {
		mod(&opt)
	}
	v, err := New(cfg, routes, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v, clk
}

var (
	client1 = netip.MustParseAddr("192.0.2.1")
	client2 = netip.MustParseAddr("192.0.2.2")
)

// code returns the reply code of err: 0 for nil, -1 for an error that
// is not a *reply.Reply.
func code(err error) int {
	if err == nil {
		return 0
	}
	var r *reply.Reply
	if !errors.As(err, &r) {
		return -1
	}
	return r.Code
}

// newCallahead starts a sink that knows the usual users (knownSink) and
// a Verifier that calls ahead to it, with DefaultConfig changed by mod
// (nil: unchanged).
func newCallahead(t testing.TB, mod func(*Config)) (*Verifier, *testclock.Clock) {
	t.Helper()
	addr, _ := startSink(t, knownSink(), nil)
	cfg := DefaultConfig()
	if mod != nil {
		mod(&cfg)
	}
	return newTest(t, cfg, callaheadRoutes(addr), nil)
}

// wantOutcome checks what a check returned: acceptance when code is 0,
// else a reply of code and enhanced code enh, which it returns.
func wantOutcome(t testing.TB, err error, code int, enh string) *reply.Reply {
	t.Helper()
	if code == 0 {
		if err != nil {
			t.Fatalf("got %v, want accept", err)
		}
		return nil
	}
	r := smtptest.AsReply(t, err)
	if r.Code != code || r.Enhanced.String() != enh {
		t.Fatalf("got %v, want %d %s", r, code, enh)
	}
	return r
}

func check(t testing.TB, v *Verifier, client netip.Addr, rcpt string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return v.Check(ctx, client, "backend", rcpt)
}
