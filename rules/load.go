package rules

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"

	"moat/internal/reply"
)

// Action is what a rule does when its condition holds.
type Action string

// Actions. Terminal actions end the evaluation: the first one wins.
const (
	Continue   Action = ""           // no terminal decision: go on
	Accept     Action = "accept"     // terminal: skip later rules and built-in policy
	Reject     Action = "reject"     // terminal: 5xx
	Tempfail   Action = "tempfail"   // terminal: 4xx
	Greylist   Action = "greylist"   // terminal unless the triplet passed the delay
	Discard    Action = "discard"    // terminal: accept and drop
	Quarantine Action = "quarantine" // terminal: accept into quarantine
	AddHeader  Action = "add_header" // non-terminal
	Score      Action = "score"      // non-terminal: adds to the score
	Route      Action = "route"      // non-terminal: the last matching route wins
	Redirect   Action = "redirect"   // non-terminal: replaces recipients; the last match wins
	Log        Action = "log"        // non-terminal: recorded in Explain
	// Junk marks the message as spam: non-terminal, like a mark. Later
	// rules still run and a later terminal action (reject, quarantine …)
	// still wins; a message that is accepted is delivered to the junk
	// folder (local mailboxes) or tagged (relayed). Reaching
	// rules.score.tag marks it the same way.
	Junk Action = "junk"
)

// Verdict names the outcome of a decision with action a, as the logs and
// the metrics count it: rejected, tempfailed, greylisted, discarded,
// quarantined, or accepted (accept, continue and the non-terminal
// actions).
func (a Action) Verdict() string {
	switch a {
	case Reject:
		return "rejected"
	case Tempfail:
		return "tempfailed"
	case Greylist:
		return "greylisted"
	case Discard:
		return "discarded"
	case Quarantine:
		return "quarantined"
	case Junk:
		return "junk"
	}
	return "accepted"
}

// Terminal reports whether the action ends evaluation.
func (a Action) Terminal() bool {
	switch a {
	case Accept, Reject, Tempfail, Greylist, Discard, Quarantine:
		return true
	}
	return false
}

// actionStages: the stages each action may be used at (a load error otherwise).
var actionStages = map[Action]availability{
	Accept: {from: StageConnect}, Reject: {from: StageConnect}, Tempfail: {from: StageConnect},
	Greylist: {from: StageRcpt}, Discard: {from: StageMail}, Quarantine: {from: StageMail},
	AddHeader: {from: StageConnect}, Score: {from: StageConnect}, Route: {from: StageConnect},
	Redirect: {from: StageRcpt}, Log: {from: StageConnect}, Junk: {from: StageConnect},
}

// Header is a header field to add to an accepted message. Value is
// written after "Name: " as it is: one line for add_header; folded
// (CRLF and a tab, RFC 5322 §2.2.3) for the X-Spam-Status of SpamHeaders.
type Header struct {
	Name  string `yaml:"name"`
	Value string `yaml:"value"`
}

// LoadOptions are the composer's hooks into loading.
type LoadOptions struct {
	// ValidateRoute checks that a route named by a rule exists; nil accepts any name.
	ValidateRoute func(name string) error
	// FactGroups are the fact groups that checks contribute (see
	// FactGroup), in addition to the built-in ones.
	FactGroups []FactGroup
}

// Set is a compiled rule set: immutable, shared by evaluations.
type Set struct {
	cfg    Config
	files  []string
	stages [numStages][]*rule
	lists  map[string]*list
	count  int
	groups map[string]*FactGroup
	// groupIndex numbers the groups, for the values an evaluation keeps
	// (state.groupVals)
	groupIndex map[string]int
	memos      []*memo // shared lower(E) expressions (memo.go)
	// prefilter holds the compiled `matches` patterns and the one scanner
	// of their literals
	prefilter *prefilter
	// spamTests are the names of the score and junk rules: the tests an
	// X-Spam-Status field lists when they hit.
	spamTests map[string]bool
}

