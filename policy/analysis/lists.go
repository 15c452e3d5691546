package analysis

import (
	_ "embed"
	"strings"
)

//go:embed shorteners.txt
var shortenersTxt string

//go:embed freemail.txt
var freemailTxt string

// The shipped host lists, read once at package load (a plain variable
// initialiser: no init() registry).
var (
	shorteners = readList(shortenersTxt)
	freemail   = readList(freemailTxt)
)

// readList reads one lower-case name per line; "#" starts a comment.
func readList(s string) map[string]bool {
	m := map[string]bool{}
	for _, line := range strings.Split(s, "\n") {
		line, _, _ = strings.Cut(line, "#")
		if line = strings.ToLower(strings.TrimSpace(line)); line != "" {
			m[line] = true
		}
	}
	return m
}

// asciiLower lower-cases ASCII letters only, keeping every byte offset.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + ('a' - 'A')
				}
			}
			return string(b)
		}
	}
	return s
}
