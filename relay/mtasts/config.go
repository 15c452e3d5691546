package mtasts

import (
	"errors"
	"fmt"
	"time"
)

// Config is the `mta_sts:` section: the sending side of MTA-STS.
type Config struct {
	// Enabled looks up and applies the MTA-STS policies of recipient
	// domains for MX delivery. Default true.
	Enabled bool `mapstructure:"enabled"`
	// FetchTimeout bounds one policy fetch. Default 20s.
	FetchTimeout time.Duration `mapstructure:"fetch_timeout"`
	// CacheSize bounds the policies kept (in memory, and in
	// <data_dir>/mtasts.db or Redis). Default 10000.
	CacheSize int `mapstructure:"cache_size"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Enabled: true, FetchTimeout: DefaultFetchTimeout, CacheSize: DefaultCacheSize}
}

// Validate checks the section.
func (c Config) Validate() error {
	var errs []error
	if c.FetchTimeout <= 0 || c.FetchTimeout > 5*time.Minute {
		errs = append(errs, fmt.Errorf("mta_sts.fetch_timeout: %s is not between 0 and 5m", c.FetchTimeout))
	}
	if c.CacheSize <= 0 || c.CacheSize > 1_000_000 {
		errs = append(errs, fmt.Errorf("mta_sts.cache_size: %d is not between 1 and 1000000", c.CacheSize))
	}
	return errors.Join(errs...)
}
