// Package route owns moat's routing configuration (the `domains:` and
// `routes:` keys) and the decision, per recipient, of where mail goes:
// into a local mailbox, to a named route (SMTP or LMTP to a configured
// host, or MX delivery), or — for any other domain — out by MX, which only
// trusted or authenticated clients may ask for.
//
// Routing looks at the domain of the recipient only, as returned by
// Domain. RFC 5321 §4.1.1.3 and §3.6 let a relay refuse source routes
// (§4.1.1.3, Appendix C) and the percent hack; Domain refuses source
// routes, IP literals (RFC 5321 §4.1.3: they name a host, not a domain we
// could route by) and quoted local parts that hide another "@", so that
// the relay decision is taken on the one domain that the next hop will
// deliver to.
//
// Domains are matched case-insensitively (RFC 5321 §2.4), with a trailing
// dot removed, and in their ASCII form: internationalized domain names
// are converted from U-labels to A-labels (RFC 5890 §2.3.2.1, UTS #46
// lookup profile via golang.org/x/net/idna), so that "bücher.example" and
// "xn--bcher-kva.example" are the same domain. That mapping is for
// configured names; a domain as a client sent it is first checked by
// WireDomain (valid IDNA2008 as it stands, no mapping), and a next hop is
// sent the A-label form (WireAddress), so routing and forwarding see one
// name. There is no subdomain
// matching, except that a configured key that starts with "." (for
// example ".example.org") matches every subdomain of example.org, but not
// example.org itself. An exact key wins over a "." key; among "." keys
// the longest match wins.
package route

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
)

// Route types (routes.<name>.type).
const (
	TypeSMTP = "smtp"
	TypeLMTP = "lmtp"
	TypeMX   = "mx"
)

// TLS modes (routes.<name>.tls).
const (
	TLSNone          = "none"
	TLSOpportunistic = "opportunistic"
	TLSRequired      = "required"
	// TLSVerify is TLS required with the certificate verified against
	// the host name (the route's, or the MX name for type mx).
	TLSVerify = "verify"
	// TLSDANE and TLSMTASTS, for type mx only, require that policy of
	// the recipient domain (RFC 7672, RFC 8461); see relay/smtpout.
	TLSDANE   = "dane"
	TLSMTASTS = "mta-sts"
)

// Recipient verification modes (routes.<name>.verify_recipients).
const (
	VerifyNone      = "none"
	VerifyList      = "list"
	VerifyCallahead = "callahead"
)

// Reserved route names: "local" is Maildir delivery, "mx" is MX delivery
// to the recipient domain. A route named "default" is taken by trusted
// clients for every domain that is neither local nor a relay domain
// (a smarthost); without it such mail goes out by MX.
const (
	Local   = "local"
	MX      = "mx"
	Default = "default"
)

// Route is one named entry of `routes:`.
type Route struct {
	// Type is smtp, lmtp or mx.
	Type string `mapstructure:"type"`
	// Address is host:port for smtp and lmtp; lmtp also takes
	// "unix:/path/to/socket". Unused for mx.
	Address string `mapstructure:"address"`
	// TLS is none, opportunistic, required or verify; type mx also takes
	// dane and mta-sts. Default: opportunistic for smtp (RFC 3207), none
	// for lmtp (RFC 2033 §4: a local hop), and for mx the automatic
	// choice of relay/smtpout (DANE, else MTA-STS, else opportunistic).
	TLS string `mapstructure:"tls"`
	// TLSSkipVerify turns off certificate verification for tls: required.
	// Opportunistic TLS never verifies (see relay/smtpout).
	TLSSkipVerify bool `mapstructure:"tls_skip_verify"`
	// Username and PasswordFile enable AUTH PLAIN (RFC 4954), which is
	// only ever sent over TLS: they need tls: required.
	Username     string `mapstructure:"username"`
	PasswordFile string `mapstructure:"password_file"`
	// VerifyRecipients is none (default), list or callahead; list needs
	// RecipientsFile. Parsed and validated here, used elsewhere.
	VerifyRecipients string `mapstructure:"verify_recipients"`
	RecipientsFile   string `mapstructure:"recipients_file"`
}

// TLSMode returns the TLS mode with its default applied. On an smtp
// route verify is required (which verifies unless tls_skip_verify).
func (r Route) TLSMode() string {
	if r.TLS == TLSVerify && r.Type != TypeMX {
		return TLSRequired
	}
	if r.TLS != "" {
		return r.TLS
	}
	if r.Type == TypeLMTP {
		return TLSNone
	}
	return TLSOpportunistic
}

