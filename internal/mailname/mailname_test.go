package mailname

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestFold(t *testing.T) {
	tests := map[string]string{
		"bob@moat.test":             "bob@moat.test",
		"BOB@MOAT.TEST":             "bob@moat.test",
		"bob@moat.test.":            "bob@moat.test",
		" bob@moat.test\t":          "bob@moat.test",
		"\u00a0bob@moat.test":       "bob@moat.test",
		"bob@ｍｏａｔ.test":             "bob@moat.test",
		"bob@moat。test":             "bob@moat.test",
		"bob@moat．test":             "bob@moat.test",
		"bob@MO\u00adAT.test":       "bob@moat.test",
		"ｂｏｂ@moat.test":             "bob@moat.test",
		"bob＠moat.test":             "bob@moat.test", // fullwidth commercial at
		"bob+tag@moat.test":         "bob+tag@moat.test",
		"bob@bücher.example":        "bob@xn--bcher-kva.example",
		"bob@XN--BCHER-KVA.example": "bob@xn--bcher-kva.example",
		"a@b@moat.test":             "a@b@moat.test",
		"bob":                       "bob",
		"":                          "",
		"bob@moat_x.test":           "bob@moat_x.test",
	}
	for in, want := range tests {
		if got := Fold(in); got != want {
			t.Errorf("Fold(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFoldBounded(t *testing.T) {
	long := strings.Repeat("ｂ", 2000) + "@moat.test"
	if got := Fold(long); len(got) > MaxLen {
		t.Fatalf("Fold of %d bytes: %d bytes", len(long), len(got))
	}
}

func FuzzFold(f *testing.F) {
	for _, s := range []string{"bob@moat.test", "BOB@MOAT.TEST.", " ｂｏｂ@ｍｏａｔ。test ", "a@b@c", "\xff@\xfe", "bob@xn--zz", "0@0000 .", "@ .."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k := Fold(s)
		if len(k) > MaxLen {
			t.Fatalf("Fold(%q): %d bytes", s, len(k))
		}
		if utf8.ValidString(s) && len(s) <= MaxInput/4 && Fold(k) != k && len(k) < MaxLen {
			t.Fatalf("Fold not idempotent: %q -> %q -> %q", s, k, Fold(k))
		}
	})
}

func TestValidDomain(t *testing.T) {
	for d, want := range map[string]bool{
		"example.org": true, "_dmarc.example.org": true, "a-b.c1": true, "x": true,
		"": false, "Example.org": false, "a..b": false, ".a": false, "a.": false, "a b.org": false, "bücher.de": false,
		strings.Repeat("a", 63) + ".org": true, strings.Repeat("a", 64) + ".org": false,
		strings.Repeat("a.", 126) + "a": true, strings.Repeat("a.", 126) + "ab": false,
	} {
		if got := ValidDomain(d); got != want {
			t.Errorf("ValidDomain(%q) = %t, want %t", d, got, want)
		}
	}
}
