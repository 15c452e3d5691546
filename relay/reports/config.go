package reports

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"
)

// Config is `reports:`.
type Config struct {
	// From is the reporter address: the envelope sender and From: of
	// every report (never the null sender). Default
	// dmarc-reports@<hostname>. Its domain names us in the reports
	// (Submitter) and picks the dkim.sign key.
	From string `mapstructure:"from"`
	// OrgName is the reporting organisation's name; default the
	// domain of From.
	OrgName string `mapstructure:"org_name"`
	// Contact is extra contact information; default From.
	Contact string `mapstructure:"contact"`
	// Hour is the UTC hour (0-23) of the daily run.
	Hour  int        `mapstructure:"hour"`
	DMARC KindConfig `mapstructure:"dmarc"`
	TLS   KindConfig `mapstructure:"tlsrpt"`
}

// KindConfig is `reports.dmarc` and `reports.tlsrpt`.
type KindConfig struct {
	// Enabled records results and sends the daily reports.
	Enabled bool `mapstructure:"enabled"`
}

// DefaultConfig is off, at 01:00 UTC.
func DefaultConfig() Config { return Config{Hour: 1} }

// Enabled reports whether any report is made.
func (c Config) Enabled() bool { return c.DMARC.Enabled || c.TLS.Enabled }

// SetDefaults fills From and OrgName from the host name.
func (c *Config) SetDefaults(hostname string) {
	if c.From == "" {
		c.From = "dmarc-reports@" + strings.ToLower(hostname)
	}
	if c.OrgName == "" {
		if _, d, ok := strings.Cut(c.From, "@"); ok {
			c.OrgName = d
		}
	}
}

// Validate checks the section; errors name the key.
func (c Config) Validate() error {
	var errs []error
	if c.Hour < 0 || c.Hour > 23 {
		errs = append(errs, fmt.Errorf("reports.hour: %d is not an hour of the day (0-23)", c.Hour))
	}
	if c.Enabled() {
		a, err := mail.ParseAddress(c.From)
		switch {
		case strings.TrimSpace(c.From) == "":
			errs = append(errs, errors.New("reports.from: required (reports are never sent from <>)"))
		case err != nil || a.Address != c.From || !strings.Contains(c.From, "@"):
			errs = append(errs, fmt.Errorf("reports.from: %q is not a bare address (local@domain)", c.From))
		}
		if strings.ContainsAny(c.OrgName+c.Contact, "\r\n") {
			errs = append(errs, errors.New("reports.org_name, reports.contact: must be one line"))
		}
	}
	return errors.Join(errs...)
}
