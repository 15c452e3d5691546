package rules

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"moat/policy"
)

// writeSet writes rule files into a temp dir and returns a config for them.
func writeSet(t testing.TB, files map[string]string) Config {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := DefaultConfig()
	cfg.Paths = []string{filepath.Join(dir, "*.yaml")}
	return cfg
}

func mustLoad(t testing.TB, files map[string]string) *Set {
	t.Helper()
	s, err := Load(writeSet(t, files), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var posRE = regexp.MustCompile(`\.yaml:\d+:\d+: `)

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, rules, want string
		line, col         int // 0: do not check
	}{
		{"yaml syntax", "rules:\n  - name: a\n   stage: x\n", "YAML", 0, 0},
		{"expr syntax", "rules:\n  - name: r1\n    stage: mail\n    when: spf.result == \n    action: log\n", "unexpected token", 0, 0},
		{"type error", "rules:\n  - name: r1\n    stage: mail\n    when: spf.result == 1\n    action: log\n", "mismatched types string and int", 4, 22},
		{"quoted column", "rules:\n  - name: r1\n    stage: mail\n    when: \"spf.result == 1\"\n    action: log\n", "mismatched types", 4, 23},
		{"unknown fact", "rules:\n  - name: r1\n    stage: mail\n    when: spf.color == \"red\"\n    action: log\n", "no field color", 4, 15},
		{"unknown name", "rules:\n  - name: r1\n    stage: mail\n    when: nonsense > 2\n    action: log\n", "unknown name nonsense", 0, 0},
		{"bad regex", "rules:\n  - name: r1\n    stage: mail\n    when: sender.domain matches \"(\"\n    action: log\n", "error parsing regexp", 4, 0},
		{"fact not at stage", "rules:\n  - name: r1\n    stage: mail\n    when: dkim.result == \"pass\"\n    action: log\n", "dkim is not known at stage mail", 4, 11},
		{"rcpt only at rcpt", "rules:\n  - name: r1\n    stage: data\n    when: rcpt.domain == \"x\"\n    action: log\n", "only at stage rcpt", 0, 0},
		{"block scalar", "rules:\n  - name: r1\n    stage: connect\n    when: |\n      ip != \"\" &&\n        body == \"x\"\n    action: log\n", "body is not known", 6, 0},
		{"reply class", "rules:\n  - name: r1\n    stage: mail\n    action: reject\n    reply: \"451 4.7.1 no\"\n", "needs a 5xx code", 5, 12},
		{"enhanced disagrees", "rules:\n  - name: r1\n    stage: mail\n    action: reject\n    reply: \"550 4.7.1 no\"\n", "disagrees", 0, 0},
		{"reply code range", "rules:\n  - name: r1\n    stage: mail\n    action: tempfail\n    reply: \"650 6.7.1 no\"\n", "reply", 0, 0},
		{"reply on score", "rules:\n  - name: r1\n    stage: mail\n    action: score\n    score: 1\n    reply: \"550 no\"\n", "only with reject", 0, 0},
		{"unknown action", "rules:\n  - name: r1\n    stage: mail\n    action: explode\n", "unknown action", 4, 13},
		{"action at wrong stage", "rules:\n  - name: r1\n    stage: connect\n    action: greylist\n", "not possible at stage connect", 0, 0},
		{"unknown key", "rules:\n  - name: r1\n    stage: mail\n    action: log\n    wen: true\n", "unknown key \"wen\"", 5, 5},
		{"duplicate name", "rules:\n  - {name: r1, stage: mail, action: log}\n  - {name: r1, stage: mail, action: log}\n", "already used", 0, 0},
		{"missing name", "rules:\n  - {stage: mail, action: log}\n", "name: missing", 0, 0},
		{"bad stage", "rules:\n  - {name: r1, stage: later, action: log}\n", "unknown stage", 0, 0},
		{"score missing", "rules:\n  - {name: r1, stage: mail, action: score}\n", "needs score", 0, 0},
		{"bad header", "rules:\n  - {name: r1, stage: data, action: add_header, header: {name: \"X Bad\", value: v}}\n", "not a header field name", 0, 0},
		{"bad redirect", "rules:\n  - {name: r1, stage: rcpt, action: redirect, redirect: [nobody]}\n", "not an address", 0, 0},
		{"bad cidr", "rules:\n  - {name: r1, stage: connect, action: log, when: 'cidr(ip, \"10.0.0.0/33\")'}\n", "not a CIDR prefix", 0, 0},
		{"cidr not constant", "rules:\n  - {name: r1, stage: connect, action: log, when: 'cidr(ip, ptr)'}\n", "constant string", 0, 0},
		{"unknown list", "rules:\n  - {name: r1, stage: mail, action: log, when: 'in_list(\"nope\", sender.address)'}\n", "no list named", 0, 0},
		{"bad window", "rules:\n  - {name: r1, stage: mail, action: log, when: 'ratelimit(sender.domain, 10, \"soon\")'}\n", "window", 0, 0},
		{"bad count", "rules:\n  - {name: r1, stage: mail, action: log, when: 'ratelimit(sender.domain, 0, \"1h\")'}\n", "count", 0, 0},
		{"not bool", "rules:\n  - {name: r1, stage: mail, action: log, when: 'score'}\n", "expected bool", 0, 0},
		{"top level key", "rulez: []\n", "unknown key", 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(writeSet(t, map[string]string{"a.yaml": tt.rules}), LoadOptions{})
			if err == nil {
				t.Fatal("want an error")
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) {
				t.Fatalf("error %q does not contain %q", msg, tt.want)
			}
			if !posRE.MatchString(msg) {
				t.Errorf("error %q has no file:line:col", msg)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("not an *Error: %T", err)
			}
			if tt.line > 0 && e.Line != tt.line {
				t.Errorf("line %d, want %d (%s)", e.Line, tt.line, msg)
			}
			if tt.col > 0 && e.Column != tt.col {
				t.Errorf("column %d, want %d (%s)", e.Column, tt.col, msg)
			}
			if strings.Contains(tt.rules, "name: r1") && !strings.Contains(msg, `rule "r1"`) && tt.name != "duplicate name" {
				t.Errorf("error %q does not name the rule", msg)
			}
		})
	}
}

