package smtpd

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"moat/internal/dataend"
	"moat/internal/reply"
)

// dispatch runs one parsed command (RFC 5321 §4.1.1, §4.1.4 for what
// each may follow).
func (c *Conn) dispatch(verb, arg string) {
	switch verb {
	case "":
		c.syntaxError(replyBadSyntax)
	case "HELO", "EHLO":
		c.hello(verb == "EHLO", arg)
	case "MAIL":
		c.mailCmd(arg)
	case "RCPT":
		c.rcptCmd(arg)
	case "DATA":
		c.dataCmd(arg)
	case "BDAT":
		c.bdatCmd(arg)
	case "RSET":
		// RFC 5321 §4.1.1.5.
		c.reset()
		c.reply(replyReset)
	case "NOOP":
		// RFC 5321 §4.1.1.9: the argument, if any, is ignored.
		c.reply(replyNoop)
	case "QUIT":
		// RFC 5321 §4.1.1.10.
		c.reply(c.srv.bye)
		c.done = true
	case "VRFY":
		// RFC 5321 §3.5.3: 252 says neither yes nor no; moat reveals
		// nothing about its mailboxes.
		c.reply(replyVRFY)
	case "HELP":
		// RFC 5321 §4.1.1.8: the argument, if any, may be ignored.
		c.reply(replyHelp)
	case "EXPN", "SEND", "SOML", "SAML", "TURN":
		// RFC 5321 §4.2.4: 502 for a command not implemented.
		c.reply(replyNotImpl.Format(verb))
	case "AUTH":
		c.authCmd(arg)
	case "STARTTLS":
		c.startTLS(arg)
	default:
		c.syntaxError(replyUnrecognized.Format(verb))
	}
}

// reset ends the mail transaction (RSET, EHLO again, end of DATA/BDAT).
func (c *Conn) reset() {
	c.xferOn = false
	c.mail = false
	c.rcpts = 0
	c.chunks = nil
	if c.session != nil {
		c.session.Reset()
	}
}

// hello handles HELO and EHLO (RFC 5321 §4.1.1.1). The first one makes
// the session; a later one resets the transaction as RSET would.
func (c *Conn) hello(ehlo bool, arg string) {
	domain, _, _ := strings.Cut(arg, " ")
	if domain == "" {
		c.reply(replyHeloArg)
		return
	}
	if c.chunks != nil {
		c.reply(replyHelloInTransfer)
		return
	}
	c.helo = domain
	if c.session != nil {
		c.reset()
	} else {
		ses, err := c.srv.newSession(c)
		if err != nil {
			c.helo = ""
			c.replyErr(err)
			return
		}
		c.session = ses
	}
	// RFC 5321 §4.1.1.1: the first line names this server.
	r := replyHello.Format(c.srv.cfg.Hostname, domain)
	if !ehlo {
		c.reply(r)
		return
	}
	var b strings.Builder
	b.WriteString(r.Text)
	b.WriteString("\nPIPELINING\n8BITMIME\nENHANCEDSTATUSCODES\nCHUNKING")
	if c.tlsConn == nil && c.srv.cfg.TLS != nil {
		b.WriteString("\nSTARTTLS")
	}
	if c.tlsConn != nil { // RFC 4954 §4: no AUTH over plain text
		if as, ok := c.session.(AuthSession); ok {
			if mechs := as.AuthMechanisms(); len(mechs) > 0 {
				b.WriteString("\nAUTH " + strings.Join(mechs, " "))
			}
		}
	}
	if c.srv.cfg.SMTPUTF8 {
		b.WriteString("\nSMTPUTF8")
	}
	b.WriteString("\nSIZE " + strconv.FormatInt(c.srv.cfg.MaxMessageBytes, 10))
	// RFC 9422 §4.1.
	b.WriteString("\nLIMITS RCPTMAX=" + strconv.Itoa(c.srv.cfg.MaxRecipients))
	r.Text = b.String()
	c.reply(r)
}

// mailCmd handles MAIL FROM (RFC 5321 §4.1.1.2).
func (c *Conn) mailCmd(arg string) {
	switch {
	case c.session == nil:
		c.reply(replyNoHello)
		return
	case c.chunks != nil:
		c.reply(replyMailInTransfer)
		return
	case c.mail:
		// RFC 5321 §4.1.4: MAIL inside a transaction is a bad sequence.
		c.reply(replyNestedMail)
		return
	}
	from, ps, r := pathArg(arg, "FROM:", (*pathParser).reversePath, replyMailSyntax, replyMailParams)
	if r == nil && !utf8.ValidString(from) {
		// Refused with or without SMTPUTF8 (issue 27 item 4).
		r = replySenderUTF8
	}
	if r != nil {
		c.refuse("mail", arg, r)
		return
	}
	opts, r := mailOptions(ps, c.srv.cfg.MaxMessageBytes, c.srv.cfg.SMTPUTF8)
	if r != nil {
		c.refuse("mail", arg, r)
		return
	}
	if err := c.session.Mail(from, opts); err != nil {
		c.replyErr(err)
		return
	}
	c.mail = true
	c.rcpts = 0
	c.reply(replySenderOK.Format(from))
}

