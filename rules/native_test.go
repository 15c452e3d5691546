package rules

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/expr-lang/expr/vm"

	"moat/policy/content"
)

type nativeInner struct {
	V int `expr:"v"`
}

type nativeItem struct {
	Name string `expr:"name"`
	Size int    `expr:"size"`
}

// nativeFacts is a fact group with a field of every shape the closures
// read.
type nativeFacts struct {
	N     int          `expr:"n"`
	I64   int64        `expr:"i64"`
	F     float64      `expr:"f"`
	S     string       `expr:"s"`
	B     bool         `expr:"b"`
	L     []string     `expr:"l"`
	Items []nativeItem `expr:"items"`
	P     *nativeInner `expr:"p"`
}

// nativeConditions: every one is answered by the closures unless vmOnly.
var nativeConditions = []struct {
	when   string
	vmOnly bool
}{
	{when: `tg.n > 3`}, {when: `tg.n >= 3.5`}, {when: `tg.f < 1`}, {when: `tg.f == 2`}, {when: `tg.n == tg.f`},
	{when: `tg.i64 > 10`}, {when: `tg.i64 == tg.n`}, {when: `tg.n + 1 == 4`}, {when: `tg.f - tg.n < 0`}, {when: `-tg.n < -2`},
	{when: `tg.f + 0.5 > tg.n`}, {when: `tg.n <= 2`},
	{when: `tg.s == "abc"`}, {when: `tg.s != ""`}, {when: `tg.s < "b"`}, {when: `tg.s >= "b"`}, {when: `tg.s contains "b"`},
	{when: `tg.s startsWith "a"`}, {when: `tg.s endsWith "é"`}, {when: `lower(tg.s) == "abc"`}, {when: `upper(tg.s) == "ABC"`},
	{when: `len(tg.s) == 3`}, {when: `len(tg.l) > 1`}, {when: `tg.s + "x" == "abcx"`},
	{when: `tg.s in ["abc", "x"]`}, {when: `tg.s in tg.l`}, {when: `"q" in tg.l`}, {when: `tg.s not in ["abc"]`},
	{when: `tg.b && !tg.b`}, {when: `tg.b || not tg.b`}, {when: `not (tg.n > 1 and tg.b)`}, {when: `tg.b == true`},
	{when: `any(tg.items, .size > 10)`}, {when: `all(tg.items, .name endsWith ".txt")`}, {when: `none(tg.l, # == "x")`},
	{when: `any(tg.l, # startsWith "a")`}, {when: `any(tg.items, any(tg.l, # == "q") && .size > 0)`},
	{when: `tg.p.v > 1`},
	{when: `lower(body) matches "(viagra|casino|content)"`}, {when: `lower(body + " " + subject) contains "test"`},
	{when: `subject matches "^[A-Z]"`}, {when: `header("Subject") != ""`}, {when: `header("X-None") == ""`},
	{when: `in_list("people", sender.address)`}, {when: `cidr(ip, "192.0.2.0/24")`},
	{when: `sender.domain == "example.com" && spf.result == "pass"`}, {when: `score >= 0`}, {when: `"r1" in hits`},
	{when: `size > 100`}, {when: `malformed`}, {when: `from.domain != ""`}, {when: `len(to) >= 1`}, {when: `dkim.unsigned > 0`},
	{when: `any(attachments, {.name endsWith ".exe"})`}, {when: `len(attachments) > 0`},
	{when: `ratelimit(ip, 5, "1m")`, vmOnly: true}, {when: `(tg.n > 1 ? tg.b : false)`, vmOnly: true},
	{when: `tg.n * 2 > 3`, vmOnly: true}, {when: `tg.p?.v == 1`, vmOnly: true}, {when: `attachments[0].size > 0`, vmOnly: true},
	{when: `sender.domain matches tg.s`, vmOnly: true},
}

