package rules

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"time"

	"moat/policy"
	"moat/policy/content"
)

// Stage is the SMTP stage a rule runs at.
type Stage int

// Stages in session order (RFC 5321 §3.3: connect, EHLO, MAIL, RCPT, DATA).
const (
	StageConnect Stage = iota
	StageHelo
	StageMail
	StageRcpt
	StageData
	numStages
)

var stageNames = [numStages]string{"connect", "helo", "mail", "rcpt", "data"}

func (s Stage) String() string {
	if s >= 0 && s < numStages {
		return stageNames[s]
	}
	return fmt.Sprintf("stage(%d)", int(s))
}

// ParseStage parses a stage name.
func ParseStage(s string) (Stage, error) {
	for i, n := range stageNames {
		if n == s {
			return Stage(i), nil
		}
	}
	return 0, fmt.Errorf("unknown stage %q (want connect, helo, mail, rcpt or data)", s)
}

// Facts are the inputs of one evaluation. The gateway fills what is known at
// the stage; a fact that a rule reads must be available at the rule's stage
// (checked at load, see factStage).
type Facts struct {
	Conn    policy.Conn
	DNSBL   policy.DNSBL
	IPRev   policy.IPRev
	Env     policy.Envelope
	Rcpt    string // the recipient of the current RCPT command (rcpt stage)
	SPF     policy.SPF
	DKIM    policy.DKIM
	DMARC   policy.DMARC
	Message *content.Message // data stage; nil elsewhere
	Score   float64          // running score carried from earlier stages
	// Hits are the names of the rules (and built-in policy steps) that
	// matched so far in this transaction, in order; dry runs excluded.
	Hits []string
	// Accepted is set by the gateway once an accept verdict was given at an
	// earlier stage of this transaction: later stages then skip the user
	// rules, the auth policy and the score thresholds.
	Accepted bool

	groups map[string]any // values of the fact groups (see FactGroup)
}

// Address facts: sender, rcpt and from.
type address struct {
	Address string `expr:"address"` // lower-case
	Local   string `expr:"local"`
	Domain  string `expr:"domain"` // lower-case
}

func makeAddress(a string) address {
	a = strings.ToLower(a)
	// the last @ separates the domain (RFC 5321 §4.1.2: a quoted local part may hold @)
	i := strings.LastIndexByte(a, '@')
	if i < 0 {
		return address{Address: a, Local: a}
	}
	return address{Address: a, Local: a[:i], Domain: strings.TrimSuffix(a[i+1:], ".")}
}

type dnsblFacts struct {
	Score  float64  `expr:"score"`
	Hits   []string `expr:"hits"` // zones that listed the client (DNSWL zones excluded)
	Listed bool     `expr:"listed"`
	Errors []string `expr:"errors"` // lists that failed (timeout, SERVFAIL)
}

type authFacts struct {
	Result string `expr:"result"`
	Domain string `expr:"domain"`
}

type dkimFacts struct {
	Result   string   `expr:"result"`
	Domains  []string `expr:"domains"`  // d= of passing signatures
	Unsigned int64    `expr:"unsigned"` // body octets an l= signature leaves unsigned (RFC 6376 §8.2)
}

type dmarcFacts struct {
	Result  string `expr:"result"`
	Policy  string `expr:"policy"`
	Domain  string `expr:"domain"`
	Sampled bool   `expr:"sampled"`
}

type iprevFacts struct {
	Result string   `expr:"result"`
	Names  []string `expr:"names"`
}

type attachment struct {
	Name string `expr:"name"` // lower-case file name
	Type string `expr:"type"` // lower-case media type
	Size int    `expr:"size"`
}

