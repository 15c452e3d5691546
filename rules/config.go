package rules

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Config is the `rules:` section of the configuration file.
type Config struct {
	// Paths are file globs; the files they match are evaluated in file-name
	// order. A glob that matches nothing is not an error; a plain path
	// that does not exist is.
	Paths []string `mapstructure:"paths"`
	// Score holds the thresholds applied to the running score after the
	// data stage (rules.score.tag, .greylist, .reject).
	Score ScoreConfig `mapstructure:"score"`
	// Lists names list files for in_list("name", value): name -> file.
	Lists map[string]string `mapstructure:"lists"`
	// Greylist configures the greylist action.
	Greylist GreylistConfig `mapstructure:"greylist"`
	// Auth is the built-in authentication policy applied after the user
	// rules.
	// It is configured under the top-level `auth:` key (the composer
	// copies it here), not under `rules:`.
	Auth AuthPolicy `mapstructure:"-"`
}

// ScoreConfig holds score thresholds; 0 disables a threshold.
// Defaults: tag 5, greylist 0 (off), reject 15, headers true.
type ScoreConfig struct {
	Tag      float64 `mapstructure:"tag"`      // mark the message junk (as the junk action does)
	Greylist float64 `mapstructure:"greylist"` // greylist the message
	Reject   float64 `mapstructure:"reject"`   // 550 5.7.1
	// Headers: write X-Spam-Flag, -Score, -Level and -Status on inbound
	// mail (see SpamHeaders). Incoming X-Spam-* fields are removed either way.
	Headers bool `mapstructure:"headers"`
}

// GreylistConfig configures greylisting. Defaults: delay 5m, expiry 35d,
// max_entries 100000.
type GreylistConfig struct {
	Delay      time.Duration `mapstructure:"delay"`       // a retry must wait this long
	Expiry     time.Duration `mapstructure:"expiry"`      // a triplet is forgotten after this long unseen
	MaxEntries int           `mapstructure:"max_entries"` // in-memory store size
}

// AuthPolicy is the default authentication policy, evaluated at the data
// stage after the user rules when none of them decided (RFC 7489 §6.6.2).
// Defaults: dmarc_reject reject, dmarc_quarantine quarantine,
// spf_fail_score 2.0, temperror tempfail.
type AuthPolicy struct {
	// DMARCReject is what a DMARC fail with p=reject does: reject | quarantine | ignore.
	DMARCReject string `mapstructure:"dmarc_reject"`
	// DMARCQuarantine is what a DMARC fail with p=quarantine does: quarantine | tag | ignore.
	DMARCQuarantine string `mapstructure:"dmarc_quarantine"`
	// SPFFailScore is added to the score when SPF fails (0 disables).
	SPFFailScore float64 `mapstructure:"spf_fail_score"`
	// TempError is what a DMARC temperror does: tempfail | ignore.
	TempError string `mapstructure:"temperror"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Score:    ScoreConfig{Tag: 5, Reject: 15, Headers: true},
		Greylist: GreylistConfig{Delay: 5 * time.Minute, Expiry: 35 * 24 * time.Hour, MaxEntries: 100000},
		Auth:     DefaultAuthPolicy(),
	}
}

// DefaultAuthPolicy returns the documented defaults of AuthPolicy.
func DefaultAuthPolicy() AuthPolicy {
	return AuthPolicy{DMARCReject: "reject", DMARCQuarantine: "quarantine", SPFFailScore: 2.0, TempError: "tempfail"}
}

var listName = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,63}$`)

// Validate checks the section; errors name the full key (rules.…).
func (c *Config) Validate() error {
	var errs []error
	for i, p := range c.Paths {
		if p == "" {
			errs = append(errs, fmt.Errorf("rules.paths[%d]: empty path", i))
		}
	}
	for k, v := range []float64{c.Score.Tag, c.Score.Greylist, c.Score.Reject} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("rules.score.%s: %v must not be negative", []string{"tag", "greylist", "reject"}[k], v))
		}
	}
	if c.Score.Reject > 0 && c.Score.Tag > c.Score.Reject {
		errs = append(errs, fmt.Errorf("rules.score.tag: %v is above rules.score.reject %v", c.Score.Tag, c.Score.Reject))
	}
	for name, file := range c.Lists {
		if !listName.MatchString(name) {
			errs = append(errs, fmt.Errorf("rules.lists.%s: list name must match %s", name, listName))
		}
		if file == "" {
			errs = append(errs, fmt.Errorf("rules.lists.%s: empty file name", name))
		}
	}
	errs = append(errs, c.Greylist.Validate(), c.Auth.Validate())
	return errors.Join(errs...)
}

// Validate checks the greylist settings.
func (g *GreylistConfig) Validate() error {
	var errs []error
	if g.Delay < 0 {
		errs = append(errs, fmt.Errorf("rules.greylist.delay: %v must not be negative", g.Delay))
	}
	if g.Expiry <= g.Delay {
		errs = append(errs, fmt.Errorf("rules.greylist.expiry: %v must be longer than the delay %v", g.Expiry, g.Delay))
	}
	if g.MaxEntries < 1 {
		errs = append(errs, fmt.Errorf("rules.greylist.max_entries: %d must be positive", g.MaxEntries))
	}
	return errors.Join(errs...)
}

// Validate checks the policy values.
func (a *AuthPolicy) Validate() error {
	var errs []error
	check := func(key, v string, allowed ...string) {
		for _, x := range allowed {
			if v == x {
				return
			}
		}
		errs = append(errs, fmt.Errorf("auth.%s: %q is not one of %q", key, v, allowed))
	}
	check("dmarc_reject", a.DMARCReject, "reject", "quarantine", "ignore")
	check("dmarc_quarantine", a.DMARCQuarantine, "quarantine", "tag", "ignore")
	check("temperror", a.TempError, "tempfail", "ignore")
	if a.SPFFailScore < 0 {
		errs = append(errs, fmt.Errorf("auth.spf_fail_score: %v must not be negative", a.SPFFailScore))
	}
	return errors.Join(errs...)
}
