package gateway

import (
	"time"

	"moat/internal/dnsres"
	"moat/internal/maillog"
	"moat/policy/dkimsign"
	"moat/relay/srs"
	"moat/rules"
)

// Checks are the policy collaborators of every session. Each may be nil:
// no Resolver turns off SPF, DKIM, DMARC and iprev; no Rules means the
// relay rules alone decide; no Signer means no outbound DKIM signature.
type Checks struct {
	Resolver dnsres.Resolver
	Rules    *rules.Engine
	Signer   *dkimsign.Signer
	// SRS rewrites the envelope sender of forwarded copies and reverses
	// bounces to SRS addresses (forward.go); nil: off.
	SRS *srs.Rewriter
	// Sealer adds an ARC set to forwarded copies (forward.go); nil: off.
	Sealer Sealer
	// Forwarding, when set, is told each SRS and sealing event
	// (srs_rewritten, srs_reversed, srs_refused, arc_sealed,
	// arc_not_sealed; metrics).
	Forwarding func(event string)
	// ARCResult, when set, is told the ARC result of each inbound
	// message (none, pass, fail, temperror; metrics).
	ARCResult func(result string)
	// AuthservID names us in Authentication-Results (RFC 8601 §2.5);
	// headers carrying it from outside are removed.
	AuthservID string
	// Timeout bounds each check (SPF as a whole, DKIM, DMARC, iprev).
	// RFC 7208 §4.6.4 asks for at least 20 seconds for SPF.
	Timeout time.Duration
	// Quarantine receives messages a rule quarantined; nil turns
	// quarantine into a normal accept with a logged warning.
	Quarantine Spool
	// Observe, when set, gets each check's latency (metrics).
	Observe func(check string, d time.Duration)
	// Verdict, when set, is told each decision and the client (metrics).
	Verdict func(verdict, rule, client string)
	// RuleHits, when set, gets the rules that matched at each stage.
	RuleHits func([]rules.Hit)
	// TLS, when set, is told the TLS version of each session that has one.
	TLS func(version string)
	// MailLog gets one line per decision (accepted, rejected, ...); nil: none.
	MailLog *maillog.Logger
	// AuthLimits bounds password guessing and per-user sending; nil: none.
	AuthLimits AuthLimiter
	// AuthFailure, when set, is told each failed AUTH by reason (metrics).
	AuthFailure func(reason string)
	// Refusal, when set, is told every refused command: the stage
	// ("connect", "helo", "auth", "mail", "rcpt", "data"), the reason
	// (a check's name, "rules", "protocol", "local"; see the mail log's
	// reason=), the event (maillog.Rejected or maillog.Tempfailed) and
	// the client's IP address (metrics).
	Refusal func(stage, reason, kind, client string)
	// Smuggling, when set, is told each message whose data held a bare
	// CR or LF (kind "bare_eol") or a NUL octet ("nul"), and whether it
	// was "rejected" or "normalized" (smtp.bare_line_endings; metrics).
	Smuggling func(kind, action string)
	// Reencoded, when set, is told each reason ("8bit", "long_line") for
	// which a message moat signs was re-encoded before signing (metrics).
	Reencoded func(reason string)
	// AfterData, when set, is told the outcome of the data stage's rules
	// (nil: accepted, else the refusal) with the Txn as they left it; it
	// must not block (the daemon's autolearn queues a job). Not called
	// when a check refused.
	AfterData func(t *Txn, refusal error)
	// Scanners are the external scanners run at DATA (rspamd, spamd,
	// clamd, milters); nil: none.
	Scanners *Scanners
	// Extra checks run after the built-in checks of each stage they
	// implement (see Check), in this order, before the rules.
	Extra []Check
}

func (c *Checks) authLimiter() AuthLimiter {
	if c == nil {
		return nil
	}
	return c.AuthLimits
}

func (c *Checks) scanners() *Scanners {
	if c == nil {
		return nil
	}
	return c.Scanners
}

func (c *Checks) timeout() time.Duration {
	if c == nil || c.Timeout <= 0 {
		return 20 * time.Second
	}
	return c.Timeout
}

// smuggling reports one message to Smuggling, if set.
func (c *Checks) smuggling(kind, action string) {
	if c != nil && c.Smuggling != nil {
		c.Smuggling(kind, action)
	}
}

// refused reports one refusal to Refusal, if set.
func (c *Checks) refused(stage, reason, kind, client string) {
	if c != nil && c.Refusal != nil {
		c.Refusal(stage, reason, kind, client)
	}
}

// mailLog returns the mail log (a nil *maillog.Logger logs nothing).
func (c *Checks) mailLog() *maillog.Logger {
	if c == nil {
		return nil
	}
	return c.MailLog
}
