package rules

import (
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/expr-lang/expr/ast"

	"moat/internal/litscan"
)

// Conditions such as `lower(body) matches "(pharmacy|casino|…)"` run Go's
// regexp over a whole message body; an unanchored alternation goes through
// its NFA, a few tens of MB/s. Most bodies contain none of the words such
// a pattern needs. So `x matches "constant"` is compiled into a matcher
// that knows, from the pattern's syntax tree, sets of literals of which
// every match must contain one member each ("clauses": for
// `(dear|hi),? [a-z]+@`, one of "dear", "hi" and also "@"), and runs the
// regexp only when the text holds them. Which literals a text holds is
// found once per text for every matcher of the rule set together, in one
// pass (package litscan), and kept for the message's other rules: twenty
// content rules over one body cost one scan, not twenty. The result is
// always the regexp's own.

// matchFunc is the expr function a constant `matches` is rewritten into:
// __matches(__facts, text, matcher index).
const matchFunc = "__matches"

// matcher is one compiled `matches` pattern with its prefilter.
type matcher struct {
	re *regexp.Regexp
	// clauses: every match holds, ASCII case-insensitively, one literal
	// of each clause; nil: no prefilter.
	clauses [][]string
	// fold: the pattern folds case somewhere, so (?i)s also matches ſ
	// and (?i)k the Kelvin sign, which no ASCII literal finds: texts
	// holding those skip the prefilter.
	fold bool
	// shared: the clauses as literal indexes of the set's scanner.
	shared [][]int32
	// starts, anchored, window, second: see starts.go; anchored nil:
	// unused; second nil: no filter on the byte after a start
	starts   *[256]bool
	anchored *regexp.Regexp
	window   int
	second   *[256]byteSet
}

// scanned is what a scan found in one text.
type scanned struct {
	// text is kept so that its bytes, whose address keys the cache of
	// scans, stay allocated while the entry lives
	text  string
	found []uint64
	// special: the text holds ſ or the Kelvin sign (see matcher.fold)
	special bool
	end     litscan.State // where the scan stopped
}

func scanText(ls *litscan.Set, s string) *scanned {
	return scanAfter(ls, nil, s)
}

// scanAfter scans s, whose first bytes are the text of head when head is
// not nil: what head found is kept and the scan goes on from where it
// stopped, over the rest alone.
func scanAfter(ls *litscan.Set, head *scanned, s string) *scanned {
	sc := &scanned{text: s, found: make([]uint64, ls.Words())}
	from, rest := litscan.Start, s
	if head != nil {
		copy(sc.found, head.found)
		from, rest, sc.special = head.end, s[len(head.text):], head.special
	}
	sc.end = ls.Resume(from, rest, sc.found)
	// from a few bytes before the joint: head may end inside a rune
	tail := s[max(0, len(s)-len(rest)-utf8.UTFMax+1):]
	sc.special = sc.special || strings.ContainsRune(tail, 'ſ') || strings.ContainsRune(tail, '\u212a')
	return sc
}

// matchScanned decides with what a scan of s found.
func (m *matcher) matchScanned(s string, sc *scanned, clauses [][]int32) bool {
	if clauses != nil && !(m.fold && sc.special) {
		for _, c := range clauses {
			ok := false
			for _, id := range c {
				if litscan.Has(sc.found, int(id)) {
					ok = true
					break
				}
			}
			if !ok {
				return false
			}
		}
	}
	return m.run(s)
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
	tree = tree.Simplify()
	m.clauses, m.fold = clauses(tree), folds(tree)
	m.startsAt(tree, pattern)
	return m
}

// folds reports whether any part of re matches case-insensitively.
func folds(re *syntax.Regexp) bool {
	if re.Flags&syntax.FoldCase != 0 {
		return true
	}
	for _, sub := range re.Sub {
		if folds(sub) {
			return true
		}
	}
	return false
}

