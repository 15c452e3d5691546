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
