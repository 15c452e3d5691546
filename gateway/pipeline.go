package gateway

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"moat/gateway/guard"
	"moat/internal/deadline"
	"moat/internal/reply"
	"moat/policy"
	"moat/policy/iprev"
	"moat/policy/scanner"
	"moat/relay/spool"
	"moat/rules"
)

// Check is one named step of the pipeline. A check implements one or more
// of the stage interfaces (ConnectChecker, HeloChecker, MailChecker,
// RcptChecker, DataChecker): what it found goes into the Txn as facts; an
// error it returns refuses the command (a *reply.Reply is sent as it is,
// anything else becomes 451 4.3.0). A check never writes to the client.
type Check interface {
	Name() string
}

// The stage interfaces: a check implements those of the stages it runs
// at. CheckConnect runs when the client connects, CheckHelo at EHLO/HELO,
// CheckMail at MAIL FROM, CheckRcpt at each RCPT TO (for Txn.Rcpt),
// CheckData at the end of DATA (over Txn.Raw); each before the rules of
// its stage.
type (
	ConnectChecker interface {
		CheckConnect(context.Context, *Txn) error
	}
	HeloChecker interface {
		CheckHelo(context.Context, *Txn) error
	}
	MailChecker interface {
		CheckMail(context.Context, *Txn) error
	}
	RcptChecker interface {
		CheckRcpt(context.Context, *Txn) error
	}
	DataChecker interface {
		CheckData(context.Context, *Txn) error
	}
)

// Rcpt is a recipient of the transaction and its route ("local", a route
// name or "mx").
type Rcpt struct {
	Addr  string
	Route string
	relay bool // the route decision said: a domain we relay to, not ours
}

// Txn is what the checks of a stage read and write: the facts of the
// connection and of the transaction, the envelope and, at data, the
// message. The live session and the offline `moat rules test` fill it the
// same way; a check does not know which one runs it.
type Txn struct {
	// Facts are the rules' inputs (Conn, DNSBL, IPRev, SPF, DKIM, DMARC,
	// Message and the fact groups registered with the rules).
	Facts  rules.Facts
	Sender string
	UTF8   bool
	// Size is the declared size (RFC 1870) at mail, the real one at data.
	Size  int64
	Rcpts []Rcpt // accepted so far
	// Rcpt is the recipient being added (rcpt stage); checks may rewrite it.
	Rcpt *Rcpt
	// Raw is the message as received, CRLF line ends (data stage).
	Raw []byte
	// QueueID is the id the message will be spooled under, set when its
	// data arrives (the live session only), so that the scanners and the
	// logs of the data stage name it as Postfix's cleanup does.
	QueueID string

	// What the rules decided so far in this transaction.
	Score      float64
	Headers    []rules.Header
	Accepted   bool   // a rule said accept: later rules skipped
	Discard    bool   // a rule said discard
	Quarantine string // the rule that quarantined, if any
	Junk       bool   // a junk rule or the tag threshold marked the message as spam
	// Route is what a route rule of the mail stage (or of connect or
	// helo, carried in) chose for every recipient of the transaction.
	Route string

	// QuarantineWhy is the rule's verdict in short, stored with the
	// quarantined message (set with Quarantine by a rule; nil for a
	// scanner's quarantine).
	QuarantineWhy *spool.Reason
	// Refusal names who refused the last refused command.
	Refusal Refusal
	// Guard is what the offline guard screen found (nil: not run).
	Guard *guard.ConnFacts
	// Verdict is the rules' verdict of the last stage run.
	Verdict rules.Verdict

	listener Listener
	state    *State
	log      *zap.Logger
	iprev    *iprev.Pending
	// the external scanners of the message (scanners.go): running, then
	// what they found that applies after the rules
	scans *scanRun
	// rawInUse: a scan did not end in time and may still read Raw, whose
	// buffer must then not be reused
	rawInUse    bool
	scanVirus   *VirusFacts
	scanChanges []scanner.HeaderChange
	// scanBody is a milter's replacement body (nil: kept), from the
	// scanner named scanBodyFrom.
	scanBody     []byte
	scanBodyFrom string
	// connection-level results of the connect and helo rules, carried
	// into each transaction
	conn struct {
		score    float64
		headers  []rules.Header
		accepted bool
		junk     bool
		hits     []string
		route    string // a route rule's choice at connect or helo
	}
}

// Refusal says which check or rule refused a command.
type Refusal struct {
	Check    string // the check, or "rules"
	Rule     string // the rule (rules only)
	Incident string
	Fields   []zap.Field // for the log line
}