func TestLoadAllErrorsReported(t *testing.T) {
	errs := CheckConfig(writeSet(t, map[string]string{
		"a.yaml": "rules:\n  - {name: a, stage: mail, action: log, when: 'x > 1'}\n  - {name: b, stage: mail, action: log, when: 'dkim.result == \"\"'}\n",
		"b.yaml": "rules: [",
	}), LoadOptions{})
	if len(errs) != 3 {
		t.Fatalf("want 3 errors, got %d: %v", len(errs), errs)
	}
}

func TestRouteValidator(t *testing.T) {
	cfg := writeSet(t, map[string]string{"a.yaml": "rules:\n  - {name: r, stage: mail, action: route, route: nowhere}\n"})
	_, err := Load(cfg, LoadOptions{ValidateRoute: func(n string) error {
		if n != "backend" {
			return errors.New("no route " + n)
		}
		return nil
	}})
	if err == nil || !strings.Contains(err.Error(), "no route nowhere") {
		t.Fatalf("err %v", err)
	}
}

func baseFacts() *Facts {
	return &Facts{
		Conn: policy.Conn{ID: "c1", IP: netip.MustParseAddr("192.0.2.10"), HELO: "mail.example.com", PTR: "mail.example.com.", Listener: "mx", Mode: "mx"},
		Env:  policy.Envelope{Sender: "Alice@Example.COM", Recipients: []string{"bob@example.org"}},
		SPF:  policy.SPF{Result: policy.ResultPass, Domain: "example.com"},
		Rcpt: "bob@example.org",
	}
}

