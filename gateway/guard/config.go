package guard

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"moat/policy/dnsbl"
)

// Config is the `guard:` section. A zero numeric limit turns that limit
// off; DefaultConfig holds the documented defaults.
type Config struct {
	// MaxConnections caps the connections of all listeners together,
	// those still being screened and those handed to the SMTP server.
	// Default 1000.
	MaxConnections int `mapstructure:"max_connections"`
	// SubmissionReserve is the share of MaxConnections that only
	// submission listeners may use (rounded up to whole connections): the
	// other listeners together stop short of it, so that a flood on port
	// 25 cannot refuse logins on 587/465. 0 keeps nothing aside. Default
	// 0.1. A listener may also have a cap of its own
	// (listeners[].max_connections).
	SubmissionReserve float64 `mapstructure:"submission_reserve"`
	// Stress is the overload mode (as Postfix's stress mode).
	Stress Stress `mapstructure:"stress"`
	// PerIP limits one client address. Defaults: 60 connections a minute,
	// burst 20, 10 at once.
	PerIP Limit `mapstructure:"per_ip"`
	// PerPrefix limits one network (IPv4 /24, IPv6 /64 by default).
	// Defaults: 300 a minute, burst 60, 50 at once.
	PerPrefix PrefixLimit `mapstructure:"per_prefix"`
	// TrackedClients bounds the LRU of per-IP state, and separately of
	// per-prefix state. Default 65536 each.
	TrackedClients int `mapstructure:"tracked_clients"`

	// Allow and Deny are CIDR prefixes or addresses, inline or in files
	// (one per line, '#' comments). Deny wins over allow. An allow-listed
	// client skips the rate and concurrency limits, the DNS lists and the
	// pregreet test (it still counts toward max_connections).
	Allow      []string `mapstructure:"allow"`
	AllowFiles []string `mapstructure:"allow_files"`
	Deny       []string `mapstructure:"deny"`
	DenyFiles  []string `mapstructure:"deny_files"`

	// TrustedProxies may (and on a proxy_protocol listener must) send a
	// PROXY protocol v1/v2 header; nobody else may.
	TrustedProxies []string `mapstructure:"trusted_proxies"`
	// ProxyHeaderTimeout bounds the read of the PROXY header. Default 5s.
	ProxyHeaderTimeout time.Duration `mapstructure:"proxy_header_timeout"`

	DNSBL    DNSBL    `mapstructure:"dnsbl"`
	Pregreet Pregreet `mapstructure:"pregreet"`

	// MaxErrors closes a session after this many 5xx replies (Postfix's
	// smtpd_hard_error_limit). Default 10.
	MaxErrors int `mapstructure:"max_errors"`
	// MaxCommandLoops closes a session after this many RSET, NOOP, HELO
	// and EHLO commands. Default 50.
	MaxCommandLoops int    `mapstructure:"max_command_loops"`
	Tarpit          Tarpit `mapstructure:"tarpit"`

	// LogLimit bounds the program log's "connection rejected" lines to
	// this many a second for each reason: under a flood the rest are only
	// counted (Stats and Options.OnReject, hence the metrics and the mail
	// log, still see every one), and the next line of that reason says
	// how many were not logged (field not_logged). 0 logs every
	// rejection. Default 10.
	LogLimit int `mapstructure:"log_limit"`
}

// Limit is a token bucket (RatePerMinute, Burst) plus a concurrency cap.
type Limit struct {
	RatePerMinute float64 `mapstructure:"rate_per_minute"`
	Burst         int     `mapstructure:"burst"`
	MaxConcurrent int     `mapstructure:"max_concurrent"`
}

// PrefixLimit is a Limit applied to the network of the client.
type PrefixLimit struct {
	IPv4Prefix int `mapstructure:"ipv4_prefix"`
	IPv6Prefix int `mapstructure:"ipv6_prefix"`
	Limit      `mapstructure:",squash"`
}

