package gateway

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"testing/iotest"
	"time"

	"moat/internal/smtptest"
)

// FuzzEOLReader: in reject mode the reader either passes the bytes
// through unchanged (no bare CR/LF, no NUL) or fails with errBareEOL or
// errNUL; in normalize mode it never fails, its output has only CRLF
// line ends and no NUL, and only line ends and NULs changed. wholeEOL
// (BDAT) gives the same result.
func FuzzEOLReader(f *testing.F) {
	for _, s := range []string{"a\r\nb\r\n", "a\nb", "a\rb", "\r", "\n", "\r\r\n", ".\r\n", "x\r\n.\n.\r\n",
		"\r\n\x00.\r\n", "a\x00b\r\n", "\r\x00\n", "\x00"} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, normalize bool) {
		er := newEOLReader(iotest.HalfReader(bytes.NewReader(data)), normalize)
		out, err := io.ReadAll(er)
		// The BDAT path, on the message whole, decides the same.
		whole, fx, werr := wholeEOL(bytes.Clone(data), normalize)
		if (werr == nil) != (err == nil) || err == nil && (!bytes.Equal(whole, out) || fx != er.fixes) {
			t.Fatalf("whole: %q, %+v, %v; streamed: %q, %+v, %v", whole, fx, werr, out, er.fixes, err)
		}
		if normalize {
			if err != nil {
				t.Fatalf("normalize failed: %v", err)
			}
			if e := checkCRLF(out); e != nil {
				t.Fatalf("%v in %q from %q", e, out, data)
			}
			if bytes.IndexByte(out, 0) >= 0 || er.fixes.nuls != bytes.Count(data, []byte{0}) {
				t.Fatalf("NUL: %q from %q, %d removed", out, data, er.fixes.nuls)
			}
			if (er.fixes.bare == 0) != (checkCRLF(bytes.ReplaceAll(data, []byte{0}, nil)) == nil) {
				t.Fatalf("%d bare line ends counted in %q", er.fixes.bare, data)
			}
			// Only line endings change, and NULs go.
			flat := func(b []byte) []byte {
				b = bytes.ReplaceAll(b, []byte{0}, nil)
				b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
				return bytes.ReplaceAll(b, []byte("\r"), []byte("\n"))
			}
			if !bytes.Equal(flat(out), flat(data)) {
				t.Fatalf("content changed: %q -> %q", data, out)
			}
			return
		}
		switch {
		case err == nil:
			if checkCRLF(data) != nil || bytes.IndexByte(data, 0) >= 0 || !bytes.Equal(out, data) {
				t.Fatalf("passed %q as %q", data, out)
			}
		case errors.Is(err, errBareEOL):
			if checkCRLF(data) == nil {
				t.Fatalf("refused clean %q", data)
			}
		case errors.Is(err, errNUL):
			if bytes.IndexByte(data, 0) < 0 {
				t.Fatalf("refused %q for a NUL", data)
			}
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// pipeListener hands net.Pipe connections to the server.
type pipeListener struct {
	ch   chan net.Conn
	done chan struct{}
}

func (p *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-p.ch:
		return c, nil
	case <-p.done:
		return nil, net.ErrClosed
	}
}
func (p *pipeListener) Close() error {
	select {
	case <-p.done:
	default:
		close(p.done)
	}
	return nil
}
func (p *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 25} }

// pipeAddrConn makes a pipe look like a TCP connection from 192.0.2.7.
type pipeAddrConn struct{ net.Conn }

func (pipeAddrConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 4321}
}

// FuzzSession drives a whole SMTP session from a client transcript. The
// server must never hit an internal error (smtpd answers a recovered
// panic with "421 4.3.0 Internal server error"), and whatever it spools
// must have CRLF line endings only.
func FuzzSession(f *testing.F) {
	prefix := "EHLO c.example\r\nMAIL FROM:<s@far.example>\r\nRCPT TO:<alice@example.org>\r\n"
	for _, s := range smtptest.CommandSeeds(f, "testdata/command-seeds.tsv") {
		f.Add([]byte(s))
		f.Add([]byte(prefix + s))
	}
	f.Add([]byte(prefix + "DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n"))
	f.Add([]byte(prefix + "BDAT 5 LAST\r\nab\r\nc"))
	f.Add([]byte(prefix + "DATA\r\na\nb\r\n.\r\n"))

	sp := &memSpool{}
	opt := Options{
		Hostname:  "mx.example.org",
		Listeners: []Listener{{Name: "mx", Address: "127.0.0.1:0", Mode: "mx", TLS: "none"}},
		SMTP:      DefaultSMTP(),
		State:     testState(),
		Spool:     sp,
	}
	opt.SMTP.ReadTimeout = 200 * time.Millisecond
	opt.SMTP.WriteTimeout = 200 * time.Millisecond
	opt.SMTP.MaxMessageSize = 4096
	srv, err := New(opt)
	if err != nil {
		f.Fatal(err)
	}
	ln := &pipeListener{ch: make(chan net.Conn), done: make(chan struct{})}
	srv.Serve(opt.Listeners[0], ln)
	defer ln.Close()

	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 16<<10 {
			return
		}
		client, server := net.Pipe()
		ln.ch <- pipeAddrConn{server}
		var got bytes.Buffer
		done := make(chan struct{})
		go func() {
			defer close(done)
			client.SetReadDeadline(time.Now().Add(3 * time.Second))
			io.Copy(&got, client)
		}()
		client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		client.Write(in)
		client.Write([]byte("\r\nQUIT\r\n"))
		time.Sleep(time.Millisecond)
		client.Close()
		<-done
		if bytes.Contains(got.Bytes(), []byte("Internal server error")) {
			t.Fatalf("server error on %q:\n%s", in, got.Bytes())
		}
		for _, m := range sp.all() {
			if e := checkCRLF(m.data); e != nil {
				t.Fatalf("%v in spooled message from %q", e, in)
			}
		}
	})
}
