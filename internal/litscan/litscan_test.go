package litscan

import (
	"slices"
	"strings"
	"testing"
)

// naive is the definition Scan must agree with.
func naive(lits []string, text string) []bool {
	t := string(foldAll(text)) // bytewise: invalid UTF-8 stays as it is
	out := make([]bool, len(lits))
	for i, l := range lits {
		out[i] = strings.Contains(t, string(foldAll(l)))
	}
	return out
}

func foldAll(s string) []byte {
	b := []byte(s)
	for i := range b {
		b[i] = fold(b[i])
	}
	return b
}

func check(t *testing.T, lits []string, text string) {
	t.Helper()
	s, err := New(lits)
	if err != nil {
		t.Fatal(err)
	}
	found := make([]uint64, s.Words())
	s.Scan(text, found)
	want := naive(lits, text)
	n := 0
	for i := range lits {
		if Has(found, i) != want[i] {
			t.Errorf("literal %q in %q: %t, want %t", lits[i], text, Has(found, i), want[i])
		}
		if want[i] {
			n++
		}
	}
	if Count(found) != n {
		t.Errorf("Count = %d, want %d", Count(found), n)
	}
	// split anywhere, the scan of the head resumed over the tail finds
	// the same
	for cut := 0; cut <= len(text); cut += 1 + len(text)/7 {
		parts := make([]uint64, s.Words())
		st := s.Resume(Start, text[:cut], parts)
		s.Resume(st, text[cut:], parts)
		if !slices.Equal(parts, found) {
			t.Errorf("%q resumed at %d: %x, whole scan %x", text, cut, parts, found)
		}
	}
}

func TestScan(t *testing.T) {
	lits := []string{"he", "she", "his", "hers", "viagra", "Casino", "@", "dear customer", "€", "a", "his"}
	for _, text := range []string{"", "ushers", "SHE said HIS", "cheap VIAGRA at the casino", "x@y", "Dear Customer,", "10 €", "hhhhhhis", "b"} {
		check(t, lits, text)
	}
	// many literals: bits past the first word
	var many []string
	for i := 0; i < 200; i++ {
		many = append(many, strings.Repeat(string(rune('a'+i%26)), 1+i/26))
	}
	check(t, many, "zzzzzzz aaa qqqqqqqq")
}

func TestNewRefuses(t *testing.T) {
	if _, err := New([]string{"a", ""}); err == nil {
		t.Error("empty literal accepted")
	}
	if _, err := New([]string{strings.Repeat("x", MaxBytes+1)}); err == nil {
		t.Error("oversized set accepted")
	}
}

func FuzzScan(f *testing.F) {
	f.Add("he,she,his,hers", "ushers")
	f.Add("Viagra,€,a", "VIAGRA €")
	f.Fuzz(func(t *testing.T, list, text string) {
		var lits []string
		for _, l := range strings.Split(list, ",") {
			if l != "" && len(lits) < 100 {
				lits = append(lits, l)
			}
		}
		if len(lits) == 0 || len(list) > 2000 {
			return
		}
		check(t, lits, text)
	})
}

func BenchmarkScan(b *testing.B) {
	lits := strings.Split("viagra,cialis,casino,poker,bitcoin,btc,wallet,dear customer,dear user,verify your account,"+
		"unusual sign-in,western union,lottery,winner,act now,free,discount,pharmacy,pills,weight loss", ",")
	s, _ := New(lits)
	text := strings.Repeat("abcdefghijklmnopqrstuvwxyz0123456789 the quick brown fox ", 36)
	found := make([]uint64, s.Words())
	b.SetBytes(int64(len(text)))
	for i := 0; i < b.N; i++ {
		s.Scan(text, found)
	}
}
