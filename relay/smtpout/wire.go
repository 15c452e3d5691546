package smtpout

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"moat/internal/reply"
)

// wireConn sits between go-smtp and the network connection. It serves a
// synthetic greeting first (we read the real one ourselves, and after
// STARTTLS there is none), gives every write its own deadline (RFC 5321
// §4.5.3.2.5: the data block timeout), and lets this package send
// commands that go-smtp has no method for (RSET without a new EHLO,
// XFORWARD) on the same buffered reader.
type wireConn struct {
	net.Conn
	br           *bufio.Reader
	prefix       []byte
	writeTimeout time.Duration
}

func newWireConn(c net.Conn, writeTimeout time.Duration) *wireConn {
	return &wireConn{Conn: c, br: bufio.NewReaderSize(c, 4096), writeTimeout: writeTimeout}
}

func (w *wireConn) Read(p []byte) (int, error) {
	if len(w.prefix) > 0 {
		n := copy(p, w.prefix)
		w.prefix = w.prefix[n:]
		return n, nil
	}
	return w.br.Read(p)
}

func (w *wireConn) Write(p []byte) (int, error) {
	if err := w.Conn.SetWriteDeadline(time.Now().Add(w.writeTimeout)); err != nil {
		return 0, err
	}
	return w.Conn.Write(p)
}

// SetDeadline is what go-smtp calls around each command; writes carry
// their own deadline, so only the read deadline is passed on.
func (w *wireConn) SetDeadline(t time.Time) error { return w.Conn.SetReadDeadline(t) }

// cmd sends one command line and reads its reply within timeout.
func (w *wireConn) cmd(timeout time.Duration, line string) (*reply.Response, error) {
	if strings.ContainsAny(line, "\r\n") {
		return nil, errors.New("command contains a line break")
	}
	if _, err := w.Write([]byte(line + "\r\n")); err != nil {
		return nil, err
	}
	return w.reply(timeout)
}

// reply reads one reply within timeout (lines are bounded by br's
// 4096 octets, their number by reply.MaxLines).
func (w *wireConn) reply(timeout time.Duration) (*reply.Response, error) {
	if err := w.Conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	defer w.Conn.SetReadDeadline(time.Time{})
	return reply.Read(w.br)
}

// xtext encodes a value as RFC 3461 §4 xtext: "+" followed by two upper
// case hex digits for every octet outside "!" to "~", and for "+" and "=".
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			fmt.Fprintf(&b, "+%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