// Validate checks one route; name is its key under routes.
func (r Route) Validate(name string) error {
	key := "routes." + name
	var errs []error
	switch r.Type {
	case TypeSMTP, TypeLMTP:
		if err := validAddress(r.Type, r.Address); err != nil {
			errs = append(errs, fmt.Errorf("%s.address: %w", key, err))
		}
	case TypeMX:
		if r.Address != "" {
			errs = append(errs, fmt.Errorf("%s.address: must be empty for type mx (the recipient domain's MX is used)", key))
		}
	case "":
		errs = append(errs, fmt.Errorf("%s.type: missing (smtp, lmtp or mx)", key))
	default:
		errs = append(errs, fmt.Errorf("%s.type: %q is not smtp, lmtp or mx", key, r.Type))
	}
	switch r.TLS {
	case "", TLSNone, TLSOpportunistic, TLSRequired:
	case TLSVerify:
		if r.Type == TypeLMTP {
			errs = append(errs, fmt.Errorf("%s.tls: verify is for smtp and mx routes", key))
		}
		if r.TLSSkipVerify {
			errs = append(errs, fmt.Errorf("%s.tls_skip_verify: contradicts tls: verify", key))
		}
	case TLSDANE, TLSMTASTS:
		if r.Type != TypeMX {
			errs = append(errs, fmt.Errorf("%s.tls: %s is for type mx only", key, r.TLS))
		}
	default:
		errs = append(errs, fmt.Errorf("%s.tls: %q is not none, opportunistic, required, verify, dane or mta-sts", key, r.TLS))
	}
	if strings.HasPrefix(r.Address, "unix:") && r.TLSMode() != TLSNone {
		errs = append(errs, fmt.Errorf("%s.tls: must be none for a unix socket", key))
	}
	if (r.Username == "") != (r.PasswordFile == "") {
		errs = append(errs, fmt.Errorf("%s.username: username and password_file go together", key))
	}
	if r.Username != "" {
		if m := r.TLSMode(); m != TLSRequired && m != TLSVerify {
			// RFC 4954 §4 and §14: never send a password in clear text.
			errs = append(errs, fmt.Errorf("%s.tls: must be required when username is set (AUTH PLAIN is never sent in clear)", key))
		}
		if strings.ContainsAny(r.Username, "\x00\r\n") {
			errs = append(errs, fmt.Errorf("%s.username: contains NUL or a line break", key))
		}
	}
	if r.PasswordFile != "" {
		if _, err := ReadPassword(r.PasswordFile); err != nil {
			errs = append(errs, fmt.Errorf("%s.password_file: %w", key, err))
		}
	}
	switch r.VerifyRecipients {
	case "", VerifyNone, VerifyCallahead:
	case VerifyList:
		if r.RecipientsFile == "" {
			errs = append(errs, fmt.Errorf("%s.recipients_file: required when verify_recipients is list", key))
		}
	default:
		errs = append(errs, fmt.Errorf("%s.verify_recipients: %q is not none, list or callahead", key, r.VerifyRecipients))
	}
	if r.VerifyRecipients == VerifyCallahead && r.Type == TypeMX {
		errs = append(errs, fmt.Errorf("%s.verify_recipients: callahead needs a fixed next hop (smtp or lmtp)", key))
	}
	if r.RecipientsFile != "" {
		if f, err := os.Open(r.RecipientsFile); err != nil {
			errs = append(errs, fmt.Errorf("%s.recipients_file: %w", key, err))
		} else {
			f.Close()
		}
	}
	return errors.Join(errs...)
}

func validAddress(typ, addr string) error {
	if addr == "" {
		return errors.New("missing (host:port)")
	}
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		if typ != TypeLMTP {
			return errors.New("unix sockets are for lmtp only")
		}
		if p == "" {
			return errors.New("unix: needs a socket path")
		}
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if host == "" || port == "" {
		return fmt.Errorf("%q is not host:port", addr)
	}
	return nil
}

// ReadPassword reads a password file: its content with one trailing
// line break removed. An empty password or one with NUL or inner line
// breaks is an error.
func ReadPassword(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return "", errors.New("password file is empty")
	}
	if strings.ContainsAny(s, "\x00\r\n") {
		return "", errors.New("password file must hold one line")
	}
	return s, nil
}

