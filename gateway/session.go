package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"moat/gateway/guard"
	"moat/gateway/smtpd"
	"moat/internal/deadline"
	"moat/internal/maillog"
	"moat/internal/reply"
	"moat/policy"
	"moat/relay/spool"
	"moat/rules"
)

// session is one SMTP connection. smtpd calls its methods from the
// connection's goroutine only, so it needs no lock.
type session struct {
	srv    *Server
	c      *smtpd.Conn
	cfg    Listener
	state  *State
	checks *Checks
	log    *zap.Logger
	start  time.Time

	// t holds the connection's facts and the transaction's envelope,
	// message and rule results; srv.pipe runs the stages over it.
	t        *Txn
	active   bool // a MAIL FROM was accepted (reset by Reset)
	messages int
	rejected int
	tlsSeen  bool
}

var _ smtpd.Session = (*session)(nil)

func (s *Server) newSession(cfg Listener, c *smtpd.Conn) (smtpd.Session, error) {
	st := s.state.Load()
	sess := &session{srv: s, c: c, cfg: cfg, state: st, checks: s.opt.Checks, start: s.opt.Now()}
	conn := policy.Conn{ID: s.newConnID(), HELO: c.Hostname(), Listener: cfg.Name, Mode: cfg.Mode}
	if ap, err := netip.ParseAddrPort(c.Conn().RemoteAddr().String()); err == nil {
		conn.IP = ap.Addr().Unmap()
		conn.Port = int(ap.Port())
	}
	sess.log = s.log.With(zap.String("conn_id", conn.ID))
	sess.t = NewTxn(TxnOptions{Conn: conn, Listener: cfg, State: st, Logger: sess.log})
	if gf, ok := guard.FactsOf(c.Conn()); ok {
		// The listener guard has screened the client already.
		sess.t.Facts.DNSBL = gf.DNSBL
	}
	sess.updateTLS()
	if s.isClosing() {
		return nil, reply.ShuttingDown.WithHost(s.opt.Hostname) // RFC 5321 §3.8
	}
	// smtpd creates the session at the first EHLO/HELO, so the connect
	// and helo stages are decided here.
	for _, stage := range []rules.Stage{rules.StageConnect, rules.StageHelo} {
		if err := s.pipe.Run(context.Background(), stage, sess.t); err != nil {
			return nil, sess.fail(stage.String(), err)
		}
	}
	return sess, nil
}

// updateTLS refreshes the TLS facts (after STARTTLS).
func (s *session) updateTLS() {
	if cs, ok := s.c.TLSConnectionState(); ok {
		s.t.Facts.Conn.TLS = true
		s.t.Facts.Conn.TLSVersion = tlsVersionName(cs.Version)
		s.t.Facts.Conn.TLSCipher = tlsCipherName(cs.CipherSuite)
		if !s.tlsSeen && s.checks != nil && s.checks.TLS != nil {
			s.checks.TLS(s.t.Facts.Conn.TLSVersion)
		}
		s.tlsSeen = true
	}
}

// Reset discards the envelope (RSET, EHLO again, end of DATA).
func (s *session) Reset() {
	s.active = false
	s.t.Reset()
}

// Logout ends the session: one log line per connection.
func (s *session) Logout() error {
	c := s.t.Facts.Conn
	s.log.Info("connection closed",
		zap.String("client", c.IP.String()),
		zap.String("ptr", c.PTR),
		zap.String("helo", c.HELO),
		zap.Bool("tls", c.TLS),
		zap.String("listener", s.cfg.Name),
		zap.Int("messages", s.messages),
		zap.Int("rejected", s.rejected),
		zap.Duration("duration", s.srv.opt.Now().Sub(s.start)))
	return nil
}

