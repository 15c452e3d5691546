package rules

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/expr-lang/expr/vm"

	"moat/internal/reply"
	"moat/policy"
)

// Hit is one rule (or built-in policy step) that matched, with the facts
// its condition read.
type Hit struct {
	Rule   string
	File   string // "" for built-in policy
	Stage  Stage
	Action Action
	DryRun bool
	Facts  map[string]any
	Note   string
}

// Verdict is the outcome of one evaluation.
type Verdict struct {
	Action     Action       // Continue when nothing terminal matched
	Reply      *reply.Reply // for reject, tempfail and greylist (incident id in the text)
	Rule       string       // the rule that decided ("auth:dmarc", "score:reject" for built-ins)
	IncidentID string       // set for every terminal action other than accept
	Score      float64      // running score including Facts.Score
	Headers    []Header     // to add, in order
	Route      string       // last matching route action
	Redirect   []string     // last matching redirect action
	// Junk: a junk rule, the DMARC "tag" policy or the tag threshold
	// marked the message as spam in this evaluation (non-terminal).
	Junk bool
	// Tests are, at the data stage, the score and junk rules that hit in
	// the whole transaction (earlier stages included), sorted, without
	// duplicates: what X-Spam-Status lists.
	Tests      []string
	DryRunHits []string // "rule: action" of dry-run rules that matched
	Explain    []Hit    // every rule that matched, in order
	Err        error    // a rule failed at run time (the verdict is then 451 4.3.0)
}

// RuleStat is reported to the Observer for the rules of one stage
// evaluation in TimeEvery (Timed true, Duration set) and for every rule
// that failed (Err set): timing every rule of every message costs more
// than a latency distribution needs (two clock reads and a histogram per
// rule).
type RuleStat struct {
	Rule     string
	Stage    Stage
	Matched  bool
	DryRun   bool
	Err      error
	Timed    bool
	Duration time.Duration
}

// TimeEvery is how often a stage evaluation is timed rule by rule.
const TimeEvery = 8

// Observer receives per-rule statistics (evaluation time, failures).
type Observer interface {
	ObserveRule(RuleStat)
}

// ObserverFunc adapts a func to Observer.
type ObserverFunc func(RuleStat)

// ObserveRule calls f.
func (f ObserverFunc) ObserveRule(s RuleStat) { f(s) }

// EngineOptions are the engine's collaborators; nil ones get in-memory
// defaults.
type EngineOptions struct {
	Limiter    Limiter
	Greylister Greylister
	Clock      func() time.Time
	Observer   Observer
}

// Engine evaluates the current rule set. It is safe for concurrent use;
// Swap replaces the set atomically.
type Engine struct {
	set        atomic.Pointer[Set]
	limiter    Limiter
	greylister Greylister
	clock      func() time.Time
	obs        Observer
	evals      atomic.Uint64 // stage evaluations, for TimeEvery
}

// NewEngine returns an engine running set.
func NewEngine(set *Set, opt EngineOptions) *Engine {
	e := &Engine{limiter: opt.Limiter, greylister: opt.Greylister, clock: opt.Clock, obs: opt.Observer}
	if e.clock == nil {
		e.clock = time.Now
	}
	if e.limiter == nil {
		e.limiter = NewMemoryLimiter(100000, e.clock)
	}
	if e.greylister == nil {
		n := set.cfg.Greylist.MaxEntries
		if n <= 0 {
			n = DefaultConfig().Greylist.MaxEntries
		}
		e.greylister = NewMemoryGreylister(n, e.clock)
	}
	e.set.Store(set)
	return e
}

// Swap replaces the rule set; evaluations in flight finish with the old one.
func (e *Engine) Swap(set *Set) { e.set.Store(set) }

// Set returns the current rule set.
func (e *Engine) Set() *Set { return e.set.Load() }

// NewIncidentID returns 10 random base32 characters.
func NewIncidentID() string {
	var b [7]byte
	_, _ = rand.Read(b[:])
	return base32.StdEncoding.EncodeToString(b[:])[:10]
}

func (v *Verdict) decide(a Action, rp *reply.Reply, rule string) {
	v.Action = a
	v.Rule = rule
	if a == Accept {
		return
	}
	v.IncidentID = NewIncidentID()
	if rp != nil {
		c := *rp
		c.Text = fmt.Sprintf("%s [incident %s]", c.Text, v.IncidentID)
		v.Reply = &c
	}
}

