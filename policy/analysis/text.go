package analysis

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// TextFacts describe the visible text: text/plain parts and HTML rendered
// to text without its hidden parts. Rules read them as text.<name>.
type TextFacts struct {
	Script    string  `expr:"script"`    // dominant Unicode script of the letters ("latin", "cyrillic", …), "" with no letters
	Scripts   int     `expr:"scripts"`   // scripts holding at least 5% of the letters
	Letters   int     `expr:"letters"`   // letters counted
	NonASCII  float64 `expr:"non_ascii"` // share of letters outside ASCII (0..1)
	Words     int     `expr:"words"`
	Caps      float64 `expr:"caps"`      // capitals / cased letters (0..1)
	Bytes     int     `expr:"bytes"`     // visible text bytes
	Truncated bool    `expr:"truncated"` // the text was cut at Options.MaxTextBytes, or a part was
}

var textScripts = []struct {
	name  string
	table *unicode.RangeTable
}{
	{"latin", unicode.Latin}, {"cyrillic", unicode.Cyrillic}, {"greek", unicode.Greek},
	{"arabic", unicode.Arabic}, {"hebrew", unicode.Hebrew}, {"han", unicode.Han},
	{"hiragana", unicode.Hiragana}, {"katakana", unicode.Katakana}, {"hangul", unicode.Hangul},
	{"thai", unicode.Thai}, {"devanagari", unicode.Devanagari}, {"bengali", unicode.Bengali},
	{"tamil", unicode.Tamil}, {"armenian", unicode.Armenian}, {"georgian", unicode.Georgian},
}

func (r *Result) computeText() {
	r.HTML()
	w := r.parts()
	f := &r.text
	// the text parts, then the HTML's visible text, a line apart; one
	// part alone (most mail) is not copied
	var pieces []string
	room := r.opt.MaxTextBytes
	for p := range w.plainTexts(&f.Truncated) {
		if len(p.text) > room {
			f.Truncated = true
		}
		t := p.text[:min(len(p.text), room)]
		pieces = append(pieces, t)
		room -= len(t) + 1
		if room <= 0 {
			break
		}
	}
	if room > 0 && len(r.scan.visible) > 0 {
		v := r.scan.visible
		if len(v) > room {
			v, f.Truncated = v[:room], true
		}
		pieces = append(pieces, string(v))
	}
	f.Truncated = f.Truncated || r.html.Truncated || w.truncated
	r.visible = strings.Join(pieces, "\n")
	if !utf8.ValidString(r.visible) {
		r.visible = strings.ToValidUTF8(r.visible, "")
	}
	s := r.visible
	f.Bytes = len(s)
	// one pass: words (as countWords counts them), letters, case, scripts
	var counts [16]int
	nonASCII, upper, cased := 0, 0, 0
	inWord := false
	for len(s) > 0 {
		if c := s[0]; c < utf8.RuneSelf {
			s = s[1:]
			w := true
			switch {
			case 'a' <= c && c <= 'z':
				f.Letters++
				counts[0]++
				cased++
			case 'A' <= c && c <= 'Z':
				f.Letters++
				counts[0]++
				cased++
				upper++
			case '0' <= c && c <= '9':
			default:
				w = false
			}
			if w && !inWord {
				f.Words++
			}
			inWord = w
			continue
		}
		c, size := utf8.DecodeRuneInString(s)
		s = s[size:]
		letter := unicode.IsLetter(c)
		w := letter || unicode.IsDigit(c)
		if w && !inWord {
			f.Words++
		}
		inWord = w
		if !letter {
			continue
		}
		f.Letters++
		nonASCII++
		if unicode.IsUpper(c) {
			upper++
			cased++
		} else if unicode.IsLower(c) {
			cased++
		}
		for i, t := range textScripts {
			if unicode.Is(t.table, c) {
				counts[i]++
				break
			}
		}
	}
	if f.Letters > 0 {
		f.NonASCII = float64(nonASCII) / float64(f.Letters)
		best := -1
		for i := range textScripts {
			if counts[i] > 0 && (best < 0 || counts[i] > counts[best]) {
				best = i
			}
			if counts[i]*20 >= f.Letters && counts[i] > 0 {
				f.Scripts++
			}
		}
		if best >= 0 {
			f.Script = textScripts[best].name
		}
	}
	if cased > 0 {
		f.Caps = float64(upper) / float64(cased)
	}
}
