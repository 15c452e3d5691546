package uribl

import (
	"net/netip"
	"strings"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"

	"moat/policy/dnsbl"
)

// Bounds on names (RFC 1035 §2.3.4: 63 octets a label, 255 octets a name
// on the wire, which is 253 characters in text form without the root dot).
const (
	maxLabel = 63
	maxName  = 253
	// maxHostInput bounds the host strings Reduce looks at; a longer one
	// cannot be a domain name or an address.
	maxHostInput = 1024
)

// Subject is what a host is reduced to before it is asked: a registered
// domain (in A-label, lower-case form) or an IP address. Exactly one of
// Domain and IP is set.
type Subject struct {
	Domain string
	IP     netip.Addr
}

// String is the domain, or the address in its canonical text form.
func (s Subject) String() string {
	if s.IP.IsValid() {
		return s.IP.String()
	}
	return s.Domain
}

// IsIP reports whether the subject is an IP address literal.
func (s Subject) IsIP() bool { return s.IP.IsValid() }

// Reduce turns a host (from a URL, an address's domain part or the
// envelope sender) into the Subject asked of the lists, or false when it
// is neither a usable domain name nor an IP address.
//
//   - An IP literal, bare or in brackets ("[192.0.2.1]", "[IPv6:2001:db8::1]",
//     RFC 5321 §4.1.3), becomes an address (IPv4-mapped IPv6 is taken as
//     IPv4; a zone such as %eth0 is dropped). Loopback, private (RFC 1918,
//     RFC 4193), link-local, multicast and unspecified addresses are not
//     asked: they are not reachable from the Internet, so no public list
//     holds them, and asking would tell the list operator about internal
//     addresses.
//   - A name is made lower-case, converted to A-labels when it holds
//     non-ASCII (IDNA lookup profile, RFC 5891 §5), checked (labels of 1
//     to 63 letters, digits, '-' or '_', at most 253 characters, a last
//     label that is not all digits) and reduced to its registered domain:
//     the public suffix plus one label, by the Public Suffix List embedded
//     in golang.org/x/net/publicsuffix, private section included (so
//     each site under a hosting suffix such as github.io is its own
//     subject). That is the name SURBL and URIBL document as the one to
//     ask (they strip host parts); RFC 5782 §2.2 only says a domain list
//     is asked for the name as a prefix of the zone. Spamhaus DBL can
//     also list individual host names below a registered domain; those
//     are not asked (one lookup per registered domain keeps the cost of
//     a message bounded). A name that is itself a public suffix ("com",
//     "co.uk") is not asked.
func Reduce(host string) (Subject, bool) {
	if len(host) > maxHostInput {
		return Subject{}, false
	}
	h := strings.TrimSpace(host)
	h = strings.TrimSuffix(h, ".")
	if len(h) >= 2 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
		if len(h) >= 5 && strings.EqualFold(h[:5], "ipv6:") {
			h = h[5:]
		}
	}
	if h == "" {
		return Subject{}, false
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		ip = ip.WithZone("").Unmap()
		if !publicAddr(ip) {
			return Subject{}, false
		}
		return Subject{IP: ip}, true
	}
	ascii := true
	for i := 0; i < len(h); i++ {
		if h[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		h = strings.ToLower(h)
	} else {
		a, err := idna.Lookup.ToASCII(h)
		if err != nil {
			return Subject{}, false
		}
		h = a
	}
	if !validName(h) {
		return Subject{}, false
	}
	reg, err := publicsuffix.EffectiveTLDPlusOne(h)
	if err != nil || !validName(reg) {
		return Subject{}, false
	}
	return Subject{Domain: reg}, true
}

// publicAddr reports whether ip may be held by a public list.
func publicAddr(ip netip.Addr) bool {
	return ip.IsGlobalUnicast() && !ip.IsPrivate()
}

// validName checks a lower-case A-label name: labels of 1 to 63 octets of
// [a-z0-9_-], at most 253 octets, the last label not all digits (RFC 3696
// §2: a top-level domain is never all-numeric, so "1.2.3.999" is neither
// an address nor a name).
func validName(n string) bool {
	if n == "" || len(n) > maxName {
		return false
	}
	start := 0
	allDigits := true
	for i := 0; i <= len(n); i++ {
		if i == len(n) || n[i] == '.' {
			if i-start < 1 || i-start > maxLabel {
				return false
			}
			if i < len(n) {
				start = i + 1
				allDigits = true
			}
			continue
		}
		c := n[i]
		switch {
		case c >= '0' && c <= '9':
		case c >= 'a' && c <= 'z' || c == '-' || c == '_':
			allDigits = false
		default:
			return false
		}
	}
	return !allDigits
}

// QueryName returns the name to ask zone about s, fully qualified: the
// domain as a prefix of the zone (RFC 5782 §2.2), or the address reversed,
// octets for IPv4 (§2.1) and nibbles for IPv6 (§2.4). ok is false when the
// result would be over 253 characters (RFC 1035 §2.3.4): such a subject is
// not asked of that zone. zone must pass dnsbl.CheckZoneName.
func QueryName(s Subject, zone string) (name string, ok bool) {
	zone = strings.ToLower(strings.TrimSuffix(zone, "."))
	if s.IP.IsValid() {
		name = dnsbl.QueryName(s.IP, zone)
	} else {
		if s.Domain == "" {
			return "", false
		}
		name = s.Domain + "." + zone + "."
	}
	if len(name)-1 > maxName {
		return "", false
	}
	return name, true
}
