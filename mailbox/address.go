package mailbox

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"moat/internal/mailname"
)

// RFC 5321 §4.5.3.1.1: a local part is at most 64 octets. §4.5.3.1.2
// allows 255 octets for a domain; a DNS name in text form has at most 253
// (RFC 1035 §2.3.4 less the root label), which is what we accept.
const (
	maxLocalLen  = 64
	maxDomainLen = 253
	maxLabelLen  = 63
)

// parseAddr splits a mailbox address "local@domain" and checks both
// parts; it keeps their case. The accepted syntax is deliberately narrow,
// because a local address becomes a directory name:
//
//   - local part: an RFC 5321 §4.1.2 Dot-string of ASCII atext without
//     '/' (no quoted strings, no leading, trailing or double dot, so
//     never "." or ".."), 1 to 64 octets;
//   - domain: LDH labels of 1 to 63 octets separated by single dots, at
//     most 253 octets; one trailing dot (the root) is dropped; no
//     address literals.
//
// Non-ASCII is refused: RFC 6531 UTF-8 local parts and U-label domains
// are not local mailboxes here (configure domains in A-label form). This
// also shuts out look-alike tricks such as U+2215 DIVISION SLASH or
// U+FF0E FULLWIDTH FULL STOP in a path.
func parseAddr(s string) (local, domain string, err error) {
	if len(s) > maxLocalLen+1+maxDomainLen+1 {
		return "", "", errors.New("address too long")
	}
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		return "", "", errors.New("missing @domain")
	}
	local, domain = s[:i], strings.TrimSuffix(s[i+1:], ".")
	if err := checkLocal(local); err != nil {
		return "", "", err
	}
	if err := checkDomain(domain); err != nil {
		return "", "", err
	}
	return local, domain, nil
}

// isAtext reports whether c is RFC 5322 §3.2.3 atext (ASCII only), less
// '/', which would split a path.
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-=?^_`{|}~", c) >= 0
}

func checkLocal(l string) error {
	switch {
	case l == "":
		return errors.New("empty local part")
	case len(l) > maxLocalLen:
		return fmt.Errorf("local part longer than %d octets (RFC 5321 §4.5.3.1.1)", maxLocalLen)
	case l[0] == '.':
		return errors.New("local part starts with a dot")
	case l[len(l)-1] == '.':
		return errors.New("local part ends with a dot")
	case strings.Contains(l, ".."):
		return errors.New("local part has two dots in a row")
	}
	for i := 0; i < len(l); i++ {
		if c := l[i]; c != '.' && !isAtext(c) {
			return fmt.Errorf("local part has a character not allowed here: %q", rune(c))
		}
	}
	return nil
}

func checkDomain(d string) error {
	switch {
	case d == "":
		return errors.New("empty domain")
	case len(d) > maxDomainLen:
		return fmt.Errorf("domain longer than %d octets", maxDomainLen)
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" {
			return errors.New("domain has an empty label")
		}
		if len(label) > maxLabelLen {
			return fmt.Errorf("domain label longer than %d octets", maxLabelLen)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return fmt.Errorf("domain has a character not allowed here: %q", rune(c))
			}
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return errors.New("domain label starts or ends with a hyphen")
		}
	}
	return nil
}

// normalize returns the lookup key of a local address: local part and
// domain in lower case. RFC 5321 §2.4 lets the receiving host decide
// whether local parts are case-sensitive; like Postfix and Dovecot we fold
// ASCII case, so Alice@ and alice@ are one mailbox.
func normalize(s string) (string, error) {
	l, d, err := parseAddr(s)
	if err != nil {
		return "", err
	}
	return strings.ToLower(l) + "@" + strings.ToLower(d), nil
}

// LoginName returns the one canonical name of the user or alias that a
// login name, or a sender address, means; every part of moat that keys
// on a user (the AUTH lock-out, the sending limits, the send-as check,
// the logs) uses it (issue 27). The name is folded by
// internal/mailname.Fold (blanks around, Unicode NFKC, case, the UTS-46
// mapping of the domain, a trailing dot) and must then be an address of
// a local domain in the narrow syntax of SafePath; it resolves as a
// recipient does: as written, then without its subaddress (RFC 5233:
// "bob+tag@" means bob, so a failed login as bob+tag counts as bob's and
// bob may send as bob+tag; Authenticate does not strip it). ok is false
// when the name is no local address; key is then the folded name, still
// fit to count failures under, and names no user.
func (d *Directory) LoginName(name string) (key string, ok bool) {
	key, ok = d.loginKey(name)
	if ok {
		key, _ = d.resolve(key)
	}
	return key, ok
}

// loginKey is LoginName without the subaddress resolution: the folded
// name, and whether it is an address of a local domain.
func (d *Directory) loginKey(name string) (string, bool) {
	f := mailname.Fold(name)
	l, dom, err := parseAddr(f)
	if err != nil || !d.domains[dom] {
		return f, false
	}
	return l + "@" + dom, true
}

// normalizeDomain lowercases a domain and drops a trailing dot.
func normalizeDomain(d string) string {
	return strings.ToLower(strings.TrimSuffix(d, "."))
}

// SafePath returns the Maildir directory of addr under root:
// root/<domain>/<localpart>, both in lower case. It refuses any address
// that could name a path outside root or a file other than its own
// mailbox: "." or "..", '/', '\', NUL and other control characters,
// non-ASCII, a leading dot, an empty or over-long part (see parseAddr);
// and it checks that the cleaned result is exactly two levels below the
// cleaned root. Deliver uses it for every message; Exists refuses such
// addresses, so the gateway answers them 550 5.1.1 (or 501 5.1.3 when the
// syntax is already bad in SMTP terms).
func SafePath(root, addr string) (string, error) {
	if root == "" {
		return "", errors.New("mailbox root not set")
	}
	l, d, err := parseAddr(addr)
	if err != nil {
		return "", fmt.Errorf("address %q: %w", addr, err)
	}
	root = filepath.Clean(root)
	p := filepath.Join(root, strings.ToLower(d), strings.ToLower(l))
	rel, err := filepath.Rel(root, p)
	if err != nil {
		return "", fmt.Errorf("address %q: %w", addr, err)
	}
	parts := strings.Split(filepath.ToSlash(rel), "/")
	if len(parts) != 2 || parts[0] == ".." || parts[0] == "." || parts[1] == ".." || parts[1] == "." ||
		filepath.IsAbs(rel) || filepath.Dir(filepath.Dir(p)) != root {
		return "", fmt.Errorf("address %q: mailbox path escapes the root", addr)
	}
	return p, nil
}