// pathArg splits the argument of MAIL or RCPT: prefix ("FROM:", "TO:"),
// a path that read takes, then the ESMTP parameters (RFC 5321 §4.1.1.2,
// §4.1.1.3, §4.1.2). On failure it returns the reply to send: syntax for
// a bad prefix or path, params for bad parameters.
func pathArg(arg, prefix string, read func(*pathParser) (string, error), syntax, params *reply.Reply) (string, []param, *reply.Reply) {
	rest, ok := cutPrefixFold(arg, prefix)
	if !ok {
		return "", nil, syntax
	}
	p := pathParser{s: strings.TrimSpace(rest)}
	path, err := read(&p)
	if err != nil || (p.s != "" && p.s[0] != ' ') {
		return "", nil, syntax
	}
	ps, err := parseParams(p.s)
	if err != nil {
		return "", nil, params
	}
	return path, ps, nil
}

// rcptCmd handles RCPT TO (RFC 5321 §4.1.1.3).
func (c *Conn) rcptCmd(arg string) {
	switch {
	case !c.mail:
		c.reply(replyNoMail)
		return
	case c.chunks != nil:
		c.reply(replyRcptInTransfer)
		return
	}
	to, ps, r := pathArg(arg, "TO:", func(p *pathParser) (string, error) { return p.path(true) }, replyRcptSyntax, replyRcptParams)
	if r == nil && !utf8.ValidString(to) {
		r = replyRcptUTF8
	}
	if r != nil {
		c.refuse("rcpt", arg, r)
		return
	}
	if len(ps) > 0 {
		// No RCPT parameter is advertised (DSN is not).
		c.refuse("rcpt", arg, replyRcptParam)
		return
	}
	if c.rcpts >= c.srv.cfg.MaxRecipients {
		// RFC 5321 §4.5.3.1.10.
		c.refuse("rcpt", arg, replyMaxRcpts.Format(c.srv.cfg.MaxRecipients))
		return
	}
	if err := c.session.Rcpt(to); err != nil {
		c.replyErr(err)
		return
	}
	c.rcpts++
	c.reply(replyRcptOK.Format(to))
}

// dataCmd handles DATA (RFC 5321 §4.1.1.4).
func (c *Conn) dataCmd(arg string) {
	switch {
	case arg != "":
		c.reply(replyDataArgs)
		return
	case c.chunks != nil:
		c.reply(replyDataInTransfer)
		return
	case !c.mail || c.rcpts == 0:
		c.reply(replyNoRcpt)
		return
	}
	c.reply(replyStartData)
	c.startXfer()
	d := &dataReader{c: c, left: c.srv.cfg.MaxMessageBytes}
	r := c.session.Data(d)
	if d.err == nil {
		d.left = -1 // drain whatever the session left, without the size limit
		d.drain()
	}
	if d.err != nil {
		// The connection failed or the client broke a limit: no reply
		// to the data can be given.
		c.readFailed(d.err)
		return
	}
	c.dataDone(r)
}

// dataDone writes the session's reply to a whole message (nil: a plain
// 250) and ends the transaction.
func (c *Conn) dataDone(r *reply.Reply) {
	if r == nil {
		r = replyDataOK
	}
	c.reply(r)
	c.reset()
}

