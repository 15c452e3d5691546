// Package stspub publishes the MTA-STS policies (RFC 8461) of moat's own
// domains: it renders each policy (§3.2: "key: value" lines ending in
// CRLF, version first), serves it at
// https://mta-sts.<domain>/.well-known/mta-sts.txt as text/plain (§3.3),
// and derives the policy id of the `_mta-sts` TXT record (§3.1) from a
// hash of the policy text, so that any change of the policy changes the
// id and senders fetch it again. The HTTPS certificate comes from the
// listener's configuration (gateway.Certificates: files or ACME). The
// modes, the limits and the reader of a policy are relay/mtasts's, the
// sending side's: what moat publishes is what moat would accept.
package stspub

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"moat/gateway/acmecert"
	"moat/relay/mtasts"
)

// maxMaxAge is the longest max_age allowed (RFC 8461 §3.2).
const maxMaxAge = mtasts.MaxAgeLimit * time.Second

// WellKnownPath is where a policy is served (RFC 8461 §3.3).
const WellKnownPath = "/.well-known/mta-sts.txt"

// Config is the `mta_sts:` section.
type Config struct {
	// Publish lists the policies of our own domains.
	Publish []Policy `mapstructure:"publish"`
	// Listener is the HTTPS listener that serves them (port 443 for
	// senders; a TCP forward to it works as well).
	Listener string `mapstructure:"listener"`
}

// Policy is one domain's policy.
type Policy struct {
	Domain string   `mapstructure:"domain"`
	Mode   string   `mapstructure:"mode"`
	MX     []string `mapstructure:"mx"`
	// MaxAge is how long senders may cache the policy; default a week.
	MaxAge time.Duration `mapstructure:"max_age"`
}

// DefaultConfig publishes nothing; the listener is on 443 when something is.
func DefaultConfig() Config { return Config{Listener: "0.0.0.0:443"} }

// maxPolicies bounds mta_sts.publish.
const maxPolicies = 1000

// Enabled reports whether any policy is published.
func (c Config) Enabled() bool { return len(c.Publish) > 0 }

// Validate checks the section; every error names its key.
func (c Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	var errs []error
	if len(c.Publish) > maxPolicies {
		errs = append(errs, fmt.Errorf("mta_sts.publish: %d policies, at most %d", len(c.Publish), maxPolicies))
	}
	if _, _, err := net.SplitHostPort(c.Listener); err != nil {
		errs = append(errs, fmt.Errorf("mta_sts.listener: %q: %w", c.Listener, err))
	}
	seen := map[string]bool{}
	for i, p := range c.Publish {
		key := fmt.Sprintf("mta_sts.publish[%d]", i)
		d := p.domain()
		if err := acmecert.CheckName(HostFor(d)); err != nil || d == "" {
			errs = append(errs, fmt.Errorf("%s.domain: %q is not a domain name", key, p.Domain))
		}
		if seen[d] {
			errs = append(errs, fmt.Errorf("%s.domain: %q is published twice", key, p.Domain))
		}
		seen[d] = true
		switch p.Mode {
		case mtasts.ModeEnforce, mtasts.ModeTesting:
			if len(p.MX) == 0 {
				errs = append(errs, fmt.Errorf("%s.mx: a policy in mode %s needs at least one mx (RFC 8461 §3.2)", key, p.Mode))
			}
		case mtasts.ModeNone:
		default:
			errs = append(errs, fmt.Errorf("%s.mode: %q is not enforce, testing or none", key, p.Mode))
		}
		for j, mx := range p.MX {
			// §4.1: a leading "*." covers one label.
			if err := acmecert.CheckName(strings.TrimPrefix(mx, "*.")); err != nil {
				errs = append(errs, fmt.Errorf("%s.mx[%d]: %q is not a host name or *.pattern", key, j, mx))
			}
		}
		if p.MaxAge != 0 && (p.MaxAge < time.Second || p.MaxAge > maxMaxAge) {
			errs = append(errs, fmt.Errorf("%s.max_age: %s is not between 1s and %s (RFC 8461 §3.2)", key, p.MaxAge, maxMaxAge))
		}
	}
	return errors.Join(errs...)
}

// DefaultMaxAge is the max_age of a policy that sets none: a week, as
// RFC 8461 §3.2 suggests ("weeks or greater").
const DefaultMaxAge = 7 * 24 * time.Hour

func (p Policy) maxAge() time.Duration {
	if p.MaxAge == 0 {
		return DefaultMaxAge
	}
	return p.MaxAge
}

func (p Policy) domain() string { return strings.ToLower(strings.TrimSuffix(p.Domain, ".")) }

// HostFor is the name the policy of domain is served under.
func HostFor(domain string) string {
	return "mta-sts." + strings.ToLower(strings.TrimSuffix(domain, "."))
}

// Hosts lists mta-sts.<domain> of every published policy (for ACME).
func (c Config) Hosts() []string {
	var out []string
	for _, p := range c.Publish {
		out = append(out, HostFor(p.Domain))
	}
	return out
}

// Text renders the policy as served (RFC 8461 §3.2).
func (p Policy) Text() string {
	var b strings.Builder
	b.WriteString("version: STSv1\r\n")
	b.WriteString("mode: " + p.Mode + "\r\n")
	for _, mx := range p.MX {
		b.WriteString("mx: " + strings.ToLower(strings.TrimSuffix(mx, ".")) + "\r\n")
	}
	fmt.Fprintf(&b, "max_age: %d\r\n", int64(p.maxAge()/time.Second))
	return b.String()
}

// ID is the policy id: 32 hex digits of the SHA-256 of the text (RFC
// 8461 §3.1 allows 1 to 32 alphanumerics).
func (p Policy) ID() string {
	sum := sha256.Sum256([]byte(p.Text()))
	return hex.EncodeToString(sum[:16])
}

// Record is the TXT record to publish at _mta-sts.<domain> (§3.1), in
// zone-file form.
func (p Policy) Record() string {
	return fmt.Sprintf("_mta-sts.%s. IN TXT \"v=STSv1; id=%s;\"", p.domain(), p.ID())
}
