package rules

import (
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode"

	"github.com/expr-lang/expr/ast"
)

// Conditions such as `lower(body) matches "(pharmacy|casino|…)"` run Go's
// regexp over a whole message body; an unanchored alternation goes through
// its NFA, a few tens of MB/s. Most bodies contain none of the words such
// a pattern needs, and finding that out takes strings.Contains per word, a
// hundred times faster. So `x matches "constant"` is compiled into a
// matcher that first asks whether x holds one of the literals every match
// must contain (derived from the pattern's syntax tree), and runs the
// regexp only when it does. The result is always the regexp's own.

// matchFunc is the expr function a constant `matches` is rewritten into.
const matchFunc = "__matches"

// matcher is one compiled `matches` pattern with its prefilter.
type matcher struct {
	re *regexp.Regexp
	// need: any match contains one of these (lower-case when fold);
	// nil: no prefilter.
	need []string
	fold bool // compare case-insensitively (the pattern folds case)
}

func (m *matcher) match(s string) bool {
	if m.need != nil {
		hay := s
		if m.fold {
			// (?i) also matches ſ for s and the Kelvin sign for k,
			// which ToLower does not turn into ASCII: no prefilter then.
			if strings.ContainsRune(s, 'ſ') || strings.ContainsRune(s, '\u212a') {
				return m.re.MatchString(s)
			}
			hay = strings.ToLower(s)
		}
		found := false
		for _, lit := range m.need {
			if strings.Contains(hay, lit) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return m.re.MatchString(s)
}

// newMatcher compiles pattern; an invalid one returns nil (expr then
// reports it as before, with its position).
func newMatcher(pattern string) *matcher {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil
	}
	m := &matcher{re: re}
	tree, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return m
	}
	lits, fold, ok := required(tree.Simplify())
	if !ok || len(lits) == 0 || len(lits) > maxLiterals || shortest(lits) < 2 {
		return m // none, or too short to save work
	}
	m.need, m.fold = lits, fold
	return m
}

// required returns literals one of which every match of re contains; ok
// false when no such set is known. fold says the literals are lower-case
// and must be compared case-insensitively.
func required(re *syntax.Regexp) (lits []string, fold, ok bool) {
	if l, f, ok := exact(re); ok && shortest(l) > 0 {
		if f {
			l = lowerAll(l)
		}
		return l, f, true
	}
	switch re.Op {
	case syntax.OpCapture, syntax.OpPlus:
		return required(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return required(re.Sub[0])
		}
	case syntax.OpConcat:
		// Any child's set will do, and so will the product of a run of
		// children that match finite sets of strings (the parser factors
		// "bitcoin|btc" into b(?:itcoin|tc)): take the most selective.
		best := -1
		consider := func(l []string, f bool) {
			if m := shortest(l); m > best {
				lits, fold, best = l, f, m
			}
		}
		var run []string
		runFold, inRun := false, false
		for _, sub := range re.Sub {
			if l, f, ok := exact(sub); ok && (!inRun || len(run)*len(l) <= maxLiterals) {
				if !inRun {
					run, runFold, inRun = []string{""}, false, true
				}
				run, runFold = product(run, l), runFold || f
				continue
			} else if ok {
				// The run is long enough: close it and start another.
				consider(run, runFold)
				run, runFold = l, f
				continue
			}
			if inRun {
				consider(run, runFold)
				inRun = false
			}
			if l, f, ok := required(sub); ok {
				consider(l, f)
			}
		}
		if inRun {
			consider(run, runFold)
		}
		if fold {
			lits = lowerAll(lits)
		}
		return lits, fold, best > 0
	case syntax.OpAlternate:
		for _, sub := range re.Sub {
			l, f, ok := required(sub)
			if !ok {
				return nil, false, false
			}
			lits = append(lits, l...)
			fold = fold || f
		}
		if fold {
			lits = lowerAll(lits)
		}
		return lits, fold, len(lits) <= maxLiterals
	}
	return nil, false, false
}

// maxLiterals bounds the literal sets the prefilter tries.
const maxLiterals = 64

// exact returns the finite set of strings re matches, when it is small.
func exact(re *syntax.Regexp) (lits []string, fold, ok bool) {
	switch re.Op {
	case syntax.OpLiteral:
		s := string(re.Rune)
		if re.Flags&syntax.FoldCase != 0 {
			if !isASCII(s) {
				return nil, false, false // Unicode folding: not with ToLower
			}
			return []string{strings.ToLower(s)}, true, true
		}
		return []string{s}, false, true
	case syntax.OpCharClass:
		// Pairs of ranges; small ASCII classes only.
		for i := 0; i < len(re.Rune); i += 2 {
			lo, hi := re.Rune[i], re.Rune[i+1]
			if hi > unicode.MaxASCII || int(hi-lo)+1+len(lits) > 8 {
				return nil, false, false
			}
			for r := lo; r <= hi; r++ {
				lits = append(lits, string(r))
			}
		}
		return lits, false, true
	case syntax.OpCapture:
		return exact(re.Sub[0])
	case syntax.OpQuest:
		l, f, ok := exact(re.Sub[0])
		return append(l, ""), f, ok
	case syntax.OpConcat:
		out := []string{""}
		for _, sub := range re.Sub {
			l, f, ok := exact(sub)
			if !ok || len(out)*len(l) > maxLiterals {
				return nil, false, false
			}
			out, fold = product(out, l), fold || f
		}
		return out, fold, true
	case syntax.OpAlternate:
		for _, sub := range re.Sub {
			l, f, ok := exact(sub)
			if !ok || len(lits)+len(l) > maxLiterals {
				return nil, false, false
			}
			lits, fold = append(lits, l...), fold || f
		}
		return lits, fold, true
	}
	return nil, false, false
}

func product(a, b []string) []string {
	out := make([]string, 0, len(a)*len(b))
	for _, x := range a {
		for _, y := range b {
			out = append(out, x+y)
		}
	}
	return out
}

func lowerAll(l []string) []string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = strings.ToLower(s)
	}
	return out
}

func shortest(lits []string) int {
	n := -1
	for _, l := range lits {
		if n < 0 || len(l) < n {
			n = len(l)
		}
	}
	return n
}

func isASCII(s string) bool {
	for _, r := range s {
		if r > unicode.MaxASCII {
			return false
		}
	}
	return true
}

// matchPatcher rewrites `x matches "constant"` into a call of the
// prefiltered matcher; matchers holds them by pattern.
type matchPatcher struct{ matchers map[string]*matcher }

func (p matchPatcher) Visit(np *ast.Node) {
	b, ok := (*np).(*ast.BinaryNode)
	if !ok || b.Operator != "matches" {
		return
	}
	lit, ok := b.Right.(*ast.StringNode)
	if !ok {
		return
	}
	m := p.matchers[lit.Value]
	if m == nil {
		if m = newMatcher(lit.Value); m == nil {
			return
		}
		p.matchers[lit.Value] = m
	}
	call := &ast.CallNode{
		Callee:    &ast.IdentifierNode{Value: matchFunc},
		Arguments: []ast.Node{b.Left, &ast.StringNode{Value: lit.Value}},
	}
	call.Callee.SetLocation(b.Location())
	call.Arguments[1].SetLocation(lit.Location())
	ast.Patch(np, call)
}
