package spf

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// This file checks the syntax of an SPF record completely before it is
// evaluated (RFC 7208 §4.6: "if there are any syntax errors anywhere in
// the record, check_host() returns immediately with the result
// "permerror", without further interpretation or evaluation"). The
// library evaluates terms in order and stops at the first match, so a
// record such as "ip4:1.2.3.4 -all moo" would pass a client at 1.2.3.4;
// checked here first, it is permerror wherever the error is.

// term is one directive or modifier of a record (RFC 7208 §4.6.1, §12).
type term struct {
	raw      string // as written
	qual     string // "+", "-", "~", "?" or "" (none written; modifiers)
	name     string // lower-case mechanism or modifier name
	modifier bool
	domain   string // domain-spec as written, "" when absent
	cidr     string // a and mx: the dual-cidr-length as written, e.g. "/24//64"
}

// record is a syntactically valid SPF record.
type record struct{ terms []term }

// maxRecordLen bounds the record read: TXT records of one name hold at
// most a 64 KiB message.
const maxRecordLen = 64 * 1024

var (
	modifierName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._-]*=`)
	mechName     = regexp.MustCompile(`^[A-Za-z0-9]*`)
	// dualCIDR splits "domain-spec" from a trailing dual-cidr-length; the
	// lazy domain part makes the cidr suffix as long as possible.
	dualCIDR = regexp.MustCompile(`^(.*?)((?:/[0-9]+)?(?://[0-9]+)?)$`)
)

// isSPFRecord reports whether a TXT string is an SPF version 1 record
// (RFC 7208 §4.5: "v=spf1" followed by a space or the end; the version is
// case-insensitive as ABNF strings are).
func isSPFRecord(txt string) bool {
	if len(txt) < 6 || !strings.EqualFold(txt[:6], "v=spf1") {
		return false
	}
	return len(txt) == 6 || txt[6] == ' '
}

// parseRecord checks the whole of an SPF record against the ABNF of RFC
// 7208 §12 and the rules of §5, §6 and §7.1 that the ABNF does not carry.
func parseRecord(txt string) (*record, error) {
	if len(txt) > maxRecordLen {
		return nil, errors.New("record too long")
	}
	if !isSPFRecord(txt) {
		return nil, errors.New("not an SPF record")
	}
	// §12: the record is printable US-ASCII; terms are separated by SP
	// only (a TAB, CR or NUL inside is a syntax error, §3.1 and §12).
	for i := 0; i < len(txt); i++ {
		if c := txt[i]; c < 0x20 || c > 0x7e {
			return nil, fmt.Errorf("character 0x%02x not allowed in a record", c)
		}
	}
	rec := &record{}
	redirects, exps := 0, 0
	for _, f := range strings.Split(txt[6:], " ") {
		if f == "" {
			continue
		}
		t, err := parseTerm(f)
		if err != nil {
			return nil, fmt.Errorf("term %q: %w", clip(f), err)
		}
		switch {
		case t.modifier && t.name == "redirect":
			redirects++
		case t.modifier && t.name == "exp":
			exps++
		}
		rec.terms = append(rec.terms, t)
	}
	// §6: redirect and exp each appear at most once.
	if redirects > 1 {
		return nil, errors.New("more than one redirect= modifier")
	}
	if exps > 1 {
		return nil, errors.New("more than one exp= modifier")
	}
	return rec, nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

func parseTerm(f string) (term, error) {
	t := term{raw: f}
	// §4.6.1: a modifier is name "=" …, the "=" before any ":" or "/".
	if m := modifierName.FindString(f); m != "" {
		t.modifier = true
		t.name = strings.ToLower(m[:len(m)-1])
		v := f[len(m):]
		switch t.name {
		case "redirect", "exp":
			// §6.1, §6.2: the value is a domain-spec.
			if err := checkDomainSpec(v); err != nil {
				return t, err
			}
			t.domain = v
		default:
			// §6.3: unknown-modifier = name "=" macro-string.
			if err := checkMacroString(v, true); err != nil {
				return t, err
			}
		}
		return t, nil
	}
	rest := f
	if strings.ContainsRune("+-~?", rune(rest[0])) {
		t.qual, rest = rest[:1], rest[1:]
	}
	n := mechName.FindString(rest)
	t.name = strings.ToLower(n)
	body := rest[len(n):]
	switch t.name {
	case "all":
		if body != "" {
			return t, errors.New("all takes no argument")
		}
	case "include", "exists":
		if !strings.HasPrefix(body, ":") {
			return t, errors.New(t.name + " needs a domain-spec")
		}
		t.domain = body[1:]
		return t, checkDomainSpec(t.domain)
	case "a", "mx":
		spec, cidr := "", body
		if strings.HasPrefix(body, ":") {
			m := dualCIDR.FindStringSubmatch(body[1:])
			spec, cidr = m[1], m[2]
			if err := checkDomainSpec(spec); err != nil {
				return t, err
			}
		}
		if err := checkDualCIDR(cidr); err != nil {
			return t, err
		}
		t.domain, t.cidr = spec, cidr
	case "ptr":
		if body == "" {
			return t, nil
		}
		if !strings.HasPrefix(body, ":") {
			return t, errors.New("bad ptr argument")
		}
		t.domain = body[1:]
		return t, checkDomainSpec(t.domain)
	case "ip4", "ip6":
		if !strings.HasPrefix(body, ":") {
			return t, errors.New(t.name + " needs an address")
		}
		addr, cidr, _ := strings.Cut(body[1:], "/")
		ip, err := netip.ParseAddr(addr) // no leading zeros in IPv4 (§12 qnum)
		if err != nil || ip.Zone() != "" || (t.name == "ip4") != ip.Is4() {
			return t, errors.New("bad " + t.name + " address")
		}
		if strings.Contains(body[1:], "/") {
			max := 32
			if t.name == "ip6" {
				max = 128
			}
			if !cidrLength(cidr, max) {
				return t, errors.New("bad " + t.name + " prefix length")
			}
		}
	default:
		return t, errors.New("unknown mechanism")
	}
	return t, nil
}

// checkDualCIDR: dual-cidr-length = [ ip4-cidr-length ] [ "/" ip6-cidr-length ].
func checkDualCIDR(s string) error {
	if s == "" {
		return nil
	}
	v4, v6, dual := strings.Cut(s, "//")
	if v4 != "" {
		if v4[0] != '/' || !cidrLength(v4[1:], 32) {
			return errors.New("bad ip4 prefix length")
		}
	}
	if dual && !cidrLength(v6, 128) {
		return errors.New("bad ip6 prefix length")
	}
	return nil
}

// cidrLength: "0" / %x31-39 0*2DIGIT, at most max (§12: no leading zero).
func cidrLength(s string, max int) bool {
	if s == "" || len(s) > 3 || (len(s) > 1 && s[0] == '0') {
		return false
	}
	n, err := strconv.Atoi(s)
	return err == nil && n >= 0 && n <= max
}

// checkDomainSpec: domain-spec = macro-string domain-end, domain-end =
// ( "." toplabel [ "." ] ) / macro-expand (§7.1). The c, r and t macros are
// allowed only in explanation text, not here (§7.3).
func checkDomainSpec(s string) error {
	if s == "" {
		return errors.New("empty domain-spec")
	}
	if err := checkMacroString(s, false); err != nil {
		return err
	}
	if endsWithMacroExpand(s) {
		return nil
	}
	d := strings.TrimSuffix(s, ".")
	i := strings.LastIndexByte(d, '.')
	if i < 0 || !isTopLabel(d[i+1:]) {
		return errors.New("domain-spec does not end in a valid top label")
	}
	return nil
}

// endsWithMacroExpand reports whether a valid macro-string ends with a
// macro-expand: "%{…}", "%%", "%_" or "%-".
func endsWithMacroExpand(s string) bool {
	last := -1 // end of the last macro-expand
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			continue
		}
		if s[i+1] == '{' {
			j := strings.IndexByte(s[i:], '}')
			i += j
		} else {
			i++
		}
		last = i
	}
	return last == len(s)-1
}