// clauses returns sets of literals (ASCII lower-case) such that every
// match of re holds a member of each set; nil when none is known.
func clauses(re *syntax.Regexp) [][]string {
	if l, ok := exact(re); ok {
		if slices.Contains(l, "") {
			return nil // matches the empty string: no literal needed
		}
		return [][]string{l}
	}
	switch re.Op {
	case syntax.OpCapture, syntax.OpPlus:
		return clauses(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return clauses(re.Sub[0])
		}
	case syntax.OpConcat:
		// Every child's clauses hold, and so does the product of a run
		// of children that match finite sets of strings (the parser
		// factors "bitcoin|btc" into b(?:itcoin|tc)).
		var out [][]string
		var run []string
		inRun := false
		closeRun := func() {
			if inRun && !slices.Contains(run, "") {
				out = append(out, run)
			}
			inRun = false
		}
		for _, sub := range re.Sub {
			if l, ok := exact(sub); ok {
				if inRun && len(run)*len(l) <= maxLiterals {
					run = product(run, l)
					continue
				}
				closeRun()
				run, inRun = l, true
				continue
			}
			closeRun()
			out = append(out, clauses(sub)...)
		}
		closeRun()
		if len(out) > maxClauses {
			out = out[:maxClauses]
		}
		return out
	case syntax.OpAlternate:
		// one clause: the union of each branch's most selective one
		var union []string
		for _, sub := range re.Sub {
			best := bestClause(clauses(sub))
			if best == nil || len(union)+len(best) > maxLiterals {
				return nil
			}
			union = append(union, best...)
		}
		return [][]string{union}
	}
	return nil
}

// bestClause picks the clause whose shortest literal is longest (longer
// literals occur less often by chance).
func bestClause(cs [][]string) []string {
	var best []string
	n := 0
	for _, c := range cs {
		if m := shortest(c); m > n {
			best, n = c, m
		}
	}
	return best
}

// maxClauses bounds the clauses one pattern keeps.
const maxClauses = 16

// maxLiterals bounds the literal sets the prefilter tries.
const maxLiterals = 64