func TestEvaluateSemantics(t *testing.T) {
	rules := `rules:
  - {name: s1, stage: mail, action: score, score: 2, when: 'sender.domain == "example.com"'}
  - {name: h1, stage: mail, action: add_header, header: {name: X-Test, value: one}}
  - {name: dry, stage: mail, action: reject, dry_run: true, when: 'score >= 2'}
  - {name: s2, stage: mail, action: score, score: 1.5, when: 'score >= 2'}
  - {name: rt, stage: mail, action: route, route: backend}
  - {name: acc, stage: mail, action: accept, when: 'sender.local == "alice"'}
  - {name: never, stage: mail, action: reject}
  - {name: rej, stage: rcpt, action: reject, reply: "550 5.1.1 No such user", when: 'rcpt.domain == "example.org" && cidr(ip, "192.0.2.0/24")'}
  - {name: after, stage: rcpt, action: tempfail}
  - {name: rd, stage: data, action: redirect, redirect: [quarantine@example.org], when: 'subject contains "x"'}
`
	s := mustLoad(t, map[string]string{"a.yaml": rules})
	e := NewEngine(s, EngineOptions{})
	ctx := context.Background()

	v := e.Evaluate(ctx, StageMail, baseFacts())
	if v.Action != Accept || v.Rule != "acc" {
		t.Fatalf("mail: %+v", v)
	}
	if v.Score != 3.5 || len(v.Headers) != 1 || v.Route != "backend" {
		t.Errorf("score %v headers %v route %q", v.Score, v.Headers, v.Route)
	}
	if len(v.DryRunHits) != 1 || v.DryRunHits[0] != "dry: reject" {
		t.Errorf("dry run %v", v.DryRunHits)
	}
	if v.IncidentID != "" || v.Reply != nil {
		t.Errorf("accept carries a reply: %+v", v)
	}
	var names []string
	for _, h := range v.Explain {
		names = append(names, h.Rule)
	}
	if strings.Join(names, ",") != "s1,h1,dry,s2,rt,acc" {
		t.Errorf("explain %v", names)
	}
	if got := v.Explain[0].Facts["sender.domain"]; got != "example.com" {
		t.Errorf("explain facts %v", v.Explain[0].Facts)
	}

	v = e.Evaluate(ctx, StageRcpt, baseFacts())
	if v.Action != Reject || v.Rule != "rej" || v.Reply == nil || v.Reply.Code != 550 || v.Reply.Enhanced.String() != "5.1.1" {
		t.Fatalf("rcpt: %+v", v)
	}
	if !regexp.MustCompile(`^No such user \[incident [A-Z2-7]{10}\]$`).MatchString(v.Reply.Text) || !strings.Contains(v.Reply.Text, v.IncidentID) {
		t.Errorf("reply text %q", v.Reply.Text)
	}
	f := baseFacts()
	f.Accepted = true
	if v := e.Evaluate(ctx, StageRcpt, f); v.Action != Accept {
		t.Errorf("accepted earlier: %+v", v)
	}
	// Explain as log fields does not panic and names the incident.
	if fs := Explain(v); len(fs) < 3 {
		t.Errorf("fields %v", fs)
	}
}

