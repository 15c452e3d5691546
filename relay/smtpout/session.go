package smtpout

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"moat/internal/reply"
	"moat/relay/route"
	"moat/relay/tlsrpt"
	"moat/relay/transport"
)

// dest is one place to connect to.
type dest struct {
	key     string   // pool and limiter key
	network string   // "tcp" or "unix"
	addr    string   // what is dialled
	host    string   // the name: TLS server name, messages
	plan    *tlsPlan // MX delivery: the TLS policy of this exchanger
}

func (d dest) String() string {
	if h, _, err := net.SplitHostPort(d.addr); d.network == "unix" || d.host == d.addr || err == nil && h == d.host {
		return d.addr
	}
	return d.host + "[" + d.addr + "]"
}

// session is one open SMTP or LMTP session, ready for MAIL.
type session struct {
	key       string
	name      string // "host[addr]" for messages
	raw       net.Conn
	wc        *wireConn
	c         *smtp.Client
	t         Timeouts
	lmtp      bool
	tls       bool
	maxSize   int64 // SIZE (RFC 1870); 0: none announced
	utf8      bool
	xforward  map[string]bool
	pipeline  bool // PIPELINING (RFC 2920)
	eightBit  bool // 8BITMIME (RFC 6152)
	sizeExt   bool // SIZE (RFC 1870) offered, with or without a limit
	bw        *bufio.Writer
	used      int
	idleTimer *time.Timer

	lim     *limiter // its client's, for riders (chain.go)
	maxUsed int      // MaxMessagesPerConn
	next    *rider   // the rider whose commands followed the last dot

	reencoded func(reason string) // Options.Reencoded
}

// errTLSHandshake marks a failed TLS handshake: with opportunistic TLS
// the delivery is retried in clear on a new connection.
var errTLSHandshake = errors.New("TLS handshake failed")

// dial opens a session to d in TLS mode.
func (c *Client) dial(ctx context.Context, d dest, mode string) (*session, error) {
	dctx, cancel := context.WithTimeout(ctx, c.o.Timeouts.Connect)
	raw, err := (&net.Dialer{}).DialContext(dctx, d.network, d.addr)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", d, err)
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	s, err := c.setup(raw, d, mode)
	stop()
	if err != nil {
		raw.Close()
		if mode == route.TLSOpportunistic && errors.Is(err, errTLSHandshake) && ctx.Err() == nil {
			// RFC 7435 §3: opportunistic security falls back to clear
			// text rather than not delivering.
			return c.dial(ctx, d, route.TLSNone)
		}
		return nil, err
	}
	return s, nil
}

