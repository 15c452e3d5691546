package rules

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/policy/content"
)

func FuzzLoad(f *testing.F) {
	seeds := []string{
		"rules:\n  - {name: a, stage: mail, action: score, score: 1, when: 'sender.domain matches \"x$\"'}\n",
		"rules:\n  - name: r1\n    stage: data\n    when: |\n      any(attachments, {.name endsWith \".exe\"}) || header(\"X\") == \"\"\n    action: reject\n    reply: \"550 5.7.1 no\"\n",
		"rules:\n  - {name: g, stage: rcpt, action: greylist, when: 'cidr(ip, \"10.0.0.0/8\")'}\n",
		"rules:\n  - {name: rl, stage: mail, action: tempfail, when: 'ratelimit(sender.domain, 3, \"1h\")'}\n",
		"rules:\n  - {name: h, stage: data, action: add_header, header: {name: X-A, value: b}}\n",
		"rules: [",
		"rulez: 1",
	}
	for _, name := range []string{"10-baseline.yaml", "30-attachments.yaml", "40-ratelimit.yaml"} {
		if b, err := os.ReadFile(filepath.Join(deployDir, name)); err == nil {
			seeds = append(seeds, string(b))
		}
	}
	for _, s := range seeds {
		f.Add(s)
	}
	dir := f.TempDir()
	path := filepath.Join(dir, "f.yaml")
	raw, _ := os.ReadFile("testdata/corpus/rspamd/exe_attm.eml")
	msg, _ := content.Parse(raw, content.Options{})
	f.Fuzz(func(t *testing.T, data string) {
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := DefaultConfig()
		cfg.Paths = []string{path}
		s, err := Load(cfg, LoadOptions{})
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error without file name: %v", err)
			}
			return
		}
		e := NewEngine(s, EngineOptions{})
		fa := baseFacts()
		fa.Message = msg
		for st := StageConnect; st < numStages; st++ {
			v := e.Evaluate(context.Background(), st, fa)
			if v.Reply != nil {
				if err := v.Reply.Validate(); err != nil {
					t.Fatalf("invalid reply %v: %v", v.Reply, err)
				}
			}
		}
	})
}

// benchRules returns n data-stage rules of the usual kinds (none reads the
// body, so body facts stay unparsed).
func benchRules(n int) string {
	kinds := []string{
		`header("X-Mailer") contains "bulk%d"`,
		`subject matches "(?i)offer%d"`,
		`sender.domain == "d%d.example" && spf.result != "pass"`,
		`dmarc.result == "fail" && dmarc.policy == "reject%d"`,
		`score > %d.5 && dkim.result != "pass"`,
		`cidr(ip, "10.%d.0.0/16")`,
		`from.domain endsWith ".x%d" || "spam%d@example.com" in to`,
		`dnsbl.score > %d.0 && iprev.result == "fail"`,
	}
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := 0; i < n; i++ {
		k := kinds[i%len(kinds)]
		cond := strings.ReplaceAll(k, "%d", fmt.Sprint(i))
		fmt.Fprintf(&b, "  - name: r%d\n    stage: data\n    action: score\n    score: 1\n    when: '%s'\n", i, strings.ReplaceAll(cond, "'", "''"))
	}
	return b.String()
}

func BenchmarkEvaluate100Rules(b *testing.B) {
	s := mustLoad(b, map[string]string{"a.yaml": benchRules(100)})
	if s.Len() != 100 {
		b.Fatal(s.Len())
	}
	raw, err := os.ReadFile("testdata/corpus/rspamd/ham.eml")
	if err != nil {
		b.Fatal(err)
	}
	m, _ := content.Parse(raw, content.Options{})
	e := NewEngine(s, EngineOptions{})
	f := baseFacts()
	f.Message = m
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e.Evaluate(ctx, StageData, f)
	}
}

// BenchmarkParseAndEvaluate100Rules includes parsing the message and one
// rule that reads the body.
func BenchmarkParseAndEvaluate100Rules(b *testing.B) {
	s := mustLoad(b, map[string]string{"a.yaml": benchRules(99) + "  - {name: body, stage: data, action: score, score: 1, when: 'body contains \"viagra\"'}\n"})
	raw, err := os.ReadFile("testdata/corpus/rspamd/ham.eml")
	if err != nil {
		b.Fatal(err)
	}
	e := NewEngine(s, EngineOptions{})
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m, _ := content.Parse(raw, content.Options{})
		f := baseFacts()
		f.Message = m
		e.Evaluate(ctx, StageData, f)
	}
}
