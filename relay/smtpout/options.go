package smtpout

import (
	"crypto/tls"
	"fmt"
	"time"

	"moat/internal/dnsres"
	"moat/relay/dane"
	"moat/relay/mtasts"
	"moat/relay/mx"
	"moat/relay/route"
	"moat/relay/tlsrpt"
)

// Timeouts bound each step of a session (RFC 5321 §4.5.3.2). Zero fields
// take the defaults below.
type Timeouts struct {
	Connect   time.Duration `mapstructure:"connect"`    // TCP connect and TLS handshake; default 30 s
	Greeting  time.Duration `mapstructure:"greeting"`   // §4.5.3.2.1, default 5 min
	Mail      time.Duration `mapstructure:"mail"`       // §4.5.3.2.2, also EHLO, STARTTLS, AUTH, RSET, XFORWARD; default 5 min
	Rcpt      time.Duration `mapstructure:"rcpt"`       // §4.5.3.2.3, default 5 min
	DataInit  time.Duration `mapstructure:"data_init"`  // §4.5.3.2.4, default 2 min
	DataBlock time.Duration `mapstructure:"data_block"` // §4.5.3.2.5, each write; default 3 min
	DataFinal time.Duration `mapstructure:"data_final"` // §4.5.3.2.6, default 10 min
}

// DefaultTimeouts returns the RFC 5321 §4.5.3.2 values.
func DefaultTimeouts() Timeouts { return Timeouts{}.withDefaults() }

// Validate checks the `smtp_client:` section: no timeout may be negative
// (zero takes the default).
func (t Timeouts) Validate() error {
	for _, f := range []struct {
		key string
		d   time.Duration
	}{{"connect", t.Connect}, {"greeting", t.Greeting}, {"mail", t.Mail}, {"rcpt", t.Rcpt},
		{"data_init", t.DataInit}, {"data_block", t.DataBlock}, {"data_final", t.DataFinal}} {
		if f.d < 0 {
			return fmt.Errorf("smtp_client.%s: must not be negative", f.key)
		}
	}
	return nil
}

func (t Timeouts) withDefaults() Timeouts {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.Connect, 30*time.Second)
	def(&t.Greeting, 5*time.Minute)
	def(&t.Mail, 5*time.Minute)
	def(&t.Rcpt, 5*time.Minute)
	def(&t.DataInit, 2*time.Minute)
	def(&t.DataBlock, 3*time.Minute)
	def(&t.DataFinal, 10*time.Minute)
	return t
}

// Defaults for Options.
const (
	DefaultMaxConns           = 20
	DefaultMaxConnsPerDest    = 5
	DefaultMaxIdle            = 20
	DefaultIdleTimeout        = 30 * time.Second
	DefaultMaxMessagesPerConn = 100
	DefaultMaxAttempts        = 5
	// DefaultMaxRcptsPerTxn is the number of recipients per transaction:
	// RFC 5321 §4.5.3.1.8 makes servers take at least 100.
	DefaultMaxRcptsPerTxn = 100
)

// Options configure a client. Only Hostname is needed for the defaults;
// NewSMTP and NewLMTP need Address, NewMX needs Resolver.
type Options struct {
	// Hostname is our name in EHLO/LHLO (RFC 5321 §4.1.1.1) and one of
	// the names mx loop detection calls ours. Default "localhost".
	Hostname string
	// Address is host:port of the next hop (smtp, lmtp) or
	// "unix:/path" (lmtp). A host name is resolved with Resolver when it
	// is set.
	Address string
	// TLS is route.TLSNone, route.TLSOpportunistic or route.TLSRequired;
	// default opportunistic for SMTP, none for LMTP. For MX delivery it
	// may also be verify, dane or mta-sts, and "" (the default) is the
	// automatic choice: DANE, else MTA-STS, else opportunistic
	// (tlspolicy.go).
	TLS string
	// TLSPolicies overrides TLS for MX delivery per recipient domain
	// (`tls_policy:`).
	TLSPolicies TLSPolicies
	// DANE, when set, is the DNSSEC-validating resolver for DANE
	// (RFC 7672); nil: no DANE.
	DANE *dane.Resolver
	// MTASTS, when set, finds MTA-STS policies (RFC 8461); nil: none.
	MTASTS *mtasts.Manager
	// TLSResults, when set, receives one result per TLS attempt to a
	// mail exchanger (TLS-RPT, RFC 8460).
	TLSResults tlsrpt.Sink
	// OutboundTLS, when set, counts each session to a mail exchanger by
	// policy and result ("success", "plaintext" or a TLS-RPT result
	// type).
	OutboundTLS func(policy, result string)
	// TLSConfig is the base TLS configuration (RootCAs, client
	// certificates); nil is the system defaults.
	TLSConfig *tls.Config
	// TLSSkipVerify turns off certificate verification with TLS required.
	TLSSkipVerify bool
	// Username with Password (or PasswordFile, read at each connection)
	// enables AUTH PLAIN over TLS.
	Username     string
	Password     string
	PasswordFile string

	Timeouts Timeouts

	// Resolver is used for MX lookups and for host names in Address.
	Resolver dnsres.Resolver
	// Self is who we are, for mx loop detection; Hostname is added.
	Self mx.Self
	// MX tunes the MX lookup.
	MX mx.Options
	// Port is the port MX delivery connects to; default "25".
	Port string
	// MaxAttempts bounds the addresses tried for one delivery; default 5.
	MaxAttempts int

	MaxConns           int           // sessions in use at once; default 20
	MaxConnsPerDest    int           // sessions in use to one destination; default 5
	MaxIdle            int           // idle sessions kept; default 20
	IdleTimeout        time.Duration // default 30 s
	MaxMessagesPerConn int           // default 100
	MaxRcptsPerTxn     int           // default 100

	// Chained, if set, is called for each transaction whose commands
	// followed the final dot of the one before (chain.go).
	Chained func()
	// Reencoded, if set, is called once per reason ("8bit", "long_line")
	// for each message re-encoded to fit the next hop (sevenbit.go).
	Reencoded func(reason string)
}

func (o Options) withDefaults(k kind) Options {
	if o.Hostname == "" {
		o.Hostname = "localhost"
	}
	if o.TLS == "" && k != kindMX {
		o.TLS = route.TLSOpportunistic
		if k == kindLMTP {
			o.TLS = route.TLSNone
		}
	}
	o.Timeouts = o.Timeouts.withDefaults()
	if o.Port == "" {
		o.Port = "25"
	}
	intDef := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	intDef(&o.MaxAttempts, DefaultMaxAttempts)
	intDef(&o.MaxConns, DefaultMaxConns)
	intDef(&o.MaxConnsPerDest, DefaultMaxConnsPerDest)
	intDef(&o.MaxIdle, DefaultMaxIdle)
	intDef(&o.MaxMessagesPerConn, DefaultMaxMessagesPerConn)
	intDef(&o.MaxRcptsPerTxn, DefaultMaxRcptsPerTxn)
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	return o
}
