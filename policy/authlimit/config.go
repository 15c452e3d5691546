package authlimit

import (
	"errors"
	"fmt"
	"time"
)

// Config holds the two sections of the submission listener that this
// package owns: `submission.auth_limits` and `submission.send_limits`.
// The configuration loader squashes it into its `submission:` struct
// (`mapstructure:",squash"`) or names the two keys itself.
//
//	submission:
//	  auth_limits:
//	    per_ip:   {max_failures: 10, window: 15m}
//	    per_user: {max_failures: 5, window: 15m}
//	    lockout: 15m
//	    delay_base: 1s
//	    delay_max: 30s
//	    ipv6_prefix: 64
//	    tracked_ips: 65536
//	    tracked_users: 65536
//	  send_limits:
//	    messages_per_hour: 200
//	    recipients_per_hour: 1000
//	    tracked_users: 65536
type Config struct {
	Auth AuthLimits `mapstructure:"auth_limits"`
	Send SendLimits `mapstructure:"send_limits"`
}

// AuthLimits is `submission.auth_limits`: what failed AUTH attempts cost
// a client address and a user name.
type AuthLimits struct {
	// PerIP counts failures of one client address (an IPv6 client by its
	// IPv6Prefix network). Default 10 failures in 15m; max_failures 0
	// turns the lock-out of addresses off (the delay still applies).
	PerIP Threshold `mapstructure:"per_ip"`
	// PerUser counts failures for one user name, from any address.
	// Default 5 failures in 15m; max_failures 0 turns it off.
	//
	// A user lock-out can be caused by anyone who knows the address: it
	// is temporary (454) for that reason, and the user's mail still
	// arrives.
	PerUser Threshold `mapstructure:"per_user"`
	// Lockout is how long AUTH is refused once a threshold is reached.
	// Default 15m.
	Lockout time.Duration `mapstructure:"lockout"`
	// DelayBase is the wait before the AUTH reply that follows the first
	// failure; it doubles with each further failure up to DelayMax.
	// Defaults 1s and 30s; delay_base 0 turns the delay off.
	DelayBase time.Duration `mapstructure:"delay_base"`
	DelayMax  time.Duration `mapstructure:"delay_max"`
	// IPv6Prefix is the network length under which IPv6 clients are
	// counted together: one host usually holds a whole /64. Default 64.
	IPv6Prefix int `mapstructure:"ipv6_prefix"`
	// TrackedIPs and TrackedUsers bound the tables of failure counters
	// (least recently used entries are dropped). Default 65536 each.
	TrackedIPs   int `mapstructure:"tracked_ips"`
	TrackedUsers int `mapstructure:"tracked_users"`
}

// Threshold is "MaxFailures failures within Window". The window starts
// at the first failure and the count restarts when it is over (a fixed
// window: cheap, and one entry a key whatever MaxFailures is).
type Threshold struct {
	MaxFailures int           `mapstructure:"max_failures"`
	Window      time.Duration `mapstructure:"window"`
}

// SendLimits is `submission.send_limits`: how much one authenticated user
// may send. Each is a token bucket that holds one hour's worth and refills
// continuously, so a user may send the whole hour's allowance at once and
// then at the hourly pace. 0 means unlimited.
type SendLimits struct {
	// MessagesPerHour: default 200.
	MessagesPerHour int `mapstructure:"messages_per_hour"`
	// RecipientsPerHour counts every RCPT of every message: default 1000.
	RecipientsPerHour int `mapstructure:"recipients_per_hour"`
	// TrackedUsers bounds the table of buckets. Default 65536. A user
	// dropped from it starts again with a full bucket.
	TrackedUsers int `mapstructure:"tracked_users"`
}

// Bounds checked by Validate.
const (
	maxTracked   = 10_000_000
	maxFailures  = 1_000_000
	maxDuration  = 7 * 24 * time.Hour
	maxDelay     = 5 * time.Minute // RFC 5321 §4.5.3.2: clients wait 5 minutes for most replies
	maxPerHour   = 100_000_000
	minIPv6Bits  = 32
	keyAuth      = "submission.auth_limits"
	keySend      = "submission.send_limits"
	maxUserBytes = 320 // longest user key kept (RFC 5321 §4.5.3.1: 64 + 1 + 255)
)

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Auth: AuthLimits{
			PerIP:        Threshold{MaxFailures: 10, Window: 15 * time.Minute},
			PerUser:      Threshold{MaxFailures: 5, Window: 15 * time.Minute},
			Lockout:      15 * time.Minute,
			DelayBase:    time.Second,
			DelayMax:     30 * time.Second,
			IPv6Prefix:   64,
			TrackedIPs:   65536,
			TrackedUsers: 65536,
		},
		Send: SendLimits{
			MessagesPerHour:   200,
			RecipientsPerHour: 1000,
			TrackedUsers:      65536,
		},
	}
}

// Validate checks the values; every error names its full key, e.g.
// "submission.auth_limits.per_ip.window: must be positive".
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	a := c.Auth
	for _, t := range []struct {
		key string
		th  Threshold
	}{{keyAuth + ".per_ip", a.PerIP}, {keyAuth + ".per_user", a.PerUser}} {
		switch {
		case t.th.MaxFailures < 0 || t.th.MaxFailures > maxFailures:
			add("%s.max_failures: %d is outside 0 (off) to %d", t.key, t.th.MaxFailures, maxFailures)
		case t.th.Window <= 0 || t.th.Window > maxDuration:
			add("%s.window: %v is outside 1ns to %v", t.key, t.th.Window, maxDuration)
		}
	}
	if a.Lockout <= 0 || a.Lockout > maxDuration {
		add("%s.lockout: %v is outside 1ns to %v", keyAuth, a.Lockout, maxDuration)
	}
	if a.DelayBase < 0 || a.DelayBase > maxDelay {
		add("%s.delay_base: %v is outside 0 (off) to %v", keyAuth, a.DelayBase, maxDelay)
	}
	if a.DelayMax < a.DelayBase || a.DelayMax > maxDelay {
		add("%s.delay_max: %v is outside delay_base (%v) to %v", keyAuth, a.DelayMax, a.DelayBase, maxDelay)
	}
	if a.IPv6Prefix < minIPv6Bits || a.IPv6Prefix > 128 {
		add("%s.ipv6_prefix: %d is outside %d to 128", keyAuth, a.IPv6Prefix, minIPv6Bits)
	}
	if a.TrackedIPs < 1 || a.TrackedIPs > maxTracked {
		add("%s.tracked_ips: %d is outside 1 to %d", keyAuth, a.TrackedIPs, maxTracked)
	}
	if a.TrackedUsers < 1 || a.TrackedUsers > maxTracked {
		add("%s.tracked_users: %d is outside 1 to %d", keyAuth, a.TrackedUsers, maxTracked)
	}
	s := c.Send
	if s.MessagesPerHour < 0 || s.MessagesPerHour > maxPerHour {
		add("%s.messages_per_hour: %d is outside 0 (unlimited) to %d", keySend, s.MessagesPerHour, maxPerHour)
	}
	if s.RecipientsPerHour < 0 || s.RecipientsPerHour > maxPerHour {
		add("%s.recipients_per_hour: %d is outside 0 (unlimited) to %d", keySend, s.RecipientsPerHour, maxPerHour)
	}
	if s.TrackedUsers < 1 || s.TrackedUsers > maxTracked {
		add("%s.tracked_users: %d is outside 1 to %d", keySend, s.TrackedUsers, maxTracked)
	}
	return errors.Join(errs...)
}
