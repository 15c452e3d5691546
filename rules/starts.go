package rules

import (
	"regexp"
	"regexp/syntax"
	"unicode"
	"unicode/utf8"
)

// Some patterns need no literal a prefilter could look for, such as
// `(?i)v[^a-z0-9\s]?[i1!|]…gra` for spellings like "v1agra" (every letter
// may be replaced or followed by a symbol). Go's regexp then tries every
// position of a body with its backtracker or NFA. When every match starts
// with one of a few bytes (v, V, c, C) and is at most a few bytes long, it
// is much cheaper to find those bytes and try the pattern anchored at each
// of them, on a window as long as the longest match. That is only sound
// for patterns without assertions (^, $, \b look outside the window), and
// whose first character cannot be U+FFFD, which Go's regexp also reads for
// an invalid byte (so a match could start at a byte the set lacks).
//
// Letters such as v and c come several times a line, so the anchored
// pattern would still run many times a body. The byte after the start narrows
// it down: the program the pattern compiles to says, for each first byte,
// which runes may come second (`v` then a symbol or one of i1!|), and a
// start whose next byte cannot begin such a rune is skipped without the
// regexp. A non-ASCII second rune is judged by its class alone (any byte
// from 0x80 passes when some rune above 0x7F may follow, U+FFFD for an
// invalid byte included), so the filter never refuses a match.

// maxWindow bounds the matches this applies to, in bytes.
const maxWindow = 256

// startsAt sets m.starts, m.anchored and m.window when the pattern allows.
func (m *matcher) startsAt(tree *syntax.Regexp, pattern string) {
	if !windowSafe(tree) {
		return
	}
	var set [256]bool
	nullable, ok := firstBytes(tree, &set)
	if !ok || nullable {
		return
	}
	w, ok := maxBytes(tree)
	if !ok || w > maxWindow {
		return
	}
	anchored, err := regexp.Compile(`^(?:` + pattern + `)`)
	if err != nil {
		return
	}
	n := 0
	for _, b := range set {
		if b {
			n++
		}
	}
	if n > 16 {
		return // too common a start to pay
	}
	m.starts, m.anchored, m.window = &set, anchored, w
	m.second = secondBytes(tree, &set)
}

// byteSet is a set of bytes.
type byteSet [4]uint64

func (b *byteSet) add(c int)       { b[c>>6] |= 1 << (c & 63) }
func (b *byteSet) has(c byte) bool { return b[c>>6]&(1<<(c&63)) != 0 }
func (b *byteSet) addRange(lo, hi int) {
	for c := lo; c <= hi; c++ {
		b.add(c)
	}
}

// secondBytes returns, for each byte of starts, the bytes that may follow
// it in a match; nil when the program holds an instruction it does not
// know (the filter is then left out).
func secondBytes(tree *syntax.Regexp, starts *[256]bool) *[256]byteSet {
	prog, err := syntax.Compile(tree)
	if err != nil {
		return nil
	}
	first, ok := closure(prog, []uint32{uint32(prog.Start)})
	if !ok {
		return nil
	}
	var out [256]byteSet
	for b := 0; b < 256; b++ {
		switch {
		case !starts[b]:
			continue
		case b >= utf8.RuneSelf: // the first rune is not this byte alone
			out[b].addRange(0, 255)
			continue
		}
		var next []uint32
		for _, pc := range first {
			if consumes(&prog.Inst[pc], rune(b)) {
				next = append(next, prog.Inst[pc].Out)
			}
		}
		after, ok := closure(prog, next)
		if !ok {
			return nil
		}
		for _, pc := range after {
			in := &prog.Inst[pc]
			if in.Op == syntax.InstMatch {
				out[b].addRange(0, 255) // the match may end after one byte
				break
			}
			for c := 0; c < utf8.RuneSelf; c++ {
				if consumes(in, rune(c)) {
					out[b].add(c)
				}
			}
			if mayConsumeNonASCII(in) {
				out[b].addRange(utf8.RuneSelf, 255)
			}
		}
	}
	return &out
}

// closure returns the rune and match instructions reachable from pcs
// without reading a rune; false on an instruction it does not follow
// (an assertion, which windowSafe already refuses).
func closure(prog *syntax.Prog, pcs []uint32) ([]uint32, bool) {
	seen := make([]bool, len(prog.Inst))
	var out []uint32
	for len(pcs) > 0 {
		pc := pcs[len(pcs)-1]
		pcs = pcs[:len(pcs)-1]
		if seen[pc] {
			continue
		}
		seen[pc] = true
		in := &prog.Inst[pc]
		switch in.Op {
		case syntax.InstAlt, syntax.InstAltMatch:
			pcs = append(pcs, in.Out, in.Arg)
		case syntax.InstCapture, syntax.InstNop:
			pcs = append(pcs, in.Out)
		case syntax.InstRune, syntax.InstRune1, syntax.InstRuneAny, syntax.InstRuneAnyNotNL, syntax.InstMatch:
			out = append(out, pc)
		case syntax.InstFail:
		default:
			return nil, false
		}
	}
	return out, true
}

// consumes reports whether a rune instruction reads r.
func consumes(in *syntax.Inst, r rune) bool {
	switch in.Op {
	case syntax.InstRune:
		return in.MatchRune(r)
	case syntax.InstRune1:
		return in.Rune[0] == r
	case syntax.InstRuneAny:
		return true
	case syntax.InstRuneAnyNotNL:
		return r != '\n'
	}
	return false
}