// Files returns the rule files of the set, in evaluation order.
func (s *Set) Files() []string { return s.files }

// Len returns the number of rules.
func (s *Set) Len() int { return s.count }

// Config returns the configuration the set was loaded with.
func (s *Set) Config() Config { return s.cfg }

type rule struct {
	Name     string
	File     string
	Line     int
	Stage    Stage
	Action   Action
	DryRun   bool
	Reply    *reply.Reply
	Score    float64
	Header   Header
	Route    string
	Redirect []string
	When     string

	prog    *vm.Program
	native  func(*state) bool // the condition as closures (native.go); nil: the VM only
	needs   int
	facts   []factPath
	windows map[string]time.Duration
}

type factPath struct {
	name string
	prog *vm.Program
}

// Error is one problem in a rule file, with its position.
type Error struct {
	File   string
	Line   int
	Column int
	Rule   string
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, max(e.Column, 1))
	}
	if e.Rule != "" {
		fmt.Fprintf(&b, ": rule %q", e.Rule)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

const (
	maxFileBytes = 4 << 20
	maxRules     = 10000
	maxExprLen   = 16 << 10
)

// Load reads, compiles and type-checks every rule file of cfg and the
// lists they use. The error lists every problem found (errors.Join of
// *Error), each with file:line:column and the rule name.
func Load(cfg Config, opt LoadOptions) (*Set, error) {
	s, errs := load(cfg, opt)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// Check loads paths with the default configuration and returns every
// problem (for `moat rules check`). Lists named by the rules must then be
// absent; use CheckConfig to check with lists.
func Check(paths []string) []error {
	cfg := DefaultConfig()
	cfg.Paths = paths
	return CheckConfig(cfg, LoadOptions{})
}

// CheckConfig is Check with a full configuration.
func CheckConfig(cfg Config, opt LoadOptions) []error {
	_, errs := load(cfg, opt)
	return errs
}

// expandPaths returns the files matched by the globs, sorted by file name
// (then full path), without duplicates.
func expandPaths(globs []string) ([]string, []error) {
	seen := map[string]bool{}
	var files []string
	var errs []error
	for _, g := range globs {
		matches, err := filepath.Glob(g)
		if err != nil {
			errs = append(errs, &Error{File: g, Msg: "bad glob: " + err.Error()})
			continue
		}
		if len(matches) == 0 && !strings.ContainsAny(g, "*?[") {
			errs = append(errs, &Error{File: g, Msg: "no such file"})
		}
		for _, m := range matches {
			if st, err := os.Stat(m); err != nil || st.IsDir() || seen[m] {
				continue
			}
			seen[m] = true
			files = append(files, m)
		}
	}
	sort.SliceStable(files, func(i, j int) bool {
		bi, bj := filepath.Base(files[i]), filepath.Base(files[j])
		if bi != bj {
			return bi < bj
		}
		return files[i] < files[j]
	})
	return files, errs
}

func load(cfg Config, opt LoadOptions) (*Set, []error) {
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	s := &Set{cfg: cfg, lists: map[string]*list{}, spamTests: map[string]bool{}}
	for name, path := range cfg.Lists {
		l, err := loadList(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("rules.lists.%s: %w", name, err))
			continue
		}
		s.lists[name] = l
	}
	files, ferrs := expandPaths(cfg.Paths)
	errs = append(errs, ferrs...)
	s.files = files
	c, err := newCompiler(s, opt)
	if err != nil {
		return s, append(errs, err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, &Error{File: f, Msg: err.Error()})
			continue
		}
		errs = append(errs, c.file(f, data)...)
	}
	s.prefilter.build()
	return s, errs
}

// compiler compiles the rule files of one set.
type compiler struct {
	set   *Set
	opt   LoadOptions
	names map[string]string // rule name -> file:line of its first definition
	exprs []expr.Option
	// memoOpts: exprs[:memoOpts] compile a memo (all but its own patch)
	memoOpts  int
	memoBySrc map[string]int
	// detached: the lower(E) calls the memo patch took out of the
	// condition being compiled, for its inspector
	detached []ast.Node
}

