// Package acmecert obtains and renews the server certificates of the
// names moat serves through ACME (RFC 8555), with
// golang.org/x/crypto/acme/autocert: the account, orders, challenge
// answers, the on-disk cache and renewal ahead of expiry are autocert's;
// this package owns the configuration (`acme:`), the challenge
// listeners and the view of the certificates in force (for the expiry
// metric).
//
// Challenges: TLS-ALPN-01 (RFC 8737) is answered on every TLS listener
// of moat (gateway.Certificates routes a hello that offers only
// acme-tls/1 here) and, when acme.tls_listener is set, on a listener of
// its own; the CA connects to port 443 of the name. HTTP-01 (RFC 8555
// §8.3) is answered on acme.http_listener; the CA connects to port 80.
// autocert always tries TLS-ALPN-01 first and falls back to HTTP-01 on
// a new order when the HTTP listener is on.
package acmecert

import (
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/acme"
)

// Challenge types (RFC 8555 §8.3, RFC 8737).
const (
	HTTP01    = "http-01"
	TLSALPN01 = "tls-alpn-01"
)

// Config is the `acme:` section.
type Config struct {
	Enabled bool `mapstructure:"enabled"`
	// Email is the account contact (RFC 8555 §7.3); optional.
	Email string `mapstructure:"email"`
	// DirectoryURL is the CA's directory; default Let's Encrypt.
	DirectoryURL string `mapstructure:"directory_url"`
	// Names are the host names to obtain certificates for; default the
	// hostname. mta-sts.<domain> of each published MTA-STS policy is
	// added by the caller.
	Names []string `mapstructure:"names"`
	// Challenge is http-01 or tls-alpn-01.
	Challenge string `mapstructure:"challenge"`
	// HTTPListener is where HTTP-01 is answered (http-01 only).
	HTTPListener string `mapstructure:"http_listener"`
	// TLSListener is an optional dedicated listener for TLS-ALPN-01
	// (port 443), when no other TLS listener of moat is there.
	TLSListener string `mapstructure:"tls_listener"`
	// CacheDir keeps the account key and certificates; default
	// <data_dir>/acme.
	CacheDir string `mapstructure:"cache_dir"`
	// CARootsFile is a PEM file of roots trusted for the CA's HTTPS
	// directory (a private CA, tests); default the system roots.
	CARootsFile string `mapstructure:"ca_roots_file"`
	// RenewBefore is how long before expiry a certificate is renewed.
	RenewBefore time.Duration `mapstructure:"renew_before"`
}

// DefaultConfig is ACME off, with Let's Encrypt, HTTP-01 on port 80 and
// renewal 30 days ahead when it is turned on.
func DefaultConfig() Config {
	return Config{
		DirectoryURL: acme.LetsEncryptURL,
		Challenge:    HTTP01,
		HTTPListener: "0.0.0.0:80",
		RenewBefore:  30 * 24 * time.Hour,
	}
}

// maxNames bounds acme.names: each name is an order at the CA.
const maxNames = 100

// Validate checks the section; every error names its key.
func (c Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	if c.Email != "" {
		if _, err := mail.ParseAddress(c.Email); err != nil {
			errs = append(errs, fmt.Errorf("acme.email: %q: %w", c.Email, err))
		}
	}
	if u, err := url.Parse(c.DirectoryURL); err != nil || u.Scheme != "https" || u.Host == "" {
		errs = append(errs, fmt.Errorf("acme.directory_url: %q is not an https URL", c.DirectoryURL))
	}
	if len(c.Names) > maxNames {
		errs = append(errs, fmt.Errorf("acme.names: %d names, at most %d", len(c.Names), maxNames))
	}
	for i, n := range c.Names {
		if err := CheckName(n); err != nil {
			errs = append(errs, fmt.Errorf("acme.names[%d]: %w", i, err))
		}
	}
	switch c.Challenge {
	case HTTP01:
		if _, _, err := net.SplitHostPort(c.HTTPListener); err != nil {
			errs = append(errs, fmt.Errorf("acme.http_listener: %q: %w", c.HTTPListener, err))
		}
	case TLSALPN01:
	default:
		errs = append(errs, fmt.Errorf("acme.challenge: %q is not http-01 or tls-alpn-01", c.Challenge))
	}
	if c.TLSListener != "" {
		if _, _, err := net.SplitHostPort(c.TLSListener); err != nil {
			errs = append(errs, fmt.Errorf("acme.tls_listener: %q: %w", c.TLSListener, err))
		}
	}
	if c.CARootsFile != "" {
		if _, err := loadRoots(c.CARootsFile); err != nil {
			errs = append(errs, fmt.Errorf("acme.ca_roots_file: %w", err))
		}
	}
	if c.RenewBefore < 24*time.Hour {
		errs = append(errs, fmt.Errorf("acme.renew_before: %s is less than a day", c.RenewBefore))
	}
	return errors.Join(errs...)
}

// CheckName refuses what a CA would not issue for: not a host name with
// at least two labels, an IP address, a wildcard (which needs DNS-01).
func CheckName(n string) error {
	switch {
	case strings.HasPrefix(n, "*."):
		return fmt.Errorf("%q: a wildcard needs the DNS-01 challenge, which moat does not answer", n)
	case net.ParseIP(n) != nil:
		return fmt.Errorf("%q: an IP address, not a host name", n)
	case len(n) > 253 || !strings.Contains(strings.Trim(n, "."), "."):
		return fmt.Errorf("%q is not a host name of two labels or more", n)
	}
	for _, l := range strings.Split(strings.TrimSuffix(n, "."), ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("%q is not a host name", n)
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("%q is not a host name", n)
			}
		}
	}
	return nil
}

func loadRoots(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if !strings.Contains(string(b), "-----BEGIN CERTIFICATE-----") {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return b, nil
}