// env is the typed expression environment: each field is a fact, named by
// its expr tag. Fields added here need an entry in factStage; a check's
// own facts are better a FactGroup, which needs no change here.
type env struct {
	IP         string      `expr:"ip"`
	PTR        string      `expr:"ptr"`
	TLS        bool        `expr:"tls"`
	Listener   string      `expr:"listener"`
	Mode       string      `expr:"mode"`
	Trusted    bool        `expr:"trusted"`
	DNSBL      *dnsblFacts `expr:"dnsbl"`
	IPRev      *iprevFacts `expr:"iprev"`
	Score      float64     `expr:"score"`
	HELO       string      `expr:"helo"`
	AuthUser   string      `expr:"auth_user"`
	Sender     *address    `expr:"sender"`
	Size       int         `expr:"size"`
	SPF        *authFacts  `expr:"spf"`
	Rcpt       *address    `expr:"rcpt"`
	Recipients []string    `expr:"recipients"`
	DKIM       *dkimFacts  `expr:"dkim"`
	DMARC      *dmarcFacts `expr:"dmarc"`
	Subject    string      `expr:"subject"`
	From       *address    `expr:"from"`
	To         []string    `expr:"to"`
	Body       string      `expr:"body"`
	Malformed  bool        `expr:"malformed"`
	Hits       []string    `expr:"hits"`
	// the state the fact groups' functions read (see FactGroup)
	Facts *state `expr:"__facts"`

	Header    func(name string) string                                 `expr:"header"`
	Headers   func(name string) []string                               `expr:"headers"`
	RateLimit func(key string, count int, window string) (bool, error) `expr:"ratelimit"`
}

// availability of a fact: the first stage it is known at, and whether it is
// known only at that stage.
type availability struct {
	from Stage
	only bool
}

// factStage says where each top-level fact (or function) may be read.
var factStage = map[string]availability{
	"ip": {from: StageConnect}, "ptr": {from: StageConnect}, "tls": {from: StageConnect},
	"listener": {from: StageConnect}, "mode": {from: StageConnect}, "trusted": {from: StageConnect},
	"dnsbl": {from: StageConnect}, "iprev": {from: StageConnect}, "score": {from: StageConnect},
	"ratelimit": {from: StageConnect}, "in_list": {from: StageConnect}, "cidr": {from: StageConnect},
	"helo":      {from: StageHelo},
	"auth_user": {from: StageMail}, "sender": {from: StageMail}, "size": {from: StageMail}, "spf": {from: StageMail},
	"rcpt":       {from: StageRcpt, only: true},
	"recipients": {from: StageRcpt},
	"dkim":       {from: StageData}, "dmarc": {from: StageData}, "subject": {from: StageData},
	"from": {from: StageData}, "to": {from: StageData}, "body": {from: StageData},
	"malformed": {from: StageData}, "hits": {from: StageConnect},
	"header": {from: StageData}, "headers": {from: StageData},
}

// lazyFacts are the facts that cost work to compute; they are filled only
// before a rule that reads them runs.
const (
	needBody = 1 << iota
	needMalformed
	needAddresses // from and to: the address lists of the header
)

// state is the per-evaluation environment plus what the functions need.
// The nested facts live here and env points at them, so that expr reads
// them without copying structs into interfaces.
type state struct {
	env    env
	nested struct {
		dnsbl              dnsblFacts
		iprev              iprevFacts
		sender, rcpt, from address
		spf                authFacts
		dkim               dkimFacts
		dmarc              dmarcFacts
	}
	facts  *Facts
	ctx    context.Context
	engine *Engine
	set    *Set
	rule   *rule
	filled int
	scans  map[scanKey]*scanned // literal scans of long texts (see match)
	memos  []*string            // values of the set's memos, by index
	timed  bool                 // this evaluation's rules are timed (TimeEvery)
	elems  []reflect.Value      // the elements a compiled predicate reads (#), innermost last
	// groupVals are the fact groups' values the compiled conditions read
	// in this evaluation, by Set.groupIndex (invalid: not read yet)
	groupVals []reflect.Value
}