// TxnOptions start a Txn for one connection.
type TxnOptions struct {
	Conn     policy.Conn
	Listener Listener
	State    *State
	Logger   *zap.Logger // nil: none
}

// NewTxn returns the Txn of a new connection.
func NewTxn(opt TxnOptions) *Txn {
	t := &Txn{listener: opt.Listener, state: opt.State, log: opt.Logger}
	if t.log == nil {
		t.log = zap.NewNop()
	}
	t.Facts.Conn = opt.Conn
	if t.state != nil {
		t.Facts.Conn.Trusted = inPrefixes(t.Facts.Conn.IP, t.state.TrustedNetworks)
	}
	return t
}

// Reset ends the transaction: the envelope and message go, the connection's
// facts stay.
func (t *Txn) Reset() {
	t.Sender, t.UTF8, t.Size, t.Rcpts, t.Rcpt, t.Raw, t.QueueID = "", false, 0, nil, nil, nil, ""
	t.Facts.SPF, t.Facts.DKIM, t.Facts.DMARC = policy.SPF{}, policy.DKIM{}, policy.DMARC{}
	t.Facts.Message = nil
	t.Facts.Env = policy.Envelope{}
	t.Facts.Rcpt = ""
	t.Facts.ResetGroups()
	t.Score, t.Accepted = t.conn.score, t.conn.accepted
	t.Headers = append([]rules.Header(nil), t.conn.headers...)
	t.Facts.Hits = append([]string(nil), t.conn.hits...)
	t.Discard, t.Quarantine, t.Junk = false, "", t.conn.junk
	t.QuarantineWhy = nil
	t.Route = t.conn.route
}

// May reports whether the client may relay: trusted network or AUTH.
func (t *Txn) May() bool { return t.Facts.Conn.Trusted || t.Facts.Conn.AuthUser != "" }

// RcptAddrs returns the accepted recipients' addresses.
func (t *Txn) RcptAddrs() []string { return rcptAddrs(t.Rcpts) }

// waitIPRev makes the iprev result and the PTR name available.
func (t *Txn) waitIPRev() {
	if t.iprev == nil {
		return
	}
	t.Facts.IPRev = t.iprev.Wait()
	t.iprev = nil
	if t.Facts.IPRev.Result == policy.ResultPass && len(t.Facts.IPRev.Names) > 0 {
		t.Facts.Conn.PTR = strings.TrimSuffix(t.Facts.IPRev.Names[0], ".")
	}
}

// PipelineOptions build a Pipeline.
type PipelineOptions struct {
	// Hostname is ours (the bare postmaster, RFC 5321 §4.5.1).
	Hostname string
	// MaxMessageSize refuses a larger declared SIZE at MAIL (RFC 1870).
	MaxMessageSize int64
	// Checks are the policy collaborators; nil: the relay checks alone.
	Checks *Checks
	// Screen, when set, is the connection guard's list decision, run as
	// the first connect check. The live listener leaves it nil (its guard
	// has screened the connection before the session exists); the
	// offline test sets it.
	Screen func(ctx context.Context, t *Txn) error
}

// Pipeline owns the order of the stages and, per stage, the ordered
// checks and then the rules of that stage. It holds no per-connection
// state and is safe for concurrent use.
type Pipeline struct {
	opt    PipelineOptions
	checks *Checks
	stages [5][]step
}

// step is one check at one stage.
type step struct {
	check Check
	run   func(ctx context.Context, t *Txn) error
}

// register adds c at stage if it has the method of stage's interface C.
func register[C any](p *Pipeline, stage rules.Stage, c Check, method func(C, context.Context, *Txn) error) {
	if x, ok := c.(C); ok {
		run := func(ctx context.Context, t *Txn) error { return method(x, ctx, t) }
		p.stages[stage] = append(p.stages[stage], step{check: c, run: run})
	}
}