// DNSBL is `guard.dnsbl:`: the lists (see package policy/dnsbl) plus what
// the guard does with the score.
type DNSBL struct {
	dnsbl.Config `mapstructure:",squash"`
	// Threshold: a total score at or above it is rejected. Default 1.
	Threshold float64 `mapstructure:"threshold"`
	// Reply is 550 (550 5.7.1, default) or 421 (421 4.7.1, try later).
	Reply int `mapstructure:"reply"`
	// OnError is what a list that fails (timeout, SERVFAIL) means:
	// "accept" (default) counts it as no answer; "tempfail" refuses the
	// client with 421 4.7.0 when the failed lists' weights could have
	// brought the score to the threshold (fail closed).
	OnError string `mapstructure:"on_error"`
}

// DNSBL.OnError values.
const (
	DNSBLAccept   = "accept"
	DNSBLTempfail = "tempfail"
)

// Stress is `guard.stress:`. A listener is under stress while its
// connections are above Threshold of its cap, or all the guard's are
// above Threshold of max_connections; it ends once the count is below
// 90% of that level (so that a count at the edge does not flap). Under
// stress every wait for the client (each command, each data block) is
// cut to Timeout, as Postfix's stress mode cuts smtpd_timeout to 10s.
type Stress struct {
	// Threshold is a share of the cap, in (0, 1]; 0 turns stress mode
	// off. Default 0.8.
	Threshold float64 `mapstructure:"threshold"`
	// Timeout replaces smtp.read_timeout under stress. Default 10s.
	Timeout time.Duration `mapstructure:"timeout"`
}

// Pregreet is `guard.pregreet:`. The greet delay itself is per listener.
type Pregreet struct {
	// PassTTL is how long a client that passed is remembered and skips
	// the delay. Default 24h.
	PassTTL time.Duration `mapstructure:"pass_ttl"`
	// CacheSize bounds the pass cache. Default 100000.
	CacheSize int `mapstructure:"cache_size"`
	// Action is what an early talker gets: "hold" (default) keeps it
	// until the greet delay ends and then answers 521, as postscreen's
	// enforce and ignore actions keep it to the end of the greet wait;
	// "drop" answers 521 at once (postscreen's drop). Holding costs a
	// bot the whole delay for each attempt, so a herd that redials
	// after each refusal dials less often; a held connection costs the
	// guard one parked goroutine until the delay ends, and counts toward
	// max_connections and the concurrency limits meanwhile.
	Action string `mapstructure:"action"`
}

// Pregreet actions.
const (
	PregreetHold = "hold"
	PregreetDrop = "drop"
)

