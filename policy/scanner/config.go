package scanner

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// The scanner types of Config.Type.
const (
	TypeRspamd = "rspamd"
	TypeSpamd  = "spamd"
	TypeClamd  = "clamd"
	TypeMilter = "milter"
)

// Types lists the scanner types, in the order the docs give them.
func Types() []string { return []string{TypeRspamd, TypeSpamd, TypeClamd, TypeMilter} }

// The values of Config.OnError.
const (
	OnErrorTempfail = "tempfail"
	OnErrorAccept   = "accept"
)

// Bounds of Config.Timeout.
const (
	DefaultTimeout = 10 * time.Second
	MaxTimeout     = 5 * time.Minute
)

var nameRE = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// SetDefaults fills the unset keys: timeout 10s, on_error tempfail, and
// spamd's command SYMBOLS.
func (c *Config) SetDefaults() {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.OnError == "" {
		c.OnError = OnErrorTempfail
	}
	if c.Type == TypeSpamd && c.Command == "" {
		c.Command = "SYMBOLS"
	}
}

// Validate checks one entry; key is its place in the configuration (e.g.
// "scanners[0]"), which every error starts with. Unset keys that have a
// default (SetDefaults) are accepted.
func (c Config) Validate(key string) error {
	var errs []error
	bad := func(sub, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", key, sub, fmt.Sprintf(format, a...)))
	}
	if !nameRE.MatchString(c.Name) {
		bad("name", "%q must be 1 to 64 of a-z, 0-9, _ and -", c.Name)
	}
	switch c.Type {
	case TypeRspamd, TypeSpamd, TypeClamd, TypeMilter:
		if err := ValidateAddress(c.Type, c.Address); err != nil {
			bad("address", "%v", err)
		}
	default:
		bad("type", "%q is not one of %q", c.Type, Types())
	}
	if c.Timeout < 0 || c.Timeout > MaxTimeout {
		bad("timeout", "%v must be between 0 (default %v) and %v", c.Timeout, DefaultTimeout, MaxTimeout)
	}
	if c.MaxSize < 0 {
		bad("max_size", "%d must not be negative", c.MaxSize)
	}
	switch c.OnError {
	case "", OnErrorTempfail, OnErrorAccept:
	default:
		bad("on_error", "%q is not tempfail or accept", c.OnError)
	}
	switch strings.ToUpper(c.Command) {
	case "":
	case "CHECK", "SYMBOLS":
		if c.Type != TypeSpamd {
			bad("command", "only a spamd scanner takes a command")
		}
	default:
		bad("command", "%q is not CHECK or SYMBOLS", c.Command)
	}
	if strings.ContainsAny(c.Password+c.User, "\r\n") {
		bad("password", "user and password must be one line")
	}
	return errors.Join(errs...)
}

// ValidateAddress checks an address for a scanner of type typ:
// "host:port", "unix:/absolute/path", or for rspamd also an http(s) URL
// with a host.
func ValidateAddress(typ, addr string) error {
	switch {
	case addr == "":
		return errors.New("must be set")
	case strings.HasPrefix(addr, "unix:"):
		if p := strings.TrimPrefix(addr, "unix:"); !strings.HasPrefix(p, "/") {
			return fmt.Errorf("%q: a unix socket needs an absolute path (unix:/run/...)", addr)
		}
		return nil
	case strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://"):
		if typ != TypeRspamd {
			return fmt.Errorf("%q: only rspamd takes a URL; use host:port or unix:/path", addr)
		}
		u, err := url.Parse(addr)
		if err != nil || u.Host == "" {
			return fmt.Errorf("%q is not a URL with a host", addr)
		}
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" {
		return fmt.Errorf("%q is not host:port, unix:/path%s", addr, map[bool]string{true: " or http://host:port", false: ""}[typ == TypeRspamd])
	}
	return nil
}

// ValidateList checks `scanners:` as a whole under key (e.g.
// "scanners"): each entry, and that names are unique.
func ValidateList(key string, list []Config) error {
	var errs []error
	seen := map[string]int{}
	for i, c := range list {
		k := fmt.Sprintf("%s[%d]", key, i)
		errs = append(errs, c.Validate(k))
		if j, ok := seen[c.Name]; ok && c.Name != "" {
			errs = append(errs, fmt.Errorf("%s.name: %q is also the name of %s[%d]", k, c.Name, key, j))
		} else {
			seen[c.Name] = i
		}
	}
	return errors.Join(errs...)
}
