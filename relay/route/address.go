package route

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// maxPath is the longest reverse or forward path, brackets included
// (RFC 5321 §4.5.3.1.3).
const maxPath = 256

// Split parses an envelope address ("user@example.org", with or without
// angle brackets) into its local part, as written, and its normalized
// domain (see NormalizeDomain).
//
// It refuses what would let a routing decision be taken on another
// domain than the one the mail is delivered to: source routes
// ("@a,@b:user@c", RFC 5321 §4.1.1.3 and Appendix C), IP literals
// ("user@[192.0.2.1]", RFC 5321 §4.1.3), a second "@" in the local part,
// quoted or not (`"user@other"@example.org`), and an empty local part or
// domain. "%" and "!" are legal in a local part (RFC 5322 §3.2.3 atext)
// and pass; refusing the percent hack and bang paths for untrusted
// clients is the caller's decision.
func Split(addr string) (local, domain string, err error) {
	if strings.HasPrefix(addr, "<") && strings.HasSuffix(addr, ">") && len(addr) >= 2 {
		addr = addr[1 : len(addr)-1]
	}
	if addr == "" {
		return "", "", errors.New("empty address")
	}
	if len(addr) > maxPath-2 {
		return "", "", fmt.Errorf("address longer than %d octets (RFC 5321 §4.5.3.1.3)", maxPath-2)
	}
	if addr[0] == '@' {
		return "", "", errors.New("source routes are not accepted (RFC 5321 §4.1.1.3)")
	}
	var at int
	if addr[0] == '"' {
		// Quoted-string local part (RFC 5321 §4.1.2): find the closing
		// quote, honouring backslash escapes.
		end := -1
		for i := 1; i < len(addr); i++ {
			c := addr[i]
			if c == '\\' {
				i++
				continue
			}
			if c == '"' {
				end = i
				break
			}
		}
		if end < 0 {
			return "", "", errors.New("unterminated quoted local part")
		}
		q := addr[1:end]
		if strings.Contains(q, "@") {
			return "", "", errors.New("quoted local part contains @")
		}
		for i := 0; i < len(q); i++ {
			if q[i] < 0x20 || q[i] == 0x7f {
				return "", "", errors.New("control character in local part")
			}
		}
		if end+1 >= len(addr) || addr[end+1] != '@' {
			return "", "", errors.New("missing @domain after quoted local part")
		}
		at = end + 1
	} else {
		at = strings.LastIndexByte(addr, '@')
		if at < 0 {
			return "", "", errors.New("missing @domain")
		}
		if at == 0 {
			return "", "", errors.New("empty local part")
		}
		if strings.IndexByte(addr[:at], '@') >= 0 {
			return "", "", errors.New("local part contains @")
		}
		for i := 0; i < at; i++ {
			c := addr[i]
			if c <= ' ' || c == 0x7f || c == '"' || c == '<' || c == '>' || c == '(' || c == ')' || c == ',' || c == ':' || c == ';' || c == '[' || c == ']' || c == '\\' {
				return "", "", fmt.Errorf("character %q not allowed in an unquoted local part", c)
			}
		}
	}
	local, dom := addr[:at], addr[at+1:]
	if dom == "" {
		return "", "", errors.New("empty domain")
	}
	if dom[0] == '[' {
		return "", "", errors.New("address literals are not routed (RFC 5321 §4.1.3)")
	}
	d, err := NormalizeDomain(dom)
	if err != nil {
		return "", "", err
	}
	return local, d, nil
}

// Domain returns the normalized domain of a plain mailbox, refusing
// source routes, IP literals, hidden "@" and empty parts (see Split).
func Domain(addr string) (string, error) {
	_, d, err := Split(addr)
	return d, err
}

