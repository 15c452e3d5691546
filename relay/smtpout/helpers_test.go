package smtpout

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"moat/internal/smtptest"
	"moat/relay/transport"
)

// received is one message a test server took.
type received struct {
	from  string
	rcpts []string
	data  string
	tls   bool
}

// backend is a go-smtp test backend whose replies a test chooses.
type backend struct {
	mailErr  func(from string) error
	rcptErr  func(to string) error
	dataErr  func() error
	lmtpErr  func(rcpt string) error
	onData   func(c *smtp.Conn, r io.Reader) // instead of reading all
	authPass string                          // non-empty: offer AUTH PLAIN for user "u"

	mu     sync.Mutex
	msgs   []received
	mails  int
	authed int
}

// byPrefix answers a recipient with the error of the prefix its address
// starts with (the prefixes must not overlap), nil for any other.
func byPrefix(errs map[string]error) func(rcpt string) error {
	return func(rcpt string) error {
		for p, err := range errs {
			if strings.HasPrefix(rcpt, p) {
				return err
			}
		}
		return nil
	}
}

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &testSession{b: b, c: c}, nil
}

func (b *backend) received() []received {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]received(nil), b.msgs...)
}

type testSession struct {
	b     *backend
	c     *smtp.Conn
	from  string
	rcpts []string
}

func (s *testSession) Reset()        { s.from, s.rcpts = "", nil }
func (s *testSession) Logout() error { return nil }
func (s *testSession) Mail(from string, _ *smtp.MailOptions) error {
	s.b.mu.Lock()
	s.b.mails++
	s.b.mu.Unlock()
	if s.b.mailErr != nil {
		if err := s.b.mailErr(from); err != nil {
			return err
		}
	}
	s.from = from
	return nil
}
func (s *testSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.b.rcptErr != nil {
		if err := s.b.rcptErr(to); err != nil {
			return err
		}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *testSession) read(r io.Reader) (string, error) {
	if s.b.onData != nil {
		s.b.onData(s.c, r)
		return "", errors.New("dropped")
	}
	data, err := io.ReadAll(r)
	return string(data), err
}
func (s *testSession) Data(r io.Reader) error {
	data, err := s.read(r)
	if err != nil {
		return err
	}
	if s.b.dataErr != nil {
		if err := s.b.dataErr(); err != nil {
			return err
		}
	}
	_, isTLS := s.c.TLSConnectionState()
	s.b.mu.Lock()
	s.b.msgs = append(s.b.msgs, received{from: s.from, rcpts: s.rcpts, data: data, tls: isTLS})
	s.b.mu.Unlock()
	return nil
}
func (s *testSession) LMTPData(r io.Reader, st smtp.StatusCollector) error {
	data, err := s.read(r)
	if err != nil {
		return err
	}
	var ok []string
	for _, rc := range s.rcpts {
		var e error
		if s.b.lmtpErr != nil {
			e = s.b.lmtpErr(rc)
		}
		if e == nil {
			ok = append(ok, rc)
		}
		st.SetStatus(rc, e)
	}
	s.b.mu.Lock()
	s.b.msgs = append(s.b.msgs, received{from: s.from, rcpts: ok, data: data})
	s.b.mu.Unlock()
	return nil
}
func (s *testSession) AuthMechanisms() []string {
	if s.b.authPass == "" {
		return nil
	}
	return []string{sasl.Plain}
}
func (s *testSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if user != "u" || pass != s.b.authPass {
			return smtp.ErrAuthFailed
		}
		s.b.mu.Lock()
		s.b.authed++
		s.b.mu.Unlock()
		return nil
	}), nil
}

// startServer runs a go-smtp server for b on 127.0.0.1:0.
func startServer(t testing.TB, b *backend, mod func(*smtp.Server)) (string, *smtptest.Listener) {
	t.Helper()
	s := smtp.NewServer(b)
	s.Domain = "sink.test"
	s.MaxMessageBytes = 10 << 20
	s.EnableSMTPUTF8 = true
	s.AllowInsecureAuth = false
	if mod != nil {
		mod(s)
	}
	return smtptest.Serve(t, s)
}