// nativeEngine loads nativeConditions as log rules at the data stage,
// with the tg fact group and a list named people.
func nativeEngine(t testing.TB) *Engine {
	t.Helper()
	var b strings.Builder
	b.WriteString("rules:\n")
	for i, c := range nativeConditions {
		fmt.Fprintf(&b, "  - {name: c%d, stage: data, action: log, when: '%s'}\n", i, strings.ReplaceAll(c.when, "'", "''"))
	}
	dir := t.TempDir()
	people := filepath.Join(dir, "people.txt")
	if err := os.WriteFile(people, []byte("alice@example.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := writeSet(t, map[string]string{"a.yaml": b.String()})
	cfg.Lists = map[string]string{"people": people}
	set, err := Load(cfg, LoadOptions{FactGroups: []FactGroup{{Name: "tg", Stage: StageData, Zero: &nativeFacts{}}}})
	if err != nil {
		t.Fatal(err)
	}
	return NewEngine(set, EngineOptions{})
}

// TestCompiledAgreesWithVM: conditions of every compiled shape give the
// VM's answer over several messages and fact values, and the ones the
// closures do not know stay with the VM.
func TestCompiledAgreesWithVM(t *testing.T) {
	e := nativeEngine(t)
	plain, err := content.Parse([]byte("From: Carol <carol@example.net>\r\nTo: bob@example.org\r\nSubject: Testing é\r\n\r\nSome content, a casino.\r\n"), content.Options{})
	if err != nil {
		t.Fatal(err)
	}
	groups := []*nativeFacts{
		{N: 3, I64: 3, F: 2, S: "abc", B: true, L: []string{"abc", "q"}, Items: []nativeItem{{"a.txt", 20}, {"b.txt", 0}}, P: &nativeInner{V: 2}},
		{N: 5, I64: 50, F: 0.5, S: "bcé", L: []string{"x"}, Items: []nativeItem{{"a.exe", 1}}},
		{N: -1, F: -1.5, S: "", L: nil, Items: nil, P: &nativeInner{}},
	}
	trues := map[string]int{}
	nilRead := ""
	for i, c := range nativeConditions {
		if c.when == `tg.p.v > 1` {
			nilRead = fmt.Sprintf("c%d", i)
		}
	}
	for mi, m := range []*content.Message{exeMessage(t), plain} {
		for gi, g := range groups {
			f := baseFacts()
			f.Message = m
			f.Hits = []string{"r0", "r1"}[:gi%2+1]
			f.SetGroup("tg", g)
			rep := e.DiffCompiled(context.Background(), StageData, f)
			for _, d := range rep.Differ {
				t.Errorf("message %d, facts %d: %s", mi, gi, d)
			}
			if gi == 0 && mi == 0 {
				for i, c := range nativeConditions {
					name := fmt.Sprintf("c%d", i)
					if compiled := slices.Contains(rep.Compiled, name); compiled == c.vmOnly {
						t.Errorf("%s: compiled %t, want %t", c.when, compiled, !c.vmOnly)
					}
				}
			}
			if gi == 1 && !slices.Contains(rep.GaveUp, nilRead) {
				t.Errorf("a read through a nil pointer did not go to the VM: gave up %v", rep.GaveUp)
			}
			v := e.Evaluate(context.Background(), StageData, f)
			for _, h := range v.Explain {
				trues[h.Rule]++
			}
		}
	}
	// the table decides both ways: most conditions hold for some facts
	// and not for others
	mixed := 0
	for i := range nativeConditions {
		if n := trues[fmt.Sprintf("c%d", i)]; n > 0 && n < 2*len(groups) {
			mixed++
		}
	}
	if mixed < len(nativeConditions)/2 {
		t.Errorf("only %d of %d conditions were both true and false over the table", mixed, len(nativeConditions))
	}
}

// FuzzCompiledAgreesWithVM: over any fact values and message, every
// compiled condition of the table answers as the VM does.
func FuzzCompiledAgreesWithVM(f *testing.F) {
	f.Add(3, int64(3), 2.0, "abc", true, "abc,q", "a.txt", 20, "Testing é", "Some content, a casino.")
	f.Add(-1, int64(0), -1.5, "bcé", false, "", "", 0, "", "\xff\xfe v1agra")
	e := nativeEngine(f)
	f.Fuzz(func(t *testing.T, n int, i64 int64, fl float64, s string, b bool, list, item string, size int, subject, body string) {
		if len(subject) > 200 || len(body) > 2000 || strings.ContainsAny(subject, "\r\n") {
			return
		}
		m, err := content.Parse([]byte("From: Carol <carol@example.net>\r\nTo: bob@example.org\r\nSubject: "+subject+"\r\n\r\n"+body+"\r\n"), content.Options{})
		if err != nil {
			return
		}
		g := &nativeFacts{N: n, I64: i64, F: fl, S: s, B: b, Items: []nativeItem{{item, size}}}
		if list != "" {
			g.L = strings.Split(list, ",")
		}
		if size%2 == 0 {
			g.P = &nativeInner{V: size}
		}
		facts := baseFacts()
		facts.Message = m
		facts.SetGroup("tg", g)
		for _, d := range e.DiffCompiled(context.Background(), StageData, facts).Differ {
			t.Error(d)
		}
	})
}

// BenchmarkCompiledRule: one small condition through the closures and
// through the VM.
func BenchmarkCompiledRule(b *testing.B) {
	s := mustLoadOpt(b, map[string]string{"a.yaml": "rules:\n  - {name: r, stage: data, action: log, when: 'tg.n > 3 && tg.s == \"abc\"'}\n"},
		LoadOptions{FactGroups: []FactGroup{{Name: "tg", Stage: StageData, Zero: &nativeFacts{}}}})
	f := baseFacts()
	f.SetGroup("tg", &nativeFacts{N: 4, S: "abc"})
	e := NewEngine(s, EngineOptions{})
	r := s.stages[StageData][0]
	st := newState(context.Background(), e, s, f)
	b.Run("compiled", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if ok, _ := runNative(r.native, st); !ok {
				b.Fatal("gave up")
			}
		}
	})
	b.Run("vm", func(b *testing.B) {
		var machine vm.VM
		for i := 0; i < b.N; i++ {
			if _, err := runSafe(&machine, r.prog, &st.env); err != nil {
				b.Fatal(err)
			}
		}
	})
}
