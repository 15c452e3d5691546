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
	"moat/policy/content"
	"moat/policy/iprev"
	"moat/policy/spf"
	"moat/relay/route"
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

	// connection state: facts.Conn, facts.DNSBL, facts.IPRev, and the
	// score and headers that connect/helo rules produced.
	facts    rules.Facts
	iprev    *iprev.Pending
	connHead []rules.Header
	connAcc  bool // a connect/helo rule said accept
	messages int
	rejected int
	tlsSeen  bool
	// the rule and incident of a refusal being made (for the mail log)
	pendingRule, pendingIncident string

	// envelope state, reset by Reset
	env envelope
}

type envelope struct {
	active     bool
	sender     string
	utf8       bool
	size       int64
	rcpts      []acceptedRcpt
	score      float64        // running score after the last rule stage
	headers    []rules.Header // added by rules so far
	accepted   bool           // a rule said accept: later rules skipped
	discard    bool           // a rule said discard
	quarantine string         // the rule that quarantined, if any
	spf        policy.SPF
}

type acceptedRcpt struct {
	addr  string
	route string // "local", a route name or "mx"
}

var _ smtpd.Session = (*session)(nil)

func (s *Server) newSession(cfg Listener, c *smtpd.Conn) (smtpd.Session, error) {
	st := s.state.Load()
	sess := &session{srv: s, c: c, cfg: cfg, state: st, checks: s.opt.Checks, start: s.opt.Now()}
	conn := &sess.facts.Conn
	conn.ID = s.newConnID()
	conn.HELO = c.Hostname()
	conn.Listener = cfg.Name
	conn.Mode = cfg.Mode
	if ap, err := netip.ParseAddrPort(c.Conn().RemoteAddr().String()); err == nil {
		conn.IP = ap.Addr().Unmap()
		conn.Port = int(ap.Port())
	}
	conn.Trusted = inPrefixes(conn.IP, st.TrustedNetworks)
	if gf, ok := guard.FactsOf(c.Conn()); ok {
		sess.facts.DNSBL = gf.DNSBL
	}
	sess.updateTLS()
	sess.log = s.log.With(zap.String("conn_id", conn.ID))
	if s.isClosing() {
		return nil, reply.ShuttingDown.WithHost(s.opt.Hostname) // RFC 5321 §3.8
	}
	if r := sess.checks; r != nil && r.Resolver != nil && conn.IP.IsValid() {
		sess.iprev = iprev.Start(r.Resolver, conn.IP, r.timeout())
	}
	// smtpd creates the session at the first EHLO/HELO, so the connect
	// and helo stages are decided here.
	for _, stage := range []rules.Stage{rules.StageConnect, rules.StageHelo} {
		if err := sess.evaluate(stage, nil); err != nil {
			return nil, err
		}
	}
	return sess, nil
}

// waitIPRev makes the iprev result and the PTR name available.
func (s *session) waitIPRev() {
	if s.iprev == nil {
		return
	}
	s.facts.IPRev = s.iprev.Wait()
	s.iprev = nil
	if s.facts.IPRev.Result == policy.ResultPass && len(s.facts.IPRev.Names) > 0 {
		s.facts.Conn.PTR = strings.TrimSuffix(s.facts.IPRev.Names[0], ".")
	}
}

// updateTLS refreshes the TLS facts (after STARTTLS).
func (s *session) updateTLS() {
	if cs, ok := s.c.TLSConnectionState(); ok {
		s.facts.Conn.TLS = true
		s.facts.Conn.TLSVersion = tlsVersionName(cs.Version)
		s.facts.Conn.TLSCipher = tlsCipherName(cs.CipherSuite)
		if !s.tlsSeen && s.checks != nil && s.checks.TLS != nil {
			s.checks.TLS(s.facts.Conn.TLSVersion)
		}
		s.tlsSeen = true
	}
}

// Reset discards the envelope (RSET, EHLO again, end of DATA).
func (s *session) Reset() { s.env = envelope{} }