// bdatCmd handles BDAT (RFC 3030 §2). The chunks are gathered (bounded by
// MaxMessageBytes) and the session reads the whole message at LAST.
func (c *Conn) bdatCmd(arg string) {
	f := strings.Fields(arg)
	if len(f) == 0 || len(f) > 2 {
		c.reply(replyBDATSyntax)
		return
	}
	last := len(f) == 2
	if last && !strings.EqualFold(f[1], "LAST") {
		c.reply(replyBDATArg)
		return
	}
	// RFC 3030 §4: chunk-size = 1*DIGIT (no sign: the guard's tracker
	// reads it the same way).
	size, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || size < 0 || strings.TrimLeft(f[0], "0123456789") != "" {
		c.reply(replyBDATSize)
		return
	}
	if !c.mail || c.rcpts == 0 {
		// RFC 3030 §2: the chunk follows the command even when the
		// command is refused.
		if c.discard(size) == nil {
			c.reply(replyNoRcpt)
		}
		return
	}
	have := int64(0)
	if c.chunks != nil {
		have = int64(c.chunks.Len())
	}
	if have+size > c.srv.cfg.MaxMessageBytes {
		if c.discard(size) == nil {
			c.reply(replyTooBig)
			c.reset()
		}
		return
	}
	if c.chunks == nil {
		c.chunks = &bytes.Buffer{}
		c.startXfer() // MinDataRate and DataTimeout run from the first chunk to LAST
	}
	// Read in pieces, so that a client announcing a big chunk and sending
	// nothing makes us hold nothing.
	for left := size; left > 0; {
		k := min(left, 32<<10)
		c.chunks.Grow(int(k))
		buf := c.chunks.AvailableBuffer()[:k]
		if err := c.readFull(buf); err != nil {
			c.readFailed(err)
			return
		}
		c.chunks.Write(buf)
		left -= k
	}
	if !last {
		c.reply(replyChunkOK.Format(size))
		return
	}
	msg := c.chunks
	c.chunks = nil
	c.dataDone(c.session.Data(msg))
}

// RefusalObserver is a Session that is told of each MAIL or RCPT that
// smtpd refuses itself (syntax, parameters, too many recipients), so
// that the refusal is logged and counted like the session's own. arg is
// the command's argument as the client sent it.
type RefusalObserver interface {
	Refused(cmd, arg string, r *reply.Reply)
}

// refuse sends r for a MAIL or RCPT command smtpd refused itself and
// tells the session, if it observes refusals.
func (c *Conn) refuse(cmd, arg string, r *reply.Reply) {
	if o, ok := c.session.(RefusalObserver); ok {
		o.Refused(cmd, arg, r)
	}
	c.reply(r)
}

// AuthMalformedCounter is an AuthSession that is told of each AUTH
// exchange that smtpd refuses itself because a response is not base64
// (501 5.5.2, RFC 4954 §4), so that it counts as a failed attempt.
type AuthMalformedCounter interface {
	AuthMalformed(mech string)
}

// authCmd handles AUTH (RFC 4954 §4) with the session's SASL server.
func (c *Conn) authCmd(arg string) {
	switch {
	case c.session == nil:
		c.reply(replyNoHello)
		return
	case c.auth:
		c.reply(replyAlreadyAuth)
		return
	case c.mail:
		// RFC 4954 §4: not during a mail transaction.
		c.reply(replyAuthInMail)
		return
	}
	f := strings.Fields(arg)
	if len(f) == 0 || len(f) > 2 {
		c.reply(replyAuthSyntax)
		return
	}
	if c.tlsConn == nil {
		// RFC 4954 §4 and RFC 3207: credentials only over TLS.
		c.reply(replyTLSNeeded)
		return
	}
	as, ok := c.session.(AuthSession)
	if !ok {
		c.reply(reply.AuthUnsupported)
		return
	}
	mech := strings.ToUpper(f[0])
	srv, err := as.Auth(mech)
	if err != nil {
		c.replyErr(err)
		return
	}
	badBase64 := func() {
		if m, ok := as.(AuthMalformedCounter); ok {
			m.AuthMalformed(mech)
		}
		c.reply(replyBadBase64)
	}
	var resp []byte
	if len(f) == 2 {
		if resp, err = decodeSASL(f[1]); err != nil {
			badBase64()
			return
		}
	}
	for i := 0; ; i++ {
		challenge, done, err := srv.Next(resp)
		if err != nil {
			c.replyErr(err)
			return
		}
		if done {
			break
		}
		if i == 8 {
			c.reply(replyTooManySteps)
			return
		}
		c.reply(replyChallenge.Format(base64.StdEncoding.EncodeToString(challenge)))
		line, err := c.readLine()
		if err != nil {
			c.readFailed(err)
			return
		}
		if line == "*" {
			// RFC 4954 §4: the client cancelled.
			c.reply(replyAuthCancelled)
			return
		}
		if resp, err = decodeSASL(line); err != nil {
			badBase64()
			return
		}
	}
	c.auth = true
	c.reply(replyAuthOK)
}

// decodeSASL decodes a SASL response; "=" is the empty one (RFC 4954 §4).
func decodeSASL(s string) ([]byte, error) {
	if s == "=" {
		return []byte{}, nil
	}
	return base64.StdEncoding.DecodeString(s)
}