// mayConsumeNonASCII reports whether a rune instruction may read some
// rune above U+007F (U+FFFD, an invalid byte, among them); true when in
// doubt.
func mayConsumeNonASCII(in *syntax.Inst) bool {
	switch in.Op {
	case syntax.InstRune:
		if syntax.Flags(in.Arg)&syntax.FoldCase != 0 {
			return true // k folds to U+212A, s to U+017F
		}
		if len(in.Rune) == 1 {
			return in.Rune[0] >= utf8.RuneSelf
		}
		for i := 1; i < len(in.Rune); i += 2 {
			if in.Rune[i] >= utf8.RuneSelf {
				return true
			}
		}
		return false
	case syntax.InstRune1:
		return in.Rune[0] >= utf8.RuneSelf
	case syntax.InstRuneAny, syntax.InstRuneAnyNotNL:
		return true
	}
	return false
}

// run is the regexp's answer for s.
func (m *matcher) run(s string) bool {
	if m.anchored == nil {
		return m.re.MatchString(s)
	}
	for i := 0; i < len(s); i++ {
		if !m.starts[s[i]] {
			continue
		}
		if m.second != nil && i+1 < len(s) && !m.second[s[i]].has(s[i+1]) {
			continue
		}
		end := min(len(s), i+m.window)
		for end < len(s) && !utf8.RuneStart(s[end]) {
			end++ // never cut a rune in two
		}
		if m.anchored.MatchString(s[i:end]) {
			return true
		}
	}
	return false
}

// firstBytes adds to set the first byte of every string re can match,
// and says whether re matches the empty string; ok false when the set is
// unknown (too large a class, an unknown operator).
func firstBytes(re *syntax.Regexp, set *[256]bool) (nullable, ok bool) {
	switch re.Op {
	case syntax.OpLiteral:
		if len(re.Rune) == 0 {
			return true, true
		}
		return false, addRune(set, re.Rune[0], re.Flags&syntax.FoldCase != 0)
	case syntax.OpCharClass:
		n := 0
		for i := 0; i < len(re.Rune); i += 2 {
			n += int(re.Rune[i+1]-re.Rune[i]) + 1
			if n > 64 {
				return false, false
			}
			for r := re.Rune[i]; r <= re.Rune[i+1]; r++ {
				if !addRune(set, r, false) {
					return false, false
				}
			}
		}
		return false, n > 0
	case syntax.OpCapture, syntax.OpPlus:
		return firstBytes(re.Sub[0], set)
	case syntax.OpQuest, syntax.OpStar:
		_, ok := firstBytes(re.Sub[0], set)
		return true, ok
	case syntax.OpRepeat:
		n, ok := firstBytes(re.Sub[0], set)
		return n || re.Min == 0, ok
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			n, ok := firstBytes(sub, set)
			if !ok {
				return false, false
			}
			if !n {
				return false, true
			}
		}
		return true, true
	case syntax.OpAlternate:
		nullable = false
		for _, sub := range re.Sub {
			n, ok := firstBytes(sub, set)
			if !ok {
				return false, false
			}
			nullable = nullable || n
		}
		return nullable, true
	case syntax.OpEmptyMatch:
		return true, true
	}
	return false, false
}

// addRune adds the first byte of r's encoding, and of its case variants
// when fold.
func addRune(set *[256]bool, r rune, fold bool) bool {
	if r == utf8.RuneError || r > unicode.MaxRune {
		return false
	}
	var buf [utf8.UTFMax]byte
	add := func(r rune) {
		utf8.EncodeRune(buf[:], r)
		set[buf[0]] = true
	}
	add(r)
	if fold {
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			add(f)
		}
	}
	return true
}

// windowSafe reports whether re has no assertion: ^, $, \b and \B look
// at text outside a window. (The window ends at a rune boundary, so what
// it holds decodes as in the whole text, U+FFFD for a bad byte included.)
func windowSafe(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return false
	}
	for _, sub := range re.Sub {
		if !windowSafe(sub) {
			return false
		}
	}
	return true
}

// maxBytes is the longest match of re in bytes; ok false when unbounded.
func maxBytes(re *syntax.Regexp) (int, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		n := 0
		for _, r := range re.Rune {
			l := utf8.RuneLen(r)
			if re.Flags&syntax.FoldCase != 0 {
				l = utf8.UTFMax // a case variant may be longer (k and K)
			}
			n += l
		}
		return n, true
	case syntax.OpCharClass:
		if len(re.Rune) == 0 {
			return 0, true
		}
		if l := utf8.RuneLen(re.Rune[len(re.Rune)-1]); l > 0 {
			return l, true
		}
		return utf8.UTFMax, true
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return utf8.UTFMax, true
	case syntax.OpCapture:
		return maxBytes(re.Sub[0])
	case syntax.OpQuest:
		return maxBytes(re.Sub[0])
	case syntax.OpRepeat:
		if re.Max < 0 {
			return 0, false
		}
		n, ok := maxBytes(re.Sub[0])
		return n * re.Max, ok && n*re.Max <= maxWindow
	case syntax.OpConcat:
		t := 0
		for _, sub := range re.Sub {
			n, ok := maxBytes(sub)
			if !ok {
				return 0, false
			}
			t += n
		}
		return t, true
	case syntax.OpAlternate:
		t := 0
		for _, sub := range re.Sub {
			n, ok := maxBytes(sub)
			if !ok {
				return 0, false
			}
			t = max(t, n)
		}
		return t, true
	case syntax.OpEmptyMatch:
		return 0, true
	}
	return 0, false
}