// Tarpit delays each 5xx reply after the first After errors by
// min((errors-After)·Base, Max). Defaults: after 3, base 1s, max 10s.
type Tarpit struct {
	After int           `mapstructure:"after"`
	Base  time.Duration `mapstructure:"base"`
	Max   time.Duration `mapstructure:"max"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		MaxConnections:     1000,
		SubmissionReserve:  0.1,
		Stress:             Stress{Threshold: 0.8, Timeout: 10 * time.Second},
		PerIP:              Limit{RatePerMinute: 60, Burst: 20, MaxConcurrent: 10},
		PerPrefix:          PrefixLimit{IPv4Prefix: 24, IPv6Prefix: 64, Limit: Limit{RatePerMinute: 300, Burst: 60, MaxConcurrent: 50}},
		TrackedClients:     65536,
		ProxyHeaderTimeout: 5 * time.Second,
		DNSBL:              DNSBL{Config: dnsbl.DefaultConfig(), Threshold: 1, Reply: 550, OnError: DNSBLAccept},
		Pregreet:           Pregreet{PassTTL: 24 * time.Hour, CacheSize: 100000, Action: PregreetHold},
		MaxErrors:          10,
		MaxCommandLoops:    50,
		LogLimit:           10,
		Tarpit:             Tarpit{After: 3, Base: time.Second, Max: 10 * time.Second},
	}
}

// Validate checks the values; errors name the full key (guard.…). It
// does not read allow/deny files: New and Reload do, and report their
// errors with the file name and line.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.MaxConnections < 1 {
		add("guard.max_connections: must be at least 1")
	}
	if c.SubmissionReserve < 0 || c.SubmissionReserve >= 1 {
		add("guard.submission_reserve: %v is outside [0, 1)", c.SubmissionReserve)
	}
	if c.Stress.Threshold < 0 || c.Stress.Threshold > 1 {
		add("guard.stress.threshold: %v is outside [0, 1]", c.Stress.Threshold)
	}
	if c.Stress.Threshold > 0 && c.Stress.Timeout <= 0 {
		add("guard.stress.timeout: must be positive")
	}
	checkLimit := func(key string, l Limit) {
		if l.RatePerMinute < 0 {
			add("%s.rate_per_minute: must not be negative", key)
		}
		if l.Burst < 0 {
			add("%s.burst: must not be negative", key)
		}
		if l.RatePerMinute > 0 && l.Burst < 1 {
			add("%s.burst: must be at least 1 when rate_per_minute is set", key)
		}
		if l.MaxConcurrent < 0 {
			add("%s.max_concurrent: must not be negative", key)
		}
	}
	checkLimit("guard.per_ip", c.PerIP)
	checkLimit("guard.per_prefix", c.PerPrefix.Limit)
	if c.PerPrefix.IPv4Prefix < 8 || c.PerPrefix.IPv4Prefix > 32 {
		add("guard.per_prefix.ipv4_prefix: %d is outside 8 to 32", c.PerPrefix.IPv4Prefix)
	}
	if c.PerPrefix.IPv6Prefix < 16 || c.PerPrefix.IPv6Prefix > 128 {
		add("guard.per_prefix.ipv6_prefix: %d is outside 16 to 128", c.PerPrefix.IPv6Prefix)
	}
	if c.TrackedClients < 16 {
		add("guard.tracked_clients: %d is below 16", c.TrackedClients)
	}
	for _, l := range []struct {
		key  string
		list []string
	}{{"guard.allow", c.Allow}, {"guard.deny", c.Deny}, {"guard.trusted_proxies", c.TrustedProxies}} {
		if _, err := parseInline(l.key, l.list); err != nil {
			errs = append(errs, err)
		}
	}
	if c.ProxyHeaderTimeout <= 0 || c.ProxyHeaderTimeout > time.Minute {
		add("guard.proxy_header_timeout: %s is outside (0, 1m]", c.ProxyHeaderTimeout)
	}
	if err := c.DNSBL.Config.Validate("guard.dnsbl"); err != nil {
		errs = append(errs, err)
	}
	if len(c.DNSBL.Zones) > 0 && c.DNSBL.Threshold <= 0 {
		add("guard.dnsbl.threshold: must be positive")
	}
	if c.DNSBL.Reply != 550 && c.DNSBL.Reply != 421 {
		add("guard.dnsbl.reply: %d is not 550 or 421", c.DNSBL.Reply)
	}
	if o := c.DNSBL.OnError; o != DNSBLAccept && o != DNSBLTempfail {
		add("guard.dnsbl.on_error: %q is not accept or tempfail", o)
	}
	if c.Pregreet.PassTTL < 0 {
		add("guard.pregreet.pass_ttl: must not be negative")
	}
	if c.Pregreet.CacheSize < 1 {
		add("guard.pregreet.cache_size: must be at least 1")
	}
	if c.LogLimit < 0 {
		add("guard.log_limit: must not be negative")
	}
	if a := c.Pregreet.Action; a != PregreetHold && a != PregreetDrop {
		add("guard.pregreet.action: %q is not hold or drop", a)
	}
	if c.MaxErrors < 0 {
		add("guard.max_errors: must not be negative")
	}
	if c.MaxCommandLoops < 0 {
		add("guard.max_command_loops: must not be negative")
	}
	if c.Tarpit.After < 0 {
		add("guard.tarpit.after: must not be negative")
	}
	if c.Tarpit.Base < 0 || c.Tarpit.Max < 0 || c.Tarpit.Max > time.Minute {
		add("guard.tarpit: base and max must be within 0 to 1m")
	}
	return errors.Join(errs...)
}

// Listed reports whether ip is on the allow list and on the deny list of
// c (inline and files), as the guard finds it at connect: deny wins, and
// an allow-listed client skips the limits, the DNS lists and the pregreet
// test. For offline tools (moat rules test); the guard itself compiles
// the lists once per config.
func (c Config) Listed(ip netip.Addr) (allow, deny bool, err error) {
	a, err := loadList("guard.allow", c.Allow, c.AllowFiles)
	if err != nil {
		return false, false, err
	}
	d, err := loadList("guard.deny", c.Deny, c.DenyFiles)
	if err != nil {
		return false, false, err
	}
	return a.Contains(ip), d.Contains(ip), nil
}
