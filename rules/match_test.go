package rules

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestClauses(t *testing.T) {
	tests := []struct {
		pattern string
		want    [][]string // nil: no prefilter
		fold    bool
	}{
		{"(viagra|casino|loan)", [][]string{{"casino", "loan", "viagra"}}, false},
		{"(?i)(Viagra|CASINO)", [][]string{{"casino", "viagra"}}, true},
		{"dear (customer|user)", [][]string{{"dear customer", "dear user"}}, false},
		{"(suspend|locked)(ed)? .{0,40}account", [][]string{{"locked ", "lockeded ", "suspend ", "suspended "}, {"account"}}, false},
		{"(earn (extra )?(money|cash))", [][]string{{"earn cash", "earn extra cash", "earn extra money", "earn money"}}, false},
		{"(bitcoin|btc|wallet)", [][]string{{"bitcoin", "btc", "wallet"}}, false},
		{"(?i)dear (User|cUSTOMER)", [][]string{{"dear customer", "dear user"}}, true},
		// every factor counts: the greeting and the @
		{"(dear|hello|hi),? [a-z]+@", [][]string{{"dear ", "dear, ", "hello ", "hello, ", "hi ", "hi, "}, {"@"}}, false},
		{"\\b[a-z]+[0134][a-z]+\\b", [][]string{{"0", "1", "3", "4"}}, false},
		{"(abc|[0-9]+%)", [][]string{{"%", "abc"}}, false},
		{"(abc|[0-9]+)", nil, false}, // a branch with no literal
		{"x?", nil, false},
		{"!", [][]string{{"!"}}, false},
		{"(?i)straße", nil, false}, // ß folds beyond ASCII
		{"Price: [$€]", [][]string{{"price: "}}, false},
	}
	for _, tc := range tests {
		m := newMatcher(tc.pattern)
		var got [][]string
		for _, c := range m.clauses {
			c = slices.Clone(c)
			slices.Sort(c)
			got = append(got, c)
		}
		if !slices.EqualFunc(got, tc.want, slices.Equal) || (tc.want != nil && m.fold != tc.fold) {
			t.Errorf("%q: clauses %q fold %t, want %q fold %t", tc.pattern, got, m.fold, tc.want, tc.fold)
		}
	}
}

// TestMatcherAgreesWithRegexp: the prefilter never changes a result.
func TestMatcherAgreesWithRegexp(t *testing.T) {
	patterns := []string{"(viagra|casino|loan)", "(?i)(viagra|casino)", "dear (customer|user)", "(?i)mask", "(?i)kelvin",
		"(suspend|locked)(ed)? .{0,40}account", "^(re|fw) ?:", "(?i)(v[^a-z0-9\\s]?[i1!|][^a-z0-9\\s]?[a@]gra)"}
	patterns = append(patterns, "(?i)dear (User|cUSTOMER)", "(bitcoin|btc|wallet)", "(dear|hello|hi),? [a-z]+@", "[0134]x(ab|cd)",
		"(?i)straße", "Price: [$€]", "(?i)price")
	inputs := []string{"", "DEAR customer", "dear CUSTOMER", "say hi, bob@", "0xab", "4xcd", "BTC", "VIAGRA now", "cheap viagra", "Dear customer,", "dear user", "your account was locked", "locked: see account",
		"ma\u017fk", "\u212aelvin", "re: hi", "V!AGRA", "Casino", "nothing here", "STRASSE", "straße", "STRAẞE", "Price: €"}
	for _, p := range patterns {
		m, re := newMatcher(p), regexp.MustCompile(p)
		for _, in := range inputs {
			if got, want := matchAlone(m, in), re.MatchString(in); got != want {
				t.Errorf("%q matches %q: %t, regexp says %t", in, p, got, want)
			}
		}
	}
}

func FuzzMatcher(f *testing.F) {
	f.Add("(?i)(viagra|casino)", "Cheap VIAGRA")
	f.Add("dear (customer|user)", "dear user")
	f.Add("(?i)s(k|x)", "\u017f\u212a")
	f.Add("(?i)(v[^a-z0-9\\s]?[i1!|]gra|c[!1]x)", "vw cd v-1gra c!X v\xffigra")
	f.Fuzz(func(t *testing.T, pattern, in string) {
		re, err := regexp.Compile(pattern)
		if err != nil || len(pattern) > 200 {
			return
		}
		if got, want := matchAlone(newMatcher(pattern), in), re.MatchString(in); got != want {
			t.Fatalf("%q matches %q: %t, regexp says %t", in, pattern, got, want)
		}
	})
}

