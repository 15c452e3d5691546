package dnsres

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// Defaults for Config and the cache.
const (
	// DefaultTimeout bounds each query attempt (key dns.timeout).
	DefaultTimeout = 2 * time.Second
	// DefaultAttempts is how many rounds over the servers a query makes
	// when none answers (key dns.attempts).
	DefaultAttempts = 2
	// maxAttempts bounds dns.attempts.
	maxAttempts = 5
	// DefaultCacheSize is the number of answers kept (key dns.cache_size).
	DefaultCacheSize = 10000
	// DefaultPort is used for a server given without a port.
	DefaultPort = "53"
	// MaxCacheTTL caps how long any answer is cached, positive or negative
	// (RFC 2308 §5 recommends one to three hours for negative answers).
	MaxCacheTTL = time.Hour
	// DefaultNegativeTTL is how long a negative answer without an SOA in
	// its authority section is cached.
	DefaultNegativeTTL = 60 * time.Second
	// MaxCNAMEChain bounds how many CNAME links a lookup follows.
	MaxCNAMEChain = 8
	// EDNSBufferSize is the UDP payload size advertised (RFC 6891 §6.2.5).
	EDNSBufferSize = 1232
	// maxServers bounds the list of servers from config or resolv.conf.
	maxServers = 16
)

// Outcomes passed to Config.Observe, one per network query.
const (
	OutcomeNoError   = "noerror"
	OutcomeNXDomain  = "nxdomain"
	OutcomeServFail  = "servfail"
	OutcomeRefused   = "refused"
	OutcomeOther     = "other_rcode" // FORMERR, NOTIMP and the rest
	OutcomeTimeout   = "timeout"
	OutcomeError     = "error"     // network error or malformed answer
	OutcomeTruncated = "truncated" // UDP answer with TC=1; a TCP query follows
)

// Config configures a Client (config key dns).
type Config struct {
	// Servers are the recursive servers asked, in order, each "ip" or
	// "ip:port" ("[v6]:port"); key dns.servers. Empty: the nameservers of
	// /etc/resolv.conf.
	Servers []string `mapstructure:"servers"`
	// Timeout bounds each query attempt; key dns.timeout. 0: DefaultTimeout.
	Timeout time.Duration `mapstructure:"timeout"`
	// Attempts is how many rounds over Servers a query makes while every
	// server times out or cannot be reached; key dns.attempts.
	// 0: DefaultAttempts; at most 5.
	Attempts int `mapstructure:"attempts"`
	// CacheSize is the number of answers cached; key dns.cache_size.
	// 0: DefaultCacheSize; negative: no cache.
	CacheSize int `mapstructure:"cache_size"`
	// Observe, if not nil, is called once per network query with the
	// query type ("A", "TXT" …), one of the Outcome constants and the
	// time the query took. It must be safe for concurrent use.
	Observe func(qtype, outcome string, d time.Duration) `mapstructure:"-"`

	// resolvConf is the file read when Servers is empty; "" means
	// /etc/resolv.conf. Set only by tests of this package.
	resolvConf string
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{Timeout: DefaultTimeout, Attempts: DefaultAttempts, CacheSize: DefaultCacheSize}
}

// Validate checks the config; errors name the full key.
func (c Config) Validate() error {
	var errs []error
	if len(c.Servers) > maxServers {
		errs = append(errs, fmt.Errorf("dns.servers: %d servers, at most %d", len(c.Servers), maxServers))
	}
	for i, s := range c.Servers {
		if _, err := ParseServer(s); err != nil {
			errs = append(errs, fmt.Errorf("dns.servers[%d]: %w", i, err))
		}
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("dns.timeout: %v is negative", c.Timeout))
	}
	if c.Attempts < 0 || c.Attempts > maxAttempts {
		errs = append(errs, fmt.Errorf("dns.attempts: %d is not in 0..%d", c.Attempts, maxAttempts))
	}
	return errors.Join(errs...)
}

// ParseServer turns "ip", "ip:port", "[ipv6]" or "[ipv6]:port" into an
// "ip:port" address, port 53 by default. Names are not accepted: the
// resolver cannot resolve its own servers.
func ParseServer(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty server address")
	}
	if len(s) > 64 {
		return "", fmt.Errorf("server address %.64q… too long", s)
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		if ip.Zone() != "" {
			return "", fmt.Errorf("server address %q: zones not supported", s)
		}
		return net.JoinHostPort(ip.String(), DefaultPort), nil
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		return ParseServer(s[1 : len(s)-1])
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return "", fmt.Errorf("server address %q: want ip or ip:port", s)
	}
	if ap.Port() == 0 {
		return "", fmt.Errorf("server address %q: port 0", s)
	}
	if ap.Addr().Zone() != "" {
		return "", fmt.Errorf("server address %q: zones not supported", s)
	}
	return net.JoinHostPort(ap.Addr().String(), strconv.Itoa(int(ap.Port()))), nil
}