// setup reads the greeting, does STARTTLS and AUTH as configured and
// leaves the session after EHLO.
func (c *Client) setup(raw net.Conn, d dest, mode string) (*session, error) {
	t := c.o.Timeouts
	wc := newWireConn(raw, t.DataBlock)
	r, err := wc.reply(t.Greeting) // RFC 5321 §4.5.3.2.1
	if err != nil {
		return nil, fmt.Errorf("%s: reading the greeting: %w", d, err)
	}
	if r.Code != 220 {
		return nil, wireErr(r, d.String(), "the initial greeting")
	}
	hello := "EHLO"
	if c.lmtp {
		hello = "LHLO" // RFC 2033 §4.1
	}
	tlsOn := false
	// report records the TLS outcome of an MX session (tlspolicy.go).
	report := func(failure tlsrpt.ResultType, plaintext bool) {
		if d.plan != nil {
			c.emit(*d.plan, mode, d.addr, failure, plaintext)
		}
	}
	// policyErr is a TLS failure under a policy that forbids clear
	// text: temporary, with the policy named (never a bounce at once).
	policyErr := func(format string, args ...any) error {
		err := fmt.Errorf(format, args...)
		if d.plan != nil && d.plan.what != "" {
			return fmt.Errorf("%s: %w", d.plan.what, err)
		}
		return err
	}
	if mode == route.TLSNone {
		report("", true)
	} else {
		er, err := wc.cmd(t.Mail, hello+" "+c.o.Hostname)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", d, hello, err)
		}
		var ext map[string]string
		if er.Code == 250 {
			ext = er.Keywords()
		} else if mode == route.TLSRequired || c.lmtp {
			return nil, wireErr(er, d.String(), hello)
		}
		_, offered := ext["STARTTLS"]
		switch {
		case offered:
			sr, err := wc.cmd(t.Mail, "STARTTLS")
			if err != nil {
				return nil, fmt.Errorf("%s: STARTTLS: %w", d, err)
			}
			if sr.Code != 220 {
				if mode == route.TLSRequired {
					report(tlsrpt.StartTLSNotSupported, false)
					// The reply is quoted, not wrapped: a 5yz here must
					// not bounce the mail (the policy defers).
					return nil, policyErr("%s: %s: STARTTLS refused and TLS is required: %v", d, tlsrpt.StartTLSNotSupported, wireErr(sr, d.String(), "STARTTLS"))
				}
				report(tlsrpt.StartTLSNotSupported, true)
				break // opportunistic: carry on in clear
			}
			if wc.br.Buffered() > 0 {
				// Bytes before the handshake would be taken as if they
				// came over TLS (CVE-2011-0411).
				return nil, fmt.Errorf("%s: server sent data after its STARTTLS reply", d)
			}
			cfg, soft := c.tlsConfigFor(d, mode)
			tc := tls.Client(raw, cfg)
			raw.SetDeadline(time.Now().Add(t.Connect))
			err = tc.Handshake()
			raw.SetDeadline(time.Time{})
			if err != nil {
				report(classify(err), false)
				if mode == route.TLSRequired {
					// Never errTLSHandshake: no retry in clear.
					return nil, policyErr("%s: %s: TLS handshake failed: %v", d, classify(err), err)
				}
				return nil, fmt.Errorf("%s: %w: %w", d, errTLSHandshake, err)
			}
			if soft != nil && *soft != nil {
				// MTA-STS testing (RFC 8461 §5): reported, delivered.
				report(classify(*soft), false)
			} else {
				report("", false)
			}
			wc = newWireConn(tc, t.DataBlock)
			tlsOn = true
		case mode == route.TLSRequired:
			report(tlsrpt.StartTLSNotSupported, false)
			// RFC 3207 §4: the client decides; with TLS required it
			// does not send the message in clear.
			return nil, policyErr("%s: %s: STARTTLS not offered and TLS is required: not sending in clear", d, tlsrpt.StartTLSNotSupported)
		default:
			report(tlsrpt.StartTLSNotSupported, true)
		}
	}
	// go-smtp reads a greeting first: we read the real one already (and
	// after STARTTLS there is none, RFC 3207 §4.2), so it gets this one.
	wc.prefix = []byte("220 greeting already read\r\n")
	var cl *smtp.Client
	if c.lmtp {
		cl = smtp.NewClientLMTP(wc)
	} else {
		cl = smtp.NewClient(wc)
	}
	cl.CommandTimeout = t.Mail
	cl.SubmissionTimeout = t.DataFinal
	if err := cl.Hello(c.o.Hostname); err != nil {
		return nil, remoteErr(err, d.String(), hello)
	}
	s := &session{key: d.key, name: d.String(), raw: raw, wc: wc, c: cl, t: t, lmtp: c.lmtp, tls: tlsOn,
		lim: c.lim, maxUsed: c.o.MaxMessagesPerConn, reencoded: c.o.Reencoded}
	if c.o.Username != "" {
		if err := c.auth(s); err != nil {
			return nil, err
		}
	}
	if size, ok := cl.MaxMessageSize(); ok && size > 0 {
		s.maxSize = int64(size)
	}
	s.utf8, _ = cl.Extension("SMTPUTF8")
	s.pipeline, _ = cl.Extension("PIPELINING")
	s.eightBit, _ = cl.Extension("8BITMIME")
	s.sizeExt, _ = cl.Extension("SIZE")
	s.bw = bufio.NewWriterSize(wc, 16<<10)
	if ok, params := cl.Extension("XFORWARD"); ok {
		s.xforward = map[string]bool{}
		for _, p := range strings.Fields(params) {
			s.xforward[strings.ToUpper(p)] = true
		}
	}
	return s, nil
}

// auth runs AUTH PLAIN (RFC 4954, RFC 4616), only over TLS.
func (c *Client) auth(s *session) error {
	if !s.tls {
		// RFC 4954 §4 and §14: never a password in clear text.
		return transport.Permanent(fmt.Errorf("%s: the route has credentials but the session is not encrypted: refusing to send them in clear", s.name))
	}
	pass := c.o.Password
	if pass == "" && c.o.PasswordFile != "" {
		p, err := route.ReadPassword(c.o.PasswordFile)
		if err != nil {
			return fmt.Errorf("reading the password file: %w", err)
		}
		pass = p
	}
	if !s.c.SupportsAuth(sasl.Plain) {
		return fmt.Errorf("%s: AUTH PLAIN not offered", s.name)
	}
	if err := s.c.Auth(sasl.NewPlainClient("", c.o.Username, pass)); err != nil {
		// Soft: a wrong password should not bounce mail. The remote
		// reply is kept as the cause.
		return reply.New(454, 7, 0, "Authentication failed: "+remoteErr(err, s.name, "AUTH").Error())
	}
	return nil
}

