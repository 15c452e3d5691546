// Package dnsbl scores a client address against DNS block lists (DNSBL)
// and DNS allow lists (DNSWL), the way Postfix's postscreen_dnsbl_sites
// does: several zones, each with a weight (negative for allow lists) and
// an optional filter on the answer, queried in parallel under one
// deadline; the score is the sum of the weights of the zones that listed
// the client.
//
// It implements RFC 5782: the query name is the client address reversed
// (octets for IPv4, §2.1; nibbles for IPv6, §2.4) under the list's zone,
// an A record means "listed" (§2.1) and NXDOMAIN means "not listed"
// (§2.1). A list that times out or fails is neither: it is reported in
// Result.Failed and adds nothing to the score (DNS failures are temporary,
// never a pass and never a listing).
//
// Answers (including "not listed") are kept in a bounded LRU cache for
// cache_ttl. The package produces the policy.DNSBL fact; it does not
// decide: the connection guard compares the score to its threshold.
package dnsbl

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"moat/internal/dnsres"
	"moat/policy"
)

// Zone is one entry of `dnsbl.zones`.
type Zone struct {
	// Zone is the list's DNS zone, e.g. zen.spamhaus.org.
	Zone string `mapstructure:"zone"`
	// Weight is added to the score when the list matches; negative for an
	// allow list (DNSWL). Default 1 when zero.
	Weight float64 `mapstructure:"weight"`
	// Match filters the answers that count: "127.0.0.2" (one address),
	// "127.0.0.2-127.0.0.11" (an inclusive range) or "&0.0.0.4" (any of
	// the mask's bits set in the answer). Empty: any answer in
	// 127.0.0.0/8 except 127.255.255.0/24, which list operators use for
	// error codes (e.g. "query refused"), not listings.
	Match []string `mapstructure:"match"`
}

// Config is the `dnsbl:` section (the guard embeds it).
type Config struct {
	Zones []Zone `mapstructure:"zones"`
	// Timeout bounds all the lookups of one client together. Default 2s.
	Timeout time.Duration `mapstructure:"timeout"`
	// CacheTTL is how long an answer (or "not listed") is reused.
	// Default 10m.
	CacheTTL time.Duration `mapstructure:"cache_ttl"`
	// CacheSize bounds the answer cache (entries). Default 10000.
	CacheSize int `mapstructure:"cache_size"`
}

// Defaults used when a field is zero.
const (
	DefaultTimeout   = 2 * time.Second
	DefaultCacheTTL  = 10 * time.Minute
	DefaultCacheSize = 10000
	// maxZones bounds the parallel lookups per client.
	maxZones = 32
	// maxMatch bounds the filters of one zone.
	maxMatch = 64
)

// DefaultConfig returns a config with no zones and the default timings.
func DefaultConfig() Config {
	return Config{Timeout: DefaultTimeout, CacheTTL: DefaultCacheTTL, CacheSize: DefaultCacheSize}
}

func (c Config) withDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = DefaultCacheTTL
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	return c
}

// Validate checks the config; key is the path of the section (for example
// "guard.dnsbl") and every error names the full key.
func (c Config) Validate(key string) error {
	errs := CheckZones(key, c.Zones, maxZones, func(z Zone) string { return z.Zone }, func(zk string, z Zone) []error {
		return CheckFilters(zk+".match", z.Match, maxMatch)
	})
	errs = append(errs, CheckLookups(key, c.Timeout, c.CacheTTL, c.CacheSize)...)
	return errors.Join(errs...)
}

