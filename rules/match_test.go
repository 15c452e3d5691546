package rules

import (
	"regexp"
	"slices"
	"testing"
)

func TestRequiredLiterals(t *testing.T) {
	tests := []struct {
		pattern string
		want    []string // nil: no prefilter
		fold    bool
	}{
		{"(viagra|casino|loan)", []string{"viagra", "casino", "loan"}, false},
		{"(?i)(Viagra|CASINO)", []string{"viagra", "casino"}, true},
		{"dear (customer|user)", []string{"dear customer", "dear user"}, false},
		{"(suspend|locked)(ed)? .{0,40}account", []string{"locked ", "lockeded ", "suspend ", "suspended "}, false},
		{"(earn (extra )?(money|cash))", []string{"earn cash", "earn extra cash", "earn extra money", "earn money"}, false},
		{"(bitcoin|btc|wallet)", []string{"bitcoin", "btc", "wallet"}, false},
		{"(?i)dear (User|cUSTOMER)", []string{"dear user", "dear customer"}, true},
		{"(dear|hello|hi),? [a-z]+@", []string{"dear ", "dear, ", "hello ", "hello, ", "hi ", "hi, "}, false},
		{"\\b[a-z]+[0134][a-z]+\\b", nil, false},
		{"(abc|[0-9]+%)", nil, false}, // a branch with no literal
		{"x?", nil, false},
		{"!", nil, false}, // too short to pay
		{"(?i)straße", nil, false},
	}
	for _, tc := range tests {
		m := newMatcher(tc.pattern)
		got := slices.Clone(m.need)
		slices.Sort(got)
		want := slices.Clone(tc.want)
		slices.Sort(want)
		if !slices.Equal(got, want) || (tc.want != nil && m.fold != tc.fold) {
			t.Errorf("%q: need %q fold %t, want %q fold %t", tc.pattern, got, m.fold, want, tc.fold)
		}
	}
}

// TestMatcherAgreesWithRegexp: the prefilter never changes a result.
func TestMatcherAgreesWithRegexp(t *testing.T) {
	patterns := []string{"(viagra|casino|loan)", "(?i)(viagra|casino)", "dear (customer|user)", "(?i)mask", "(?i)kelvin",
		"(suspend|locked)(ed)? .{0,40}account", "^(re|fw) ?:", "(?i)(v[^a-z0-9\\s]?[i1!|][^a-z0-9\\s]?[a@]gra)"}
	patterns = append(patterns, "(?i)dear (User|cUSTOMER)", "(bitcoin|btc|wallet)", "(dear|hello|hi),? [a-z]+@", "[0134]x(ab|cd)")
	inputs := []string{"", "DEAR customer", "dear CUSTOMER", "say hi, bob@", "0xab", "4xcd", "BTC", "VIAGRA now", "cheap viagra", "Dear customer,", "dear user", "your account was locked", "locked: see account",
		"ma\u017fk", "\u212aelvin", "re: hi", "V!AGRA", "Casino", "nothing here"}
	for _, p := range patterns {
		m, re := newMatcher(p), regexp.MustCompile(p)
		for _, in := range inputs {
			if got, want := m.match(in), re.MatchString(in); got != want {
				t.Errorf("%q matches %q: %t, regexp says %t", in, p, got, want)
			}
		}
	}
}

func FuzzMatcher(f *testing.F) {
	f.Add("(?i)(viagra|casino)", "Cheap VIAGRA")
	f.Add("dear (customer|user)", "dear user")
	f.Add("(?i)s(k|x)", "\u017f\u212a")
	f.Fuzz(func(t *testing.T, pattern, in string) {
		re, err := regexp.Compile(pattern)
		if err != nil || len(pattern) > 200 {
			return
		}
		if got, want := newMatcher(pattern).match(in), re.MatchString(in); got != want {
			t.Fatalf("%q matches %q: %t, regexp says %t", in, pattern, got, want)
		}
	})
}
