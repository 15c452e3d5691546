package spf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"moat/internal/dnsres"
)

// session is the state of one Check that sits between the library and
// moat's resolver. Every SPF record the library fetches passes through
// vet, which
//   - checks its syntax completely first (RFC 7208 §4.6); a record with an
//     error anywhere is handed to the library as invalidRecord, which the
//     library answers with permerror at once, and the error is kept for
//     the reason;
//   - expands itself what the library cannot: the %{p} macro (§7.3; the
//     library expands it to "unknown") and a domain-spec holding a "/"
//     (§7.1 allows any visible character but "%"; the library reads a "/"
//     as the start of a prefix length). Such a name is given to the
//     library as a stand-in under aliasSuffix that the lookups map back.
//
// The library still does the evaluation, the lookup limits (§4.6.4) and
// the recursion through include: and redirect=.
type session struct {
	r      dnsres.Resolver
	ip     netip.Addr
	helo   string
	sender string // local@domain as given to the library
	local  string
	domain string

	syntaxErr error

	aliases map[string]string // stand-in → real name
	names   map[string]string // real name → stand-in

	ptrDone  bool
	ptrNames []string // validated names of ip, for %{p}
}

// invalidRecord is what the library gets instead of a record that is not
// valid: its first term is an unknown mechanism, which the library
// answers with permerror before any lookup (§4.6).
const invalidRecord = "v=spf1 moat-invalid-record"

// aliasSuffix: stand-in names are under .invalid (RFC 6761 §6.4), so
// they never reach a real server even if a mapping were missing.
const aliasSuffix = ".spf-alias.invalid"

// maxAliases bounds the stand-in names of one check.
const maxAliases = 64

// maxPTRNames: at most 10 PTR names are validated (§4.6.4).
const maxPTRNames = 10

func (s *session) real(name string) string {
	if r, ok := s.aliases[strings.ToLower(strings.TrimSuffix(name, "."))]; ok {
		return r
	}
	return name
}

func (s *session) alias(name string) (string, error) {
	if a, ok := s.names[name]; ok {
		return a, nil
	}
	if len(s.aliases) >= maxAliases {
		return "", errors.New("too many names to rewrite")
	}
	if s.aliases == nil {
		s.aliases, s.names = map[string]string{}, map[string]string{}
	}
	a := fmt.Sprintf("n%d%s", len(s.aliases), aliasSuffix)
	s.aliases[a], s.names[name] = name, a
	return a, nil
}

// vet checks and, where needed, rewrites the SPF record among the TXT
// strings of name (real is the name looked up, name itself unless name
// is a stand-in).
func (s *session) vet(ctx context.Context, name, real string, txts []string) []string {
	idx, n := -1, 0
	for i, t := range txts {
		if isSPFRecord(t) {
			idx, n = i, n+1
		}
	}
	if n != 1 {
		return txts // none or several: the library decides (§4.5)
	}
	out := slices.Clone(txts)
	rec, err := parseRecord(txts[idx])
	if err == nil {
		out[idx], err = s.rewrite(ctx, rec, strings.TrimSuffix(real, "."), name != real)
	}
	if err != nil {
		if s.syntaxErr == nil {
			s.syntaxErr = fmt.Errorf("invalid SPF record at %s: %w", strings.TrimSuffix(real, "."), err)
		}
		out[idx] = invalidRecord
	}
	return out
}

// rewrite writes rec back for the library, expanding the domain-specs it
// cannot handle. d is the <domain> of this record (§4.1). With aliased
// true the library knows d only by a stand-in, so every term that would
// use d (an explicit %{d} or an a, mx or ptr without domain-spec) is
// expanded here with the real d.
func (s *session) rewrite(ctx context.Context, rec *record, d string, aliased bool) (string, error) {
	var b strings.Builder
	b.WriteString("v=spf1")
	for _, t := range rec.terms {
		b.WriteByte(' ')
		if !t.targets() || !(aliased || hasP(t.domain) || strings.Contains(t.domain, "/")) {
			b.WriteString(t.raw)
			continue
		}
		target := d
		if t.domain != "" {
			target = s.expand(ctx, t.domain, d)
		}
		target = truncateName(target)
		if strings.Contains(target, "/") && t.name != "ptr" {
			// ptr compares names itself and cannot use a stand-in; a
			// ptr:name with "/" stays for the library to refuse.
			a, err := s.alias(target)
			if err != nil {
				return "", err
			}
			target = a
		}
		sep := ":"
		if t.modifier {
			sep = "="
		}
		b.WriteString(t.qual + t.name + sep + escapeLiteral(target) + t.cidr)
	}
	return b.String(), nil
}

// targets reports a term whose domain-spec names a host to look up.
func (t term) targets() bool {
	if t.modifier {
		return t.name == "redirect"
	}
	switch t.name {
	case "a", "mx", "ptr", "include", "exists":
		return true
	}
	return false
}

func hasP(spec string) bool {
	return strings.Contains(spec, "%{p") || strings.Contains(spec, "%{P")
}