func newState(ctx context.Context, e *Engine, set *Set, f *Facts) *state {
	s := &state{facts: f, ctx: ctx, engine: e, set: set}
	v := &s.env
	n := &s.nested
	v.DNSBL, v.IPRev, v.Sender, v.Rcpt, v.From = &n.dnsbl, &n.iprev, &n.sender, &n.rcpt, &n.from
	v.SPF, v.DKIM, v.DMARC = &n.spf, &n.dkim, &n.dmarc
	c := &f.Conn
	if c.IP.IsValid() {
		v.IP = c.IP.Unmap().String()
	}
	v.PTR = strings.ToLower(strings.TrimSuffix(c.PTR, "."))
	v.TLS, v.Listener, v.Mode, v.Trusted = c.TLS, c.Listener, c.Mode, c.Trusted
	v.HELO = strings.ToLower(c.HELO)
	v.AuthUser = c.AuthUser
	v.DNSBL.Score = f.DNSBL.Score
	for _, h := range f.DNSBL.Hits {
		if !h.Allowed {
			v.DNSBL.Hits = append(v.DNSBL.Hits, h.Zone)
		}
	}
	v.DNSBL.Listed = len(v.DNSBL.Hits) > 0
	v.DNSBL.Errors = f.DNSBL.Errors
	*v.IPRev = iprevFacts{Result: string(f.IPRev.Result), Names: f.IPRev.Names}
	v.Score = f.Score
	*v.Sender = makeAddress(f.Env.Sender)
	v.Size = int(f.Env.Size)
	v.Recipients = f.Env.Recipients
	*v.Rcpt = makeAddress(f.Rcpt)
	*v.SPF = authFacts{Result: string(f.SPF.Result), Domain: strings.ToLower(f.SPF.Domain)}
	*v.DKIM = dkimFacts{Result: string(f.DKIM.Result), Domains: f.DKIM.PassingDomains(), Unsigned: f.DKIM.UnsignedBytes()}
	*v.DMARC = dmarcFacts{Result: string(f.DMARC.Result), Policy: f.DMARC.Policy, Domain: strings.ToLower(f.DMARC.Domain), Sampled: f.DMARC.Sampled}
	if m := f.Message; m != nil {
		v.Subject = m.Subject()
		if v.Size == 0 {
			v.Size = int(m.Size())
		}
	}
	v.Hits = f.Hits
	v.Facts = s
	v.Header = s.header
	v.Headers = s.headers
	v.RateLimit = s.ratelimit
	return s
}

// fill computes the lazy facts a rule needs (content.Message caches them).
func (s *state) fill(need int) {
	m := s.facts.Message
	if m == nil || need&^s.filled == 0 {
		return
	}
	if need&needBody != 0 && s.filled&needBody == 0 {
		s.env.Body = m.Text()
	}
	if need&needMalformed != 0 {
		s.env.Malformed = m.Malformed()
	}
	if need&needAddresses != 0 && s.filled&needAddresses == 0 {
		*s.env.From = makeAddress(m.From())
		s.env.To = m.To()
	}
	s.filled |= need
}

func (s *state) header(name string) string {
	if s.facts.Message == nil {
		return ""
	}
	return s.facts.Message.Header(name)
}

func (s *state) headers(name string) []string {
	if s.facts.Message == nil {
		return nil
	}
	return s.facts.Message.HeaderValues(name)
}

// ratelimit counts one event for key in the rule's fixed window and reports
// whether the key went over count. The key is namespaced by rule name.
func (s *state) ratelimit(key string, count int, window string) (bool, error) {
	if s.engine == nil || s.engine.limiter == nil {
		return false, nil
	}
	d, ok := s.rule.windows[window]
	if !ok {
		var err error
		if d, err = time.ParseDuration(window); err != nil {
			return false, err
		}
	}
	allowed, err := s.engine.limiter.Allow(s.ctx, s.rule.Name+"\x00"+key, count, d)
	if err != nil {
		return false, fmt.Errorf("ratelimit: %w", err)
	}
	return !allowed, nil
}
