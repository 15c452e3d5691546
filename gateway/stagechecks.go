package gateway

import (
	"bytes"
	"context"
	"net/netip"
	"strings"

	"go.uber.org/zap"

	"moat/internal/reply"
	"moat/policy/content"
	"moat/policy/dkim"
	"moat/policy/dmarc"
	"moat/policy/iprev"
	"moat/policy/spf"
	"moat/relay/route"
)

// The built-in checks, in pipeline order (see NewPipeline).

// screenCheck is the connection guard's decision, for a session that did
// not come through the listener guard (the offline test).
type screenCheck struct {
	fn func(ctx context.Context, t *Txn) error
}

func (screenCheck) Name() string                                     { return "guard" }
func (c screenCheck) CheckConnect(ctx context.Context, t *Txn) error { return c.fn(ctx, t) }

// iprevCheck starts the reverse DNS check (RFC 8601 §3: iprev); the
// rules of the first stage wait for it (Txn.waitIPRev).
type iprevCheck struct{ p *Pipeline }

func (iprevCheck) Name() string { return "iprev" }

func (c iprevCheck) CheckConnect(_ context.Context, t *Txn) error {
	r := c.p.checks
	if r != nil && r.Resolver != nil && t.Facts.Conn.IP.IsValid() {
		// It outlives this call: the check deadline is its own.
		t.iprev = iprev.Start(r.Resolver, t.Facts.Conn.IP, r.timeout())
	}
	return nil
}

// mailPolicyCheck applies the listener's and the submission service's
// conditions to MAIL FROM, and its syntax.
type mailPolicyCheck struct{ p *Pipeline }

func (mailPolicyCheck) Name() string { return "mail_policy" }

func (c mailPolicyCheck) CheckMail(_ context.Context, t *Txn) error {
	conn := &t.Facts.Conn
	from := t.Sender
	if t.listener.RequireTLS && !conn.TLS {
		return reply.NeedTLS
	}
	if t.listener.Mode == "submission" && conn.AuthUser == "" {
		return errAuthRequired
	}
	if conn.AuthUser != "" && !t.mayUseSender(from) {
		return errNotYours
	}
	if from != "" {
		if err := checkEnvelopeAddr(from, t.UTF8, reply.BadSenderSyntax); err != nil {
			return err
		}
		if _, err := route.Domain(from); err != nil && !isIPLiteralSender(from) {
			return reply.BadSenderSyntax.With(err)
		}
	}
	if max := c.p.opt.MaxMessageSize; max > 0 && t.Size > max {
		// RFC 1870 §6.
		return reply.MessageTooBig
	}
	return nil
}

// spfCheck is SPF (RFC 7208) for inbound mail.
type spfCheck struct{ p *Pipeline }

func (spfCheck) Name() string { return "spf" }

func (c spfCheck) CheckMail(ctx context.Context, t *Txn) error {
	if c.p.inbound(t) {
		// RFC 7208 §2.4: the MAIL FROM identity, or HELO for <>.
		t.Facts.SPF = spf.Check(ctx, c.p.checks.Resolver, t.Facts.Conn.IP, t.Facts.Conn.HELO, t.Sender)
	}
	return nil
}

// postmasterCheck: RFC 5321 §4.5.1, "RCPT TO:<Postmaster>" without a
// domain must be accepted; it is the postmaster of this host.
type postmasterCheck struct{ p *Pipeline }

func (postmasterCheck) Name() string { return "postmaster" }

func (c postmasterCheck) CheckRcpt(_ context.Context, t *Txn) error {
	if !strings.EqualFold(t.Rcpt.Addr, "postmaster") {
		return nil
	}
	pm := postmasterOf(c.p.opt.Hostname, t.state.Router)
	if pm == "" {
		return reply.NoSuchUser
	}
	t.Rcpt.Addr = pm
	return nil
}

// postmasterOf returns the local postmaster address of host: that of the
// host name or of the nearest parent domain that is local, or "".
func postmasterOf(hostname string, r Router) string {
	h := strings.TrimSuffix(hostname, ".")
	for strings.Contains(h, ".") {
		a := "postmaster@" + h
		if r.Route(a).Route == "local" {
			return a
		}
		_, h, _ = strings.Cut(h, ".")
	}
	return ""
}

// addressCheck refuses recipient syntax that would let a backend relay
// for an outsider.
type addressCheck struct{}

func (addressCheck) Name() string { return "address" }

func (addressCheck) CheckRcpt(_ context.Context, t *Txn) error {
	to := t.Rcpt.Addr
	if err := checkEnvelopeAddr(to, t.UTF8, reply.BadRcptSyntax); err != nil {
		return err
	}
	if _, err := route.Domain(to); err != nil {
		if t.May() {
			return reply.BadRcptSyntax.With(err)
		}
		// Source routes, IP literals and the like from an untrusted
		// client are relay attempts (RFC 5321 §3.6.2, §4.1.1.3).
		return reply.RelayDenied.With(err)
	}
	// RFC 5321 §2.3.5: a domain is absolute; "example.org." and
	// "example.org" are the same, and only the second is stored.
	to = strings.TrimSuffix(to, ".")
	t.Rcpt.Addr = to
	local, _, _ := strings.Cut(to, "@")
	if !t.May() && strings.ContainsAny(local, "%!@") {
		// The percent hack and bang paths (RFC 1123 §5.2.16 era
		// tricks) would let a backend relay for us: never for outsiders.
		return reply.RelayDenied.Withf("Relay access denied: %q is not a plain mailbox", local)
	}
	return nil
}