// escapeLiteral writes a name as a macro-string that expands to itself.
func escapeLiteral(n string) string {
	r := strings.NewReplacer("%", "%%", " ", "%_")
	return r.Replace(n)
}

// truncateName: §7.3, an expanded name over 253 characters loses labels
// on the left until it fits.
func truncateName(n string) string {
	for len(n) > 253 {
		i := strings.IndexByte(n, '.')
		if i < 0 {
			return n[len(n)-253:]
		}
		n = n[i+1:]
	}
	return n
}

// expand expands a valid domain-spec (§7.3). d is the current <domain>.
func (s *session) expand(ctx context.Context, spec, d string) string {
	var b strings.Builder
	for i := 0; i < len(spec); i++ {
		c := spec[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		i++
		switch spec[i] {
		case '%':
			b.WriteByte('%')
			continue
		case '_':
			b.WriteByte(' ')
			continue
		case '-':
			b.WriteString("%20")
			continue
		}
		j := strings.IndexByte(spec[i:], '}')
		m, err := parseMacro(spec[i+1:i+j], false)
		i += j
		if err != nil {
			continue // not reached: the record was checked
		}
		b.WriteString(m.apply(s.macroValue(ctx, m.letter, d)))
	}
	return b.String()
}

func (s *session) macroValue(ctx context.Context, letter byte, d string) string {
	switch letter {
	case 's':
		return s.sender
	case 'l':
		return s.local
	case 'o':
		return s.domain
	case 'd':
		return d
	case 'h':
		return s.helo
	case 'i':
		return macroIP(s.ip)
	case 'v':
		if s.ip.Is4() {
			return "in-addr"
		}
		return "ip6"
	case 'p':
		return s.validatedName(ctx, d)
	}
	return ""
}

// apply splits v at the delimiters, reverses, keeps the rightmost digits
// parts, joins with "." and URL-escapes for an upper-case letter (§7.3).
func (m macro) apply(v string) string {
	parts := strings.FieldsFunc(v, func(r rune) bool { return strings.ContainsRune(m.delims, r) })
	if m.reverse {
		slices.Reverse(parts)
	}
	if m.digits > 0 && m.digits < len(parts) {
		parts = parts[len(parts)-m.digits:]
	}
	v = strings.Join(parts, ".")
	if m.upper {
		v = urlEscape(v)
	}
	return v
}

// urlEscape escapes every octet outside RFC 3986's "unreserved" set.
func urlEscape(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if isAlnum(c) || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// macroIP: dotted quad for IPv4, dot-separated nibbles for IPv6 (§7.3).
func macroIP(ip netip.Addr) string {
	if ip.Is4() {
		return ip.String()
	}
	var b strings.Builder
	for i, x := range ip.As16() {
		if i > 0 {
			b.WriteByte('.')
		}
		fmt.Fprintf(&b, "%x.%x", x>>4, x&0xf)
	}
	return b.String()
}

// validatedName is the %{p} value (§7.3 with §5.5's validation): the
// validated name of the client equal to d, else one under d, else any;
// "unknown" when there is none or a lookup failed. The PTR lookup and at
// most maxPTRNames address lookups are made once per check.
func (s *session) validatedName(ctx context.Context, d string) string {
	if !s.ptrDone {
		s.ptrDone = true
		names, err := s.r.LookupAddr(ctx, s.ip.String())
		if err == nil {
			for _, n := range names[:min(len(names), maxPTRNames)] {
				addrs, err := s.r.LookupIPAddr(ctx, n)
				if err != nil {
					continue
				}
				for _, a := range addrs {
					if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == s.ip {
						s.ptrNames = append(s.ptrNames, strings.TrimSuffix(n, "."))
						break
					}
				}
			}
		}
	}
	d = strings.TrimSuffix(d, ".")
	for _, n := range s.ptrNames {
		if strings.EqualFold(n, d) {
			return n
		}
	}
	for _, n := range s.ptrNames {
		if len(n) > len(d) && strings.EqualFold(n[len(n)-len(d)-1:], "."+d) {
			return n
		}
	}
	if len(s.ptrNames) > 0 {
		return s.ptrNames[0]
	}
	return "unknown"
}

// adapter hands our resolver to the library, maps stand-in names back,
// vets SPF records, and turns every error into the *net.DNSError the
// library tells apart with a type assertion.
type adapter struct{ s *session }

func (a adapter) LookupTXT(ctx context.Context, name string) ([]string, error) {
	real := a.s.real(name)
	v, err := a.s.r.LookupTXT(ctx, real)
	if err != nil {
		return nil, netError(name, err)
	}
	return a.s.vet(ctx, name, real, v), nil
}

func (a adapter) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	v, err := a.s.r.LookupMX(ctx, a.s.real(name))
	return v, netError(name, err)
}

func (a adapter) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	v, err := a.s.r.LookupIPAddr(ctx, a.s.real(host))
	return v, netError(host, err)
}

func (a adapter) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	v, err := a.s.r.LookupAddr(ctx, addr)
	return v, netError(addr, err)
}