// fail logs a refused command and returns its reply.
func (s *session) fail(stage string, err error, fields ...zap.Field) *reply.Reply {
	r := reply.From(err, s.t.Facts.Conn.ID)
	s.rejected++
	if rf := s.t.Refusal; rf.Check != "" {
		fields = append(append(fields, zap.String("check", rf.Check)), rf.Fields...)
	}
	fields = append(fields, zap.String("stage", stage), zap.String("client", s.t.Facts.Conn.IP.String()),
		zap.Int("code", r.Code), zap.String("enhanced", r.Enhanced.String()), zap.String("reply", r.Text))
	if r.Cause != nil {
		fields = append(fields, zap.NamedError("cause", r.Cause))
	}
	s.log.Info("refused", fields...)
	kind := maillog.Rejected
	if r.Temporary() {
		kind = maillog.Tempfailed
	}
	reason := refusalReason(s.t.Refusal, r)
	e := s.event(kind, "", replyText(r), s.t.Refusal.Rule, s.t.Refusal.Incident)
	e.Stage, e.Reason = stage, reason
	if stage == "rcpt" && s.t.Rcpt != nil {
		// Like Postfix's "NOQUEUE: reject: RCPT": the line names the
		// recipient refused, not those accepted before it.
		e.Recipients = []string{s.t.Rcpt.Addr}
	}
	s.checks.mailLog().Log(e)
	s.checks.refused(stage, reason, kind, e.Client)
	s.t.Refusal = Refusal{}
	if r.Code == 421 {
		// RFC 5321 §3.8: a 421 names the host; smtpd closes the
		// channel after writing it. (r may be a shared named reply:
		// not changed in place.)
		return r.WithHost(s.srv.opt.Hostname)
	}
	return r
}

// mailEvent writes one mail log line about the current transaction.
func (s *session) mailEvent(kind, queueID, replyText, rule, incident string) {
	s.checks.mailLog().Log(s.event(kind, queueID, replyText, rule, incident))
}

// replyText is a reply as the mail log shows it: "550 5.1.1 text".
func replyText(r *reply.Reply) string {
	if r.Enhanced.String() == "" {
		return fmt.Sprintf("%d %s", r.Code, r.Text)
	}
	return fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text)
}

var _ smtpd.RefusalObserver = (*session)(nil)

// Refused logs and counts a MAIL or RCPT that smtpd refused itself
// (bad syntax, parameters, too many recipients).
func (s *session) Refused(cmd, arg string, r *reply.Reply) {
	reason := "bad_syntax"
	if r.Code == 452 { // RFC 5321 §4.5.3.1.10
		reason = "too_many_recipients"
	}
	s.t.Refusal = Refusal{Check: reason}
	if cmd == "rcpt" {
		// The path as sent; a line-length cap bounds it (maillog).
		s.t.Rcpt = &Rcpt{Addr: pathOf(arg)}
		defer func() { s.t.Rcpt = nil }()
	} else {
		s.Reset()
		s.t.Sender = pathOf(arg)
	}
	s.fail(cmd, r)
}

// pathOf is the path in a MAIL or RCPT argument that did not parse:
// what follows the colon, up to the first space, without <>.
func pathOf(arg string) string {
	_, p, _ := strings.Cut(arg, ":")
	p = strings.TrimSpace(p)
	if i := strings.IndexByte(p, ' '); i >= 0 {
		p = p[:i]
	}
	return strings.TrimSuffix(strings.TrimPrefix(p, "<"), ">")
}

// refusalReason names what refused a command, for the mail log's
// reason= and the refusal counter: the check (its Name, a small fixed
// set; "relay_denied", "unknown_user", "bad_syntax" for the address and
// route checks; "virus", "scanner"), "rules", or "protocol" and "local"
// for the session's own errors (bad sequence, a local failure).
func refusalReason(rf Refusal, r *reply.Reply) string {
	// The address and route checks refuse for three reasons worth
	// telling apart (RFC 5321 §3.6.2 relaying, §3.3 unknown mailbox,
	// §4.1.2 syntax).
	if rf.Check == "route" || rf.Check == "address" {
		switch {
		case sameReply(r, reply.RelayDenied):
			return "relay_denied"
		case sameReply(r, reply.NoSuchUser):
			return "unknown_user"
		case sameReply(r, reply.BadRcptSyntax):
			return "bad_syntax"
		}
	}
	switch {
	case rf.Rule == "scanner:virus":
		return "virus"
	case strings.HasPrefix(rf.Check, "scanner:"):
		return "scanner" // the mail log's rule= names it
	case rf.Check != "":
		return rf.Check
	case r.Temporary():
		return "local"
	default:
		return "protocol"
	}
}