// exact returns the finite set of strings re matches, when it is small,
// ASCII lower-case. Case-folded non-ASCII literals are not: Unicode
// folding (ß and ẞ) is more than ASCII folding.
func exact(re *syntax.Regexp) (lits []string, ok bool) {
	switch re.Op {
	case syntax.OpLiteral:
		s := string(re.Rune)
		if re.Flags&syntax.FoldCase != 0 && !isASCII(s) {
			return nil, false
		}
		return []string{asciiLower(s)}, true
	case syntax.OpCharClass:
		// Pairs of ranges; small ASCII classes only.
		seen := map[string]bool{}
		for i := 0; i < len(re.Rune); i += 2 {
			lo, hi := re.Rune[i], re.Rune[i+1]
			if hi > unicode.MaxASCII || int(hi-lo)+1+len(lits) > 8 {
				return nil, false
			}
			for r := lo; r <= hi; r++ {
				if l := asciiLower(string(r)); !seen[l] {
					seen[l] = true
					lits = append(lits, l)
				}
			}
		}
		return lits, true
	case syntax.OpCapture:
		return exact(re.Sub[0])
	case syntax.OpQuest:
		l, ok := exact(re.Sub[0])
		return append(l, ""), ok
	case syntax.OpConcat:
		out := []string{""}
		for _, sub := range re.Sub {
			l, ok := exact(sub)
			if !ok || len(out)*len(l) > maxLiterals {
				return nil, false
			}
			out = product(out, l)
		}
		return out, true
	case syntax.OpAlternate:
		for _, sub := range re.Sub {
			l, ok := exact(sub)
			if !ok || len(lits)+len(l) > maxLiterals {
				return nil, false
			}
			lits = append(lits, l...)
		}
		return lits, true
	}
	return nil, false
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

// asciiLower folds A-Z only, as litscan compares.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
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
// prefiltered matcher: __matches(__facts, x, index).
type matchPatcher struct{ p *prefilter }

func (p matchPatcher) Visit(np *ast.Node) {
	b, ok := (*np).(*ast.BinaryNode)
	if !ok || b.Operator != "matches" {
		return
	}
	lit, ok := b.Right.(*ast.StringNode)
	if !ok {
		return
	}
	idx, ok := p.p.index(lit.Value)
	if !ok {
		return
	}
	call := &ast.CallNode{
		Callee:    &ast.IdentifierNode{Value: matchFunc},
		Arguments: []ast.Node{&ast.IdentifierNode{Value: groupEnvName}, b.Left, &ast.IntegerNode{Value: idx}},
	}
	call.Callee.SetLocation(b.Location())
	call.Arguments[0].SetLocation(b.Location())
	call.Arguments[2].SetLocation(lit.Location())
	ast.Patch(np, call)
}

// prefilter is a rule set's matchers and the one scanner of all their
// literals.
type prefilter struct {
	byPattern map[string]int
	matchers  []*matcher
	scan      *litscan.Set // nil: no literals (or too many)
}

// index returns the matcher of pattern, compiling it the first time.
func (p *prefilter) index(pattern string) (int, bool) {
	if i, ok := p.byPattern[pattern]; ok {
		return i, true
	}
	m := newMatcher(pattern)
	if m == nil {
		return 0, false
	}
	if p.byPattern == nil {
		p.byPattern = map[string]int{}
	}
	p.byPattern[pattern] = len(p.matchers)
	p.matchers = append(p.matchers, m)
	return len(p.matchers) - 1, true
}

// build compiles the scanner once every condition is compiled.
func (p *prefilter) build() {
	ids := map[string]int32{}
	var lits []string
	for _, m := range p.matchers {
		m.shared = nil
		for _, c := range m.clauses {
			var cl []int32
			for _, l := range c {
				id, ok := ids[l]
				if !ok {
					id = int32(len(lits))
					ids[l] = id
					lits = append(lits, l)
				}
				cl = append(cl, id)
			}
			m.shared = append(m.shared, cl)
		}
	}
	if len(lits) == 0 {
		return
	}
	if ls, err := litscan.New(lits); err == nil {
		p.scan = ls
	}
}

// scanCacheMin: texts this long have their scan kept for the message's
// other rules (bodies, headers joined); shorter ones are scanned anew.
const scanCacheMin = 128

// maxScanCache bounds the scans kept per evaluation.
const maxScanCache = 32

// match runs matcher idx on text for one evaluation, with the scan of
// text kept when the same text (the same string, as lower(body) or body
// is for every rule) is asked again.
func (s *state) match(text string, idx int) bool {
	p := s.set.prefilter
	m := p.matchers[idx]
	if p.scan == nil || m.shared == nil {
		return m.run(text)
	}
	if len(text) < scanCacheMin {
		return m.matchScanned(text, scanText(p.scan, text), m.shared)
	}
	key := scanKey{unsafe.StringData(text), len(text)}
	sc := s.scans[key]
	if sc == nil {
		// lower(body + " " + subject) after lower(body): only the
		// subject is scanned again
		var head *scanned
		for _, c := range s.scans {
			if len(c.text) < len(text) && (head == nil || len(c.text) > len(head.text)) && text[:len(c.text)] == c.text {
				head = c
			}
		}
		sc = scanAfter(p.scan, head, text)
		if len(s.scans) < maxScanCache {
			if s.scans == nil {
				s.scans = map[scanKey]*scanned{}
			}
			s.scans[key] = sc
		}
	}
	return m.matchScanned(text, sc, m.shared)
}

// scanKey names a string by its bytes' address and length: strings are
// immutable, and the cache entry keeps the string reachable, so no other
// text can have that address while the key lives.
type scanKey struct {
	p *byte
	n int
}