// NormalizeDomain returns the form of a domain used for matching:
// lower case, one trailing dot removed, U-labels converted to A-labels
// (IDNA2008 with the UTS #46 lookup mapping, RFC 5891 §5). It checks the
// result against the preferred name syntax of RFC 1035 §2.3.1 as relaxed
// by RFC 1123 §2.1 (letters, digits, hyphen; labels of 1 to 63 octets, no
// leading or trailing hyphen; at most 253 octets).
func NormalizeDomain(d string) (string, error) {
	d = strings.TrimSuffix(d, ".")
	if d == "" {
		return "", errors.New("empty domain")
	}
	if len(d) > 1024 {
		return "", errors.New("domain too long")
	}
	if !utf8.ValidString(d) {
		// idna would read the stray octets as U+FFFD and route the
		// domain as if it were "xn--...": never (issue 27 item 4).
		return "", errors.New("domain is not UTF-8")
	}
	ascii := true
	for i := 0; i < len(d); i++ {
		if d[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		d = strings.ToLower(d)
	} else {
		a, err := idna.Lookup.ToASCII(d)
		if err != nil {
			return "", fmt.Errorf("domain %q: %w", d, err)
		}
		d = strings.ToLower(strings.TrimSuffix(a, "."))
	}
	if err := checkLDH(d); err != nil {
		return "", fmt.Errorf("domain %q: %w", d, err)
	}
	return d, nil
}

func checkLDH(d string) error {
	if len(d) > 253 {
		return errors.New("longer than 253 octets")
	}
	start := 0
	for i := 0; i <= len(d); i++ {
		if i < len(d) && d[i] != '.' {
			c := d[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("character %q not allowed", c)
			}
			continue
		}
		l := d[start:i]
		switch {
		case l == "":
			return errors.New("empty label")
		case len(l) > 63:
			return errors.New("label longer than 63 octets")
		case l[0] == '-' || l[len(l)-1] == '-':
			return errors.New("label starts or ends with a hyphen")
		}
		start = i + 1
	}
	return nil
}

// WireDomain checks a domain as a client sent it in MAIL FROM or RCPT TO
// with SMTPUTF8 and returns its normalized form (that of NormalizeDomain).
// RFC 6531 §3.3 lets such a domain hold U-labels, and a U-label is a
// valid IDNA2008 label as it stands (RFC 5890 §2.3.2.1): the mapping of
// UTS #46 (case folding, width folding, the ideographic and fullwidth
// full stops as dots, the soft hyphen removed) is for what a user types
// (RFC 5891 §5.2, RFC 5895), not for a protocol element, which a peer
// sends already in its final form (RFC 5891 §5.3-5.4). So "ｐｆ.test",
// "pf．test", "pf。test", "p<U+00AD>f.test" and "BÜCHER.example" are
// refused here, rather than quietly taken as another domain than the
// one sent; only ASCII letters may be in upper case (RFC 5321 §2.4).
// An ASCII domain is checked as NormalizeDomain does (its A-labels must
// decode to valid U-labels).
//
// The labels are checked as IDNA2008 registration would (no mapping,
// NFC, joiners, the bidi rule, DNS lengths) except for hyphens in the
// third and fourth positions of an ASCII label ("r3---sn" is a host name
// in use); checkLDH still refuses a leading or trailing hyphen.
func WireDomain(d string) (string, error) {
	if !utf8.ValidString(d) {
		return "", errors.New("domain is not UTF-8")
	}
	plain := strings.TrimSuffix(d, ".")
	if len(plain) > 1024 {
		return "", errors.New("domain too long")
	}
	lower := []byte(plain)
	for i, c := range lower {
		if c >= 'A' && c <= 'Z' {
			lower[i] = c + 'a' - 'A'
		}
	}
	if _, err := wireProfile.ToASCII(string(lower)); err != nil {
		return "", fmt.Errorf("domain %q is not a valid internationalized domain name as sent (RFC 5891 §5.4): %w", d, err)
	}
	return NormalizeDomain(d)
}

var wireProfile = idna.New(idna.ValidateForRegistration(), idna.CheckHyphens(false))

// WireAddress returns addr as it goes into a MAIL or RCPT command to a
// next hop: its domain, when not ASCII, in the A-label form that routing
// used (NormalizeDomain), so that a next hop without SMTPUTF8 can take a
// mailbox whose local part is ASCII (RFC 6531 §3.2 forbids downgrading
// only what has no ASCII form). An ASCII address, the null sender and
// anything Split refuses (an IP literal sender) are returned as they are.
// ascii reports whether the result is all ASCII (false: the local part
// is not, and only an SMTPUTF8 server may take it).
func WireAddress(addr string) (wire string, ascii bool) {
	if isASCII(addr) {
		return addr, true
	}
	local, d, err := Split(addr)
	if err != nil {
		return addr, false
	}
	wire = local + "@" + d
	return wire, isASCII(wire)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
