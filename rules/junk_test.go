package rules

import (
	"context"
	"reflect"
	"strings"
	"testing"
)

func TestJunkActionAndThreshold(t *testing.T) {
	tests := []struct {
		name   string
		rules  string
		score  float64 // the score carried in from earlier stages
		tag    float64 // rules.score.tag (0: off)
		action Action
		junk   bool
		tests  []string
	}{
		{name: "junk rule", rules: "  - {name: j, stage: data, action: junk}\n", tag: 5, junk: true, tests: []string{"j"}},
		{name: "junk is not terminal", rules: "  - {name: j, stage: data, action: junk}\n  - {name: s, stage: data, action: score, score: 1}\n", tag: 5, junk: true, tests: []string{"j", "s"}},
		{name: "later reject wins", rules: "  - {name: j, stage: data, action: junk}\n  - {name: r, stage: data, action: reject}\n", tag: 5, action: Reject, junk: true, tests: []string{"j"}},
		{name: "later quarantine wins", rules: "  - {name: j, stage: data, action: junk}\n  - {name: q, stage: data, action: quarantine}\n", tag: 5, action: Quarantine, junk: true, tests: []string{"j"}},
		{name: "accept before junk", rules: "  - {name: a, stage: data, action: accept}\n  - {name: j, stage: data, action: junk}\n", tag: 5, action: Accept},
		{name: "dry run", rules: "  - {name: j, stage: data, action: junk, dry_run: true}\n", tag: 5},
		{name: "condition false", rules: "  - {name: j, stage: data, action: junk, when: 'score > 100'}\n", tag: 5},
		{name: "tag threshold", rules: "  - {name: s, stage: data, action: score, score: 3}\n", score: 2, tag: 5, junk: true, tests: []string{"s"}},
		{name: "below tag", rules: "  - {name: s, stage: data, action: score, score: 2.9}\n", score: 2, tag: 5, tests: []string{"s"}},
		{name: "tag off", rules: "  - {name: s, stage: data, action: score, score: 9}\n", tag: 0, tests: []string{"s"}},
		{name: "log is no test", rules: "  - {name: l, stage: data, action: log}\n", tag: 5},
		{name: "negative score is a test", rules: "  - {name: w, stage: data, action: score, score: -1}\n", tag: 5, tests: []string{"w"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := writeSet(t, map[string]string{"a.yaml": "rules:\n" + tt.rules})
			cfg.Score.Tag = tt.tag
			s, err := Load(cfg, LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			f := baseFacts()
			f.Score = tt.score
			v := NewEngine(s, EngineOptions{}).Evaluate(context.Background(), StageData, f)
			if v.Action != tt.action || v.Junk != tt.junk || !reflect.DeepEqual(v.Tests, tt.tests) {
				t.Fatalf("action %q junk %v tests %q; want %q %v %q", v.Action, v.Junk, v.Tests, tt.action, tt.junk, tt.tests)
			}
		})
	}
}

// A junk rule at an earlier stage counts at the data stage through the
// hits fact; Test carries the mark to the final verdict.
func TestJunkEarlierStage(t *testing.T) {
	s := mustLoad(t, map[string]string{"a.yaml": `rules:
  - {name: conn_junk, stage: connect, action: junk}
  - {name: mail_score, stage: mail, action: score, score: 1}
  - {name: data_score, stage: data, action: score, score: 1}
`})
	f := baseFacts()
	f.Rcpt = ""
	f.Message = exeMessage(t)
	res := Test(context.Background(), s, *f, nil)
	if !res.Final.Junk || res.Final.Action != Continue {
		t.Fatalf("final %+v", res.Final)
	}
	if want := []string{"conn_junk", "data_score", "mail_score"}; !reflect.DeepEqual(res.Final.Tests, want) {
		t.Fatalf("tests %q, want %q", res.Final.Tests, want)
	}
}

func TestDMARCTagMarksJunk(t *testing.T) {
	cfg := writeSet(t, map[string]string{"a.yaml": "rules: []\n"})
	cfg.Auth.DMARCQuarantine = "tag"
	s, err := Load(cfg, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f := baseFacts()
	f.DMARC.Result, f.DMARC.Policy, f.DMARC.Sampled = "fail", "quarantine", true
	v := NewEngine(s, EngineOptions{}).Evaluate(context.Background(), StageData, f)
	if !v.Junk || v.Action != Continue || len(v.Headers) != 0 || !reflect.DeepEqual(v.Tests, []string{"auth:dmarc"}) {
		t.Fatalf("%+v", v)
	}
}

func TestSpamHeaders(t *testing.T) {
	get := func(hs []Header, name string) (string, bool) {
		for _, h := range hs {
			if h.Name == name {
				return h.Value, true
			}
		}
		return "", false
	}
	hs := SpamHeaders(SpamReport{Junk: true, Score: 7.34, Required: 5, Tests: []string{"RULE_A", "RULE_B"}})
	want := []Header{
		{"X-Spam-Flag", "YES"},
		{"X-Spam-Score", "7.3"},
		{"X-Spam-Level", "*******"},
		{"X-Spam-Status", "Yes, score=7.3 required=5.0 tests=RULE_A,RULE_B"},
	}
	if !reflect.DeepEqual(hs, want) {
		t.Fatalf("got %q", hs)
	}
	// Clean: no flag, no level, tests=none, no "-0.0".
	hs = SpamHeaders(SpamReport{Score: -0.01, Required: 5})
	if _, ok := get(hs, "X-Spam-Flag"); ok {
		t.Errorf("flag on a clean message: %q", hs)
	}
	if _, ok := get(hs, "X-Spam-Level"); ok {
		t.Errorf("level below 1: %q", hs)
	}
	if v, _ := get(hs, "X-Spam-Status"); v != "No, score=0.0 required=5.0 tests=none" {
		t.Errorf("status %q", v)
	}
	// Many tests: folded after a comma, no line over 78 columns.
	var many []string
	for i := 0; i < 30; i++ {
		many = append(many, strings.Repeat("R", 5+i%7)+"_RULE")
	}
	hs = SpamHeaders(SpamReport{Junk: true, Score: 120, Required: 5, Tests: many})
	if v, _ := get(hs, "X-Spam-Level"); len(v) != maxLevel {
		t.Errorf("level of %d stars", len(v))
	}
	v, _ := get(hs, "X-Spam-Status")
	field := "X-Spam-Status: " + v
	lines := strings.Split(field, "\r\n")
	if len(lines) < 3 {
		t.Fatalf("not folded: %q", field)
	}
	for i, l := range lines {
		if len(l) > foldAt {
			t.Errorf("line %d has %d characters: %q", i, len(l), l)
		}
		if i > 0 && !strings.HasPrefix(l, "\t") {
			t.Errorf("continuation line %d does not start with white space: %q", i, l)
		}
		if strings.ContainsAny(l, "\r\n") {
			t.Errorf("stray line break in %q", l)
		}
	}
	// Unfolded (RFC 5322 §2.2.3), the list is the tests again.
	unfolded := strings.ReplaceAll(v, "\r\n", "")
	list := unfolded[strings.Index(unfolded, "tests=")+len("tests="):]
	var got []string
	for _, name := range strings.Split(list, ",") {
		got = append(got, strings.TrimSpace(name))
	}
	if !reflect.DeepEqual(got, many) {
		t.Errorf("unfolded tests %q", got)
	}
}

func TestJunkActionLoads(t *testing.T) {
	for _, stage := range []string{"connect", "helo", "mail", "rcpt", "data"} {
		mustLoad(t, map[string]string{"a.yaml": "rules:\n  - {name: j, stage: " + stage + ", action: junk}\n"})
	}
	cfg := writeSet(t, map[string]string{"a.yaml": "rules:\n  - {name: j, stage: data, action: junk, score: 2}\n"})
	if _, err := Load(cfg, LoadOptions{}); err == nil || !strings.Contains(err.Error(), "only with action score") {
		t.Fatalf("score on junk: %v", err)
	}
}