// Evaluate runs the rules of stage over f. At the data stage, when no rule
// decided, the built-in auth policy and the score thresholds follow, and
// the verdict lists the spam tests that hit (Verdict.Tests).
func (e *Engine) Evaluate(ctx context.Context, stage Stage, f *Facts) Verdict {
	set := e.set.Load()
	v := e.evaluate(ctx, set, stage, f)
	if stage == StageData {
		v.Tests = set.tests(f.Hits, v.Explain)
	}
	return v
}

// maxTests bounds the tests a verdict lists (X-Spam-Status stays short).
const maxTests = 100

// tests returns the score and junk rules among the earlier hits (names)
// and this evaluation's hits, sorted and unique. Built-in steps count when
// they scored or marked junk (auth:spf, auth:dmarc); the thresholds
// (score:…) do not, they are the outcome rather than a test.
func (s *Set) tests(earlier []string, hits []Hit) []string {
	seen := map[string]bool{}
	var out []string
	add := func(name string) {
		if !seen[name] && len(out) < maxTests {
			seen[name] = true
			out = append(out, name)
		}
	}
	for _, n := range earlier {
		if s.spamTests[n] {
			add(n)
		}
	}
	for _, h := range hits {
		if !h.DryRun && (h.Action == Score || h.Action == Junk) && !strings.HasPrefix(h.Rule, "score:") {
			add(h.Rule)
		}
	}
	sort.Strings(out)
	return out
}

func (e *Engine) evaluate(ctx context.Context, set *Set, stage Stage, f *Facts) Verdict {
	v := Verdict{Score: f.Score}
	if f.Accepted {
		v.Action, v.Rule = Accept, "accepted earlier"
		return v
	}
	if stage < 0 || stage >= numStages {
		v.decide(Tempfail, reply.TempLocal, "engine")
		v.Err = fmt.Errorf("rules: unknown stage %d", int(stage))
		return v
	}
	if rs := set.stages[stage]; len(rs) > 0 {
		// The rule environment is built only for a stage that has rules.
		st := newState(ctx, e, set, f)
		st.timed = e.obs != nil && e.evals.Add(1)%TimeEvery == 0
		var machine vm.VM
		for _, r := range rs {
			if done := e.run(&machine, st, r, stage, f, &v); done {
				return v
			}
		}
	}
	if stage == StageData {
		if e.authPolicy(ctx, set, f, &v) {
			return v
		}
	}
	e.thresholds(ctx, set, stage, f, &v)
	return v
}

// run evaluates one rule; it reports whether a terminal decision was made.
func (e *Engine) run(machine *vm.VM, st *state, r *rule, stage Stage, f *Facts, v *Verdict) (done bool) {
	st.rule = r
	st.fill(r.needs)
	st.env.Score = v.Score
	var t0 time.Time
	if st.timed {
		t0 = time.Now()
	}
	matched, err := e.condition(machine, st, r)
	if st.timed || (err != nil && e.obs != nil) {
		rs := RuleStat{Rule: r.Name, Stage: stage, Matched: matched && err == nil, DryRun: r.DryRun, Err: err, Timed: st.timed}
		if st.timed {
			rs.Duration = time.Since(t0)
		}
		e.obs.ObserveRule(rs)
	}
	if err != nil {
		// A failing rule never lets the message through silently.
		v.Explain = append(v.Explain, Hit{Rule: r.Name, File: r.File, Stage: stage, Action: Tempfail, Note: "runtime error: " + err.Error()})
		v.decide(Tempfail, reply.TempLocal, r.Name)
		v.Reply.Text = fmt.Sprintf("Local error in processing, please try again later [incident %s]", v.IncidentID)
		v.Err = fmt.Errorf("rule %q (%s:%d): %w", r.Name, r.File, r.Line, err)
		return true
	}
	if !matched {
		return false
	}
	hit := Hit{Rule: r.Name, File: r.File, Stage: stage, Action: r.Action, DryRun: r.DryRun, Facts: explainFacts(machine, r, &st.env)}
	if r.DryRun {
		v.Explain = append(v.Explain, hit)
		v.DryRunHits = append(v.DryRunHits, r.Name+": "+string(r.Action))
		return false
	}
	// the hits fact: later rules of this stage see this one
	st.env.Hits = append(st.env.Hits[:len(st.env.Hits):len(st.env.Hits)], r.Name)
	switch r.Action {
	case Score:
		v.Score += r.Score
		hit.Note = fmt.Sprintf("%+g", r.Score)
	case AddHeader:
		v.Headers = append(v.Headers, r.Header)
	case Route:
		v.Route = r.Route
	case Redirect:
		v.Redirect = append([]string(nil), r.Redirect...)
	case Log:
	case Junk:
		v.Junk = true
	case Greylist:
		pass, note, err := e.greylist(st.ctx, st.engineSet(), stage, f)
		hit.Note = note
		v.Explain = append(v.Explain, hit)
		if err != nil {
			v.decide(Tempfail, reply.TempLocal, r.Name)
			v.Err = fmt.Errorf("rule %q: greylist: %w", r.Name, err)
			return true
		}
		if pass {
			return false
		}
		v.decide(Greylist, r.Reply, r.Name)
		return true
	default: // accept, reject, tempfail, discard, quarantine
		v.Explain = append(v.Explain, hit)
		v.decide(r.Action, r.Reply, r.Name)
		return true
	}
	v.Explain = append(v.Explain, hit)
	return false
}