func newCompiler(s *Set, opt LoadOptions) (*compiler, error) {
	c := &compiler{set: s, opt: opt, names: map[string]string{}}
	groups, gopts, err := compileGroups(append(builtinGroups(), opt.FactGroups...))
	if err != nil {
		return nil, err
	}
	s.groups = groups
	s.groupIndex = make(map[string]int, len(groups))
	for name := range groups {
		s.groupIndex[name] = len(s.groupIndex)
	}
	c.exprs = []expr.Option{
		expr.Env(env{}),
		expr.MaxNodes(5000),
		expr.Function("in_list", func(p ...any) (any, error) {
			return s.inList(p[0].(string), p[1].(string)), nil
		}, new(func(name, value string) bool)),
		expr.Function("cidr", func(p ...any) (any, error) {
			return cidrContains(p[0].(string), p[1].(string))
		}, new(func(ip, prefix string) bool)),
	}
	s.prefilter = &prefilter{}
	c.exprs = append(c.exprs, gopts...)
	c.exprs = append(c.exprs,
		expr.Function(matchFunc, func(p ...any) (any, error) {
			return p[0].(*state).match(p[1].(string), p[2].(int)), nil
		}, new(func(st *state, text string, matcher int) bool)),
		expr.Patch(matchPatcher{s.prefilter}))
	c.memoOpts = len(c.exprs)
	c.exprs = append(c.exprs,
		expr.Function(memoFunc, func(p ...any) (any, error) {
			return p[0].(*state).memo(p[1].(int))
		}, new(func(st *state, memo int) (string, error))),
		expr.Patch(memoPatcher{c}))
	return c, nil
}

// inList is the in_list function: value is on the named list.
func (s *Set) inList(name, value string) bool {
	l := s.lists[name]
	return l != nil && l.match(value)
}

// cidrContains is the cidr function: ip (not an address: false) is in
// prefix.
func cidrContains(ip, prefix string) (bool, error) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false, nil
	}
	pf, err := netip.ParsePrefix(prefix)
	if err != nil {
		return false, err
	}
	return pf.Contains(a.Unmap()), nil
}

// ruleKeys are the keys a rule may have.
var ruleKeys = map[string]bool{
	"name": true, "stage": true, "when": true, "action": true, "reply": true, "score": true,
	"header": true, "route": true, "redirect": true, "dry_run": true, "description": true,
}

func (c *compiler) file(path string, data []byte) []error {
	if len(data) > maxFileBytes {
		return []error{&Error{File: path, Msg: fmt.Sprintf("file larger than %d bytes", maxFileBytes)}}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return []error{yamlError(path, err)}
	}
	if len(doc.Content) == 0 {
		return nil // empty file
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return []error{&Error{File: path, Line: root.Line, Column: root.Column, Msg: "want a mapping with a `rules:` list"}}
	}
	var errs []error
	var rulesNode *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k := root.Content[i]
		if k.Value != "rules" {
			errs = append(errs, &Error{File: path, Line: k.Line, Column: k.Column, Msg: fmt.Sprintf("unknown key %q (want rules)", k.Value)})
			continue
		}
		rulesNode = root.Content[i+1]
	}
	if rulesNode == nil || rulesNode.Kind == yaml.ScalarNode && rulesNode.Tag == "!!null" {
		return errs
	}
	if rulesNode.Kind != yaml.SequenceNode {
		return append(errs, &Error{File: path, Line: rulesNode.Line, Column: rulesNode.Column, Msg: "rules: want a list"})
	}
	for _, rn := range rulesNode.Content {
		if c.set.count >= maxRules {
			return append(errs, &Error{File: path, Line: rn.Line, Column: rn.Column, Msg: fmt.Sprintf("more than %d rules", maxRules)})
		}
		r, rerrs := c.rule(path, rn)
		errs = append(errs, rerrs...)
		if r != nil && len(rerrs) == 0 {
			c.set.stages[r.Stage] = append(c.set.stages[r.Stage], r)
			c.set.count++
			if r.Action == Score || r.Action == Junk {
				c.set.spamTests[r.Name] = true
			}
		}
	}
	return errs
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func yamlError(path string, err error) error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return &Error{File: path, Line: n, Column: 1, Msg: "YAML: " + m[2]}
	}
	return &Error{File: path, Msg: "YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

var ruleName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)

