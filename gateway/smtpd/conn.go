package smtpd

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"
)

// errTooLongLine: a command or DATA line over Config.MaxLineLength.
var errTooLongLine = errors.New("smtpd: line too long")

// Conn is one SMTP connection: its protocol state and its I/O. Its
// methods Conn, Hostname and TLSConnectionState are what a session may
// ask (they match go-smtp's *smtp.Conn); everything else runs on the
// connection's own goroutine.
type Conn struct {
	srv  *Server
	nc   net.Conn        // the accepted connection, as the listener gave it
	rw   net.Conn        // what is read and written: nc, or the *tls.Conn over it
	tc   *tls.Conn       // the TLS layer, if any
	raw  syscall.RawConn // the socket, for waiting without a buffer; nil over TLS
	ses  smtp.Session    // nil before HELO/EHLO
	bdt  *bytes.Buffer   // the BDAT chunks so far (RFC 3030)
	rbp  *[]byte         // pooled read buffer; nil while idle
	wbp  *[]byte         // pooled reply buffer; nil when nothing is pending
	kpt  []byte          // unread bytes kept over an idle wait (part of a line)
	r    int             // (*rbp)[r:w] is read but not yet used
	w    int             //
	wer  error           // the first write error
	hel  string          // the HELO/EHLO argument
	nrc  int             // recipients accepted in this transaction
	nerr int             // bad or unknown commands so far
	mail bool            // MAIL accepted, transaction open
	auth bool            // AUTH succeeded
	done bool            // the connection is to close
}

func newConn(s *Server, nc net.Conn) *Conn {
	c := &Conn{srv: s, nc: nc, rw: nc}
	c.tc, c.raw = inspect(nc)
	return c
}

// Conn returns the connection the session runs on: the one the listener
// accepted, or the *tls.Conn over it after STARTTLS.
func (c *Conn) Conn() net.Conn { return c.rw }

// Hostname returns the client's HELO/EHLO argument.
func (c *Conn) Hostname() string { return c.hel }

// TLSConnectionState returns the TLS state, and false without TLS.
func (c *Conn) TLSConnectionState() (tls.ConnectionState, bool) {
	if c.tc == nil {
		return tls.ConnectionState{}, false
	}
	return c.tc.ConnectionState(), true
}

// unwrap returns the connection below a wrapper: NetConn (crypto/tls and
// moat's own wrappers) or Unwrap (the metrics wrapper).
func unwrap(nc net.Conn) net.Conn {
	switch u := nc.(type) {
	case interface{ NetConn() net.Conn }:
		return u.NetConn()
	case interface{ Unwrap() net.Conn }:
		return u.Unwrap()
	}
	return nil
}

// inspect walks the wrapper chain of nc: a *tls.Conn in it means TLS (and
// no waiting on the socket: crypto/tls may hold decrypted bytes); else the
// socket at the bottom, if it gives a syscall.RawConn.
func inspect(nc net.Conn) (*tls.Conn, syscall.RawConn) {
	for i := 0; i < 8 && nc != nil; i++ {
		switch x := nc.(type) {
		case *tls.Conn:
			return x, nil
		case syscall.Conn:
			rc, err := x.SyscallConn()
			if err != nil {
				return nil, nil
			}
			return nil, rc
		}
		nc = unwrap(nc)
	}
	return nil, nil
}

// chainBuffered reports whether a wrapper holds bytes read ahead of us
// (the guard's, after a PROXY header): then there is no waiting on the
// socket. A wrapper that reads ahead must say so with Buffered() int.
func chainBuffered(nc net.Conn) bool {
	for i := 0; i < 8 && nc != nil; i++ {
		if b, ok := nc.(interface{ Buffered() int }); ok && b.Buffered() > 0 {
			return true
		}
		nc = unwrap(nc)
	}
	return false
}

// serve runs the connection to its end.
func (c *Conn) serve() {
	defer c.close()
	if c.tc != nil {
		// Implicit TLS (RFC 8314 §3.3): the handshake comes first.
		c.tc.SetDeadline(time.Now().Add(c.srv.cfg.ReadTimeout))
		if err := c.tc.Handshake(); err != nil {
			c.srv.log.Debug("TLS handshake failed", zap.Error(err))
			return
		}
		c.tc.SetDeadline(time.Time{})
	}
	// RFC 5321 §4.2, §3.1: the greeting.
	c.reply(220, smtp.NoEnhancedCode, c.srv.cfg.Hostname+" ESMTP Service Ready")
	for !c.done {
		line, err := c.readLine()
		if err != nil {
			c.readFailed(err)
			return
		}
		c.handle(line)
	}
}

// readFailed ends the connection after a failed read.
func (c *Conn) readFailed(err error) {
	var ne net.Error
	switch {
	case errors.Is(err, errTooLongLine):
		c.reply(500, smtp.EnhancedCode{5, 4, 0}, "Too long line, closing connection")
	case errors.As(err, &ne) && ne.Timeout():
		// RFC 5321 §4.5.3.2: the server may close after a timeout, and
		// says 421 first (§3.8).
		c.reply(421, smtp.EnhancedCode{4, 4, 2}, c.srv.cfg.Hostname+" Idle timeout, closing connection")
	}
	c.done = true
}

