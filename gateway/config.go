package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"moat/gateway/guard"
)

// Listener is one entry of `listeners:`.
type Listener struct {
	Name    string `mapstructure:"name"`
	Address string `mapstructure:"address"`
	// Mode is "mx" (port 25: mail for our domains, relay only for trusted
	// clients) or "submission" (587/465: AUTH required, RFC 6409).
	Mode string `mapstructure:"mode"`
	// TLS is "none", "starttls" (RFC 3207) or "implicit" (RFC 8314 §3.3).
	TLS string `mapstructure:"tls"`
	// RequireTLS refuses MAIL before STARTTLS on this listener.
	RequireTLS    bool `mapstructure:"require_tls"`
	ProxyProtocol bool `mapstructure:"proxy_protocol"`
	// Auth offers AUTH on an mx listener too (submission always does).
	Auth       bool          `mapstructure:"auth"`
	GreetDelay time.Duration `mapstructure:"greet_delay"`
	// MaxConnections caps the connections of this listener (being
	// screened or served); 0: no cap of its own, only the guard's
	// guard.max_connections and its reserve for submission listeners.
	MaxConnections int `mapstructure:"max_connections"`
}

// GuardOptions is the connection guard's view of the listener: its
// name, greet delay, PROXY protocol, its own connection cap, whether it
// may use the submission reserve, and for implicit TLS the config the
// guard writes its refusals with (tlsConf; nil: the close only).
func (l Listener) GuardOptions(tlsConf *tls.Config) guard.ListenerOptions {
	o := guard.ListenerOptions{
		Name:           l.Name,
		GreetDelay:     l.GreetDelay,
		ProxyProtocol:  l.ProxyProtocol,
		ImplicitTLS:    l.TLS == "implicit",
		Submission:     l.Mode == "submission",
		MaxConnections: l.MaxConnections,
	}
	if o.ImplicitTLS {
		o.TLS = tlsConf
	}
	return o
}

// SMTP holds the protocol limits of every listener (`smtp:`).
type SMTP struct {
	// MaxMessageSize is advertised with SIZE (RFC 1870) and enforced.
	MaxMessageSize int64 `mapstructure:"max_message_size"`
	// MaxRecipients per transaction. RFC 5321 §4.5.3.1.8 asks servers to
	// take at least 100.
	MaxRecipients int `mapstructure:"max_recipients"`
	// MaxLineLength bounds every line read from the client, commands and
	// message data alike, in octets counting the CRLF (and not a leading
	// dot added for transparency), as RFC 5321 §4.5.3.1.6 counts its
	// 1000-octet text line; a longer line is refused (500 5.4.0) without
	// buffering it. RFC 5321 §4.5.3.1.4/§4.5.3.1.6 set 512 and 1000
	// octets as the minimum a server must take; real mail often has
	// longer data lines.
	MaxLineLength int `mapstructure:"max_line_length"`
	// ReadTimeout bounds the wait for each client command or data block
	// (RFC 5321 §4.5.3.2.7 suggests 5 minutes). Under overload the
	// guard's guard.stress.timeout replaces it when shorter.
	ReadTimeout time.Duration `mapstructure:"read_timeout"`
	// MinDataRate is the least rate, in octets a second, at which a
	// message (DATA or BDAT) must come: after N octets the transfer may
	// have taken read_timeout + N/min_data_rate, as Postfix's
	// smtpd_min_data_rate (default 500, as Postfix's). 0 turns it off.
	// A slower client gets 421 4.4.2 and is disconnected.
	MinDataRate int64 `mapstructure:"min_data_rate"`
	// DataTimeout bounds the transfer of one whole message, from the 354
	// (or the first BDAT chunk) to its end. Default 10m; 0 turns it off.
	DataTimeout  time.Duration `mapstructure:"data_timeout"`
	WriteTimeout time.Duration `mapstructure:"write_timeout"`
	// ShutdownTimeout is how long sessions may finish after SIGTERM
	// before they are told 421 and closed.
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout"`
	// BareLineEndings is "reject" (default) or "normalize": what to do
	// with a bare CR or LF inside DATA (RFC 5321 §2.3.8), and with a NUL
	// octet (refused with 550 5.6.0, or removed).
	BareLineEndings string `mapstructure:"bare_line_endings"`
}