// sameReply reports whether r is a (possibly reworded) named reply n.
func sameReply(r, n *reply.Reply) bool { return r.Code == n.Code && r.Enhanced == n.Enhanced }

// event is the mail log line about the current transaction.
func (s *session) event(kind, queueID, replyText, rule, incident string) maillog.Event {
	c := s.t.Facts.Conn
	return maillog.Event{
		Kind:       kind,
		ConnID:     c.ID,
		QueueID:    queueID,
		Client:     c.IP.String(),
		ClientName: c.PTR,
		HELO:       c.HELO,
		Sender:     s.t.Sender,
		Recipients: s.t.RcptAddrs(),
		Rule:       rule,
		Incident:   incident,
		Reply:      replyText,
		Size:       s.t.Size,
	}
}

// Mail starts a transaction (RFC 5321 §4.1.1.2).
func (s *session) Mail(from string, opts *smtpd.MailOptions) error {
	s.Reset()
	s.t.Facts.Conn.HELO = s.c.Hostname()
	s.updateTLS()
	s.t.Sender = from
	if opts != nil {
		s.t.UTF8 = opts.UTF8
		s.t.Size = opts.Size
	}
	if err := s.srv.pipe.Run(context.Background(), rules.StageMail, s.t); err != nil {
		return s.fail("mail", err, zap.String("sender", from))
	}
	s.active = true
	return nil
}

// isIPLiteralSender accepts user@[192.0.2.1] as a reverse path (RFC 5321
// §4.1.3); such senders can still not relay.
func isIPLiteralSender(addr string) bool {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 {
		return false
	}
	d := addr[at+1:]
	if len(d) < 3 || d[0] != '[' || d[len(d)-1] != ']' {
		return false
	}
	lit := strings.TrimPrefix(d[1:len(d)-1], "IPv6:")
	_, err := netip.ParseAddr(lit)
	return err == nil
}

// Rcpt adds a recipient. The relay decision is a check that comes
// before the rules, and no rule can overturn it.
func (s *session) Rcpt(to string) error {
	if !s.active {
		return s.fail("rcpt", reply.BadSequence)
	}
	s.t.Rcpt = &Rcpt{Addr: to}
	defer func() { s.t.Rcpt = nil }()
	if err := s.srv.pipe.Run(context.Background(), rules.StageRcpt, s.t); err != nil {
		return s.fail("rcpt", err, zap.String("rcpt", s.t.Rcpt.Addr), zap.String("route", s.t.Rcpt.Route))
	}
	s.t.Rcpts = append(s.t.Rcpts, *s.t.Rcpt)
	return nil
}