// NewPipeline returns the pipeline: the built-in checks in their order,
// then Checks.Extra, each at the stages it implements.
func NewPipeline(opt PipelineOptions) *Pipeline {
	p := &Pipeline{opt: opt, checks: opt.Checks}
	all := []Check{}
	if opt.Screen != nil {
		all = append(all, screenCheck{opt.Screen})
	}
	all = append(all,
		iprevCheck{p},
		mailPolicyCheck{p}, spfCheck{p},
		postmasterCheck{p}, addressCheck{}, routeCheck{}, verifyCheck{p},
		parseCheck{p},
	)
	// The scanners start as soon as the message is parsed and are joined
	// after the other data checks, before the rules (scanners.go).
	sc := opt.Checks.scanners()
	if sc != nil {
		all = append(all, scanStartCheck{sc})
	}
	all = append(all, dkimCheck{p}, dmarcCheck{p}, submissionCheck{p})
	if opt.Checks != nil {
		all = append(all, opt.Checks.Extra...)
	}
	if sc != nil {
		all = append(all, scanJoinCheck{sc})
	}
	for _, c := range all {
		register(p, rules.StageConnect, c, ConnectChecker.CheckConnect)
		register(p, rules.StageHelo, c, HeloChecker.CheckHelo)
		register(p, rules.StageMail, c, MailChecker.CheckMail)
		register(p, rules.StageRcpt, c, RcptChecker.CheckRcpt)
		register(p, rules.StageData, c, DataChecker.CheckData)
	}
	return p
}

// Checks returns the names of the checks of stage, in order.
func (p *Pipeline) Checks(stage rules.Stage) []string {
	var out []string
	for _, st := range p.stages[stage] {
		out = append(out, st.check.Name())
	}
	return out
}

// Run runs one stage over t: its checks in order, then its rules. The
// first refusal ends the stage; it is returned (a *reply.Reply or an error
// that reply.From turns into one) and named in t.Refusal.
func (p *Pipeline) Run(ctx context.Context, stage rules.Stage, t *Txn) error {
	t.Refusal, t.Verdict = Refusal{}, rules.Verdict{}
	if stage == rules.StageData {
		defer t.endScans()
	}
	for _, st := range p.stages[stage] {
		if err := p.call(ctx, st, t); err != nil {
			if t.Refusal.Check == "" { // a check may name itself more precisely
				t.Refusal = Refusal{Check: st.check.Name()}
			}
			return err
		}
	}
	err := p.evaluate(ctx, stage, t)
	if stage == rules.StageData && p.checks != nil && p.checks.AfterData != nil {
		p.checks.AfterData(t, err)
	}
	return err
}

// call runs one check under the check deadline (Checks.Timeout, or the
// check's own Timeout method), reports its latency to
// Checks.Observe and turns a panic into a temporary failure (451 4.3.0).
func (p *Pipeline) call(ctx context.Context, st step, t *Txn) (err error) {
	name := st.check.Name()
	timeout := p.checks.timeout()
	if tc, ok := st.check.(interface{ Timeout() time.Duration }); ok {
		timeout = tc.Timeout() // a check that bounds itself (the scanners)
	}
	ctx, cancel := deadline.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	defer func() {
		if x := recover(); x != nil {
			t.log.Error("check panicked", zap.String("check", name), zap.Any("panic", x))
			err = reply.TempLocal.With(fmt.Errorf("check %s panicked: %v", name, x))
		}
		if p.checks != nil && p.checks.Observe != nil {
			p.checks.Observe(name, time.Since(start))
		}
	}()
	return st.run(ctx, t)
}

// inbound reports whether the inbound authentication checks apply: not
// for our own users and networks, whose mail we sign instead.
func (p *Pipeline) inbound(t *Txn) bool {
	return p.checks != nil && p.checks.Resolver != nil && !t.May()
}