// Logout ends the session: one log line per connection.
func (s *session) Logout() error {
	c := s.facts.Conn
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
	r := reply.From(err, s.facts.Conn.ID)
	s.rejected++
	fields = append(fields, zap.String("stage", stage), zap.String("client", s.facts.Conn.IP.String()),
		zap.Int("code", r.Code), zap.String("enhanced", r.Enhanced.String()), zap.String("reply", r.Text))
	if r.Cause != nil {
		fields = append(fields, zap.NamedError("cause", r.Cause))
	}
	s.log.Info("refused", fields...)
	kind := maillog.Rejected
	if r.Temporary() {
		kind = maillog.Tempfailed
	}
	s.mailEvent(kind, "", fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text), s.pendingRule, s.pendingIncident)
	s.pendingRule, s.pendingIncident = "", ""
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
	ml := s.checks.mailLog()
	if ml == nil {
		return
	}
	c := s.facts.Conn
	ml.Log(maillog.Event{
		Kind:       kind,
		ConnID:     c.ID,
		QueueID:    queueID,
		Client:     c.IP.String(),
		ClientName: c.PTR,
		HELO:       c.HELO,
		Sender:     s.env.sender,
		Recipients: rcptAddrs(s.env.rcpts),
		Rule:       rule,
		Incident:   incident,
		Reply:      replyText,
		Size:       s.env.size,
	})
}

// may reports whether the client may relay: trusted network or AUTH.
func (s *session) may() bool { return s.facts.Conn.Trusted || s.facts.Conn.AuthUser != "" }

// inbound reports whether the inbound authentication checks apply: not
// for our own users and networks, whose mail we sign instead.
func (s *session) inbound() bool {
	return s.checks != nil && s.checks.Resolver != nil && !s.may()
}

// Mail starts a transaction (RFC 5321 §4.1.1.2).
func (s *session) Mail(from string, opts *smtpd.MailOptions) error {
	s.Reset()
	s.facts.Conn.HELO = s.c.Hostname()
	s.updateTLS()
	if s.cfg.RequireTLS && !s.facts.Conn.TLS {
		return s.fail("mail", reply.NeedTLS)
	}
	if s.cfg.Mode == "submission" && s.facts.Conn.AuthUser == "" {
		return s.fail("mail", errAuthRequired, zap.String("sender", from))
	}
	if s.facts.Conn.AuthUser != "" && !s.mayUseSender(from) {
		return s.fail("mail", errNotYours, zap.String("sender", from), zap.String("user", s.facts.Conn.AuthUser))
	}
	if from != "" {
		if _, err := route.Domain(from); err != nil && !isIPLiteralSender(from) {
			return s.fail("mail", reply.BadSenderSyntax.With(err), zap.String("sender", from))
		}
	}
	if opts != nil && opts.Size > s.srv.opt.SMTP.MaxMessageSize {
		// RFC 1870 §6.
		return s.fail("mail", reply.MessageTooBig, zap.String("sender", from), zap.Int64("size", opts.Size))
	}
	s.env = envelope{active: true, sender: from, score: s.facts.Score, accepted: s.connAcc}
	s.env.headers = append(s.env.headers, s.connHead...)
	if opts != nil {
		s.env.utf8 = opts.UTF8
		s.env.size = opts.Size
	}
	if s.inbound() {
		// RFC 7208 §2.4: the MAIL FROM identity, or HELO for <>.
		s.checks.timed("spf", func(ctx context.Context) {
			s.env.spf = spf.Check(ctx, s.checks.Resolver, s.facts.Conn.IP, s.facts.Conn.HELO, from)
		})
	}
	if err := s.evaluate(rules.StageMail, nil); err != nil {
		s.env.active = false
		return err
	}
	return nil
}

