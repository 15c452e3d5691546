package mtasts

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Modes of a policy (RFC 8461 §5).
const (
	ModeEnforce = "enforce"
	ModeTesting = "testing"
	ModeNone    = "none"
)

// Limits on a policy.
const (
	// MaxPolicySize is the most read from a policy server (§3.3
	// suggests 64 KiB).
	MaxPolicySize = 64 << 10
	// MaxAgeLimit is the largest max_age (§3.2: 31557600 s, a year).
	MaxAgeLimit = 31557600
	// maxMX bounds the mx patterns kept from one policy.
	maxMX = 100
)

// Policy is a parsed policy file (RFC 8461 §3.2).
type Policy struct {
	Mode   string
	MX     []string // patterns, lower case, no trailing dot
	MaxAge time.Duration
}

// Parse parses a policy file.
func Parse(b []byte) (*Policy, error) {
	if len(b) > MaxPolicySize {
		return nil, fmt.Errorf("policy larger than %d bytes", MaxPolicySize)
	}
	p := &Policy{}
	seen := map[string]bool{}
	version := ""
	maxAge := -1
	for line := range strings.Lines(string(b)) {
		line = strings.TrimRight(line, "\r\n")
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("line %q is not key: value", clip(line))
		}
		k = strings.TrimSpace(k)
		v = strings.Trim(v, " \t")
		if k == "mx" {
			if len(p.MX) >= maxMX {
				return nil, fmt.Errorf("more than %d mx patterns", maxMX)
			}
			pat, err := parsePattern(v)
			if err != nil {
				return nil, err
			}
			p.MX = append(p.MX, pat)
			continue
		}
		if seen[k] {
			continue // the first one counts
		}
		seen[k] = true
		switch k {
		case "version":
			version = v
		case "mode":
			switch v {
			case ModeEnforce, ModeTesting, ModeNone:
				p.Mode = v
			default:
				return nil, fmt.Errorf("mode %q is not enforce, testing or none", clip(v))
			}
		case "max_age":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || len(v) > 10 || n > MaxAgeLimit {
				return nil, fmt.Errorf("max_age %q is not a number of seconds up to %d", clip(v), MaxAgeLimit)
			}
			maxAge = n
		}
		// §3.2: unknown keys are ignored.
	}
	switch {
	case version != "STSv1":
		return nil, fmt.Errorf("version %q is not STSv1", clip(version))
	case p.Mode == "":
		return nil, errors.New("no mode")
	case maxAge < 0:
		return nil, errors.New("no max_age")
	case len(p.MX) == 0 && p.Mode != ModeNone:
		return nil, errors.New("no mx pattern")
	}
	p.MaxAge = time.Duration(maxAge) * time.Second
	return p, nil
}

// parsePattern checks an mx pattern: a host name, optionally with a
// leading "*." (§3.2, §4.1).
func parsePattern(v string) (string, error) {
	v = strings.ToLower(strings.TrimSuffix(v, "."))
	name := strings.TrimPrefix(v, "*.")
	if name == "" || len(name) > 253 || strings.Contains(name, "*") {
		return "", fmt.Errorf("mx pattern %q is not a host name", clip(v))
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 {
			return "", fmt.Errorf("mx pattern %q is not a host name", clip(v))
		}
		for _, c := range []byte(l) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("mx pattern %q is not a host name", clip(v))
			}
		}
	}
	return v, nil
}

// Match reports whether the mail exchanger host is allowed by the
// policy's mx patterns (§4.1): equal, or "*.rest" with host one label
// longer than rest.
func (p *Policy) Match(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, pat := range p.MX {
		if rest, ok := strings.CutPrefix(pat, "*."); ok {
			if first, after, ok := strings.Cut(host, "."); ok && first != "" && after == rest {
				return true
			}
			continue
		}
		if host == pat {
			return true
		}
	}
	return false
}

// Strings is the policy in the form TLS-RPT reports it (RFC 8460 §4.4:
// each line of the policy).
func (p *Policy) Strings() []string {
	out := []string{"version: STSv1", "mode: " + p.Mode}
	for _, m := range p.MX {
		out = append(out, "mx: "+m)
	}
	return append(out, "max_age: "+strconv.Itoa(int(p.MaxAge/time.Second)))
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}