// close writes what is pending and ends the connection and its session.
func (c *Conn) close() {
	c.flush()
	if c.ses != nil {
		c.ses.Logout()
		c.ses = nil
	}
	c.releaseRead()
	c.bdt = nil
	c.nc.Close()
}

// --- reading ---

// readLine returns the next command line without its line end. RFC 5321
// §2.3.8 asks for CRLF; as go-smtp and net/textproto did (and the guard
// assumes), a bare LF ends a command line too.
//
// The whole line must come within ReadTimeout (RFC 5321 §4.5.3.2.7: the
// wait for a command), so a client dripping bytes cannot hold the
// connection longer.
func (c *Conn) readLine() (string, error) {
	max := c.srv.cfg.MaxLineLength
	deadline := time.Now().Add(c.srv.cfg.ReadTimeout)
	for {
		if c.rbp != nil {
			buf := (*c.rbp)[c.r:c.w]
			if i := bytes.IndexByte(buf, '\n'); i >= 0 {
				line := buf[:i]
				c.r += i + 1
				if n := len(line); n > 0 && line[n-1] == '\r' {
					line = line[:n-1]
				}
				if len(line) > max {
					return "", errTooLongLine
				}
				return string(line), nil
			}
			if len(buf) > max+1 {
				return "", errTooLongLine
			}
		}
		if err := c.fill(deadline); err != nil {
			return "", err
		}
	}
}