func (c *compiler) rule(path string, n *yaml.Node) (*rule, []error) {
	if n.Kind != yaml.MappingNode {
		return nil, []error{&Error{File: path, Line: n.Line, Column: n.Column, Msg: "a rule must be a mapping"}}
	}
	r := &rule{File: path, Line: n.Line}
	var errs []error
	keys := map[string]*yaml.Node{}
	vals := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		keys[k.Value], vals[k.Value] = k, v
	}
	if v := vals["name"]; v != nil {
		r.Name = v.Value
	}
	fail := func(node *yaml.Node, format string, args ...any) {
		e := &Error{File: path, Rule: r.Name, Msg: fmt.Sprintf(format, args...)}
		if node != nil {
			e.Line, e.Column = node.Line, node.Column
		}
		errs = append(errs, e)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; !ruleKeys[k.Value] {
			fail(k, "unknown key %q", k.Value)
		}
	}
	str := func(key string) (string, *yaml.Node) {
		v := vals[key]
		if v == nil {
			return "", keys[key]
		}
		if v.Kind != yaml.ScalarNode {
			fail(v, "%s: want a string", key)
			return "", v
		}
		return v.Value, v
	}
	switch name, node := str("name"); {
	case vals["name"] == nil:
		fail(n, "name: missing")
	case !ruleName.MatchString(name):
		fail(node, "name: %q must be 1-128 letters, digits, _ . : -", name)
	case c.names[name] != "":
		fail(node, "name: %q already used at %s", name, c.names[name])
	default:
		c.names[name] = fmt.Sprintf("%s:%d", path, node.Line)
	}
	stage, stageNode := str("stage")
	if vals["stage"] == nil {
		fail(n, "stage: missing (connect, helo, mail, rcpt or data)")
	} else if st, err := ParseStage(stage); err != nil {
		fail(stageNode, "stage: %v", err)
	} else {
		r.Stage = st
	}
	action, actionNode := str("action")
	r.Action = Action(action)
	avail, ok := actionStages[r.Action]
	switch {
	case vals["action"] == nil:
		fail(n, "action: missing")
	case !ok || r.Action == Continue:
		fail(actionNode, "action: unknown action %q", action)
	case r.Stage < avail.from:
		fail(actionNode, "action: %s is not possible at stage %s (from %s on)", action, r.Stage, avail.from)
	}
	if v := vals["dry_run"]; v != nil {
		if err := v.Decode(&r.DryRun); err != nil {
			fail(v, "dry_run: want true or false")
		}
	}
	// Action arguments: each only with its action.
	needs := map[string]Action{"score": Score, "header": AddHeader, "route": Route, "redirect": Redirect}
	for key, a := range needs {
		if vals[key] != nil && r.Action != a {
			fail(keys[key], "%s: only with action %s", key, a)
		}
		if vals[key] == nil && r.Action == a {
			fail(actionNode, "action %s needs %s:", a, key)
		}
	}
	if v := vals["score"]; v != nil && r.Action == Score {
		if err := v.Decode(&r.Score); err != nil || r.Score != r.Score || r.Score > 1e6 || r.Score < -1e6 {
			fail(v, "score: want a number between -1e6 and 1e6")
		}
	}
	if v := vals["header"]; v != nil && r.Action == AddHeader {
		if err := v.Decode(&r.Header); err != nil {
			fail(v, "header: want {name: ..., value: ...}")
		} else if err := validateHeader(r.Header); err != nil {
			fail(v, "header: %v", err)
		}
	}
	if v := vals["route"]; v != nil && r.Action == Route {
		r.Route = v.Value
		if v.Kind != yaml.ScalarNode || r.Route == "" {
			fail(v, "route: want a route name")
		} else if c.opt.ValidateRoute != nil {
			if err := c.opt.ValidateRoute(r.Route); err != nil {
				fail(v, "route: %v", err)
			}
		}
	}
	if v := vals["redirect"]; v != nil && r.Action == Redirect {
		if err := v.Decode(&r.Redirect); err != nil {
			var one string
			if v.Decode(&one) == nil {
				r.Redirect = []string{one}
			} else {
				fail(v, "redirect: want an address or a list of addresses")
			}
		}
		if len(r.Redirect) == 0 || len(r.Redirect) > 100 {
			fail(v, "redirect: want 1 to 100 addresses")
		}
		for _, a := range r.Redirect {
			if !validAddress(a) {
				fail(v, "redirect: %q is not an address", a)
			}
		}
	}
	if v := vals["reply"]; v != nil {
		text, _ := str("reply")
		r.Reply = c.reply(r.Action, text, v, fail)
	} else {
		r.Reply = defaultReply(r.Action)
	}
	when, whenNode := str("when")
	if vals["when"] == nil {
		when, whenNode = "true", n
	}
	r.When = when
	if len(errs) == 0 || (vals["when"] != nil && vals["stage"] != nil) {
		errs = append(errs, c.compile(r, when, whenNode, keys["when"])...)
	}
	return r, errs
}