// TestSharedScanAgrees: the rule set's one scanner, with its cache of
// scans per text, gives each matcher the regexp's own answer.
func TestSharedScanAgrees(t *testing.T) {
	patterns := []string{"(viagra|casino|loan)", "(?i)(viagra|casino)", "dear (customer|user)", "(?i)mask",
		"(suspend|locked)(ed)? .{0,40}account", "^(re|fw) ?:", "(dear|hello|hi),? [a-z]+@", "!", "x?", "(abc|[0-9]+%)"}
	long := strings.Repeat("abcdefghijklmnopqrstuvwxyz0123456789 ", 8)
	// long texts that begin with an earlier one are scanned on from it,
	// a rune cut in two at the joint included
	inputs := []string{"", "say hi, bob@", "dear CUSTOMER", "VIAGRA", long, long + "dear user", long + "ma\u017fk", "50% off!", long + "locked: see account",
		long + "ma\xc5", long + "ma\xc5\xbfk", long + "dear user and more"}
	p := &prefilter{}
	for _, pat := range patterns {
		if _, ok := p.index(pat); !ok {
			t.Fatal(pat)
		}
	}
	p.build()
	st := &state{set: &Set{prefilter: p}}
	for round := 0; round < 2; round++ { // the second round reads the cached scans
		for _, in := range inputs {
			for i, pat := range patterns {
				if got, want := st.match(in, i), regexp.MustCompile(pat).MatchString(in); got != want {
					t.Errorf("round %d: %q matches %q: %t, regexp says %t", round, in, pat, got, want)
				}
			}
		}
	}
	if len(st.scans) == 0 {
		t.Error("no scan was kept for the long texts")
	}
}

// TestStartsWindow: patterns tried at their first bytes on a window give
// the regexp's own answer, and the optimisation applies where it should.
func TestStartsWindow(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		applies bool
	}{
		{"(?i)(v[^a-z0-9\\s]?[i1!|][^a-z0-9\\s]?[a@][^a-z0-9\\s]?g[^a-z0-9\\s]?r[^a-z0-9\\s]?[a@]|c[^a-z0-9\\s]?[i1!|][^a-z0-9\\s]?[a@][^a-z0-9\\s]?l[^a-z0-9\\s]?[i1!|][^a-z0-9\\s]?s)", true},
		{"(?i)sk[a-z]{0,3}x", true},
		{"\\bvia", false}, // an assertion looks outside the window
		{"v.a", true},
		{".a", false},      // any-char also matches U+FFFD, for any bad byte
		{"[a-z]+x", false}, // unbounded
		{"x?y?", false},    // matches the empty string
		{"[^a]bc", false},  // too many first bytes
		{"€[0-9]{1,3}", true},
	} {
		m := newMatcher(tc.pattern)
		if (m.anchored != nil) != tc.applies {
			t.Errorf("%q: window applies %t, want %t", tc.pattern, m.anchored != nil, tc.applies)
		}
	}
	// the byte after a start: v and c of the drug names go on with a
	// symbol or one of i1!|, never with a letter such as w or d
	m := newMatcher("(?i)(v[^a-z0-9\\s]?[i1!|][^a-z0-9\\s]?[a@]gra|c[!1i]alis)")
	if m.second == nil {
		t.Fatal("no second-byte filter")
	}
	for _, tc := range []struct {
		pair string
		may  bool
	}{{"vi", true}, {"VI", true}, {"v1", true}, {"v-", true}, {"c!", true}, {"v\xc3", true}, {"vw", false}, {"cd", false}, {"v ", false}, {"C7", false}} {
		if got := m.second[tc.pair[0]].has(tc.pair[1]); got != tc.may {
			t.Errorf("%q may start a match: %t, want %t", tc.pair, got, tc.may)
		}
	}
	patterns := []string{"(?i)(v[^a-z0-9\\s]?[i1!|][^a-z0-9\\s]?[a@]gra|c[!1i]alis)", "v.a", "(?i)sk[a-z]{0,3}x", "€[0-9]{1,3}", "(?i)k\u00e9",
		"v[^a-z]?", "[vc][!1]x", "(?i)as", "q[\u00e9\u00e8]"}
	inputs := []string{"", "v1agra", "V-!-@gra", "xx c!alis", "ſkabx", "\u212akex", "SKX", "price €12", "€", "\u212a\u00e9", "K\u00c9",
		"v\xff1agra", "v\xffa", "\xe2\x82", "v\u20aca", strings.Repeat("v", 300) + "iagra", "v!@gra",
		"v", "xv", "cv!x", "c!", "a\u017f", "A\u017fx", "q\u00e9", "q\xff", "qe"}
	for _, p := range patterns {
		m, re := newMatcher(p), regexp.MustCompile(p)
		for _, in := range inputs {
			if got, want := m.run(in), re.MatchString(in); got != want {
				t.Errorf("%q matches %q: %t, regexp says %t", in, p, got, want)
			}
		}
	}
}

// matchAlone runs m through a rule set's prefilter holding it alone, as
// the engine runs it.
func matchAlone(m *matcher, s string) bool {
	p := &prefilter{matchers: []*matcher{m}}
	p.build()
	return (&state{set: &Set{prefilter: p}}).match(s, 0)
}
