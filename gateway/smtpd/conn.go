package smtpd

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"runtime/debug"
	"syscall"
	"time"

	"go.uber.org/zap"

	"moat/internal/reply"
)

// errTooLongLine: a command or DATA line over Config.MaxLineLength.
var errTooLongLine = errors.New("smtpd: line too long")

// Timeout kinds, as Config.OnTimeout is told them.
const (
	TimeoutIdle     = "idle"      // a command, or a data block, did not come within ReadTimeout
	TimeoutDataRate = "data_rate" // the message came slower than MinDataRate
	TimeoutData     = "data"      // the message took longer than DataTimeout
)

// Conn is one SMTP connection: its protocol state and its I/O. Its
// methods Conn, Hostname and TLSConnectionState are what a session may
// ask; everything else runs on the connection's own goroutine.
type Conn struct {
	srv     *Server
	nc      net.Conn        // the accepted connection, as the listener gave it
	rw      net.Conn        // what is read and written: nc, or the *tls.Conn over it
	tlsConn *tls.Conn       // the TLS layer, if any
	socket  syscall.RawConn // the socket, for waiting without a buffer; nil over TLS
	session Session         // nil before HELO/EHLO
	chunks  *bytes.Buffer   // the BDAT chunks of this message so far (RFC 3030); nil outside BDAT

	// Reading: readBuf is a pooled buffer, held only while a command or
	// message data is being read; (*readBuf)[used:filled] has been read
	// from the client and not yet used. Over an idle wait the buffer
	// goes back to the pool and the unread part of a line, if any, is
	// kept in partial.
	readBuf *[]byte
	used    int
	filled  int
	partial []byte

	// Writing: replyBuf is a pooled buffer of replies not yet written;
	// nil when none are pending. writeErr is the first write error:
	// nothing is written after it.
	replyBuf *[]byte
	writeErr error

	// stress is the wrapper that says the guard is under overload (its
	// StressTimeout shortens every wait); nil when there is none.
	stress interface{ StressTimeout() time.Duration }
	// The message transfer (DATA, or BDAT up to LAST) under way, if
	// xferOn: its start and the octets read since, for MinDataRate and
	// DataTimeout. timeoutKind is what the last read deadline was set
	// for (a Timeout… constant).
	xferOn      bool
	xferStart   time.Time
	xferBytes   int64
	timeoutKind string

	helo        string // the HELO/EHLO argument
	rcpts       int    // recipients accepted in this transaction
	badCommands int    // bad or unknown commands so far (errThreshold)
	mail        bool   // MAIL accepted, transaction open
	auth        bool   // AUTH succeeded
	done        bool   // the connection is to close
}

func newConn(s *Server, nc net.Conn) *Conn {
	c := &Conn{srv: s, nc: nc, rw: nc}
	c.tlsConn, c.socket = inspect(nc)
	c.stress = stressOf(nc)
	return c
}

// stressOf finds, in the wrapper chain of nc, the one that says whether
// the server is under overload (the connection guard's).
func stressOf(nc net.Conn) interface{ StressTimeout() time.Duration } {
	for i := 0; i < 8 && nc != nil; i++ {
		if s, ok := nc.(interface{ StressTimeout() time.Duration }); ok {
			return s
		}
		nc = unwrap(nc)
	}
	return nil
}

// readTimeout is the wait for a command or a data block: ReadTimeout,
// or the guard's shorter stress timeout while it is under overload (as
// Postfix's stress mode shortens smtpd_timeout).
func (c *Conn) readTimeout() time.Duration {
	rt := c.srv.cfg.ReadTimeout
	if c.stress != nil {
		if s := c.stress.StressTimeout(); s > 0 && s < rt {
			rt = s
		}
	}
	return rt
}

// startXfer marks the start of a message transfer (at 354, or at the
// first BDAT chunk of a message).
func (c *Conn) startXfer() {
	c.xferOn, c.xferStart, c.xferBytes = true, time.Now(), 0
}

// dataDeadline is the read deadline while a message is coming: the wait
// for one data block (RFC 5321 §4.5.3.2.5), cut to what MinDataRate
// allows so far (Postfix's smtpd_min_data_rate: ReadTimeout plus one
// second per MinDataRate octets received, from the start of the
// transfer) and to the whole-message DataTimeout.
func (c *Conn) dataDeadline(now time.Time) time.Time {
	rt := c.readTimeout()
	deadline, kind := now.Add(rt), TimeoutIdle
	if c.xferOn {
		cfg := &c.srv.cfg
		if cfg.MinDataRate > 0 {
			allow := rt + time.Duration(float64(c.xferBytes)/float64(cfg.MinDataRate)*float64(time.Second))
			if d := c.xferStart.Add(allow); d.Before(deadline) {
				deadline, kind = d, TimeoutDataRate
			}
		}
		if cfg.DataTimeout > 0 {
			if d := c.xferStart.Add(cfg.DataTimeout); d.Before(deadline) {
				deadline, kind = d, TimeoutData
			}
		}
	}
	c.timeoutKind = kind
	return deadline
}