// routeCheck routes the recipient: an unknown local user is refused, and
// a domain that is not ours only for a client that may relay. This is
// where moat refuses to be an open relay; no rule can overturn it.
type routeCheck struct{}

func (routeCheck) Name() string { return "route" }

func (routeCheck) CheckRcpt(_ context.Context, t *Txn) error {
	d := t.state.Router.Route(t.Rcpt.Addr)
	t.Rcpt.Route, t.Rcpt.relay = d.Route, d.Relay
	switch {
	case d.Route == "local":
		if !t.state.Directory.Exists(t.Rcpt.Addr) {
			return reply.NoSuchUser
		}
	case d.Relay && !t.May():
		return reply.RelayDenied
	}
	return nil
}

// verifyCheck asks the backend about a recipient of a relay domain now
// rather than accept and bounce later (backscatter).
type verifyCheck struct{ p *Pipeline }

func (verifyCheck) Name() string { return "verify" }

func (c verifyCheck) CheckRcpt(ctx context.Context, t *Txn) error {
	v := t.state.Verifier
	if t.Rcpt.relay || v == nil || t.Rcpt.Route == "local" || !v.Verifies(t.Rcpt.Route) {
		return nil
	}
	// Our own clients do not count toward the directory-harvest limit.
	client := t.Facts.Conn.IP
	if t.May() {
		client = netip.Addr{}
	}
	return v.Check(ctx, client, t.Rcpt.Route, t.Rcpt.Addr)
}

// parseCheck parses the message header (the message facts).
type parseCheck struct{ p *Pipeline }

func (parseCheck) Name() string { return "message" }

func (c parseCheck) CheckData(_ context.Context, t *Txn) error {
	if c.p.checks != nil && c.p.checks.AuthservID != "" {
		// RFC 8601 §5: nobody else may speak in our name.
		t.Raw = stripOwnAuthResults(t.Raw, c.p.checks.AuthservID)
	}
	if !t.May() {
		t.Raw = stripSpamHeaders(t.Raw) // only moat's own X-Spam-* leave
	}
	msg, err := content.Parse(t.Raw, content.DefaultOptions())
	if err != nil {
		t.log.Info("message header not parsed", zap.Error(err))
		msg = nil
	}
	t.Facts.Message = msg
	t.Size = int64(len(t.Raw))
	return nil
}

// dkimCheck verifies DKIM signatures (RFC 6376) of inbound mail.
type dkimCheck struct{ p *Pipeline }

func (dkimCheck) Name() string { return "dkim" }

func (c dkimCheck) CheckData(ctx context.Context, t *Txn) error {
	if c.p.inbound(t) {
		t.Facts.DKIM = dkim.Verify(ctx, c.p.checks.Resolver, bytes.NewReader(t.Raw), dkim.Options{})
	}
	return nil
}

// dmarcCheck evaluates DMARC (RFC 7489) from the SPF and DKIM results.
type dmarcCheck struct{ p *Pipeline }

func (dmarcCheck) Name() string { return "dmarc" }

func (c dmarcCheck) CheckData(ctx context.Context, t *Txn) error {
	if !c.p.inbound(t) {
		return nil
	}
	var from []string
	if m := t.Facts.Message; m != nil {
		from = m.HeaderValues("From")
	}
	t.Facts.DMARC = dmarc.Evaluate(ctx, c.p.checks.Resolver, dmarc.Input{From: from, SPF: t.Facts.SPF, DKIM: t.Facts.DKIM})
	return nil
}

// submissionCheck applies, for an authenticated user, RFC 6409 §8.1 to
// the From header too, and the per-user sending limits.
type submissionCheck struct{ p *Pipeline }

func (submissionCheck) Name() string { return "submission" }

func (c submissionCheck) CheckData(_ context.Context, t *Txn) error {
	user := t.Facts.Conn.AuthUser
	if user == "" {
		return nil
	}
	msg := t.Facts.Message
	if msg == nil {
		return errNotYours.Withf("Message header could not be read")
	}
	from := msg.HeaderValues("From")
	if len(from) != 1 {
		return errNotYours.Withf("Exactly one From header is required (RFC 5322 §3.6)")
	}
	for _, a := range headerAddresses(from[0]) {
		if !t.mayUseSender(a) {
			return errNotYours.Withf("From address %s not owned by user", a)
		}
	}
	if lim := c.p.checks.authLimiter(); lim != nil {
		if err := lim.AllowMessage(user, len(t.Rcpts)); err != nil {
			return err
		}
	}
	return nil
}

// mayUseSender checks RFC 6409 §8.1: an authenticated user sends only as
// their own addresses and aliases.
func (t *Txn) mayUseSender(addr string) bool {
	if addr == "" || t.state.Users == nil {
		return false // bounces are the MTA's business, not a user's
	}
	for _, a := range t.state.Users.SendAs(t.Facts.Conn.AuthUser) {
		if strings.EqualFold(a, addr) {
			return true
		}
	}
	return false
}