// tlsConfig is the base configuration for a handshake with host in
// mode: verified against host when TLS is required (unless
// tls_skip_verify), not verified when opportunistic.
func (c *Client) tlsConfig(host, mode string) *tls.Config {
	var cfg *tls.Config
	if c.o.TLSConfig != nil {
		cfg = c.o.TLSConfig.Clone()
	} else {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if mode == route.TLSOpportunistic || c.o.TLSSkipVerify {
		// Opportunistic TLS protects against passive listeners only
		// (RFC 7435); verifying would make it fail closed for no gain.
		cfg.InsecureSkipVerify = true
	}
	return cfg
}

// quit ends the session politely and closes it.
func (s *session) quit() {
	s.c.CommandTimeout = min(s.t.Mail, 10*time.Second)
	if err := s.c.Quit(); err != nil {
		s.close()
	}
}

func (s *session) close() {
	s.raw.Close()
	s.c.Close()
}

// xforwardLines are the XFORWARD commands that carry the original
// client's attributes the server asked for (Postfix XFORWARD_README).
func (s *session) xforwardLines(msg *transport.Message) []string {
	if len(s.xforward) == 0 {
		return nil
	}
	addr := msg.ClientIP
	if a, err := netip.ParseAddr(addr); err == nil {
		a = a.Unmap()
		addr = a.String()
		if a.Is6() {
			addr = "IPV6:" + addr
		}
	}
	attrs := []struct{ name, val string }{
		{"NAME", msg.ClientName}, {"ADDR", addr}, {"PROTO", msg.Protocol}, {"HELO", msg.HELO},
	}
	var lines []string
	line := "XFORWARD"
	for _, a := range attrs {
		if a.val == "" || !s.xforward[a.name] {
			continue
		}
		v := a.val
		if len(v) > 255 {
			v = v[:255]
		}
		part := a.name + "=" + xtext(v)
		// RFC 5321 §4.5.3.1.4: command lines of at most 512 octets.
		if len(line)+1+len(part) > 500 && line != "XFORWARD" {
			lines = append(lines, line)
			line = "XFORWARD"
		}
		line += " " + part
	}
	if line != "XFORWARD" {
		lines = append(lines, line)
	}
	return lines
}

// broken reports whether err leaves the session unusable: anything but
// an SMTP reply, or 421 (RFC 5321 §3.8: the server is closing).
func broken(err error) bool {
	var se *smtp.SMTPError
	return !errors.As(err, &se) || se.Code == 421
}

// remoteErr turns a go-smtp error into a result error: a *reply.Reply
// for a 4yz/5yz reply, a plain (temporary) error otherwise.
func remoteErr(err error, host, stage string) error {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return fmt.Errorf("%s: %s: %w", host, stage, err)
	}
	return replyErr(se.Code, reply.Enhanced(se.EnhancedCode), se.Message, host, stage)
}

// wireErr does the same for a reply this package read.
func wireErr(r *reply.Response, host, stage string) error {
	text := strings.Join(r.Lines, "\n")
	var enh reply.Enhanced
	if w, rest, ok := strings.Cut(text, " "); ok {
		if e, err := reply.ParseEnhanced(w); err == nil {
			enh, text = e, rest
		}
	}
	return replyErr(r.Code, enh, text, host, stage)
}

func replyErr(code int, enh reply.Enhanced, text, host, stage string) error {
	if code/100 != 4 && code/100 != 5 {
		return fmt.Errorf("%s: unexpected reply %d to %s: %s", host, code, stage, cleanText(text))
	}
	if enh[0] != code/100 || enh[1] < 0 || enh[1] > 999 || enh[2] < 0 || enh[2] > 999 {
		// RFC 3463 §2: the class must agree with the code.
		enh = reply.Enhanced{code / 100, 0, 0}
	}
	return &reply.Reply{
		Code:     code,
		Enhanced: enh,
		Text:     fmt.Sprintf("host %s said: %s (in reply to %s)", host, cleanText(text), stage),
	}
}

// cleanText makes remote text one printable line of bounded length.
func cleanText(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 400 {
			b.WriteString("…")
			break
		}
		switch {
		case r == '\n':
			b.WriteString(" / ")
		case r < 0x20 || r == 0x7f:
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