// Data receives the message (DATA, or the BDAT chunks of RFC 3030
// joined by smtpd), checks it and spools it durably before 250.
func (s *session) Data(r io.Reader) *reply.Reply {
	if !s.active || len(s.t.Rcpts) == 0 {
		return s.fail("data", reply.BadSequence)
	}
	start := s.srv.opt.Now()
	// Nothing keeps the message past its DATA (the spool has its own
	// copy), and the next transaction's rules must not see it.
	defer func() { s.t.Facts.Message, s.t.Raw = nil, nil }()
	normalize := s.srv.opt.SMTP.BareLineEndings == "normalize"
	var raw []byte
	var fx eolFixes
	var err error
	if whole, ok := r.(interface{ Bytes() []byte }); ok {
		// BDAT (RFC 3030): smtpd has gathered the chunks; they are
		// checked where they are rather than copied again.
		raw, fx, err = wholeEOL(whole.Bytes(), normalize)
	} else {
		body := getBody(bodyHint(s.t.Size, s.srv.opt.SMTP.MaxMessageSize))
		s.t.rawInUse = false
		defer func() {
			if !s.t.rawInUse { // else a scan that ignored its cancel may still read it
				putBody(body)
			}
		}()
		er := newEOLReader(r, normalize)
		_, err = body.ReadFrom(er)
		raw, fx = body.Bytes(), er.fixes
	}
	if fx.bare > 0 || fx.nuls > 0 {
		s.log.Info("message data normalized", zap.Int("bare_eol_fixed", fx.bare), zap.Int("nul_removed", fx.nuls), zap.String("sender", s.t.Sender))
		if fx.bare > 0 {
			s.checks.smuggling("bare_eol", "normalized")
		}
		if fx.nuls > 0 {
			s.checks.smuggling("nul", "normalized")
		}
	}
	if err != nil {
		var se *reply.Reply
		switch {
		case errors.Is(err, errBareEOL):
			s.checks.smuggling("bare_eol", "rejected")
			return s.fail("data", reply.BareLineEnding, zap.String("sender", s.t.Sender))
		case errors.Is(err, errNUL):
			s.checks.smuggling("nul", "rejected")
			return s.fail("data", replyNUL, zap.String("sender", s.t.Sender))
		case errors.As(err, &se):
			return s.fail("data", se) // smtpd's own, e.g. 552 5.3.4 size exceeded
		default:
			return s.fail("data", reply.TempLocal.With(err))
		}
	}
	s.t.Raw = raw
	// The id is chosen now, for the scanners (milter macro i, rspamd's
	// Queue-Id) and the data stage's logs; the quarantine takes the same
	// one (ids are unique across spools: time and randomness).
	s.t.QueueID = s.srv.opt.Spool.NewID()
	if err := s.srv.pipe.Run(context.Background(), rules.StageData, s.t); err != nil {
		return s.fail("data", err, zap.String("sender", s.t.Sender))
	}
	raw, msg := s.t.Raw, s.t.Facts.Message
	if s.t.Discard {
		s.messages++
		s.log.Info("discarded", zap.String("sender", s.t.Sender), zap.Strings("recipients", s.t.RcptAddrs()))
		s.mailEvent(maillog.Discarded, "", "250 2.0.0 Ok: discarded", "", "")
		return s.queued("discarded")
	}
	rcpts, err := s.t.Expand()
	if err != nil {
		return s.fail("data", err)
	}
	dst := s.srv.opt.Spool
	if s.t.Quarantine != "" && s.checks.Quarantine != nil {
		dst = s.checks.Quarantine
	}
	id := s.t.QueueID
	raw = s.completeSubmission(raw, id, start)
	var head bytes.Buffer
	s.writeAddedHeaders(&head, raw, msg, id, start)
	env := &spool.Envelope{
		ID:         id,
		Sender:     s.t.Sender,
		Recipients: rcpts,
		Received:   start,
		Size:       int64(head.Len() + len(raw)),
		UTF8:       s.t.UTF8,
		ClientIP:   s.t.Facts.Conn.IP.String(),
		ClientName: s.t.Facts.Conn.PTR,
		HELO:       s.t.Facts.Conn.HELO,
		Protocol:   s.protocol(),
		// Local mailboxes file junk into their junk folder; relayed
		// junk leaves tagged (the X-Spam-* fields above). A quarantined
		// message that an operator releases goes to the inbox.
		Junk: s.t.Junk && dst == s.srv.opt.Spool,
		// Whether the queue may send notices to the sender (issue 27).
		SenderCheck: s.t.senderCheck(),
	}
	if dst != s.srv.opt.Spool {
		env.Quarantine = s.t.quarantineWhy()
	}
	ctx, cancel := deadline.WithTimeout(context.Background(), s.srv.opt.SMTP.WriteTimeout)
	defer cancel()
	// net.Buffers hands both parts over as they are (io.MultiReader
	// would copy them through a new 32 KiB buffer).
	parts := net.Buffers{head.Bytes(), raw}
	if err := dst.Put(ctx, env, &parts); err != nil {
		if errors.Is(err, spool.ErrNoSpace) {
			return s.fail("data", reply.StorageFull.With(err), zap.String("queue_id", id))
		}
		return s.fail("data", reply.TempLocal.With(err), zap.String("queue_id", id))
	}
	kind := maillog.Accepted
	if dst == s.srv.opt.Spool {
		s.srv.opt.Notify(id)
	} else {
		kind = maillog.Quarantined
	}
	s.messages++
	s.mailEvent(kind, id, "250 2.0.0 Ok: queued as "+id, s.t.Quarantine, "")
	s.log.Info(kind,
		zap.String("queue_id", id),
		zap.String("client", s.t.Facts.Conn.IP.String()),
		zap.String("sender", s.t.Sender),
		zap.Strings("recipients", s.t.RcptAddrs()),
		zap.Int64("size", env.Size),
		zap.String("spf", string(s.t.Facts.SPF.Result)),
		zap.String("dkim", string(s.t.Facts.DKIM.Result)),
		zap.String("dmarc", string(s.t.Facts.DMARC.Result)),
		zap.Float64("score", s.t.Score),
		zap.Bool("junk", s.t.Junk),
		zap.Duration("took", s.srv.opt.Now().Sub(start)))
	return s.queued("queued as " + id)
}