// condition answers a rule's condition: compiled when it is, else (or
// when the closures give up) on the VM.
func (e *Engine) condition(machine *vm.VM, st *state, r *rule) (bool, error) {
	if r.native != nil {
		if matched, ok := runNative(r.native, st); ok {
			return matched, nil
		}
	}
	out, err := runSafe(machine, r.prog, &st.env)
	matched, _ := out.(bool)
	return matched, err
}

// AppendHits appends to hits the rules and built-in steps that matched in
// v, dry runs excluded: how the caller carries the hits fact (Facts.Hits)
// from one stage to the next.
func AppendHits(hits []string, v Verdict) []string {
	for _, h := range v.Explain {
		if !h.DryRun {
			hits = append(hits, h.Rule)
		}
	}
	return hits
}

func (s *state) engineSet() *Set { return s.engine.set.Load() }

// runSafe runs a program; a panic becomes an error (never a crash).
func runSafe(machine *vm.VM, p *vm.Program, env *env) (out any, err error) {
	defer func() {
		if x := recover(); x != nil {
			err = fmt.Errorf("panic: %v", x)
		}
	}()
	return machine.Run(p, env)
}

const maxFactLen = 200

// explainFacts evaluates the facts a matching rule read.
func explainFacts(machine *vm.VM, r *rule, env *env) map[string]any {
	if len(r.facts) == 0 {
		return nil
	}
	m := make(map[string]any, len(r.facts))
	for _, fp := range r.facts {
		val, err := runSafe(machine, fp.prog, env)
		if err != nil {
			continue
		}
		if s, ok := val.(string); ok && len(s) > maxFactLen {
			cut := maxFactLen
			for cut > 0 && !utf8.RuneStart(s[cut]) {
				cut--
			}
			val = s[:cut] + "…"
		}
		m[fp.name] = val
	}
	return m
}

// greylist checks the triplet of the transaction (RFC 6647 §2.1): the
// client network (/24 or /64), the sender (its domain when SPF passed, so
// that senders with per-message return paths are not greylisted forever)
// and the recipient (at data: all recipients).
func (e *Engine) greylist(ctx context.Context, set *Set, stage Stage, f *Facts) (bool, string, error) {
	key := GreylistKey(f, stage)
	g := set.cfg.Greylist
	def := DefaultConfig().Greylist
	if g.Delay == 0 && g.Expiry == 0 {
		g = def
	}
	res, err := e.greylister.Check(ctx, key, g.Delay, g.Expiry)
	if err != nil {
		return false, "", err
	}
	if res.Pass {
		return true, "greylist passed", nil
	}
	return false, fmt.Sprintf("greylisted, retry after %s", res.RetryAfter.Round(time.Second)), nil
}

// GreylistKey returns the greylisting key of a transaction.
func GreylistKey(f *Facts, stage Stage) string {
	var network string
	if ip := f.Conn.IP.Unmap(); ip.IsValid() {
		bits := 24
		if ip.Is6() {
			bits = 64
		}
		p, _ := ip.Prefix(bits)
		network = p.String()
	}
	sender := strings.ToLower(f.Env.Sender)
	if f.SPF.Result == policy.ResultPass {
		sender = "@" + makeAddress(sender).Domain
		if f.SPF.Domain != "" && sender == "@" {
			sender = "@" + strings.ToLower(f.SPF.Domain)
		}
	}
	rcpt := strings.ToLower(f.Rcpt)
	if stage == StageData || rcpt == "" {
		rs := make([]string, len(f.Env.Recipients))
		for i, r := range f.Env.Recipients {
			rs[i] = strings.ToLower(r)
		}
		sort.Strings(rs)
		rcpt = strings.Join(rs, ",")
	}
	return network + "|" + sender + "|" + rcpt
}