func (c *compiler) reply(a Action, text string, v *yaml.Node, fail func(*yaml.Node, string, ...any)) *reply.Reply {
	var class int
	switch a {
	case Reject:
		class = 5
	case Tempfail, Greylist:
		class = 4
	default:
		fail(v, "reply: only with reject, tempfail or greylist")
		return nil
	}
	rp, err := reply.Parse(text)
	if err != nil {
		fail(v, "reply: %v", err)
		return nil
	}
	if rp.Code/100 != class {
		fail(v, "reply: action %s needs a %dxx code, not %d", a, class, rp.Code)
		return nil
	}
	if !strings.HasPrefix(strings.TrimPrefix(strings.TrimSpace(text), strconv.Itoa(rp.Code)+" "), rp.Enhanced.String()) {
		// RFC 3463 §2: no enhanced code given; keep the derived class.0.0 but
		// prefer the policy subject (x.7.1) for rule replies.
		rp.Enhanced = reply.Enhanced{class, 7, 1}
	}
	if rp.Text == "" {
		rp.Text = defaultReply(a).Text
	}
	if len(rp.Text) > 400 || !utf8.ValidString(rp.Text) {
		fail(v, "reply: text must be valid UTF-8 of at most 400 bytes")
	}
	return rp
}

func defaultReply(a Action) *reply.Reply {
	switch a {
	case Reject:
		return reply.New(550, 7, 1, "Rejected by policy")
	case Tempfail:
		return reply.New(451, 7, 1, "Temporarily rejected by policy, please try again later")
	case Greylist:
		return reply.New(451, 7, 1, "Greylisted, please try again later")
	}
	return nil
}

var headerName = regexp.MustCompile(`^[!-9;-~]{1,76}$`) // RFC 5322 §3.6.8 ftext

func validateHeader(h Header) error {
	if !headerName.MatchString(h.Name) {
		return fmt.Errorf("name %q is not a header field name (RFC 5322 §3.6.8)", h.Name)
	}
	if strings.ContainsAny(h.Value, "\r\n\x00") || len(h.Value) > 900 || !utf8.ValidString(h.Value) {
		return fmt.Errorf("value of %s must be one line of at most 900 bytes", h.Name)
	}
	return nil
}