// Conn returns the connection the session runs on: the one the listener
// accepted, or the *tls.Conn over it after STARTTLS.
func (c *Conn) Conn() net.Conn { return c.rw }

// Hostname returns the client's HELO/EHLO argument.
func (c *Conn) Hostname() string { return c.helo }

// TLSConnectionState returns the TLS state, and false without TLS.
func (c *Conn) TLSConnectionState() (tls.ConnectionState, bool) {
	if c.tlsConn == nil {
		return tls.ConnectionState{}, false
	}
	return c.tlsConn.ConnectionState(), true
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
	if c.tlsConn != nil {
		// Implicit TLS (RFC 8314 §3.3): the handshake comes first.
		c.tlsConn.SetDeadline(time.Now().Add(c.readTimeout()))
		if err := c.tlsConn.Handshake(); err != nil {
			c.srv.log.Debug("TLS handshake failed", zap.Error(err))
			return
		}
		c.tlsConn.SetDeadline(time.Time{})
	}
	// RFC 5321 §4.2, §3.1: the greeting.
	c.reply(c.srv.greeting)
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
		c.reply(replyLineTooLong)
	case errors.As(err, &ne) && ne.Timeout():
		// RFC 5321 §4.5.3.2: the server may close after a timeout, and
		// says 421 first (§3.8).
		// Counted and logged before the 421 goes out.
		kind, r := c.timeoutKind, replyIdle
		switch kind {
		case TimeoutDataRate:
			r = replyDataRate
		case TimeoutData:
			r = replyDataTimeout
		default:
			kind = TimeoutIdle
		}
		if kind != TimeoutIdle {
			c.srv.log.Info("message transfer too slow, connection closed", zap.String("timeout", kind),
				zap.Stringer("client", c.nc.RemoteAddr()), zap.Int64("octets", c.xferBytes),
				zap.Duration("elapsed", time.Since(c.xferStart)))
		}
		if f := c.srv.cfg.OnTimeout; f != nil {
			f(kind)
		}
		c.reply(r.WithHost(c.srv.cfg.Hostname))
	}
	c.done = true
}

// close writes what is pending and ends the connection and its session.
func (c *Conn) close() {
	c.flush()
	if c.session != nil {
		c.session.Logout()
		c.session = nil
	}
	c.releaseRead()
	c.chunks = nil
	c.nc.Close()
}

// --- reading ---

