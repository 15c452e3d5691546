package uribl

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"moat/policy/dnsbl"
)

// Zone is one entry of `uribl.zones`.
type Zone struct {
	// Zone is the list's DNS zone, e.g. dbl.spamhaus.org. Two entries may
	// name the same zone (for example with different match filters and
	// weights): the zone is asked once per name and each entry scores on
	// its own.
	Zone string `mapstructure:"zone"`
	// Weight is added to uribl.score when the entry matches (once per
	// message, see Facts.Score). Default 1 when zero; negative for an
	// allow list (such an entry lowers the score and is left out of
	// uribl.hits and uribl.listed).
	Weight float64 `mapstructure:"weight"`
	// Match filters the answers that count, with the syntax of
	// guard.dnsbl: "127.0.1.2" (one address), "127.0.1.2-127.0.1.99" (an
	// inclusive range) or "&0.0.0.8" (any bit of the mask set in the
	// answer, RFC 5782 §2.3). Empty: any answer in 127.0.0.0/8.
	Match []string `mapstructure:"match"`
	// ErrorCodes are answers that mean the list refused or failed the
	// query, not a listing (same syntax as Match), on top of
	// 127.255.255.0/24 which always is (see the package doc). Such an
	// answer makes the lookup a failure, counted in uribl.errors.
	ErrorCodes []string `mapstructure:"error_codes"`
	// IPs says the list also holds IP addresses from URLs (reversed
	// octets or nibbles, RFC 5782 §2.1, §2.4). Default false: IP literals
	// are not asked of this zone.
	IPs bool `mapstructure:"ips"`
}

// Config is the `uribl:` section.
type Config struct {
	Zones []Zone `mapstructure:"zones"`
	// MaxLookups bounds the distinct names (registered domains and IP
	// addresses) asked per message; each is asked of every zone that
	// takes it. Sender and From domains come first, then URL hosts in
	// the order given. Names over the bound are counted in uribl.skipped.
	// Default 20, at most 200.
	MaxLookups int `mapstructure:"max_lookups"`
	// Parallel bounds the DNS queries in flight for one message.
	// Default 8, at most 64.
	Parallel int `mapstructure:"parallel"`
	// Timeout bounds all the lookups of one message together (one
	// deadline). Default 2s, at most 1m.
	Timeout time.Duration `mapstructure:"timeout"`
	// CacheTTL is how long an answer (or "not listed") is reused.
	// Default 10m.
	CacheTTL time.Duration `mapstructure:"cache_ttl"`
	// CacheSize bounds the answer cache (entries: one per name and
	// zone). Default 10000.
	CacheSize int `mapstructure:"cache_size"`
}

// Defaults used when a field is zero, and bounds.
const (
	DefaultMaxLookups = 20
	DefaultParallel   = 8
	DefaultTimeout    = 2 * time.Second
	DefaultCacheTTL   = 10 * time.Minute
	DefaultCacheSize  = 10000

	maxLookupsLimit = 200
	maxParallel     = 64
	maxZones        = 32
	maxFilters      = 64
)

// DefaultConfig returns a config with no zones and the default bounds.
func DefaultConfig() Config {
	return Config{
		MaxLookups: DefaultMaxLookups, Parallel: DefaultParallel, Timeout: DefaultTimeout,
		CacheTTL: DefaultCacheTTL, CacheSize: DefaultCacheSize,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxLookups == 0 {
		c.MaxLookups = d.MaxLookups
	}
	if c.Parallel == 0 {
		c.Parallel = d.Parallel
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = d.CacheTTL
	}
	if c.CacheSize == 0 {
		c.CacheSize = d.CacheSize
	}
	return c
}

// Validate checks the config; key is the path of the section ("uribl")
// and every error names the full key.
func (c Config) Validate(key string) error {
	errs := dnsbl.CheckZones(key, c.Zones, maxZones, func(z Zone) string { return z.Zone }, func(zk string, z Zone) []error {
		var errs []error
		if math.IsNaN(z.Weight) || math.IsInf(z.Weight, 0) {
			errs = append(errs, fmt.Errorf("%s.weight: must be a finite number", zk))
		}
		errs = append(errs, dnsbl.CheckFilters(zk+".match", z.Match, maxFilters)...)
		return append(errs, dnsbl.CheckFilters(zk+".error_codes", z.ErrorCodes, maxFilters)...)
	})
	if c.MaxLookups < 0 || c.MaxLookups > maxLookupsLimit {
		errs = append(errs, fmt.Errorf("%s.max_lookups: %d is outside 0 to %d", key, c.MaxLookups, maxLookupsLimit))
	}
	if c.Parallel < 0 || c.Parallel > maxParallel {
		errs = append(errs, fmt.Errorf("%s.parallel: %d is outside 0 to %d", key, c.Parallel, maxParallel))
	}
	errs = append(errs, dnsbl.CheckLookups(key, c.Timeout, c.CacheTTL, c.CacheSize)...)
	return errors.Join(errs...)
}

func zoneKey(z string) string { return strings.ToLower(strings.TrimSuffix(z, ".")) }