func TestRuntimeErrorTempfails(t *testing.T) {
	s := mustLoad(t, map[string]string{"a.yaml": "rules:\n  - {name: div, stage: mail, action: accept, when: 'size % int(score) == 0'}\n"})
	v := NewEngine(s, EngineOptions{}).Evaluate(context.Background(), StageMail, baseFacts())
	if v.Action != Tempfail || v.Err == nil || v.Reply.Code != 451 || v.Reply.Enhanced.String() != "4.3.0" || !strings.Contains(v.Reply.Text, v.IncidentID) {
		t.Fatalf("%+v", v)
	}
	if strings.Contains(v.Reply.Text, "divide") {
		t.Errorf("internal text leaked: %q", v.Reply.Text)
	}
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestGreylist(t *testing.T) {
	s := mustLoad(t, map[string]string{"a.yaml": "rules:\n  - {name: gl, stage: rcpt, action: greylist}\n  - {name: next, stage: rcpt, action: log}\n"})
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	e := NewEngine(s, EngineOptions{Clock: clk.now})
	ctx := context.Background()
	f := baseFacts()
	if v := e.Evaluate(ctx, StageRcpt, f); v.Action != Greylist || v.Reply.Code != 451 {
		t.Fatalf("first: %+v", v)
	}
	clk.t = clk.t.Add(time.Minute)
	if v := e.Evaluate(ctx, StageRcpt, f); v.Action != Greylist {
		t.Fatalf("too early: %+v", v)
	}
	clk.t = clk.t.Add(5 * time.Minute)
	// SPF passes: another address of the same domain, same /24, passes.
	f2 := baseFacts()
	f2.Env.Sender = "other@example.com"
	f2.Conn.IP = netip.MustParseAddr("192.0.2.99")
	if v := e.Evaluate(ctx, StageRcpt, f2); v.Action != Continue || len(v.Explain) != 2 {
		t.Fatalf("after delay: %+v", v)
	}
	// Without SPF pass the key is the address: a new triplet.
	f3 := baseFacts()
	f3.SPF.Result = policy.ResultNone
	if v := e.Evaluate(ctx, StageRcpt, f3); v.Action != Greylist {
		t.Fatalf("new triplet: %+v", v)
	}
	// Expiry forgets.
	clk.t = clk.t.Add(36 * 24 * time.Hour)
	if v := e.Evaluate(ctx, StageRcpt, f); v.Action != Greylist {
		t.Fatalf("after expiry: %+v", v)
	}
}

func TestGreylistKey(t *testing.T) {
	f := baseFacts()
	f.Conn.IP = netip.MustParseAddr("2001:db8:1:2:3::4")
	f.SPF.Result = policy.ResultFail
	if got := GreylistKey(f, StageRcpt); got != "2001:db8:1:2::/64|alice@example.com|bob@example.org" {
		t.Errorf("key %q", got)
	}
}

func TestRateLimit(t *testing.T) {
	s := mustLoad(t, map[string]string{"a.yaml": "rules:\n  - {name: rl, stage: mail, action: tempfail, when: 'ratelimit(sender.domain, 3, \"1h\")'}\n"})
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	e := NewEngine(s, EngineOptions{Clock: clk.now})
	for i := 1; i <= 5; i++ {
		v := e.Evaluate(context.Background(), StageMail, baseFacts())
		if want := i > 3; (v.Action == Tempfail) != want {
			t.Fatalf("message %d: %v", i, v.Action)
		}
	}
	clk.t = clk.t.Add(time.Hour)
	if v := e.Evaluate(context.Background(), StageMail, baseFacts()); v.Action != Continue {
		t.Fatalf("new window: %v", v.Action)
	}
}

type failLimiter struct{}

func (failLimiter) Allow(context.Context, string, int, time.Duration) (bool, error) {
	return false, errors.New("redis down")
}

func TestRateLimitErrorTempfails(t *testing.T) {
	s := mustLoad(t, map[string]string{"a.yaml": "rules:\n  - {name: rl, stage: mail, action: reject, when: 'ratelimit(sender.domain, 3, \"1h\")'}\n"})
	v := NewEngine(s, EngineOptions{Limiter: failLimiter{}}).Evaluate(context.Background(), StageMail, baseFacts())
	if v.Action != Tempfail || v.Err == nil {
		t.Fatalf("%+v", v)
	}
}

func TestAuthPolicy(t *testing.T) {
	tests := []struct {
		name   string
		dmarc  policy.DMARC
		spf    policy.Result
		ap     func(*AuthPolicy)
		action Action
		code   int
		score  float64
		header bool
	}{
		{name: "reject", dmarc: policy.DMARC{Result: "fail", Policy: "reject", Sampled: true, Domain: "ex.com"}, action: Reject, code: 550},
		// policy/dmarc gives the lowered policy of a message not sampled.
		{name: "reject not sampled", dmarc: policy.DMARC{Result: "fail", Policy: "quarantine"}, action: Quarantine},
		{name: "quarantine not sampled", dmarc: policy.DMARC{Result: "fail", Policy: "none"}},
		{name: "quarantine", dmarc: policy.DMARC{Result: "fail", Policy: "quarantine", Sampled: true}, action: Quarantine},
		{name: "quarantine tag", dmarc: policy.DMARC{Result: "fail", Policy: "quarantine", Sampled: true}, ap: func(a *AuthPolicy) { a.DMARCQuarantine = "tag" }, header: true},
		{name: "none", dmarc: policy.DMARC{Result: "fail", Policy: "none", Sampled: true}},
		{name: "temperror", dmarc: policy.DMARC{Result: "temperror"}, action: Tempfail, code: 451},
		{name: "spf fail", dmarc: policy.DMARC{Result: "none"}, spf: policy.ResultFail, score: 2},
		{name: "pass", dmarc: policy.DMARC{Result: "pass", Policy: "reject", Sampled: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := writeSet(t, map[string]string{"a.yaml": "rules: []\n"})
			if tt.ap != nil {
				tt.ap(&cfg.Auth)
			}
			s, err := Load(cfg, LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			f := baseFacts()
			f.DMARC = tt.dmarc
			if tt.spf != "" {
				f.SPF.Result = tt.spf
			}
			v := NewEngine(s, EngineOptions{}).Evaluate(context.Background(), StageData, f)
			if v.Action != tt.action || v.Score != tt.score || v.Junk != tt.header {
				t.Fatalf("%+v", v)
			}
			if tt.code != 0 && (v.Reply == nil || v.Reply.Code != tt.code || v.Reply.Validate() != nil) {
				t.Fatalf("reply %v", v.Reply)
			}
			if tt.action == Reject && !strings.Contains(v.Reply.Text, "DMARC") {
				t.Errorf("reply %q does not name DMARC", v.Reply.Text)
			}
		})
	}
}

func TestThresholds(t *testing.T) {
	s := mustLoad(t, map[string]string{"a.yaml": "rules:\n  - {name: s, stage: data, action: score, score: 6}\n"})
	e := NewEngine(s, EngineOptions{})
	f := baseFacts()
	v := e.Evaluate(context.Background(), StageData, f)
	if v.Action != Continue || !v.Junk {
		t.Fatalf("tag: %+v", v)
	}
	f.Score = 10
	v = e.Evaluate(context.Background(), StageData, f)
	if v.Action != Reject || v.Rule != "score:reject" {
		t.Fatalf("reject: %+v", v)
	}
	f.Score = 20
	if v := e.Evaluate(context.Background(), StageMail, f); v.Action != Reject {
		t.Fatalf("early reject: %+v", v)
	}
}

func TestLists(t *testing.T) {
	dir := t.TempDir()
	lf := filepath.Join(dir, "l.txt")
	os.WriteFile(lf, []byte("# c\nexample.com\n.sub.example\nbob@example.net\n10.0.0.0/8\n2001:db8::1\n"), 0o644)
	l, err := loadList(lf)
	if err != nil {
		t.Fatal(err)
	}
	for v, want := range map[string]bool{
		"example.com": true, "x@Example.com": true, "a.example.com": false, "a.sub.example": true, "sub.example": false,
		"bob@example.net": true, "eve@example.net": false, "10.1.2.3": true, "11.0.0.1": false, "2001:db8::1": true, "": false,
	} {
		if got := l.match(v); got != want {
			t.Errorf("match(%q) = %v", v, got)
		}
	}
	os.WriteFile(lf, []byte("10.0.0.0/99\n"), 0o644)
	if _, err := loadList(lf); err == nil || !strings.Contains(err.Error(), "l.txt:1") {
		t.Errorf("bad list: %v", err)
	}
}

func TestReloadKeepsOldSet(t *testing.T) {
	cfg := writeSet(t, map[string]string{"a.yaml": "rules:\n  - {name: r, stage: mail, action: reject}\n"})
	s, err := Load(cfg, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(s, EngineOptions{})
	dir := filepath.Dir(cfg.Paths[0])
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("rules:\n  - {name: r, stage: mail, action: reject, when: 'spf.result == 1'}\n"), 0o644)
	if err := Reload(cfg, LoadOptions{}, e); err == nil || !posRE.MatchString(err.Error()) {
		t.Fatalf("want positioned error, got %v", err)
	}
	if e.Set() != s {
		t.Fatal("set replaced by a broken one")
	}
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("rules: []\n"), 0o644)
	if err := Reload(cfg, LoadOptions{}, e); err != nil || e.Set().Len() != 0 {
		t.Fatalf("reload: %v", err)
	}
}

func TestWatch(t *testing.T) {
	cfg := writeSet(t, map[string]string{"a.yaml": "rules: []\n"})
	s, _ := Load(cfg, LoadOptions{})
	e := NewEngine(s, EngineOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reloaded := make(chan *Set, 4)
	errc := make(chan error, 4)
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, cfg, e, WatchOptions{Debounce: 20 * time.Millisecond, OnReload: func(s *Set) { reloaded <- s }}, func(err error) { errc <- err })
	}()
	dir := filepath.Dir(cfg.Paths[0])
	// Writing until the watcher reports avoids racing its start-up.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for {
		os.WriteFile(filepath.Join(dir, "b.yaml"), []byte("rules:\n  - {name: r, stage: mail, action: log}\n"), 0o644)
		select {
		case s := <-reloaded:
			if s.Len() != 1 || e.Set() != s {
				t.Fatalf("reloaded set has %d rules", s.Len())
			}
			os.WriteFile(filepath.Join(dir, "c.yaml"), []byte("rules: ["), 0o644)
			select {
			case err := <-errc:
				if !strings.Contains(err.Error(), "c.yaml") {
					t.Errorf("error %v", err)
				}
			case <-deadline:
				t.Fatal("no error for a broken file")
			}
			if e.Set() != s {
				t.Error("broken file replaced the set")
			}
			cancel()
			<-done
			return
		case err := <-errc:
			t.Fatal(err)
		case <-tick.C:
		case <-deadline:
			t.Fatal("no reload")
		}
	}
}