// Config is the routing part of the configuration, composed by cmd/moat
// from `domains.local`, `domains.relay` and `routes`.
type Config struct {
	// LocalDomains are delivered to mailboxes (domains.local).
	LocalDomains []string `mapstructure:"local"`
	// RelayDomains maps a domain to the name of its route (domains.relay).
	RelayDomains map[string]string `mapstructure:"relay"`
	// Routes are the named routes (routes).
	Routes map[string]Route `mapstructure:"routes"`
}

// Validate checks the domains and every route; errors name the key.
func (c Config) Validate() error {
	var errs []error
	seen := map[string]string{}
	for i, d := range c.LocalDomains {
		key := fmt.Sprintf("domains.local[%d]", i)
		n, err := normalizeKey(d)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
			continue
		}
		seen[n] = key
	}
	for _, d := range sortedKeys(c.RelayDomains) {
		key := "domains.relay." + d
		n, err := normalizeKey(d)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
			continue
		}
		if other, ok := seen[n]; ok {
			errs = append(errs, fmt.Errorf("%s: domain is also %s", key, other))
		}
		seen[n] = key
		name := c.RelayDomains[d]
		switch {
		case name == "":
			errs = append(errs, fmt.Errorf("%s: missing route name", key))
		case name == Local:
			errs = append(errs, fmt.Errorf("%s: route %q is reserved; list the domain under domains.local", key, name))
		case name == MX:
		default:
			if _, ok := c.Routes[name]; !ok {
				errs = append(errs, fmt.Errorf("%s: route %q is not defined under routes", key, name))
			}
		}
	}
	for _, name := range sortedKeys(c.Routes) {
		if name == Local || name == MX {
			errs = append(errs, fmt.Errorf("routes.%s: the name %q is reserved", name, name))
			continue
		}
		if err := c.Routes[name].Validate(name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// normalizeKey normalizes a configured domain, keeping a leading "."
// (the subdomain wildcard).
func normalizeKey(d string) (string, error) {
	sub := strings.HasPrefix(d, ".")
	n, err := NormalizeDomain(strings.TrimPrefix(d, "."))
	if err != nil {
		return "", err
	}
	if sub {
		return "." + n, nil
	}
	return n, nil
}

// Decision is where one recipient goes.
type Decision struct {
	// Route is "local", the name of a configured route, or "mx".
	Route string
	// Relay is true when the domain is not ours (neither local nor a
	// relay domain): only trusted or authenticated clients may send to it.
	Relay bool
}

// Router decides routes. It is immutable and safe for concurrent use.
type Router struct {
	exact  map[string]Decision
	suffix map[string]Decision // ".example.org" → decision
	other  Decision
}

// NewRouter builds a router from a validated Config. Entries that do not
// normalize are skipped (Validate reports them).
func NewRouter(c Config) *Router {
	r := &Router{exact: map[string]Decision{}, suffix: map[string]Decision{}}
	add := func(key string, d Decision) {
		n, err := normalizeKey(key)
		if err != nil {
			return
		}
		if strings.HasPrefix(n, ".") {
			r.suffix[n] = d
		} else {
			r.exact[n] = d
		}
	}
	for _, d := range c.LocalDomains {
		add(d, Decision{Route: Local})
	}
	for d, name := range c.RelayDomains {
		add(d, Decision{Route: name})
	}
	// "Mail from trusted_networks to any other domain takes
	// routes.default if set, else MX delivery."
	r.other = Decision{Route: MX, Relay: true}
	if _, ok := c.Routes[Default]; ok {
		r.other.Route = Default
	}
	return r
}

// Route returns the decision for a recipient address. An address that
// Domain refuses is treated as a foreign domain (Relay is true): the
// gateway refuses such addresses before asking.
func (r *Router) Route(rcpt string) Decision {
	d, err := Domain(rcpt)
	if err != nil {
		return r.other
	}
	return r.RouteDomain(d)
}

// RouteDomain returns the decision for a domain already returned by
// Domain.
func (r *Router) RouteDomain(domain string) Decision {
	if d, ok := r.exact[domain]; ok {
		return d
	}
	// Longest ".suffix" wins: try each parent, most specific first. The
	// loop is bounded by the number of labels (≤ 127 in 253 octets).
	for i := 0; i < len(domain); i++ {
		if domain[i] != '.' {
			continue
		}
		if d, ok := r.suffix[domain[i:]]; ok {
			return d
		}
	}
	return r.other
}

// IsLocal reports whether a domain is a local (mailbox) domain.
func (r *Router) IsLocal(domain string) bool {
	return r.RouteDomain(domain).Route == Local
}