// fill reads more bytes from the client after the unread ones. It first
// writes the pending replies: RFC 2920 §3.2 lets a server hold replies
// only until it would wait for input. Reading a command line (deadline
// set), with a socket to wait on, the read buffer goes back to the pool
// while the client is silent; a part of a line is kept in a small slice.
// Reading message data (zero deadline), each read gets ReadTimeout
// (RFC 5321 §4.5.3.2.5: per data block).
func (c *Conn) fill(deadline time.Time) error {
	if err := c.flush(); err != nil {
		return err
	}
	idle := !deadline.IsZero()
	if !idle {
		deadline = time.Now().Add(c.srv.cfg.ReadTimeout)
	}
	switch {
	case idle && c.raw != nil && !chainBuffered(c.nc):
		if err := c.wait(deadline); err != nil {
			return err
		}
	case idle && c.tc != nil && len(c.kpt) == 0 && (c.rbp == nil || c.r == c.w):
		return c.fillTLS(deadline)
	}
	c.takeRead()
	buf := *c.rbp
	if c.r > 0 {
		c.w = copy(buf, buf[c.r:c.w])
		c.r = 0
	}
	if c.w == len(buf) {
		return errTooLongLine // only a line can fill the buffer
	}
	c.rw.SetReadDeadline(deadline)
	for i := 0; i < 100; i++ {
		n, err := c.rw.Read(buf[c.w:])
		c.w += n
		if n > 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return io.ErrNoProgress
}

// wait gives the read buffer back and waits, with the read deadline,
// until the socket is readable (or closed, or in error: the Read after
// tells which).
func (c *Conn) wait(deadline time.Time) error {
	c.releaseRead()
	if h := c.srv.idleHook; h != nil {
		h(c)
	}
	c.rw.SetReadDeadline(deadline)
	return waitReadable(c.raw)
}

// tlsIdleRead is what fillTLS reads before it takes a read buffer.
const tlsIdleRead = 256

// fillTLS is fill's read of a new command line over TLS, where there is
// no socket to wait on: crypto/tls may hold decrypted bytes the socket
// does not show. It gives the read buffer back and reads into a small
// array on the stack, so that a silent client holds no read buffer;
// crypto/tls keeps the rest of a record for the next read. Only with
// nothing unread (no partial line), so that what arrives fits.
func (c *Conn) fillTLS(deadline time.Time) error {
	c.releaseRead()
	if h := c.srv.idleHook; h != nil {
		h(c)
	}
	c.rw.SetReadDeadline(deadline)
	var small [tlsIdleRead]byte
	for i := 0; i < 100; i++ {
		n, err := c.rw.Read(small[:])
		if n > 0 {
			c.takeRead()
			c.w = copy(*c.rbp, small[:n])
			return nil // an error comes back on the next read
		}
		if err != nil {
			return err
		}
	}
	return io.ErrNoProgress
}

// takeRead makes sure a read buffer is held, with any kept bytes in it.
func (c *Conn) takeRead() {
	if c.rbp != nil {
		return
	}
	c.rbp = c.srv.rbufs.Get().(*[]byte)
	c.r, c.w = 0, copy(*c.rbp, c.kpt)
	c.kpt = nil
}

// releaseRead gives the read buffer back, keeping unread bytes aside.
func (c *Conn) releaseRead() {
	if c.rbp == nil {
		return
	}
	if c.r < c.w {
		c.kpt = append([]byte(nil), (*c.rbp)[c.r:c.w]...)
	}
	c.srv.rbufs.Put(c.rbp)
	c.rbp, c.r, c.w = nil, 0, 0
}

// readFull reads exactly len(p) bytes (BDAT chunks).
func (c *Conn) readFull(p []byte) error {
	for len(p) > 0 {
		if c.rbp == nil || c.r == c.w {
			if err := c.fill(time.Time{}); err != nil {
				return err
			}
		}
		n := copy(p, (*c.rbp)[c.r:c.w])
		c.r += n
		p = p[n:]
	}
	return nil
}

// discard reads and drops n bytes (a refused BDAT chunk).
func (c *Conn) discard(n int64) error {
	for n > 0 {
		if c.rbp == nil || c.r == c.w {
			if err := c.fill(time.Time{}); err != nil {
				return err
			}
		}
		k := min(int64(c.w-c.r), n)
		c.r += int(k)
		n -= k
	}
	return nil
}

// --- writing ---

// reply queues one reply (RFC 5321 §4.2): "code-text" lines then
// "code text"; each line carries the enhanced code (RFC 2034 §4) unless
// enh is smtp.NoEnhancedCode; smtp.EnhancedCodeNotSet becomes X.0.0.
// Replies are written when the loop next waits for input, except a 5xx,
// which goes at once so that the guard can delay each one (its tarpit),
// and a 421, after which the connection closes (RFC 5321 §3.8).
func (c *Conn) reply(code int, enh smtp.EnhancedCode, text string) {
	if enh == smtp.EnhancedCodeNotSet {
		switch code / 100 {
		case 2, 4, 5:
			enh = smtp.EnhancedCode{code / 100, 0, 0}
		default:
			enh = smtp.NoEnhancedCode
		}
	}
	if c.wbp == nil {
		c.wbp = c.srv.wbufs.Get().(*[]byte)
	}
	b := *c.wbp
	for {
		line, rest, more := cutLine(text)
		b = strconv.AppendInt(b, int64(code), 10)
		if more {
			b = append(b, '-')
		} else {
			b = append(b, ' ')
		}
		if enh != smtp.NoEnhancedCode {
			b = strconv.AppendInt(b, int64(enh[0]), 10)
			b = append(b, '.')
			b = strconv.AppendInt(b, int64(enh[1]), 10)
			b = append(b, '.')
			b = strconv.AppendInt(b, int64(enh[2]), 10)
			b = append(b, ' ')
		}
		b = append(b, line...)
		b = append(b, '\r', '\n')
		if !more {
			break
		}
		text = rest
	}
	*c.wbp = b
	if code == 421 {
		c.done = true
	}
	if code >= 500 || code == 421 {
		c.flush()
	}
}

// cutLine splits reply text at its first LF; CR and other control
// characters never reach the wire (a reply line is text, RFC 5321 §4.2).
func cutLine(s string) (line, rest string, more bool) {
	line, rest, more = cutByte(s, '\n')
	for i := 0; i < len(line); i++ {
		if line[i] < ' ' && line[i] != '\t' {
			b := []byte(line)
			for j := range b {
				if b[j] < ' ' && b[j] != '\t' {
					b[j] = ' '
				}
			}
			return string(b), rest, more
		}
	}
	return line, rest, more
}

func cutByte(s string, c byte) (string, string, bool) {
	if i := strings.IndexByte(s, c); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

// flush writes the pending replies in one write and gives the buffer
// back.
func (c *Conn) flush() error {
	if c.wbp == nil {
		return c.wer
	}
	b := *c.wbp
	if len(b) > 0 && c.wer == nil {
		c.rw.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
		if _, err := c.rw.Write(b); err != nil {
			c.wer = err
			c.done = true
		}
	}
	if cap(b) <= 64<<10 {
		*c.wbp = b[:0]
		c.srv.wbufs.Put(c.wbp)
	}
	c.wbp = nil
	return c.wer
}

// replyErr writes the reply for a session's error: an *smtp.SMTPError
// as it is; anything else is logged and becomes 451 4.3.0, so internal
// text never reaches the client.
func (c *Conn) replyErr(err error) {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		c.reply(se.Code, se.EnhancedCode, se.Message)
		return
	}
	c.srv.log.Warn("session error without a reply", zap.Error(err))
	c.reply(451, smtp.EnhancedCode{4, 3, 0}, "Local error in processing, please try again later")
}

// handle runs one command. A panic in the session ends the connection
// with 421 (RFC 5321 §3.8), not the process.
func (c *Conn) handle(line string) {
	defer func() {
		if p := recover(); p != nil {
			c.srv.log.Error("panic in SMTP session", zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
			c.reply(421, smtp.EnhancedCode{4, 3, 0}, "Internal server error")
		}
	}()
	verb, arg, err := parseCommand(line)
	if err != nil {
		c.syntaxError(501, "Bad command")
		return
	}
	c.dispatch(verb, arg)
}

// errThreshold: bad or unknown commands tolerated before closing.
const errThreshold = 3

func (c *Conn) syntaxError(code int, text string) {
	c.reply(code, smtp.EnhancedCode{5, 5, 2}, text)
	c.nerr++
	if c.nerr > errThreshold {
		c.reply(421, smtp.EnhancedCode{4, 7, 0}, c.srv.cfg.Hostname+" Too many errors, closing connection")
	}
}
