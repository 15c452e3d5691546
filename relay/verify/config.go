package verify

import (
	"errors"
	"fmt"
	"time"
)

// What to do when a callahead cannot get an answer (verify.callahead_tempfail).
const (
	// TempfailReject answers 451 4.4.3: the client tries again later.
	TempfailReject = "reject"
	// TempfailAccept accepts the recipient; if it does not exist, the
	// backend refuses it later and the queue bounces.
	TempfailAccept = "accept"
)

// Defaults of Config (DefaultConfig).
const (
	DefaultPositiveTTL   = time.Hour
	DefaultNegativeTTL   = 10 * time.Minute
	DefaultTempfailTTL   = 30 * time.Second
	DefaultCacheSize     = 20000
	DefaultProbeTimeout  = 15 * time.Second
	DefaultHarvestLimit  = 20
	DefaultHarvestWindow = 10 * time.Minute
	DefaultHarvestTrack  = 10000
	DefaultMaxConns      = 4
	DefaultIdleTimeout   = 30 * time.Second
	DefaultListReload    = time.Second
)

// Config holds the global knobs under `verify:`; the per-route mode and
// recipients file come from route.Route.
type Config struct {
	// PositiveTTL is how long a "known" answer is cached. Default 1h.
	PositiveTTL time.Duration `mapstructure:"positive_ttl"`
	// NegativeTTL is how long an "unknown" answer is cached. Default 10m.
	NegativeTTL time.Duration `mapstructure:"negative_ttl"`
	// TempfailTTL is how long a temporary failure is cached, and how
	// long a backend that could not be reached is not dialled again.
	// 0 caches nothing. Default 30s.
	TempfailTTL time.Duration `mapstructure:"tempfail_ttl"`
	// CacheSize bounds the cached answers, all routes together.
	// Default 20000.
	CacheSize int `mapstructure:"cache_size"`
	// ProbeTimeout bounds one callahead: waiting for a connection,
	// connecting, STARTTLS and the commands. Default 15s.
	ProbeTimeout time.Duration `mapstructure:"probe_timeout"`
	// CallaheadTempfail is reject (default: 451 4.4.3 at RCPT) or accept.
	CallaheadTempfail string `mapstructure:"callahead_tempfail"`
	// HarvestLimit is the number of unknown-recipient answers one client
	// may get within HarvestWindow before every RCPT it sends is
	// answered 421 4.7.0. 0 turns the defence off. Default 20.
	HarvestLimit int `mapstructure:"harvest_limit"`
	// HarvestCode is the reply to a client past the limit: 421 (default,
	// 421 4.7.0, and the session must then be closed, RFC 5321 §3.8) or
	// 450 (450 4.7.1, the session goes on; for a caller that cannot
	// close after a reply).
	HarvestCode int `mapstructure:"harvest_code"`
	// HarvestWindow is the counting window. Default 10m.
	HarvestWindow time.Duration `mapstructure:"harvest_window"`
	// HarvestClients bounds the clients tracked. Default 10000.
	HarvestClients int `mapstructure:"harvest_clients"`
	// MaxConns bounds the callahead connections (and so the probes in
	// flight) per backend. Default 4.
	MaxConns int `mapstructure:"max_conns"`
	// IdleTimeout closes a callahead connection idle for longer.
	// Default 30s.
	IdleTimeout time.Duration `mapstructure:"idle_timeout"`
	// ListReload is how often, at most, a recipients file is checked for
	// a change (size or modification time). Default 1s.
	ListReload time.Duration `mapstructure:"list_reload"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		PositiveTTL:       DefaultPositiveTTL,
		NegativeTTL:       DefaultNegativeTTL,
		TempfailTTL:       DefaultTempfailTTL,
		CacheSize:         DefaultCacheSize,
		ProbeTimeout:      DefaultProbeTimeout,
		CallaheadTempfail: TempfailReject,
		HarvestLimit:      DefaultHarvestLimit,
		HarvestWindow:     DefaultHarvestWindow,
		HarvestCode:       421,
		HarvestClients:    DefaultHarvestTrack,
		MaxConns:          DefaultMaxConns,
		IdleTimeout:       DefaultIdleTimeout,
		ListReload:        DefaultListReload,
	}
}

// Validate checks the knobs; errors name the key under verify.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("verify.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	pos := func(key string, d time.Duration) {
		if d <= 0 {
			bad(key, "must be positive, got %s", d)
		}
	}
	pos("positive_ttl", c.PositiveTTL)
	pos("negative_ttl", c.NegativeTTL)
	pos("probe_timeout", c.ProbeTimeout)
	pos("idle_timeout", c.IdleTimeout)
	pos("list_reload", c.ListReload)
	if c.TempfailTTL < 0 {
		bad("tempfail_ttl", "must not be negative, got %s", c.TempfailTTL)
	}
	if c.TempfailTTL > time.Hour {
		bad("tempfail_ttl", "%s is longer than an hour: a backend that is back would stay refused", c.TempfailTTL)
	}
	if c.CacheSize <= 0 {
		bad("cache_size", "must be positive, got %d", c.CacheSize)
	}
	switch c.CallaheadTempfail {
	case TempfailReject, TempfailAccept:
	default:
		bad("callahead_tempfail", "%q is not reject or accept", c.CallaheadTempfail)
	}
	if c.HarvestLimit < 0 {
		bad("harvest_limit", "must not be negative (0 turns the defence off), got %d", c.HarvestLimit)
	}
	if c.HarvestLimit > 0 {
		pos("harvest_window", c.HarvestWindow)
		if c.HarvestCode != 421 && c.HarvestCode != 450 {
			bad("harvest_code", "must be 421 or 450, got %d", c.HarvestCode)
		}
		if c.HarvestClients <= 0 {
			bad("harvest_clients", "must be positive, got %d", c.HarvestClients)
		}
	}
	if c.MaxConns <= 0 || c.MaxConns > 100 {
		bad("max_conns", "must be between 1 and 100, got %d", c.MaxConns)
	}
	return errors.Join(errs...)
}