// CheckZones checks the zones of a DNS list config for a Validate: at
// most max, each with a name as CheckZoneName wants it (name reads it),
// then whatever more checks of the zone under its key, for example
// "guard.dnsbl.zones[0]".
func CheckZones[Z any](key string, zones []Z, max int, name func(Z) string, more func(zk string, z Z) []error) []error {
	var errs []error
	if len(zones) > max {
		errs = append(errs, fmt.Errorf("%s.zones: %d zones, at most %d", key, len(zones), max))
	}
	for i, z := range zones {
		zk := fmt.Sprintf("%s.zones[%d]", key, i)
		if err := CheckZoneName(name(z)); err != nil {
			errs = append(errs, fmt.Errorf("%s.zone: %w", zk, err))
		}
		errs = append(errs, more(zk, z)...)
	}
	return errs
}

// CheckFilters checks the filters of a zone (at most max, each as
// ParseFilter reads it) for a Validate; key names them, for example
// "guard.dnsbl.zones[0].match".
func CheckFilters(key string, filters []string, max int) []error {
	var errs []error
	if len(filters) > max {
		errs = append(errs, fmt.Errorf("%s: %d filters, at most %d", key, len(filters), max))
	}
	for j, m := range filters {
		if _, err := ParseFilter(m); err != nil {
			errs = append(errs, fmt.Errorf("%s[%d]: %w", key, j, err))
		}
	}
	return errs
}

// CheckLookups checks the lookup settings that the configs of DNS lists
// share (timeout, cache_ttl, cache_size under key) for a Validate.
func CheckLookups(key string, timeout, cacheTTL time.Duration, cacheSize int) []error {
	var errs []error
	if timeout < 0 || timeout > time.Minute {
		errs = append(errs, fmt.Errorf("%s.timeout: %s is outside 0 to 1m", key, timeout))
	}
	if cacheTTL < 0 {
		errs = append(errs, fmt.Errorf("%s.cache_ttl: must not be negative", key))
	}
	if cacheSize < 0 {
		errs = append(errs, fmt.Errorf("%s.cache_size: must not be negative", key))
	}
	return errs
}

// CheckZoneName reports whether z (a trailing dot allowed) can be the
// zone of a DNS list: letters, digits, '-' and '_' in labels of 1 to 63
// octets, at most 200 octets in all, so that a query name (a reversed
// IPv6 address takes 64 octets) still fits in 255 (RFC 1035 §2.3.4).
// policy/uribl shares it.
func CheckZoneName(z string) error {
	z = strings.TrimSuffix(z, ".")
	if z == "" {
		return errors.New("must be set")
	}
	if len(z) > 200 {
		return fmt.Errorf("%q is too long for a DNS list zone", z)
	}
	for _, label := range strings.Split(z, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("%q is not a domain name", z)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("%q is not a domain name", z)
			}
		}
	}
	return nil
}

// Failure is a list that gave no answer (timeout, SERVFAIL, network
// error). It counts as neither listed nor unlisted.
type Failure struct {
	Zone string
	Err  error
	// Weight is what the list could have added to the score: the sum
	// of the positive weights of the zones entries with its name.
	Weight float64
}

// Result is the outcome of one Check: the policy fact plus the lists that
// failed.
type Result struct {
	policy.DNSBL
	Failed []Failure
}

// FailedZones returns the zones that failed, for logs.
func (r Result) FailedZones() []string {
	out := make([]string, 0, len(r.Failed))
	for _, f := range r.Failed {
		out = append(out, f.Zone)
	}
	return out
}

// Options wires a Checker.
type Options struct {
	// Now is the clock for cache expiry; default time.Now.
	Now func() time.Time
}

// Checker queries the configured lists. It is safe for concurrent use.
type Checker struct {
	zones   []zone
	names   []string // distinct zones, each queried once
	timeout time.Duration
	answers *Answers
}

type zone struct {
	name    string
	weight  float64
	filters []Filter
}