// bodyHint is how much room to make for a message before reading it:
// the size the client declared (RFC 1870), or a size most messages fit
// in, so that it is read without growing the buffer again and again.
func bodyHint(declared, max int64) int {
	const usual = 8 << 10
	if declared <= 0 {
		declared = usual
	}
	// ReadFrom wants 512 bytes free before each read (bytes.MinRead).
	return int(min(declared, max) + 512)
}

// bodies recycles the buffers messages are read into, up to
// maxPooledBody: most mail is small, and a new buffer for each message was
// a fifth of the gateway's allocation under load.
var bodies sync.Pool

const maxPooledBody = 64 << 10

func getBody(hint int) *bytes.Buffer {
	b, _ := bodies.Get().(*bytes.Buffer)
	if b == nil {
		b = new(bytes.Buffer)
	}
	b.Reset()
	b.Grow(hint)
	return b
}

func putBody(b *bytes.Buffer) {
	if b.Cap() <= maxPooledBody {
		bodies.Put(b)
	}
}

// queued is the 250 after DATA.
func (s *session) queued(what string) *reply.Reply {
	return reply.Queued.Format(what)
}

// Expand turns the accepted recipients into the spool's per-recipient list:
// local recipients become their final mailboxes (aliases expanded, each
// routed again: an alias may point off-site), duplicates removed.
func (t *Txn) Expand() ([]spool.Recipient, error) {
	seen := map[string]bool{}
	var out []spool.Recipient
	add := func(addr, rt string) {
		k := strings.ToLower(addr)
		if seen[k] {
			return
		}
		seen[k] = true
		out = append(out, spool.Recipient{Address: addr, Route: rt, Status: spool.StatusPending})
	}
	for _, r := range t.Rcpts {
		if r.Route != "local" {
			add(r.Addr, r.Route)
			continue
		}
		targets, err := t.state.Directory.Expand(r.Addr)
		if err != nil {
			return nil, reply.TempLocal.With(fmt.Errorf("expanding %s: %w", r.Addr, err))
		}
		for _, a := range targets {
			add(a, t.state.Router.Route(a).Route)
		}
	}
	if len(out) == 0 {
		return nil, reply.TempLocal.With(errors.New("no recipient left after alias expansion"))
	}
	return out, nil
}

// protocol is the "with" value of RFC 5321 §4.4 / RFC 3848.
func (s *session) protocol() string {
	p := "ESMTP"
	if s.t.Facts.Conn.TLS {
		p += "S"
	}
	if s.t.Facts.Conn.AuthUser != "" {
		p += "A"
	}
	return p
}