func validAddress(a string) bool {
	i := strings.LastIndexByte(a, '@')
	return i > 0 && i < len(a)-1 && len(a) <= 254 && !strings.ContainsAny(a, " \t\r\n<>,")
}

// compile compiles and checks the condition, then inspects its AST for
// stage availability, constant arguments and the facts it reads.
func (c *compiler) compile(r *rule, src string, node, key *yaml.Node) []error {
	pos := func(line, col int) (int, int) { return exprPosition(node, key, line, col) }
	ferr := func(line, col int, format string, args ...any) error {
		l, cl := pos(line, col)
		return &Error{File: r.File, Line: l, Column: cl, Rule: r.Name, Msg: "when: " + fmt.Sprintf(format, args...)}
	}
	if len(src) > maxExprLen {
		return []error{ferr(1, 0, "condition longer than %d bytes", maxExprLen)}
	}
	c.detached = c.detached[:0]
	prog, err := expr.Compile(src, append(c.exprs, expr.AsBool())...)
	if err != nil {
		var fe *file.Error
		if errors.As(err, &fe) {
			return []error{ferr(fe.Line, fe.Column, "%s", fe.Message)}
		}
		return []error{ferr(1, 0, "%v", err)}
	}
	r.prog = prog
	r.native = compileNative(c.set, prog.Node())
	ins := &inspector{set: c.set, stage: r.Stage, src: src, rule: r, paths: map[string]bool{}, roots: map[string]bool{}}
	root := prog.Node()
	ast.Walk(&root, ins)
	for i := range c.detached {
		ast.Walk(&c.detached[i], ins)
	}
	var errs []error
	for _, p := range ins.problems {
		l, col := offsetToLineCol(src, p.offset)
		errs = append(errs, ferr(l, col, "%s", p.msg))
	}
	// the facts a condition reads, for Explain
	names := make([]string, 0, len(ins.paths))
	for p := range ins.paths {
		names = append(names, p)
	}
	for root := range ins.roots {
		if !ins.memberRoots[root] {
			names = append(names, root)
		}
	}
	sort.Strings(names)
	for _, p := range names {
		fp, err := expr.Compile(p, c.exprs...)
		if err == nil {
			r.facts = append(r.facts, factPath{name: p, prog: fp})
		}
	}
	return errs
}

type problem struct {
	offset int
	msg    string
}

// inspector walks a compiled condition.
type inspector struct {
	set         *Set
	stage       Stage
	src         string
	rule        *rule
	problems    []problem
	paths       map[string]bool // spf.result, header("Subject")
	roots       map[string]bool // bare facts read: score, body
	memberRoots map[string]bool
}

func (in *inspector) add(n ast.Node, format string, args ...any) {
	in.problems = append(in.problems, problem{offset: n.Location().From, msg: fmt.Sprintf(format, args...)})
}

func (in *inspector) Visit(np *ast.Node) {
	switch n := (*np).(type) {
	case *ast.IdentifierNode:
		a, ok := factStage[n.Value]
		if !ok {
			return
		}
		if in.stage < a.from || (a.only && in.stage != a.from) {
			where := "from stage " + a.from.String() + " on"
			if a.only {
				where = "only at stage " + a.from.String()
			}
			in.add(n, "%s is not known at stage %s (%s)", n.Value, in.stage, where)
		}
		switch n.Value {
		case "body":
			in.rule.needs |= needBody
		case "malformed":
			in.rule.needs |= needMalformed
		case "from", "to":
			in.rule.needs |= needAddresses
		case "header", "headers", "ratelimit", "in_list", "cidr":
			return
		}
		in.roots[n.Value] = true
	case *ast.MemberNode:
		prop, ok2 := n.Property.(*ast.StringNode)
		if call, isCall := n.Node.(*ast.CallNode); isCall && ok2 {
			if g, isGroup := groupOf(call); isGroup {
				in.paths[g+"."+prop.Value] = true
				if in.memberRoots == nil {
					in.memberRoots = map[string]bool{}
				}
				in.memberRoots[g] = true
			}
		}
		id, ok := n.Node.(*ast.IdentifierNode)
		if ok && ok2 {
			if _, fact := factStage[id.Value]; fact {
				in.paths[id.Value+"."+prop.Value] = true
				if in.memberRoots == nil {
					in.memberRoots = map[string]bool{}
				}
				in.memberRoots[id.Value] = true
			}
		}
	case *ast.CallNode:
		in.call(n)
	}
}