// isTopLabel: toplabel = ( *alphanum ALPHA *alphanum ) /
// ( 1*alphanum "-" *( alphanum / "-" ) alphanum ).
func isTopLabel(l string) bool {
	if l == "" {
		return false
	}
	alpha, hyphen := false, false
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			alpha = true
		case c >= '0' && c <= '9':
		case c == '-':
			hyphen = true
		default:
			return false
		}
	}
	if !hyphen {
		return alpha
	}
	return isAlnum(l[0]) && isAlnum(l[len(l)-1])
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// checkMacroString checks macro-string = *( macro-expand / macro-literal )
// (§7.1). allLetters admits c, r and t (explanation text and unknown
// modifiers).
func checkMacroString(s string, allLetters bool) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			// macro-literal = %x21-24 / %x26-7E
			if c < 0x21 || c > 0x7e {
				return errors.New("character not allowed in a macro-string")
			}
			continue
		}
		if i+1 >= len(s) {
			return errors.New("lone % at the end")
		}
		switch s[i+1] {
		case '%', '_', '-':
			i++
			continue
		case '{':
		default:
			return fmt.Errorf("bad macro %%%c", s[i+1])
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return errors.New("unterminated macro")
		}
		if _, err := parseMacro(s[i+2:i+j], allLetters); err != nil {
			return err
		}
		i += j
	}
	return nil
}

// macro is the inside of one "%{…}".
type macro struct {
	letter  byte // lower case
	upper   bool // URL-escape the result (§7.3)
	digits  int  // 0: all parts
	reverse bool
	delims  string
}

// parseMacro parses macro-letter transformers *delimiter (§7.1), where
// transformers = *DIGIT [ "r" ] and a DIGIT value must not be zero (§7.3).
func parseMacro(s string, allLetters bool) (macro, error) {
	var m macro
	if s == "" {
		return m, errors.New("empty macro")
	}
	l := s[0]
	if l >= 'A' && l <= 'Z' {
		m.upper, l = true, l+'a'-'A'
	}
	switch l {
	case 's', 'l', 'o', 'd', 'i', 'p', 'h', 'v':
	case 'c', 'r', 't':
		if !allLetters {
			return m, fmt.Errorf("macro %%{%c} is allowed only in explanation text", s[0])
		}
	default:
		return m, fmt.Errorf("unknown macro letter %q", s[0])
	}
	m.letter = l
	i := 1
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i > 1 {
		if i-1 > 3 {
			return m, errors.New("macro digit transformer too large")
		}
		n, _ := strconv.Atoi(s[1:i])
		if n == 0 {
			return m, errors.New("macro digit transformer zero")
		}
		m.digits = n
	}
	if i < len(s) && (s[i] == 'r' || s[i] == 'R') {
		m.reverse = true
		i++
	}
	m.delims = s[i:]
	for ; i < len(s); i++ {
		if !strings.ContainsRune(".-+,/_=", rune(s[i])) {
			return m, fmt.Errorf("bad macro delimiter %q", s[i])
		}
	}
	if m.delims == "" {
		m.delims = "."
	}
	return m, nil
}