func TestContentFactsLazy(t *testing.T) {
	v := evalExeMessage(t, "rules:\n  - {name: subj, stage: data, action: log, when: 'subject startsWith \"test\" && header(\"To\") == \"test@example.com\" && from.domain == \"srv.example.com\"'}\n")
	if len(v.Explain) != 1 || v.Explain[0].Facts[`header("To")`] != "test@example.com" {
		t.Fatalf("%+v", v.Explain)
	}
}

// TestObserverSamples: the rules of one stage evaluation in TimeEvery are
// timed, each once; a rule that fails is reported every time.
func TestObserverSamples(t *testing.T) {
	s := mustLoad(t, map[string]string{"a.yaml": "rules:\n" +
		"  - {name: a, stage: mail, action: log, when: 'sender.domain == \"x\"'}\n" +
		"  - {name: b, stage: mail, action: log, when: 'sender.domain != \"x\"'}\n"})
	var timed, untimed int
	e := NewEngine(s, EngineOptions{Observer: ObserverFunc(func(rs RuleStat) {
		if rs.Timed {
			timed++
		} else {
			untimed++
		}
	})})
	for i := 0; i < 2*TimeEvery; i++ {
		e.Evaluate(context.Background(), StageMail, baseFacts())
	}
	if timed != 2*2 || untimed != 0 {
		t.Errorf("timed %d, untimed %d; want 4 and 0", timed, untimed)
	}
}

// TestObserverErrorsAlways: a failing rule is reported at every
// evaluation, timed or not.
func TestObserverErrorsAlways(t *testing.T) {
	s := mustLoad(t, map[string]string{"a.yaml": "rules:\n  - {name: div, stage: mail, action: accept, when: 'size % int(score) == 0'}\n"})
	var errs int
	e := NewEngine(s, EngineOptions{Observer: ObserverFunc(func(rs RuleStat) {
		if rs.Err != nil {
			errs++
		}
	})})
	for i := 0; i < TimeEvery+1; i++ {
		e.Evaluate(context.Background(), StageMail, baseFacts())
	}
	if errs != TimeEvery+1 {
		t.Errorf("%d failures reported, want %d", errs, TimeEvery+1)
	}
}