// DefaultSMTP returns the protocol limits used when the config is silent.
func DefaultSMTP() SMTP {
	return SMTP{
		MaxMessageSize:  25 << 20,
		MaxRecipients:   100,
		MaxLineLength:   4096,
		ReadTimeout:     5 * time.Minute,
		MinDataRate:     500,
		DataTimeout:     10 * time.Minute,
		WriteTimeout:    time.Minute,
		ShutdownTimeout: 30 * time.Second,
		BareLineEndings: "reject",
	}
}

// Validate checks the limits; errors name the key.
func (s SMTP) Validate() error {
	var errs []error
	if s.MaxMessageSize < 1024 {
		errs = append(errs, fmt.Errorf("smtp.max_message_size: %d is too small (at least 1024)", s.MaxMessageSize))
	}
	if s.MaxRecipients < 1 {
		errs = append(errs, fmt.Errorf("smtp.max_recipients: must be at least 1"))
	}
	if s.MaxLineLength < 1000 {
		errs = append(errs, fmt.Errorf("smtp.max_line_length: %d is below the 1000 octets of RFC 5321 §4.5.3.1.6", s.MaxLineLength))
	}
	if s.ReadTimeout <= 0 {
		errs = append(errs, errors.New("smtp.read_timeout: must be positive"))
	}
	if s.MinDataRate < 0 {
		errs = append(errs, errors.New("smtp.min_data_rate: must not be negative"))
	}
	if s.DataTimeout < 0 {
		errs = append(errs, errors.New("smtp.data_timeout: must not be negative"))
	}
	if s.WriteTimeout <= 0 {
		errs = append(errs, errors.New("smtp.write_timeout: must be positive"))
	}
	if s.ShutdownTimeout < 0 {
		errs = append(errs, errors.New("smtp.shutdown_timeout: must not be negative"))
	}
	if s.BareLineEndings != "reject" && s.BareLineEndings != "normalize" {
		errs = append(errs, fmt.Errorf("smtp.bare_line_endings: %q is not reject or normalize", s.BareLineEndings))
	}
	return errors.Join(errs...)
}

// ValidateListeners checks `listeners:`; tlsConfigured says whether a
// certificate and key are set.
func ValidateListeners(ls []Listener, tlsConfigured bool) error {
	var errs []error
	if len(ls) == 0 {
		errs = append(errs, errors.New("listeners: at least one listener is needed"))
	}
	names := map[string]bool{}
	for i, l := range ls {
		key := fmt.Sprintf("listeners[%d]", i)
		if l.Name == "" {
			errs = append(errs, fmt.Errorf("%s.name: must be set", key))
		} else if names[l.Name] {
			errs = append(errs, fmt.Errorf("%s.name: %q is used twice", key, l.Name))
		}
		names[l.Name] = true
		if _, _, err := net.SplitHostPort(l.Address); err != nil {
			errs = append(errs, fmt.Errorf("%s.address: %q is not host:port", key, l.Address))
		}
		switch l.Mode {
		case "mx", "submission":
		default:
			errs = append(errs, fmt.Errorf("%s.mode: %q is not mx or submission", key, l.Mode))
		}
		switch l.TLS {
		case "none":
			if l.RequireTLS {
				errs = append(errs, fmt.Errorf("%s.require_tls: needs tls starttls or implicit", key))
			}
			if l.Mode == "submission" {
				errs = append(errs, fmt.Errorf("%s.tls: a submission listener needs starttls or implicit (RFC 8314)", key))
			}
		case "starttls", "implicit":
			if !tlsConfigured {
				errs = append(errs, fmt.Errorf("%s.tls: %s needs tls.cert_file and tls.key_file", key, l.TLS))
			}
		default:
			errs = append(errs, fmt.Errorf("%s.tls: %q is not none, starttls or implicit", key, l.TLS))
		}
		if l.MaxConnections < 0 {
			errs = append(errs, fmt.Errorf("%s.max_connections: must not be negative", key))
		}
		if l.GreetDelay < 0 || l.GreetDelay > time.Minute {
			errs = append(errs, fmt.Errorf("%s.greet_delay: %s is outside 0 to 1m", key, l.GreetDelay))
		}
	}
	return errors.Join(errs...)
}

// ParsePrefixes parses a list of CIDR prefixes or single addresses; key
// names the config key in errors.
func ParsePrefixes(key string, list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for i, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		errs = append(errs, fmt.Errorf("%s[%d]: %q is not an address or CIDR prefix", key, i, s))
	}
	return out, errors.Join(errs...)
}

func inPrefixes(ip netip.Addr, ps []netip.Prefix) bool {
	ip = ip.Unmap()
	for _, p := range ps {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
