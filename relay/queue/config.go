package queue

import (
	"errors"
	"fmt"
	"time"
)

// Config is the `queue:` section of the configuration file.
type Config struct {
	RetryMin       time.Duration `mapstructure:"retry_min"`       // default 5m
	RetryMax       time.Duration `mapstructure:"retry_max"`       // default 1h
	MaxAge         time.Duration `mapstructure:"max_age"`         // default 120h (5 days, RFC 5321 §4.5.4.1 suggests 4-5 days)
	DelayWarning   time.Duration `mapstructure:"delay_warning"`   // default 4h; 0 = no delay warnings
	Concurrency    int           `mapstructure:"concurrency"`     // default 20 deliveries at once
	PerDestination int           `mapstructure:"per_destination"` // default 20 per route / MX domain (Postfix default_destination_concurrency_limit)
	// DeliveryTimeout bounds one transport call (all of a message's
	// recipients on one route); default 10m, above RFC 5321 §4.5.3.2.6.
	DeliveryTimeout time.Duration `mapstructure:"delivery_timeout"`
	// BounceUnverifiedSenders: false (default) sends no bounce or delay
	// warning to an envelope sender that neither passed SPF nor is
	// DMARC-aligned (and is not an authenticated user, a trusted network
	// or moat itself): the notice would be backscatter to a forged
	// address. The dropped notice is logged and counted. true: the
	// classic behaviour, a notice to every sender.
	BounceUnverifiedSenders bool `mapstructure:"bounce_unverified_senders"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		RetryMin:        5 * time.Minute,
		RetryMax:        time.Hour,
		MaxAge:          120 * time.Hour,
		DelayWarning:    4 * time.Hour,
		Concurrency:     20,
		PerDestination:  20,
		DeliveryTimeout: 10 * time.Minute,
	}
}

// Validate checks the section; errors name the full key.
func (c Config) Validate() error {
	var errs []error
	if c.RetryMin <= 0 {
		errs = append(errs, fmt.Errorf("queue.retry_min: must be positive, got %s", c.RetryMin))
	}
	if c.RetryMax < c.RetryMin {
		errs = append(errs, fmt.Errorf("queue.retry_max: %s is less than queue.retry_min %s", c.RetryMax, c.RetryMin))
	}
	if c.MaxAge < c.RetryMin {
		errs = append(errs, fmt.Errorf("queue.max_age: %s is less than queue.retry_min %s", c.MaxAge, c.RetryMin))
	}
	if c.DelayWarning < 0 {
		errs = append(errs, fmt.Errorf("queue.delay_warning: must not be negative, got %s", c.DelayWarning))
	}
	if c.Concurrency < 1 || c.Concurrency > 10000 {
		errs = append(errs, fmt.Errorf("queue.concurrency: must be 1 to 10000, got %d", c.Concurrency))
	}
	if c.PerDestination < 1 {
		errs = append(errs, fmt.Errorf("queue.per_destination: must be at least 1, got %d", c.PerDestination))
	}
	if c.DeliveryTimeout < 0 {
		errs = append(errs, fmt.Errorf("queue.delivery_timeout: must not be negative"))
	}
	return errors.Join(errs...)
}

// Apply copies the section into opt.
func (c Config) Apply(opt *Options) {
	opt.RetryMin, opt.RetryMax, opt.MaxAge, opt.DelayWarning = c.RetryMin, c.RetryMax, c.MaxAge, c.DelayWarning
	if c.DelayWarning == 0 {
		opt.DelayWarning = -1 // the file's 0 is "off"
	}
	opt.Concurrency, opt.PerDestination = c.Concurrency, c.PerDestination
	opt.DeliveryTimeout = c.DeliveryTimeout
	opt.BounceUnverifiedSenders = c.BounceUnverifiedSenders
}
