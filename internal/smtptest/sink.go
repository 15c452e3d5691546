package smtptest

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// Sink is an SMTP server in the test process that records the
// Message-ID of every message it accepts, with how often it saw each.
// It lives as long as the test, so it survives moat restarts.
type Sink struct {
	Addr string
	srv  *gosmtp.Server
	mu   sync.Mutex
	seen map[string]int
	last map[string][]byte // Message-ID -> the last copy received
}

// StartSink starts a Sink on a free loopback port.
func StartSink(t testing.TB) *Sink {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Sink{Addr: l.Addr().String(), seen: map[string]int{}, last: map[string][]byte{}}
	s.srv = gosmtp.NewServer(gosmtp.BackendFunc(func(*gosmtp.Conn) (gosmtp.Session, error) {
		return &sinkSession{s: s}, nil
	}))
	s.srv.Domain = "sink.test"
	s.srv.ReadTimeout = 30 * time.Second
	s.srv.WriteTimeout = 30 * time.Second
	s.srv.MaxMessageBytes = 10 << 20
	s.srv.MaxRecipients = 1000
	s.srv.ErrorLog = log.New(io.Discard, "", 0) // resets by a killed moat are expected
	go s.srv.Serve(l)
	t.Cleanup(func() { s.srv.Close() })
	return s
}

// Seen returns a copy of Message-ID -> times received.
func (s *Sink) Seen() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.seen))
	for k, v := range s.seen {
		out[k] = v
	}
	return out
}

// Message returns the last copy received of the message with this
// Message-ID (as MessageID returns it, angle brackets included), nil if
// none came.
func (s *Sink) Message(id string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last[id]
}

// Count is the number of distinct Message-IDs received.
func (s *Sink) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

type sinkSession struct{ s *Sink }

func (*sinkSession) Reset()        {}
func (*sinkSession) Logout() error { return nil }
func (*sinkSession) Mail(string, *gosmtp.MailOptions) error {
	return nil
}
func (*sinkSession) Rcpt(string, *gosmtp.RcptOptions) error {
	return nil
}
func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(io.LimitReader(r, 10<<20))
	if err != nil {
		return err
	}
	id := MessageID(b)
	if id == "" {
		return errors.New("no Message-ID")
	}
	ss.s.mu.Lock()
	ss.s.seen[id]++
	ss.s.last[id] = b
	ss.s.mu.Unlock()
	return nil
}

// MessageID returns the Message-ID header of a raw message, "" if none.
func MessageID(msg []byte) string {
	h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(msg))).ReadMIMEHeader()
	if err != nil && len(h) == 0 {
		return ""
	}
	return strings.TrimSpace(h.Get("Message-Id"))
}

// Body returns what follows the first empty line of a raw message.
func Body(msg []byte) []byte {
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		return msg[i+4:]
	}
	if i := bytes.Index(msg, []byte("\n\n")); i >= 0 {
		return msg[i+2:]
	}
	return nil
}