// scripted is a tiny SMTP server for what go-smtp's server lacks
// (XFORWARD) and for misbehaving peers. It records every command line.
type scripted struct {
	ehlo  []string      // extension lines after the first EHLO line
	greet string        // default "220 scripted ESMTP"
	hang  bool          // accept and never answer
	rcpt  string        // the reply to RCPT; default "250 2.1.5 ok"
	delay time.Duration // before the greeting
	rtt   time.Duration // waited before reading what a new write of the client brought
	// The final dot of the failDot-th message of the server is refused
	// with 550; at the dropDot-th the connection is closed unanswered,
	// at the closeDot-th right after the 250.
	failDot, dropDot, closeDot int
	// strict refuses a line of message data over 998 octets with "500
	// Line too long", as aiosmtpd does (RFC 5321 §4.5.3.1.6).
	strict bool

	mu       sync.Mutex
	lines    []string
	buffered []int    // for each line, the bytes already received after it
	msgs     int      // messages ended with the final dot
	data     []string // the data of each message, dot-stuffing undone
	afterDot []int    // for each final dot, the bytes already received after it
}

// chained counts the final dots that the next commands had followed in
// the same write.
func (s *scripted) chained() int {
	return s.chainedFrom(0)
}

// chainedFrom is chained from the i-th final dot of the server on.
func (s *scripted) chainedFrom(i int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, b := range s.afterDot[min(i, len(s.afterDot)):] {
		if b > 0 {
			n++
		}
	}
	return n
}

// buffer returns, for each command line, the bytes that had already
// arrived after it: a pipelined group leaves the rest of the group.
func (s *scripted) buffer() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.buffered...)
}

func (s *scripted) messages() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.msgs
}

func (s *scripted) commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

func startScripted(t testing.TB, s *scripted) string {
	t.Helper()
	return smtptest.ServeConns(t, s.serve)
}

func (s *scripted) serve(c net.Conn) {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if s.hang {
		io.Copy(io.Discard, c)
		return
	}
	br := bufio.NewReader(c)
	time.Sleep(s.delay)
	greet := s.greet
	if greet == "" {
		greet = "220 scripted ESMTP"
	}
	io.WriteString(c, greet+"\r\n")
	if !strings.HasPrefix(greet, "220") {
		return
	}
	for {
		if br.Buffered() == 0 {
			time.Sleep(s.rtt)
		}
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		s.mu.Lock()
		s.lines = append(s.lines, line)
		s.buffered = append(s.buffered, br.Buffered())
		s.mu.Unlock()
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		switch verb {
		case "EHLO":
			var b strings.Builder
			lines := append([]string{"scripted"}, s.ehlo...)
			for i, l := range lines {
				sep := "-"
				if i == len(lines)-1 {
					sep = " "
				}
				b.WriteString("250" + sep + l + "\r\n")
			}
			io.WriteString(c, b.String())
		case "DATA":
			io.WriteString(c, "354 go on\r\n")
			var data strings.Builder
			tooLong := false
			for {
				if br.Buffered() == 0 {
					time.Sleep(s.rtt)
				}
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				tooLong = tooLong || len(strings.TrimSuffix(l, "\r\n")) > 998
				data.WriteString(strings.TrimPrefix(l, "."))
			}
			if s.strict && tooLong {
				io.WriteString(c, "500 Line too long\r\n")
				continue
			}
			s.mu.Lock()
			s.data = append(s.data, data.String())
			s.msgs++
			n := s.msgs
			s.afterDot = append(s.afterDot, br.Buffered())
			s.mu.Unlock()
			switch n {
			case s.dropDot:
				return
			case s.failDot:
				io.WriteString(c, "550 5.7.1 refused\r\n")
			default:
				io.WriteString(c, "250 2.0.0 queued\r\n")
				if n == s.closeDot {
					return
				}
			}
		case "RCPT":
			r := s.rcpt
			if r == "" {
				r = "250 2.1.5 ok"
			}
			io.WriteString(c, r+"\r\n")
		case "QUIT":
			io.WriteString(c, "221 2.0.0 bye\r\n")
			return
		default:
			io.WriteString(c, "250 2.0.0 ok\r\n")
		}
	}
}

const testBody = "From: a@example.org\r\nTo: b@example.net\r\nSubject: test\r\n\r\nHello.\r\n.leading dot\r\n"

func testMsg(body string) *transport.Message {
	return &transport.Message{
		ID:     "Q1",
		Sender: "a@example.org",
		Size:   int64(len(body)),
		Open:   func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil },
	}
}

// short are timeouts for tests that expect one to fire.
var short = Timeouts{Connect: 2 * time.Second, Greeting: 300 * time.Millisecond, Mail: 2 * time.Second, Rcpt: 2 * time.Second,
	DataInit: 2 * time.Second, DataBlock: 2 * time.Second, DataFinal: 300 * time.Millisecond}
