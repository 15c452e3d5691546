package smtpout

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
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
func (w *wireConn) cmd(timeout time.Duration, line string) (*wireReply, error) {
	if strings.ContainsAny(line, "\r\n") {
		return nil, errors.New("command contains a line break")
	}
	if _, err := w.Write([]byte(line + "\r\n")); err != nil {
		return nil, err
	}
	return w.reply(timeout)
}

// reply reads one reply within timeout.
func (w *wireConn) reply(timeout time.Duration) (*wireReply, error) {
	if err := w.Conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	defer w.Conn.SetReadDeadline(time.Time{})
	return readReply(w.br)
}

// wireReply is a reply read by this package (go-smtp reads the others).
type wireReply struct {
	Code  int
	Lines []string // text of each line, without the code and separator
}

// Limits on a reply (RFC 5321 §4.5.3.1.5: a reply line is at most 512
// octets; we allow more, as servers exceed it, but not without bound).
const (
	maxReplyLines = 100
)

// readReply reads a possibly multi-line reply (RFC 5321 §4.2.1): lines
// "ddd-text" continued by a last "ddd text", all with the same code.
// Lines longer than the reader's buffer are an error.
func readReply(br *bufio.Reader) (*wireReply, error) {
	r := &wireReply{}
	for i := 0; ; i++ {
		if i >= maxReplyLines {
			return nil, fmt.Errorf("reply longer than %d lines", maxReplyLines)
		}
		b, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return nil, errors.New("reply line too long")
			}
			return nil, err
		}
		line := strings.TrimRight(string(b), "\r\n")
		if len(line) < 3 {
			return nil, fmt.Errorf("malformed reply line %q", truncate(line, 64))
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil || code < 100 || code > 599 || line[0] == '+' || line[0] == '-' {
			return nil, fmt.Errorf("malformed reply code in %q", truncate(line, 64))
		}
		if i > 0 && code != r.Code {
			return nil, fmt.Errorf("reply code changed from %d to %d within a reply", r.Code, code)
		}
		r.Code = code
		sep, text := byte(' '), ""
		if len(line) > 3 {
			sep, text = line[3], line[4:]
		}
		if sep != ' ' && sep != '-' {
			return nil, fmt.Errorf("malformed reply line %q", truncate(line, 64))
		}
		r.Lines = append(r.Lines, text)
		if sep == ' ' {
			return r, nil
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ehloKeywords returns the extension keywords of an EHLO reply, upper
// case, with their parameters (RFC 5321 §4.1.1.1).
func ehloKeywords(r *wireReply) map[string]string {
	ext := map[string]string{}
	for i, l := range r.Lines {
		if i == 0 {
			continue // the greeting line
		}
		k, v, _ := strings.Cut(l, " ")
		ext[strings.ToUpper(k)] = v
	}
	return ext
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
