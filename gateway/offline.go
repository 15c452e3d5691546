package gateway

import (
	"context"
	"strings"

	"moat/gateway/guard"
	"moat/internal/reply"
	"moat/policy"
	"moat/rules"
)

// OfflineSession is a session without a socket, for `moat rules test`:
// one connection, one transaction, the message (if any) as on the wire.
type OfflineSession struct {
	Conn     policy.Conn // IP, HELO, TLS, AuthUser; Listener and Mode from Listener
	Listener Listener
	State    *State
	From     string
	To       []string
	Message  []byte // CRLF line ends; nil: stop after the recipients
	// DeclaredSize is the SIZE parameter of MAIL FROM (RFC 1870); 0: none.
	DeclaredSize int64
}

// OfflineStep is one command of an offline session and its outcome.
type OfflineStep struct {
	Stage rules.Stage
	Rcpt  string       // rcpt stage: the recipient as given
	Reply *reply.Reply // the reply; nil: the stage went on (connect, helo)
	// Refusal names the check or rule that refused (Reply is then 4xx/5xx).
	Refusal Refusal
	Verdict rules.Verdict // the rules' verdict of the stage
	Score   float64       // the running score after the stage
	Route   string        // rcpt stage: the route of the accepted recipient
}

// OfflineResult is the trace of an offline session.
type OfflineResult struct {
	Steps []OfflineStep
	// Final is the reply that ends the session's transaction: the first
	// refusal at connect, helo or mail, the last RCPT refusal when no
	// recipient was accepted, else the reply to the end of DATA.
	Final *reply.Reply
	// Action is what became of the message: accept, junk (accepted,
	// marked as spam), reject, tempfail, greylist, discard or quarantine.
	Action string
	Rule   string      // the rule or check that decided, if any
	Txn    *Txn        // the facts and the envelope at the end
	Hits   []rules.Hit // every rule hit, in order
}

// offlineQueueID stands for the queue id in an offline 250 reply.
const offlineQueueID = "(offline)"

// RunOffline runs s through the same pipeline as the live session: the
// same checks in the same order, the same rules, the same replies. Nothing
// is spooled. opt.Screen, when set, stands for the listener guard.
func RunOffline(ctx context.Context, opt PipelineOptions, s OfflineSession) *OfflineResult {
	res := &OfflineResult{}
	var checks Checks
	if opt.Checks != nil {
		checks = *opt.Checks
	}
	prev := checks.RuleHits
	checks.RuleHits = func(h []rules.Hit) {
		res.Hits = append(res.Hits, h...)
		if prev != nil {
			prev(h)
		}
	}
	opt.Checks = &checks
	p := NewPipeline(opt)
	conn := s.Conn
	conn.Listener, conn.Mode = s.Listener.Name, s.Listener.Mode
	t := NewTxn(TxnOptions{Conn: conn, Listener: s.Listener, State: s.State})
	res.Txn = t
	run := func(stage rules.Stage, rcpt string) *reply.Reply {
		err := p.Run(ctx, stage, t)
		st := OfflineStep{Stage: stage, Rcpt: rcpt, Refusal: t.Refusal, Verdict: t.Verdict, Score: t.Score}
		if err != nil {
			st.Reply = reply.From(err, conn.ID)
		}
		if stage == rules.StageRcpt && err == nil {
			st.Route = t.Rcpt.Route
		}
		res.Steps = append(res.Steps, st)
		return st.Reply
	}
	end := func(r *reply.Reply) *OfflineResult {
		res.Final = r
		res.Rule = t.Refusal.Rule
		if res.Rule == "" && t.Refusal.Check != "" {
			res.Rule = "check:" + t.Refusal.Check
		}
		switch {
		case r.Code == 250 && t.Discard:
			res.Action = string(rules.Discard)
		case r.Code == 250 && t.Quarantine != "":
			res.Action, res.Rule = string(rules.Quarantine), t.Quarantine
		case r.Code == 250 && t.Junk:
			res.Action, res.Rule = string(rules.Junk), junkRule(res.Hits)
		case r.Code == 250:
			res.Action = string(rules.Accept)
		case t.Refusal.Check == "rules" && t.Verdict.Action != "":
			res.Action = string(t.Verdict.Action)
		case r.Temporary():
			res.Action = string(rules.Tempfail)
		default:
			res.Action = string(rules.Reject)
		}
		return res
	}
	for _, stage := range []rules.Stage{rules.StageConnect, rules.StageHelo} {
		if r := run(stage, ""); r != nil {
			return end(r)
		}
	}
	t.Reset()
	t.Sender = s.From
	t.Size = s.DeclaredSize
	// The offline client says SMTPUTF8 when its addresses need it (RFC
	// 6531 §3.4), as a compliant client would; without it they would be
	// refused with 553 5.6.7 (checkEnvelopeAddr).
	for _, a := range append([]string{s.From}, s.To...) {
		if strings.ContainsFunc(a, func(r rune) bool { return r >= 0x80 }) {
			t.UTF8 = true
		}
	}
	if r := run(rules.StageMail, ""); r != nil {
		return end(r)
	}
	var last *reply.Reply
	for _, to := range s.To {
		t.Rcpt = &Rcpt{Addr: to}
		if r := run(rules.StageRcpt, to); r != nil {
			last = r
		} else {
			t.Rcpts = append(t.Rcpts, *t.Rcpt)
		}
		t.Rcpt = nil
	}
	if len(t.Rcpts) == 0 {
		if last == nil {
			last = reply.BadSequence
		}
		return end(last)
	}
	if s.Message == nil {
		return end(reply.OK)
	}
	t.Raw = s.Message
	if r := run(rules.StageData, ""); r != nil {
		return end(r)
	}
	if t.Discard {
		return end(reply.New(250, 0, 0, "Ok: discarded"))
	}
	if _, err := t.Expand(); err != nil {
		t.Refusal = Refusal{Check: "expand"}
		return end(reply.From(err, conn.ID))
	}
	return end(reply.Queued.Format("queued as " + offlineQueueID))
}

// GuardScreen is the connect check that stands for the listener guard in
// an offline session (PipelineOptions.Screen): g.Screen decides, its
// line becomes the refusal, its DNS list result the dnsbl fact.
func GuardScreen(g *guard.Guard) func(ctx context.Context, t *Txn) error {
	return func(ctx context.Context, t *Txn) error {
		gf, reason, rp := g.Screen(ctx, t.Facts.Conn.IP)
		t.Facts.DNSBL = gf.DNSBL
		t.Guard = &gf
		if reason == "" {
			return nil
		}
		t.Refusal = Refusal{Check: "guard", Rule: "guard:" + reason}
		return rp
	}
}

// junkRule names the last rule or built-in step that marked the message
// junk.
func junkRule(hits []rules.Hit) string {
	for i := len(hits) - 1; i >= 0; i-- {
		if h := hits[i]; h.Action == rules.Junk && !h.DryRun {
			return h.Rule
		}
	}
	return ""
}
