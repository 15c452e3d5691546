package gateway

import (
	"context"
	"strings"

	"moat/internal/reply"
	"moat/relay/route"
	"moat/relay/spool"
	"moat/relay/srs"
)

// Forwarding: mail that an alias or catch-all of a local domain sends on
// to a remote address (ARCHITECTURE.md, "Forwarding: SRS and ARC").
//
//   - The forwarded copy is spooled as a message of its own, with the
//     envelope sender rewritten by SRS (relay/srs) when the sender's
//     domain is not ours, so that SPF at the next hop judges our domain
//     (RFC 7208 §2.4), and with an ARC set (RFC 8617 §5.1) when sealing
//     is on. The copies for local mailboxes and direct recipients keep
//     the original sender and header. Both records are durable before
//     the 250.
//   - A bounce to an SRS address of ours is reversed at RCPT (srsCheck)
//     and sent on to the original sender; an SRS address that does not
//     verify or has expired is refused with 550 5.1.1 at RCPT, never
//     accepted and bounced (no backscatter), and only addresses we
//     signed reverse (no open relay).

// Sealer adds an ARC set to a forwarded copy (policy/arc.Sealer). head
// is the header block moat prepends, raw the message as received;
// authResults is the value of moat's Authentication-Results (without the
// field name). It returns the fields to prepend; an error means the
// copy goes unsealed (a broken or unverifiable incoming chain, a full
// one), which is logged, never a refusal.
type Sealer interface {
	Seal(ctx context.Context, head, raw []byte, authResults string) (string, error)
}

// replySRSInvalid: an SRS address that does not reverse is no mailbox
// (RFC 3463 X.1.1).
var replySRSInvalid = reply.New(550, 1, 1, "No such user here (invalid or expired SRS address)")

// srsCheck reverses a recipient at the SRS domain (a bounce coming back).
type srsCheck struct{ p *Pipeline }

func (srsCheck) Name() string { return "srs" }

func (c srsCheck) CheckRcpt(_ context.Context, t *Txn) error {
	r := c.p.srs()
	if r == nil {
		return nil
	}
	at := strings.LastIndexByte(t.Rcpt.Addr, '@')
	if at < 0 || !r.IsSRSDomain(t.Rcpt.Addr[at+1:]) || !srs.IsSRS(t.Rcpt.Addr[:at]) {
		return nil
	}
	orig, err := r.Reverse(t.Rcpt.Addr)
	if err == nil {
		// Only what we signed reverses, but the address it gives is
		// routed to any domain: it must pass the same syntax check as
		// a recipient (no source route, no IP literal).
		_, err = route.Domain(orig)
	}
	if err != nil {
		c.p.checks.forwarding("srs_refused")
		return replySRSInvalid.With(err)
	}
	c.p.checks.forwarding("srs_reversed")
	t.Rcpt.Addr = orig
	t.Rcpt.srsReversed = true
	return nil
}

func (p *Pipeline) srs() *srs.Rewriter {
	if p.checks == nil {
		return nil
	}
	return p.checks.SRS
}

// forwardSender reports whether forwarded recipients get a copy of their
// own (split) and the envelope sender of that copy. Forward of an SRS
// address of ours returns it as it is (SRS domain senders are not
// rewritten), so a bounce forwarded again keeps its reversed sender.
func (t *Txn) forwardSender(c *Checks) (sender string, split bool, err error) {
	if c == nil || (c.SRS == nil && c.Sealer == nil) {
		return t.Sender, false, nil
	}
	sender = t.Sender
	if c.SRS != nil && sender != "" && !t.senderIsOurs() {
		if sender, err = c.SRS.Forward(sender); err != nil {
			return "", false, err
		}
		c.forwarding("srs_rewritten")
	}
	// A copy of its own only when it differs: another sender or a seal.
	return sender, sender != t.Sender || c.Sealer != nil, nil
}

// senderIsOurs: the sender's domain is a local domain or the SRS domain
// (their SPF already names us, or SRS would only nest).
func (t *Txn) senderIsOurs() bool {
	_, d, ok := strings.Cut(t.Sender, "@")
	if !ok {
		return true
	}
	if t.state.Router.Route("postmaster@"+d).Route == "local" {
		return true
	}
	return false
}

// splitForwarded separates the recipients that an alias or catch-all
// sent off-site from the others.
func splitForwarded(all []spool.Recipient, forwarded map[string]bool) (direct, fwd []spool.Recipient) {
	for _, r := range all {
		if forwarded[strings.ToLower(r.Address)] {
			fwd = append(fwd, r)
		} else {
			direct = append(direct, r)
		}
	}
	return direct, fwd
}

// forwarding reports an event to Checks.Forwarding, if set.
func (c *Checks) forwarding(event string) {
	if c != nil && c.Forwarding != nil {
		c.Forwarding(event)
	}
}
