package srs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// maxSecretFile bounds the secret file.
const maxSecretFile = 64 * 1024

// Config is the `srs:` section. SRS is off while Domain is empty.
type Config struct {
	// Domain is the domain of rewritten senders (SRS0=…@domain). Bounces
	// come back to it: its MX must point at moat. It may be one of
	// domains.local or a name of its own.
	Domain string `mapstructure:"domain"`
	// SecretFile holds the secrets, one per line: the first signs, all
	// verify (add a new first line to rotate, drop the old one after
	// max_age). Blank lines and lines starting with "#" are skipped.
	SecretFile string `mapstructure:"secret_file"`
	// MaxAge is how long a rewritten address reverses; default 21 days,
	// at most 1000 days (the stamp counts 1024 days).
	MaxAge time.Duration `mapstructure:"max_age"`
}

// Enabled reports whether SRS is configured.
func (c Config) Enabled() bool { return strings.TrimSpace(c.Domain) != "" }

// Validate checks the section; errors name the key.
func (c Config) Validate() error {
	if !c.Enabled() {
		if c.SecretFile != "" {
			return errors.New("srs.domain: required when srs.secret_file is set")
		}
		return nil
	}
	if strings.ContainsAny(c.Domain, "@= \t") || !strings.Contains(strings.Trim(c.Domain, "."), ".") {
		return fmt.Errorf("srs.domain: %q is not a fully qualified domain name", c.Domain)
	}
	if strings.TrimSpace(c.SecretFile) == "" {
		return errors.New("srs.secret_file: required when srs.domain is set")
	}
	if c.MaxAge < 0 || c.MaxAge > 1000*day {
		return fmt.Errorf("srs.max_age: %s is out of range (0 for the default %s, at most 1000 days)", c.MaxAge, DefaultMaxAge)
	}
	if _, err := ReadSecrets(c.SecretFile); err != nil {
		return fmt.Errorf("srs.secret_file: %w", err)
	}
	return nil
}

// NewFromConfig reads the secrets and makes the Rewriter; nil when SRS is
// off.
func NewFromConfig(c Config) (*Rewriter, error) {
	if !c.Enabled() {
		return nil, nil
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	secrets, err := ReadSecrets(c.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("srs.secret_file: %w", err)
	}
	return New(Options{Domain: c.Domain, Secrets: secrets, MaxAge: c.MaxAge})
}

// ReadSecrets reads a secret file: one secret per line, blank lines and
// "#" comments skipped, at least one, at most MaxSecrets.
func ReadSecrets(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSecretFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxSecretFile)
	}
	var out []string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if len(out) == MaxSecrets {
			return nil, fmt.Errorf("%s: more than %d secrets", path, MaxSecrets)
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no secret in the file", path)
	}
	return out, nil
}