// authPolicy applies the default authentication policy (RFC 7489 §6.6.2,
// §6.6.4 for pct sampling). It reports whether it decided.
func (e *Engine) authPolicy(ctx context.Context, set *Set, f *Facts, v *Verdict) bool {
	ap := set.cfg.Auth
	if ap == (AuthPolicy{}) {
		ap = DefaultAuthPolicy()
	}
	d := f.DMARC
	policyHit := func(a Action, note string) {
		v.Explain = append(v.Explain, Hit{Rule: "auth:dmarc", Stage: StageData, Action: a, Note: note,
			Facts: map[string]any{"dmarc.result": string(d.Result), "dmarc.policy": d.Policy, "dmarc.domain": d.Domain, "dmarc.sampled": d.Sampled}})
	}
	switch d.Result {
	case policy.ResultFail:
		// d.Policy is the policy to apply: policy/dmarc has already
		// lowered it for a message that pct= did not sample (RFC 7489
		// §6.6.4), and that is the only place where it is lowered.
		p := d.Policy
		if p == "reject" {
			switch ap.DMARCReject {
			case "reject":
				policyHit(Reject, "p=reject")
				v.decide(Reject, reply.New(550, 7, 1, "Rejected: DMARC policy of "+sanitize(d.Domain)+" says reject"), "auth:dmarc")
				return true
			case "quarantine":
				p = "quarantine"
			}
		}
		if p == "quarantine" {
			switch ap.DMARCQuarantine {
			case "quarantine":
				policyHit(Quarantine, "p=quarantine")
				v.decide(Quarantine, nil, "auth:dmarc")
				return true
			case "tag":
				policyHit(Junk, "p=quarantine, marked junk")
				v.Junk = true
			}
		}
	case policy.ResultTempError:
		if ap.TempError == "tempfail" {
			policyHit(Tempfail, "temporary DMARC failure")
			v.decide(Tempfail, reply.New(451, 7, 0, "Temporary authentication failure (DMARC), please try again later"), "auth:dmarc")
			return true
		}
	}
	if f.SPF.Result == policy.ResultFail && ap.SPFFailScore > 0 {
		v.Score += ap.SPFFailScore
		v.Explain = append(v.Explain, Hit{Rule: "auth:spf", Stage: StageData, Action: Score, Note: fmt.Sprintf("%+g", ap.SPFFailScore),
			Facts: map[string]any{"spf.result": string(f.SPF.Result), "spf.domain": f.SPF.Domain}})
	}
	return false
}

// thresholds applies rules.score: reject at every stage (no point reading
// DATA of a message already over the limit), greylist and tag after DATA.
func (e *Engine) thresholds(ctx context.Context, set *Set, stage Stage, f *Facts, v *Verdict) {
	sc := set.cfg.Score
	hit := func(rule string, a Action, note string) {
		v.Explain = append(v.Explain, Hit{Rule: rule, Stage: stage, Action: a, Note: note, Facts: map[string]any{"score": v.Score}})
	}
	if sc.Reject > 0 && v.Score >= sc.Reject {
		hit("score:reject", Reject, fmt.Sprintf("score %.1f >= %.1f", v.Score, sc.Reject))
		v.decide(Reject, reply.New(550, 7, 1, fmt.Sprintf("Message looks like spam (score %.1f)", v.Score)), "score:reject")
		return
	}
	if stage != StageData {
		return
	}
	if sc.Greylist > 0 && v.Score >= sc.Greylist {
		pass, note, err := e.greylist(ctx, set, stage, f)
		hit("score:greylist", Greylist, note)
		if err != nil {
			v.decide(Tempfail, reply.TempLocal, "score:greylist")
			v.Err = fmt.Errorf("greylist: %w", err)
			return
		}
		if !pass {
			v.decide(Greylist, defaultReply(Greylist), "score:greylist")
			return
		}
	}
	// One concept: reaching the tag threshold marks the message junk,
	// as a junk rule does.
	if sc.Tag > 0 && v.Score >= sc.Tag {
		hit("score:tag", Junk, fmt.Sprintf("score %.1f >= %.1f", v.Score, sc.Tag))
		v.Junk = true
	}
}

// sanitize keeps a domain fit for a reply line.
func sanitize(s string) string {
	if s == "" {
		return "the sender domain"
	}
	if len(s) > 253 || strings.ContainsAny(s, "\r\n\x00 ") {
		return "the sender domain"
	}
	return s
}