// postmaster returns the local postmaster address of this host: that of
// the hostname or of the nearest parent domain that is local, or "".
func (s *session) postmaster() string {
	h := strings.TrimSuffix(s.srv.opt.Hostname, ".")
	for strings.Contains(h, ".") {
		a := "postmaster@" + h
		if s.state.Router.Route(a).Route == "local" {
			return a
		}
		_, h, _ = strings.Cut(h, ".")
	}
	return ""
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

// Rcpt adds a recipient. This is where moat refuses to be an open relay:
// the relay decision comes first and no rule can overturn it.
func (s *session) Rcpt(to string) error {
	if !s.env.active {
		return s.fail("rcpt", reply.BadSequence)
	}
	if strings.EqualFold(to, "postmaster") {
		// RFC 5321 §4.5.1: "RCPT TO:<Postmaster>" without a domain
		// must be accepted; it is the postmaster of this host.
		pm := s.postmaster()
		if pm == "" {
			return s.fail("rcpt", reply.NoSuchUser, zap.String("rcpt", to))
		}
		to = pm
	}
	may := s.may()
	dom, err := route.Domain(to)
	if err != nil {
		if may {
			return s.fail("rcpt", reply.BadRcptSyntax.With(err), zap.String("rcpt", to))
		}
		// Source routes, IP literals and the like from an untrusted
		// client are relay attempts (RFC 5321 §3.6.2, §4.1.1.3).
		return s.fail("rcpt", reply.RelayDenied.With(err), zap.String("rcpt", to))
	}
	// RFC 5321 §2.3.5: a domain is absolute; "example.org." and
	// "example.org" are the same, and only the second is stored.
	to = strings.TrimSuffix(to, ".")
	local, _, _ := strings.Cut(to, "@")
	if !may && strings.ContainsAny(local, "%!@") {
		// The percent hack and bang paths (RFC 1123 §5.2.16 era
		// tricks) would let a backend relay for us: never for outsiders.
		return s.fail("rcpt", reply.RelayDenied.Withf("Relay access denied: %q is not a plain mailbox", local), zap.String("rcpt", to))
	}
	d := s.state.Router.Route(to)
	switch {
	case d.Route == "local":
		if !s.state.Directory.Exists(to) {
			return s.fail("rcpt", reply.NoSuchUser, zap.String("rcpt", to))
		}
	case d.Relay && !may:
		return s.fail("rcpt", reply.RelayDenied, zap.String("rcpt", to), zap.String("domain", dom))
	case !d.Relay && s.state.Verifier != nil && s.state.Verifier.Verifies(d.Route):
		// Ask the backend now rather than accept and bounce later
		// (backscatter). Our own clients do not count toward the
		// directory-harvest limit.
		client := s.facts.Conn.IP
		if may {
			client = netip.Addr{}
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.checks.timeout())
		err := s.state.Verifier.Check(ctx, client, d.Route, to)
		cancel()
		if err != nil {
			return s.fail("rcpt", err, zap.String("rcpt", to), zap.String("route", d.Route))
		}
	}
	rc := acceptedRcpt{addr: to, route: d.Route}
	if err := s.evaluate(rules.StageRcpt, &rc); err != nil {
		return err
	}
	s.env.rcpts = append(s.env.rcpts, rc)
	return nil
}

// Data receives the message (DATA, or the BDAT chunks of RFC 3030
// joined by smtpd), checks it and spools it durably before 250.
func (s *session) Data(r io.Reader) *reply.Reply {
	if !s.env.active || len(s.env.rcpts) == 0 {
		return s.fail("data", reply.BadSequence)
	}
	start := s.srv.opt.Now()
	// Nothing keeps the message past its DATA (the spool has its own
	// copy), and the next transaction's rules must not see it.
	defer func() { s.facts.Message = nil }()
	normalize := s.srv.opt.SMTP.BareLineEndings == "normalize"
	var raw []byte
	var err error
	if whole, ok := r.(interface{ Bytes() []byte }); ok {
		// BDAT (RFC 3030): smtpd has gathered the chunks; they are
		// checked where they are rather than copied again.
		raw, err = wholeEOL(whole.Bytes(), normalize)
	} else {
		body := getBody(bodyHint(s.env.size, s.srv.opt.SMTP.MaxMessageSize))
		defer putBody(body)
		_, err = body.ReadFrom(newEOLReader(r, normalize))
		raw = body.Bytes()
	}
	if err != nil {
		var se *reply.Reply
		switch {
		case errors.Is(err, errBareEOL):
			return s.fail("data", reply.BareLineEnding, zap.String("sender", s.env.sender))
		case errors.As(err, &se):
			s.rejected++
			return se // smtpd's own, e.g. 552 5.3.4 size exceeded
		default:
			return s.fail("data", reply.TempLocal.With(err))
		}
	}
	if s.checks != nil && s.checks.AuthservID != "" {
		// RFC 8601 §5: nobody else may speak in our name.
		raw = stripOwnAuthResults(raw, s.checks.AuthservID)
	}
	msg := s.analyze(raw)
	if err := s.checkSubmission(msg); err != nil {
		return reply.From(err, s.facts.Conn.ID)
	}
	if err := s.evaluate(rules.StageData, nil); err != nil {
		return reply.From(err, s.facts.Conn.ID)
	}
	if s.env.discard {
		s.messages++
		s.log.Info("discarded", zap.String("sender", s.env.sender), zap.Strings("recipients", rcptAddrs(s.env.rcpts)))
		s.mailEvent(maillog.Discarded, "", "250 2.0.0 Ok: discarded", "", "")
		return s.queued("discarded")
	}
	rcpts, err := s.expand()
	if err != nil {
		return s.fail("data", err)
	}
	dst := s.srv.opt.Spool
	if s.env.quarantine != "" && s.checks.Quarantine != nil {
		dst = s.checks.Quarantine
	}
	id := dst.NewID()
	var head bytes.Buffer
	s.writeAddedHeaders(&head, raw, msg, id, start)
	env := &spool.Envelope{
		ID:         id,
		Sender:     s.env.sender,
		Recipients: rcpts,
		Received:   start,
		Size:       int64(head.Len() + len(raw)),
		UTF8:       s.env.utf8,
		ClientIP:   s.facts.Conn.IP.String(),
		ClientName: s.facts.Conn.PTR,
		HELO:       s.facts.Conn.HELO,
		Protocol:   s.protocol(),
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
	s.mailEvent(kind, id, "250 2.0.0 Ok: queued as "+id, s.env.quarantine, "")
	s.log.Info(kind,
		zap.String("queue_id", id),
		zap.String("client", s.facts.Conn.IP.String()),
		zap.String("sender", s.env.sender),
		zap.Strings("recipients", rcptAddrs(s.env.rcpts)),
		zap.Int64("size", env.Size),
		zap.String("spf", string(s.env.spf.Result)),
		zap.String("dkim", string(s.facts.DKIM.Result)),
		zap.String("dmarc", string(s.facts.DMARC.Result)),
		zap.Float64("score", s.env.score),
		zap.Duration("took", s.srv.opt.Now().Sub(start)))
	return s.queued("queued as " + id)
}

// checkSubmission applies, for an authenticated user, RFC 6409 §8.1 to
// the From header too, and the per-user sending limits.
func (s *session) checkSubmission(msg *content.Message) error {
	user := s.facts.Conn.AuthUser
	if user == "" {
		return nil
	}
	if msg == nil {
		return s.fail("data", errNotYours.Withf("Message header could not be read"))
	}
	from := msg.HeaderValues("From")
	if len(from) != 1 {
		return s.fail("data", errNotYours.Withf("Exactly one From header is required (RFC 5322 §3.6)"))
	}
	for _, a := range headerAddresses(from[0]) {
		if !s.mayUseSender(a) {
			return s.fail("data", errNotYours.Withf("From address %s not owned by user", a), zap.String("user", user))
		}
	}
	if lim := s.checks.authLimiter(); lim != nil {
		if err := lim.AllowMessage(user, len(s.env.rcpts)); err != nil {
			return s.fail("data", err, zap.String("user", user))
		}
	}
	return nil
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

// expand turns accepted recipients into the spool's per-recipient list:
// local recipients become their final mailboxes (aliases expanded, each
// routed again: an alias may point off-site), duplicates removed.
func (s *session) expand() ([]spool.Recipient, error) {
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
	for _, r := range s.env.rcpts {
		if r.route != "local" {
			add(r.addr, r.route)
			continue
		}
		targets, err := s.state.Directory.Expand(r.addr)
		if err != nil {
			return nil, reply.TempLocal.With(fmt.Errorf("expanding %s: %w", r.addr, err))
		}
		for _, t := range targets {
			add(t, s.state.Router.Route(t).Route)
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
	if s.facts.Conn.TLS {
		p += "S"
	}
	if s.facts.Conn.AuthUser != "" {
		p += "A"
	}
	return p
}

func rcptAddrs(rs []acceptedRcpt) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.addr
	}
	return out
}