// New builds a Checker; it does no lookups.
func New(cfg Config, r dnsres.Resolver, opt Options) (*Checker, error) {
	if err := cfg.Validate("dnsbl"); err != nil {
		return nil, err
	}
	if r == nil {
		return nil, errors.New("dnsbl: a resolver is required")
	}
	cfg = cfg.withDefaults()
	answers, err := NewAnswers(AnswersOptions{Resolver: r, Size: cfg.CacheSize, TTL: cfg.CacheTTL, Now: opt.Now})
	if err != nil {
		return nil, err
	}
	c := &Checker{timeout: cfg.Timeout, answers: answers}
	seen := map[string]bool{}
	for _, z := range cfg.Zones {
		name := strings.ToLower(strings.TrimSuffix(z.Zone, "."))
		w := z.Weight
		if w == 0 {
			w = 1
		}
		zz := zone{name: name, weight: w}
		for _, m := range z.Match {
			f, _ := ParseFilter(m) // validated above
			zz.filters = append(zz.filters, f)
		}
		c.zones = append(c.zones, zz)
		if !seen[name] {
			seen[name] = true
			c.names = append(c.names, name)
		}
	}
	return c, nil
}

// Enabled reports whether any zone is configured.
func (c *Checker) Enabled() bool { return c != nil && len(c.zones) > 0 }

// Check queries every list for ip in parallel, all under one deadline
// (the earlier of ctx's and the configured timeout).
func (c *Checker) Check(ctx context.Context, ip netip.Addr) Result {
	var res Result
	if !c.Enabled() {
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	type answer struct {
		addrs []netip.Addr
		err   error
	}
	answers := make([]answer, len(c.names))
	var wg sync.WaitGroup
	for i, name := range c.names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := c.answers.Lookup(ctx, QueryName(ip, name))
			answers[i] = answer{a, err}
		}()
	}
	wg.Wait()

	byName := make(map[string]answer, len(c.names))
	for i, name := range c.names {
		byName[name] = answers[i]
		if answers[i].err != nil {
			var w float64
			for _, z := range c.zones {
				if z.name == name && z.weight > 0 {
					w += z.weight
				}
			}
			res.Failed = append(res.Failed, Failure{Zone: name, Err: answers[i].err, Weight: w})
			res.Errors = append(res.Errors, name)
		}
	}
	for _, z := range c.zones {
		a := byName[z.name]
		if a.err != nil {
			continue
		}
		for _, addr := range a.addrs {
			if z.matches(addr) {
				res.Score += z.weight
				res.Hits = append(res.Hits, policy.DNSBLHit{Zone: z.name, Answer: addr, Weight: z.weight, Allowed: z.weight < 0})
				break // a zone counts once, whatever the number of answers
			}
		}
	}
	return res
}

func (z zone) matches(a netip.Addr) bool {
	if len(z.filters) == 0 {
		// RFC 5782 §2.1: listings are in 127.0.0.0/8; 127.255.255.x is
		// used by list operators for error replies, not listings.
		return a.Is4() && a.As4()[0] == 127 && !(a.As4()[1] == 255 && a.As4()[2] == 255)
	}
	for _, f := range z.filters {
		if f.Match(a) {
			return true
		}
	}
	return false
}

const hexDigits = "0123456789abcdef"

// QueryName returns the DNS name to query for ip in zone: the four octets
// reversed for IPv4 (RFC 5782 §2.1), the 32 nibbles reversed for IPv6
// (RFC 5782 §2.4). An IPv4-mapped IPv6 address is queried as IPv4.
func QueryName(ip netip.Addr, zone string) string {
	zone = strings.TrimSuffix(zone, ".")
	ip = ip.Unmap()
	var b strings.Builder
	if ip.Is4() {
		a := ip.As4()
		fmt.Fprintf(&b, "%d.%d.%d.%d.", a[3], a[2], a[1], a[0])
	} else {
		a := ip.As16()
		b.Grow(64 + len(zone) + 1)
		for i := 15; i >= 0; i-- {
			b.WriteByte(hexDigits[a[i]&0xf])
			b.WriteByte('.')
			b.WriteByte(hexDigits[a[i]>>4])
			b.WriteByte('.')
		}
	}
	b.WriteString(zone)
	b.WriteByte('.')
	return b.String()
}
