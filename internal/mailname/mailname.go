// Package mailname owns the one canonical spelling of a mailbox name
// ("local@domain") that moat uses as a key: for logins, the AUTH
// lock-out, the per-user sending limits, the send-as check and the user
// that is logged and recorded. Two spellings that Fold maps to the same
// string are the same name everywhere (issue 27: a trailing dot or a
// change of case must not give a locked-out user a fresh counter).
//
// Fold, step by step:
//   - white space around the name is dropped (a login typed with a
//     stray blank is the same login);
//   - the whole name is put in Unicode normalization form NFKC (UAX #15),
//     so compatibility look-alikes such as fullwidth letters and the
//     fullwidth full stop become their ASCII forms;
//   - the local part is lower-cased: moat's directory folds the case of
//     local parts (RFC 5321 §2.4 leaves that to the receiving host);
//   - the domain is mapped by UTS #46 (the IDNA lookup profile: case,
//     width, ideographic full stop, soft hyphen) to its A-label form and
//     lower case; a domain that does not map is only lower-cased;
//   - trailing dots are dropped (RFC 5321 §2.3.5: "example.org." is
//     the absolute form of "example.org"; more dots make no valid
//     domain either way, and dropping them all keeps Fold idempotent).
//
// Fold does not validate: the directory (mailbox) decides which folded
// names are addresses, and strips a subaddress ("bob+tag@") when it
// resolves a user. Input and output are bounded (MaxInput, MaxLen).
package mailname

import (
	"strings"
	"unicode"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

const (
	// MaxInput is how much of a name Fold reads; the rest is ignored.
	MaxInput = 1024
	// MaxLen bounds Fold's result: RFC 5321 §4.5.3.1.1 and §4.5.3.1.2
	// allow 64 + 1 + 255 octets.
	MaxLen = 320
)

// Fold returns the canonical key of a mailbox or login name (see the
// package doc). It never fails; "" stays "".
func Fold(s string) string {
	if len(s) > MaxInput {
		s = s[:MaxInput]
	}
	s = strings.TrimFunc(s, unicode.IsSpace)
	s = norm.NFKC.String(s)
	s = strings.TrimFunc(s, unicode.IsSpace) // NFKC may make spaces
	var out string
	if at := strings.LastIndexByte(s, '@'); at < 0 {
		out = strings.ToLower(s)
	} else {
		out = strings.ToLower(s[:at]) + "@" + Domain(s[at+1:])
	}
	if len(out) > MaxLen {
		out = out[:MaxLen]
	}
	return out
}

// Domain returns the canonical form of a domain name: UTS #46 mapped to
// A-labels, lower case, without trailing dots. A domain that the IDNA
// lookup profile refuses is only lower-cased (it names no domain of ours).
func Domain(d string) string {
	if len(d) > MaxInput {
		d = d[:MaxInput]
	}
	if a, err := idna.Lookup.ToASCII(d); err == nil {
		d = a
	}
	// The root label, and blanks as around the whole name.
	return strings.TrimRightFunc(strings.ToLower(d), func(r rune) bool { return r == '.' || unicode.IsSpace(r) })
}

// ValidDomain reports whether d, already lower-cased and without the
// root dot, is a domain in the form a mail address and a DNS query carry
// it: labels of 1 to 63 octets of letters, digits, "-" and "_", at most
// 253 octets in all (RFC 1035 §2.3.4).
func ValidDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