// startTLS handles STARTTLS (RFC 3207 §4).
func (c *Conn) startTLS(arg string) {
	switch {
	case arg != "":
		c.reply(replyTLSParams)
		return
	case c.tlsConn != nil:
		c.reply(replyAlreadyTLS)
		return
	case c.srv.cfg.TLS == nil:
		c.reply(replyNoTLS)
		return
	case c.chunks != nil:
		c.reply(replyTLSInTransfer)
		return
	}
	c.reply(replyStartTLS)
	if c.flush() != nil {
		return
	}
	// RFC 3207 §5 / CVE-2011-0411: whatever the client sent after
	// STARTTLS in plain text is not part of the TLS session; drop it.
	c.releaseRead()
	c.partial = nil
	tc := tls.Server(c.nc, c.srv.cfg.TLS)
	tc.SetDeadline(time.Now().Add(c.readTimeout()))
	if err := tc.Handshake(); err != nil {
		c.srv.log.Debug("STARTTLS handshake failed", zap.Error(err))
		c.done = true
		return
	}
	tc.SetDeadline(time.Time{})
	c.rw, c.tlsConn, c.socket = tc, tc, nil
	// RFC 3207 §4.2: forget everything learnt before; the client starts
	// again with EHLO, and gets a new session then.
	c.reset()
	if c.session != nil {
		c.session.Logout()
		c.session = nil
	}
	c.helo = ""
	c.auth = false
}

// dataReader reads DATA for the session: it removes the dot-stuffing of
// RFC 5321 §4.5.2, ends at <CRLF>.<CRLF> and nowhere else (§4.1.1.4;
// where exactly: package internal/dataend, which the guard follows too),
// keeps CR and LF as they came, and fails with ErrDataTooLarge past
// the size limit. ".\rX" at a line start gives "\rX". A line may have
// MaxLineLength octets with its line end, the dot of dot-stuffing not
// counted (RFC 5321 §4.5.3.1.6), as a command line may.
type dataReader struct {
	c     *Conn
	state dataend.State
	left  int64 // octets the message may still have; <0: no limit
	line  int   // octets in the current line so far, a CR included, a stuffing dot not
	err   error // a failure of the connection or the line limit
}

func (d *dataReader) Read(p []byte) (int, error) {
	if d.state == dataend.End {
		return 0, io.EOF
	}
	if d.err != nil {
		return 0, d.err
	}
	if d.left == 0 {
		return 0, ErrDataTooLarge
	}
	if d.left > 0 && int64(len(p)) > d.left {
		p = p[:d.left]
	}
	c := d.c
	max := c.srv.cfg.MaxLineLength - 1 // the octets before the LF
	n := 0
	for n < len(p) && d.state != dataend.End {
		if c.readBuf == nil || c.used == c.filled {
			if n > 0 {
				break
			}
			if err := c.fill(time.Time{}); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				d.err = err
				return 0, err
			}
		}
		src := (*c.readBuf)[c.used:c.filled]
		i := 0
		for i < len(src) && n < len(p) {
			if d.state == dataend.Data {
				// Within a line only CR and LF matter: copy the run
				// before the next one at once.
				run := src[i:min(len(src), i+len(p)-n)]
				if k := bytes.IndexByte(run, '\r'); k >= 0 {
					run = run[:k]
				}
				if k := bytes.IndexByte(run, '\n'); k >= 0 {
					run = run[:k]
				}
				if d.line+len(run) > max {
					run = run[:max-d.line] // the byte after fails below
				}
				copy(p[n:], run)
				n += len(run)
				i += len(run)
				d.line += len(run)
				if i == len(src) || n == len(p) {
					break
				}
			}
			b := src[i]
			if d.state == dataend.DotCR && b != '\n' {
				// ".\r" not followed by LF: the dot was stuffing, the
				// CR is data; b is looked at again as data.
				p[n] = '\r'
				n++
				d.state = dataend.Data
				continue
			}
			i++
			stuffing := d.state == dataend.BeginLine && b == '.'
			if b == '\n' {
				d.line = 0
			} else if !stuffing {
				if d.line++; d.line > max {
					c.used += i
					d.err = errTooLongLine
					return n, d.err
				}
			}
			prev := d.state
			if d.state = dataend.Next(prev, b); d.state == dataend.End {
				break
			}
			if prev == dataend.BeginLine && b == '.' || // the stuffing dot
				prev == dataend.Dot && b == '\r' { // kept until its LF shows whether it ends the data
				continue
			}
			p[n] = b
			n++
		}
		c.used += i
	}
	if d.left > 0 {
		d.left -= int64(n)
	}
	if d.state == dataend.End && n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// drain reads to the end of the data.
func (d *dataReader) drain() {
	var buf [512]byte
	for d.state != dataend.End && d.err == nil {
		d.Read(buf[:])
	}
}
