package smtptest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Raw is an SMTP client that sends exactly the bytes it is given, for
// tests of misbehaving clients and of a server's exact replies. Every
// read and write has a 10 s deadline; a broken reply line fails the test.
type Raw struct {
	t        testing.TB
	Conn     net.Conn
	R        *bufio.Reader
	Greeting string // the 220 reply, when DialRaw read it
}

// NewRaw wraps an open connection; it reads nothing.
func NewRaw(t testing.TB, c net.Conn) *Raw {
	return &Raw{t: t, Conn: c, R: bufio.NewReader(c)}
}

// DialRaw connects to addr, reads the greeting and fails the test unless
// it is 220. The connection is closed at the end of the test.
func DialRaw(t testing.TB, addr string) *Raw {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := NewRaw(t, c)
	code, text := r.Reply()
	if code != 220 {
		t.Fatalf("greeting: %q", text)
	}
	r.Greeting = text
	return r
}

// Reply reads one reply, all its lines (RFC 5321 §4.2.1), and returns its
// code and its lines joined by "\n". A read error ends the text with
// "ERR <error>" and gives code 0.
func (r *Raw) Reply() (int, string) {
	r.t.Helper()
	r.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var lines []string
	for {
		line, err := r.R.ReadString('\n')
		if err != nil {
			return 0, strings.Join(append(lines, "ERR "+err.Error()), "\n")
		}
		if !strings.HasSuffix(line, "\r\n") || len(line) < 6 {
			r.t.Fatalf("malformed reply line %q", line)
		}
		line = strings.TrimSuffix(line, "\r\n")
		lines = append(lines, line)
		if line[3] == ' ' {
			var code int
			fmt.Sscanf(line[:3], "%d", &code)
			return code, strings.Join(lines, "\n")
		}
	}
}

// Send writes s as it is.
func (r *Raw) Send(s string) {
	r.t.Helper()
	r.Conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(r.Conn, s); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// Cmd sends one line (CRLF added) and returns the reply.
func (r *Raw) Cmd(line string) (int, string) {
	r.t.Helper()
	r.Send(line + "\r\n")
	return r.Reply()
}

// Expect sends a line and fails the test unless the reply has code and
// contains sub ("" matches any text). It returns the reply's text.
func (r *Raw) Expect(line string, code int, sub string) string {
	r.t.Helper()
	got, text := r.Cmd(line)
	if got != code || !strings.Contains(text, sub) {
		r.t.Fatalf("%q: got %q, want %d %q", line, text, code, sub)
	}
	return text
}

// CommandSeeds reads the SMTP command seeds of a command-seeds.tsv
// (category, name, bytes, note; the bytes column is escaped as in a Go
// string), skipping comments, the header and the reply rows.
func CommandSeeds(t testing.TB, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for line := range strings.Lines(string(b)) {
		line = strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(line, "#") || strings.HasPrefix(line, "category\t") {
			continue
		}
		cols := strings.Split(line, "\t")
		if len(cols) < 3 || cols[0] == "reply" {
			continue
		}
		if s, err := strconv.Unquote(`"` + strings.ReplaceAll(cols[2], `"`, `\"`) + `"`); err == nil {
			out = append(out, s)
		}
	}
	return out
}
