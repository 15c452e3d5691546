package rules

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"moat/policy/content"
)

type urlFacts struct {
	Count int      `expr:"count"`
	Hosts []string `expr:"hosts"`
}

// urlGroup counts its computations.
func urlGroup(calls *int) FactGroup {
	return FactGroup{Name: "urls", Stage: StageData, Zero: urlFacts{}, Compute: func(_ context.Context, f *Facts) any {
		*calls++
		if f.Message == nil {
			return nil
		}
		return urlFacts{Count: strings.Count(f.Message.Text(), "http"), Hosts: []string{"a.example"}}
	}}
}

func TestFactGroupLoadErrors(t *testing.T) {
	var calls int
	opt := LoadOptions{FactGroups: []FactGroup{urlGroup(&calls)}}
	tests := []struct {
		name, rules, want string
		line, col         int
	}{
		{"type error", "rules:\n  - name: r1\n    stage: data\n    when: urls.count == \"x\"\n    action: log\n", "mismatched types int and string", 4, 22},
		{"unknown member", "rules:\n  - name: r1\n    stage: data\n    when: urls.color == 1\n    action: log\n", "color", 4, 0},
		{"not at stage", "rules:\n  - name: r1\n    stage: mail\n    when: urls.count > 1\n    action: log\n", "urls is not known at stage mail", 4, 11},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(writeSet(t, map[string]string{"a.yaml": tt.rules}), opt)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("want an *Error, got %v", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) || !strings.Contains(msg, `rule "r1"`) || !posRE.MatchString(msg) {
				t.Fatalf("error %q: want %q, the rule and file:line:col", msg, tt.want)
			}
			if tt.line > 0 && e.Line != tt.line || tt.col > 0 && e.Column != tt.col {
				t.Errorf("at %d:%d, want %d:%d", e.Line, e.Column, tt.line, tt.col)
			}
		})
	}
	// Without the group the name is unknown.
	if _, err := Load(writeSet(t, map[string]string{"a.yaml": tests[0].rules}), LoadOptions{}); err == nil || !strings.Contains(err.Error(), "unknown name urls") {
		t.Errorf("without the group: %v", err)
	}
}

func TestFactGroupRegistration(t *testing.T) {
	for _, g := range []FactGroup{
		{Name: "spf", Stage: StageData, Zero: 1},
		{Name: "Bad-Name", Stage: StageData, Zero: 1},
		{Name: "nozero", Stage: StageData},
		{Name: "attachments", Stage: StageData, Zero: 1},
	} {
		if _, err := Load(writeSet(t, map[string]string{"a.yaml": "rules: []\n"}), LoadOptions{FactGroups: []FactGroup{g}}); err == nil {
			t.Errorf("group %q accepted", g.Name)
		}
	}
}

// TestFactGroupLazy: a group is computed once per message, only when a
// rule that reads it runs; a value a check set is used as it is; code
// reads it through the same cache.
func TestFactGroupLazy(t *testing.T) {
	var calls int
	s := mustLoadOpt(t, map[string]string{"a.yaml": `rules:
  - {name: none, stage: data, action: log, when: 'subject == "nothing"'}
  - {name: many, stage: data, action: score, score: 2, when: 'urls.count >= 2 && "a.example" in urls.hosts'}
  - {name: again, stage: data, action: log, when: 'urls.count > 0'}
`}, LoadOptions{FactGroups: []FactGroup{urlGroup(&calls)}})
	e := NewEngine(s, EngineOptions{})
	m, err := content.Parse([]byte("Subject: x\r\n\r\nhttp://a http://b\r\n"), content.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := baseFacts()
	f.Message = m
	v := e.Evaluate(context.Background(), StageData, f)
	if v.Score != 2 || calls != 1 {
		t.Fatalf("score %v, computed %d times", v.Score, calls)
	}
	if len(v.Explain) != 2 || v.Explain[0].Facts["urls.count"] != 2 {
		t.Errorf("explain %+v", v.Explain)
	}
	if got, err := e.Group(context.Background(), f, "urls"); err != nil || got.(urlFacts).Count != 2 || calls != 1 {
		t.Errorf("Group: %v %v, %d computations", got, err, calls)
	}
	// A rule set that does not read it never computes it.
	calls = 0
	s2 := mustLoadOpt(t, map[string]string{"a.yaml": "rules:\n  - {name: none, stage: data, action: log, when: 'subject == \"x\"'}\n"}, LoadOptions{FactGroups: []FactGroup{urlGroup(&calls)}})
	f2 := baseFacts()
	f2.Message = m
	NewEngine(s2, EngineOptions{}).Evaluate(context.Background(), StageData, f2)
	if calls != 0 {
		t.Errorf("computed %d times without a reader", calls)
	}
	// A value set by a check wins; a new message starts afresh.
	f2.SetGroup("urls", urlFacts{Count: 5})
	v = e.Evaluate(context.Background(), StageData, f2)
	if v.Score != 0 || calls != 0 || len(v.Explain) != 1 || v.Explain[0].Rule != "again" {
		t.Errorf("with a set value: %+v, %d computations", v, calls)
	}
	f2.ResetGroups()
	e.Evaluate(context.Background(), StageData, f2)
	if calls != 1 {
		t.Errorf("after reset: %d computations", calls)
	}
}

// TestAttachmentsGroup: the built-in attachments fact is a fact group.
func TestAttachmentsGroup(t *testing.T) {
	v := evalExeMessage(t, "rules:\n  - {name: exe, stage: data, action: reject, when: 'any(attachments, {.name endsWith \".exe\"})'}\n")
	if v.Rule != "exe" {
		t.Fatalf("verdict %+v", v)
	}
	if _, ok := v.Explain[0].Facts["attachments"]; !ok {
		t.Errorf("attachments not explained: %+v", v.Explain[0].Facts)
	}
}

func TestHitsFact(t *testing.T) {
	s := mustLoad(t, map[string]string{"a.yaml": `rules:
  - {name: a, stage: mail, action: score, score: 1, when: 'true'}
  - {name: dry, stage: mail, action: score, score: 1, when: 'true', dry_run: true}
  - {name: b, stage: mail, action: log, when: '"a" in hits && !("dry" in hits)'}
  - {name: c, stage: mail, action: reject, when: '"b" in hits && "earlier" in hits'}
`})
	f := baseFacts()
	f.Hits = []string{"earlier"}
	v := NewEngine(s, EngineOptions{}).Evaluate(context.Background(), StageMail, f)
	if v.Rule != "c" {
		t.Fatalf("verdict %q, explain %+v", v.Rule, v.Explain)
	}
	if len(f.Hits) != 1 {
		t.Errorf("Evaluate changed the caller's hits: %q", f.Hits)
	}
}

func mustLoadOpt(t testing.TB, files map[string]string, opt LoadOptions) *Set {
	t.Helper()
	s, err := Load(writeSet(t, files), opt)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// exeMessage is a corpus message with an .exe attachment.
func exeMessage(t testing.TB) *content.Message {
	t.Helper()
	raw, err := os.ReadFile("testdata/corpus/rspamd/exe_attm.eml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := content.Parse(raw, content.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// evalExeMessage evaluates the data-stage rules of ruleText over
// exeMessage.
func evalExeMessage(t testing.TB, ruleText string) Verdict {
	t.Helper()
	f := baseFacts()
	f.Message = exeMessage(t)
	return NewEngine(mustLoad(t, map[string]string{"a.yaml": ruleText}), EngineOptions{}).Evaluate(context.Background(), StageData, f)
}