// readLine returns the next command line without its line end. RFC 5321
// §2.3.8 asks for CRLF; as go-smtp and net/textproto did (and the guard
// assumes), a bare LF ends a command line too.
//
// The line, its line end included, may have MaxLineLength octets (RFC
// 5321 §4.5.3.1.4 counts the CRLF in a command line's 512; DATA lines
// obey the same number, see dataReader).
//
// The whole line must come within ReadTimeout (RFC 5321 §4.5.3.2.7: the
// wait for a command), so a client dripping bytes cannot hold the
// connection longer.
func (c *Conn) readLine() (string, error) {
	max := c.srv.cfg.MaxLineLength
	deadline := time.Now().Add(c.readTimeout())
	c.timeoutKind = TimeoutIdle
	for {
		if c.readBuf != nil {
			buf := (*c.readBuf)[c.used:c.filled]
			if i := bytes.IndexByte(buf, '\n'); i >= 0 {
				if i+1 > max { // the octets before the LF, and the LF
					return "", errTooLongLine
				}
				line := buf[:i]
				c.used += i + 1
				if n := len(line); n > 0 && line[n-1] == '\r' {
					line = line[:n-1]
				}
				return string(line), nil
			}
			if len(buf) >= max { // with its LF still to come, over the limit
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
// Reading message data (zero deadline), each read gets dataDeadline
// (RFC 5321 §4.5.3.2.5: per data block; and the minimum data rate).
func (c *Conn) fill(deadline time.Time) error {
	if err := c.flush(); err != nil {
		return err
	}
	idle := !deadline.IsZero()
	if !idle {
		deadline = c.dataDeadline(time.Now())
	}
	switch {
	case idle && c.socket != nil && !chainBuffered(c.nc):
		if err := c.wait(deadline); err != nil {
			return err
		}
	case idle && c.tlsConn != nil && len(c.partial) == 0 && (c.readBuf == nil || c.used == c.filled):
		return c.fillTLS(deadline)
	}
	c.takeRead()
	buf := *c.readBuf
	if c.used > 0 {
		c.filled = copy(buf, buf[c.used:c.filled])
		c.used = 0
	}
	if c.filled == len(buf) {
		return errTooLongLine // only a line can fill the buffer
	}
	c.rw.SetReadDeadline(deadline)
	for i := 0; i < 100; i++ {
		n, err := c.rw.Read(buf[c.filled:])
		c.filled += n
		if n > 0 {
			if c.xferOn {
				c.xferBytes += int64(n)
			}
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
	return waitReadable(c.socket)
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
			c.filled = copy(*c.readBuf, small[:n])
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
	if c.readBuf != nil {
		return
	}
	c.readBuf = c.srv.rbufs.Get().(*[]byte)
	c.used, c.filled = 0, copy(*c.readBuf, c.partial)
	c.partial = nil
}

// releaseRead gives the read buffer back, keeping unread bytes aside.
func (c *Conn) releaseRead() {
	if c.readBuf == nil {
		return
	}
	if c.used < c.filled {
		c.partial = append([]byte(nil), (*c.readBuf)[c.used:c.filled]...)
	}
	c.srv.rbufs.Put(c.readBuf)
	c.readBuf, c.used, c.filled = nil, 0, 0
}

// readFull reads exactly len(p) bytes (BDAT chunks).
func (c *Conn) readFull(p []byte) error {
	for len(p) > 0 {
		if c.readBuf == nil || c.used == c.filled {
			if err := c.fill(time.Time{}); err != nil {
				return err
			}
		}
		n := copy(p, (*c.readBuf)[c.used:c.filled])
		c.used += n
		p = p[n:]
	}
	return nil
}

// discard reads and drops n bytes (a refused BDAT chunk).
func (c *Conn) discard(n int64) error {
	for n > 0 {
		if c.readBuf == nil || c.used == c.filled {
			if err := c.fill(time.Time{}); err != nil {
				return err
			}
		}
		k := min(int64(c.filled-c.used), n)
		c.used += int(k)
		n -= k
	}
	return nil
}

// --- writing ---

// reply queues one reply (RFC 5321 §4.2; reply.AppendWire writes the
// lines). Replies are written when the loop next waits for input,
// except a 5xx, which goes at once so that the guard can delay each one
// (its tarpit), and a 421, after which the connection closes (RFC 5321
// §3.8).
func (c *Conn) reply(r *reply.Reply) {
	if c.replyBuf == nil {
		c.replyBuf = c.srv.wbufs.Get().(*[]byte)
	}
	*c.replyBuf = r.AppendWire(*c.replyBuf)
	if r.Code == 421 {
		c.done = true
	}
	if r.Code >= 500 || r.Code == 421 {
		c.flush()
	}
}

// flush writes the pending replies in one write and gives the buffer
// back.
func (c *Conn) flush() error {
	if c.replyBuf == nil {
		return c.writeErr
	}
	b := *c.replyBuf
	if len(b) > 0 && c.writeErr == nil {
		c.rw.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
		if _, err := c.rw.Write(b); err != nil {
			c.writeErr = err
			c.done = true
		}
	}
	if cap(b) <= 64<<10 {
		*c.replyBuf = b[:0]
		c.srv.wbufs.Put(c.replyBuf)
	}
	c.replyBuf = nil
	return c.writeErr
}

// replyErr writes the reply for a session's error: a *reply.Reply as
// it is; anything else is logged and becomes 451 4.3.0, so internal text
// never reaches the client.
func (c *Conn) replyErr(err error) {
	var r *reply.Reply
	if errors.As(err, &r) && r != nil { // a nil *reply.Reply in an error is no reply
		c.reply(r)
		return
	}
	c.srv.log.Warn("session error without a reply", zap.Error(err))
	c.reply(reply.TempLocal)
}

// handle runs one command. A panic in the session ends the connection
// with 421 naming the host (RFC 5321 §3.8), not the process.
func (c *Conn) handle(line string) {
	defer func() {
		if p := recover(); p != nil {
			c.srv.log.Error("panic in SMTP session", zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
			c.reply(replyInternal.WithHost(c.srv.cfg.Hostname))
		}
	}()
	verb, arg, err := parseCommand(line)
	if err != nil {
		c.syntaxError(replyBadCommand)
		return
	}
	c.dispatch(verb, arg)
}

// errThreshold: bad or unknown commands tolerated before closing.
const errThreshold = 3

// syntaxError writes r (a 500 or 501) and counts it; past errThreshold
// the connection closes with 421.
func (c *Conn) syntaxError(r *reply.Reply) {
	c.reply(r)
	c.badCommands++
	if c.badCommands > errThreshold {
		c.reply(replyManyErrors.WithHost(c.srv.cfg.Hostname))
	}
}