func (in *inspector) call(n *ast.CallNode) {
	id, ok := n.Callee.(*ast.IdentifierNode)
	if !ok {
		return
	}
	if name, isGroup := groupOf(n); isGroup {
		if g := in.set.groups[name]; g != nil {
			if in.stage < g.Stage {
				in.add(n, "%s is not known at stage %s (from stage %s on)", name, in.stage, g.Stage)
			}
			in.roots[name] = true
		}
		return
	}
	constString := func(i int) (string, bool) {
		if i >= len(n.Arguments) {
			return "", false
		}
		s, ok := n.Arguments[i].(*ast.StringNode)
		if !ok {
			in.add(n.Arguments[i], "argument %d of %s must be a constant string", i+1, id.Value)
			return "", false
		}
		return s.Value, true
	}
	switch id.Value {
	case "header", "headers":
		if len(n.Arguments) == 1 {
			if s, ok := n.Arguments[0].(*ast.StringNode); ok {
				in.paths[fmt.Sprintf("%s(%q)", id.Value, s.Value)] = true
			}
		}
	case "cidr":
		if s, ok := constString(1); ok {
			if _, err := netip.ParsePrefix(s); err != nil {
				in.add(n.Arguments[1], "cidr: %q is not a CIDR prefix", s)
			}
		}
	case "in_list":
		if s, ok := constString(0); ok && in.set.lists[s] == nil {
			if _, configured := in.set.cfg.Lists[s]; !configured {
				in.add(n.Arguments[0], "in_list: no list named %q in rules.lists", s)
			}
		}
	case "ratelimit":
		if len(n.Arguments) == 3 {
			if c, ok := n.Arguments[1].(*ast.IntegerNode); !ok || c.Value < 1 {
				in.add(n.Arguments[1], "ratelimit: count must be a positive integer constant")
			}
			if s, ok := constString(2); ok {
				d, err := time.ParseDuration(s)
				if err != nil || d < time.Second || d > 31*24*time.Hour {
					in.add(n.Arguments[2], "ratelimit: window %q must be a duration between 1s and 744h", s)
				} else {
					if in.rule.windows == nil {
						in.rule.windows = map[string]time.Duration{}
					}
					in.rule.windows[s] = d
				}
			}
		}
	}
}

// offsetToLineCol turns a rune offset in src into a 1-based line and a
// 0-based column.
func offsetToLineCol(src string, off int) (int, int) {
	line, col, i := 1, 0, 0
	for _, r := range src {
		if i >= off {
			break
		}
		i++
		if r == '\n' {
			line, col = line+1, 0
		} else {
			col++
		}
	}
	return line, col
}

// exprPosition maps a position inside a condition to the file. For a
// single-line scalar the column is exact (quotes counted); for block
// scalars (| and >) the content starts on the next line, indented from the
// key.
func exprPosition(node, key *yaml.Node, line, col int) (int, int) {
	if node == nil {
		return 0, 0
	}
	switch node.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		indent := node.Column
		if key != nil {
			indent = key.Column + 2
		}
		return node.Line + line, indent + col
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		if line == 1 {
			return node.Line, node.Column + 1 + col
		}
	default:
		if line == 1 {
			return node.Line, node.Column + col
		}
	}
	return node.Line + line - 1, col + 1
}
