package gateway

import (
	"bytes"
	"context"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"unicode"

	"go.uber.org/zap"
	"golang.org/x/text/unicode/norm"

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
// domain (any case) must be accepted on every listener; it is the
// postmaster of this host, or, when no local domain holds the host name,
// State.Postmaster (the first local domain's, else a relay domain's, whose
// backend takes it). The checks after this one see the full address.
type postmasterCheck struct{ p *Pipeline }

func (postmasterCheck) Name() string { return "postmaster" }

func (c postmasterCheck) CheckRcpt(_ context.Context, t *Txn) error {
	if !strings.EqualFold(t.Rcpt.Addr, "postmaster") {
		return nil
	}
	pm := postmasterOf(c.p.opt.Hostname, t.state.Router)
	if pm == "" {
		pm = t.state.Postmaster
	}
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
	case d.Relay && !t.May() && !t.Rcpt.srsReversed:
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
// the header too, and the per-user sending limits.
type submissionCheck struct{ p *Pipeline }

// errBadHeader refuses a submitted message whose header section holds a
// line that is no field: RFC 5322 §2.2, and RFC 6409 §8 lets an MSA
// refuse what it cannot make right. X.6.0: other media error (RFC 3463
// §3.7). Inbound mail is not refused for it: the rules see hdr.malformed.
var errBadHeader = reply.New(554, 6, 0, "Message header is malformed: a line is not a header field (RFC 5322 2.2)")

// originatorFields are the header fields that say who sent a message and
// that an MUA shows (RFC 5322 §3.6.2 From and Sender, §3.6.6 Resent-From
// and Resent-Sender); every address in any of them must be the user's.
var originatorFields = []string{"From", "Sender", "Resent-From", "Resent-Sender"}

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
	if msg.HeaderMalformed() {
		return errBadHeader
	}
	if len(msg.HeaderValues("From")) != 1 {
		return errNotYours.Withf("Exactly one From header is required (RFC 5322 §3.6)")
	}
	if err := t.checkOriginators(msg); err != nil {
		return err
	}
	if lim := c.p.checks.authLimiter(); lim != nil {
		if err := lim.AllowMessage(user, len(t.Rcpts)); err != nil {
			return err
		}
	}
	return nil
}

// checkOriginators refuses a message that names, in an originator field,
// an address that is not the user's: the addr-spec of every mailbox, and
// anything in a display name that looks like an address, since an MUA
// may show the name alone ("bob@example.org" <alice@example.org>). A
// field that does not parse is refused too.
func (t *Txn) checkOriginators(msg *content.Message) error {
	owned := t.sendAs()
	for _, f := range originatorFields {
		list, err := msg.Mailboxes(f)
		if err != nil {
			return errNotYours.With(err).Withf("%s header could not be parsed", f)
		}
		for _, mb := range list {
			if !t.owns(owned, mb.Address) {
				return errNotYours.Withf("%s address %+q not owned by user", f, mb.Address)
			}
			for _, a := range nameAddresses(mb.Name) {
				if !t.owns(owned, a) {
					return errNotYours.Withf("%s display name holds %+q, an address not owned by user", f, a)
				}
			}
		}
	}
	return nil
}

// maxNameAddresses bounds the addresses looked for in one display name;
// past it nameAddresses gives tooManyNameAddresses, which no user owns.
const (
	maxNameAddresses     = 16
	tooManyNameAddresses = "(too many addresses in a display name)"
)

// nameAddresses returns what in a display name looks like an addr-spec
// (RFC 5322 §3.4.1: something "@" something), after NFKC (UAX #15) so
// that a fullwidth "＠" counts too; more than maxNameAddresses of them
// yield one that matches no address.
func nameAddresses(name string) []string {
	if name == "" {
		return nil
	}
	name = norm.NFKC.String(name)
	var out []string
	for _, tok := range strings.FieldsFunc(name, func(r rune) bool {
		return unicode.IsSpace(r) || strings.ContainsRune(`<>"'(),;:[]`, r)
	}) {
		if i := strings.IndexByte(tok, '@'); i > 0 && i < len(tok)-1 {
			if len(out) == maxNameAddresses {
				return []string{tooManyNameAddresses}
			}
			out = append(out, tok)
		}
	}
	return out
}

// sendAs lists the canonical addresses the authenticated user may send as.
func (t *Txn) sendAs() []string {
	if t.state.Users == nil || t.Facts.Conn.AuthUser == "" {
		return nil
	}
	return t.state.Users.SendAs(t.Facts.Conn.AuthUser)
}

// owns reports whether addr, in its canonical form (any spelling of the
// address, a subaddress of it), is one of owned.
func (t *Txn) owns(owned []string, addr string) bool {
	if addr == "" || t.state.Users == nil {
		return false // bounces are the MTA's business, not a user's
	}
	key, ok := t.state.Users.LoginName(addr)
	return ok && slices.Contains(owned, key)
}

// mayUseSender checks RFC 6409 §8.1: an authenticated user sends only as
// their own addresses and aliases.
func (t *Txn) mayUseSender(addr string) bool {
	return t.owns(t.sendAs(), addr)
}

// DefaultPostmaster returns State.Postmaster for a routing configuration:
// postmaster@ the first local domain as configured (where mailbox sends a
// bare postmaster too), else postmaster@ the first relay domain in sorted
// order, which its route (the backend) must accept (RFC 5321 §4.5.1:
// every domain takes mail for its postmaster); wildcard entries name no
// domain and are skipped. "" when there is neither.
func DefaultPostmaster(c route.Config) string {
	first := func(ds []string) string {
		for _, d := range ds {
			if strings.HasPrefix(d, ".") {
				continue
			}
			if n, err := route.NormalizeDomain(d); err == nil {
				return "postmaster@" + n
			}
		}
		return ""
	}
	if pm := first(c.LocalDomains); pm != "" {
		return pm
	}
	relay := make([]string, 0, len(c.RelayDomains))
	for d := range c.RelayDomains {
		relay = append(relay, d)
	}
	sort.Strings(relay)
	return first(relay)
}