// evaluate runs the rules of one stage over t's facts and applies the
// verdict: a reject, tempfail or greylist is returned as the refusal;
// accept, discard, quarantine, scores, headers, routes and redirects are
// carried in t.
func (p *Pipeline) evaluate(ctx context.Context, stage rules.Stage, t *Txn) error {
	t.waitIPRev() // iprev and ptr are connect-stage facts
	if p.checks == nil || p.checks.Rules == nil {
		return p.afterRules(stage, t)
	}
	f := &t.Facts
	connStage := stage == rules.StageConnect || stage == rules.StageHelo
	if connStage {
		f.Env = policy.Envelope{}
		f.Score, f.Accepted = t.conn.score, t.conn.accepted
		f.Hits = t.conn.hits
	} else {
		f.Env = policy.Envelope{Sender: t.Sender, Recipients: rcptAddrs(t.Rcpts), Size: t.Size}
		f.Score, f.Accepted = t.Score, t.Accepted
	}
	f.Rcpt = ""
	if t.Rcpt != nil {
		f.Rcpt = t.Rcpt.Addr
	}
	ctx, cancel := deadline.WithTimeout(ctx, p.checks.timeout())
	defer cancel()
	v := p.checks.Rules.Evaluate(ctx, stage, f)
	t.Verdict = v
	if p.checks.RuleHits != nil && len(v.Explain) > 0 {
		p.checks.RuleHits(v.Explain)
	}
	f.Hits = rules.AppendHits(f.Hits, v)
	if len(v.DryRunHits) > 0 {
		t.log.Info("dry-run rules matched", zap.String("stage", stage.String()), zap.Strings("rules", v.DryRunHits))
	}
	if connStage {
		t.conn.score, t.Score = v.Score, v.Score
		t.conn.headers = append(t.conn.headers, v.Headers...)
		t.conn.hits = f.Hits
	} else {
		t.Score = v.Score
		t.Headers = append(t.Headers, v.Headers...)
	}
	if v.Junk {
		t.Junk = true
		t.conn.junk = t.conn.junk || connStage
	}
	if stage == rules.StageData && v.Action != rules.Reject && v.Action != rules.Tempfail && v.Action != rules.Greylist {
		t.Headers = append(t.Headers, p.spamHeaders(t, v)...)
	}
	if len(v.Redirect) > 0 {
		t.redirect(v.Redirect)
	}
	t.applyRoute(stage, v.Route)
	switch v.Action {
	case rules.Reject, rules.Tempfail, rules.Greylist:
		if p.checks.Verdict != nil {
			p.checks.Verdict(v.Action.Verdict(), v.Rule, f.Conn.IP.String())
		}
		fields := append(rules.Explain(v), zap.String("sender", t.Sender))
		if t.Rcpt != nil {
			fields = append(fields, zap.String("rcpt", t.Rcpt.Addr))
		}
		if v.Err != nil {
			t.log.Error("rule failed at run time; tempfailing", zap.Error(v.Err), zap.String("rule", v.Rule))
		}
		t.Refusal = Refusal{Check: "rules", Rule: v.Rule, Incident: v.IncidentID, Fields: fields}
		return v.Reply
	case rules.Accept:
		if connStage {
			t.conn.accepted = true
		}
		t.Accepted = true
	case rules.Discard:
		t.Discard = true
		t.log.Info("rule discards the message", rules.Explain(v)...)
	case rules.Quarantine:
		t.Quarantine, t.QuarantineWhy = v.Rule, quarantineReason(v)
		t.log.Info("rule quarantines the message", rules.Explain(v)...)
	}
	if err := p.afterRules(stage, t); err != nil {
		if p.checks.Verdict != nil {
			p.checks.Verdict(rules.Reject.Verdict(), t.Refusal.Rule, f.Conn.IP.String())
		}
		return err
	}
	if stage == rules.StageData && p.checks.Verdict != nil {
		a := v.Action
		if t.Discard {
			a = rules.Discard
		} else if t.Quarantine != "" {
			a = rules.Quarantine
		} else if t.Junk {
			a = rules.Junk // accepted, into the Junk folder or tagged
		}
		p.checks.Verdict(a.Verdict(), v.Rule, f.Conn.IP.String())
	}
	return nil
}

// afterRules applies, at the data stage, what the scanners ask once the
// rules let the message through: the virus policy and a milter's header
// changes (Scanners.after).
func (p *Pipeline) afterRules(stage rules.Stage, t *Txn) error {
	if sc := p.checks.scanners(); stage == rules.StageData && sc != nil {
		return sc.after(t)
	}
	return nil
}

// applyRoute carries out the route action (issue 23 item 13) at every
// stage, the last match winning: at connect and helo for every recipient
// of the connection, at mail for every recipient of the transaction (both
// are given to each recipient as its rcpt stage ends, before that stage's
// own route), at rcpt for that recipient, at data for every recipient
// accepted (after a redirect of the same stage).
func (t *Txn) applyRoute(stage rules.Stage, route string) {
	switch stage {
	case rules.StageConnect, rules.StageHelo:
		if route != "" {
			t.conn.route, t.Route = route, route
		}
	case rules.StageMail:
		if route != "" {
			t.Route = route
		}
	case rules.StageRcpt:
		if t.Rcpt == nil {
			return
		}
		if route == "" {
			route = t.Route
		}
		if route != "" {
			t.Rcpt.Route = route
		}
	case rules.StageData:
		if route != "" {
			for i := range t.Rcpts {
				t.Rcpts[i].Route = route
			}
		}
	}
}

// redirect replaces the recipients with the operator's list (a rule's
// redirect action). The targets are routed normally; relay rights are
// not needed, the operator chose them.
func (t *Txn) redirect(to []string) {
	var rs []Rcpt
	for _, a := range to {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		rs = append(rs, Rcpt{Addr: a, Route: t.state.Router.Route(a).Route})
	}
	if len(rs) > 0 {
		t.Rcpts = rs
	}
}

func rcptAddrs(rs []Rcpt) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Addr
	}
	return out
}
