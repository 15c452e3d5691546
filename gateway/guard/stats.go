package guard

import "sync/atomic"

// Rejection reasons, one counter each.
const (
	ReasonMaxConnections       = "max_connections"
	ReasonListenerFull         = "listener_full" // listeners[].max_connections, or the submission reserve
	ReasonPerIPRate            = "per_ip_rate"
	ReasonPerIPConcurrency     = "per_ip_concurrency"
	ReasonPerPrefixRate        = "per_prefix_rate"
	ReasonPerPrefixConcurrency = "per_prefix_concurrency"
	ReasonDenyList             = "deny_list"
	ReasonDNSBL                = "dnsbl"
	ReasonDNSBLError           = "dnsbl_error" // a list failed, with guard.dnsbl.on_error: tempfail
	ReasonPregreet             = "pregreet"
	ReasonHTTP                 = "http"
	ReasonTLSOnPlain           = "tls_on_plain"
	ReasonProxyUntrusted       = "proxy_untrusted"
	ReasonProxyBadHeader       = "proxy_bad_header"
	ReasonTooManyErrors        = "too_many_errors"
	ReasonCommandLoop          = "command_loop"
)

// reasons lists every rejection reason, in a stable order (for metrics).
var reasons = [...]string{
	ReasonMaxConnections, ReasonPerIPRate, ReasonPerIPConcurrency, ReasonPerPrefixRate,
	ReasonPerPrefixConcurrency, ReasonDenyList, ReasonDNSBL, ReasonPregreet, ReasonHTTP,
	ReasonTLSOnPlain, ReasonProxyUntrusted, ReasonProxyBadHeader, ReasonTooManyErrors,
	ReasonCommandLoop, ReasonListenerFull, ReasonDNSBLError,
}

// Reasons returns every rejection reason, in a stable order (for metrics).
func Reasons() []string { return append([]string(nil), reasons[:]...) }

// Stats counts rejections by reason, and the connections admitted.
type Stats struct {
	rejected [len(reasons)]atomic.Uint64
	admitted atomic.Uint64
	passed   atomic.Uint64 // pregreet tests passed
}

func reasonIndex(reason string) int {
	for i, r := range reasons {
		if r == reason {
			return i
		}
	}
	return -1
}

// rejectAt counts a rejection by its index in reasons (-1: none).
func (s *Stats) rejectAt(i int) {
	if i >= 0 {
		s.rejected[i].Add(1)
	}
}

// Rejected returns the count for one reason.
func (s *Stats) Rejected(reason string) uint64 {
	if i := reasonIndex(reason); i >= 0 {
		return s.rejected[i].Load()
	}
	return 0
}

// Snapshot returns every rejection counter by reason.
func (s *Stats) Snapshot() map[string]uint64 {
	m := make(map[string]uint64, len(reasons))
	for i, r := range reasons {
		m[r] = s.rejected[i].Load()
	}
	return m
}

// Admitted returns the number of connections handed to the SMTP server.
func (s *Stats) Admitted() uint64 { return s.admitted.Load() }

// PregreetPassed returns the number of pregreet tests passed.
func (s *Stats) PregreetPassed() uint64 { return s.passed.Load() }
