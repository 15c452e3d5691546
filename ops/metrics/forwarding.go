package metrics

import "github.com/prometheus/client_golang/prometheus"

// Label values of moat_forwarding_total and moat_arc_results_total;
// others count as "other".
var (
	forwardingEvents = []string{"srs_rewritten", "srs_reversed", "srs_refused", "arc_sealed", "arc_not_sealed"}
	arcResults       = []string{"none", "pass", "fail", "temperror"}
)

// forwardingMetrics count SRS and ARC (gateway/forward.go, policy/arc).
type forwardingMetrics struct {
	events *prometheus.CounterVec
	arc    *prometheus.CounterVec
}

func newForwardingMetrics(reg *prometheus.Registry) *forwardingMetrics {
	f := &forwardingMetrics{
		events: counterVec("moat_forwarding_total", "Forwarded copies and returning bounces, by event: srs_rewritten (a forwarded copy got an SRS sender), srs_reversed (a bounce to an SRS address was accepted for the original sender), srs_refused (an SRS address that did not verify or had expired, 550 at RCPT), arc_sealed, arc_not_sealed (a forwarded copy left without moat's ARC set: broken or unverifiable incoming chain).", "event"),
		arc:    counterVec("moat_arc_results_total", "ARC validation of inbound messages (RFC 8617), by result (none, pass, fail, temperror).", "result"),
	}
	reg.MustRegister(f.events, f.arc)
	for _, e := range forwardingEvents {
		f.events.WithLabelValues(e)
	}
	for _, r := range arcResults {
		f.arc.WithLabelValues(r)
	}
	return f
}

// Forwarding counts one SRS or ARC sealing event; it fits
// gateway.Checks.Forwarding.
func (m *Metrics) Forwarding(event string) {
	if !contains(forwardingEvents, event) {
		event = other
	}
	m.fwd.events.WithLabelValues(event).Inc()
}

// ARCResult counts the ARC validation of one inbound message; it fits
// gateway.Checks.ARCResult.
func (m *Metrics) ARCResult(result string) {
	if !contains(arcResults, result) {
		result = other
	}
	m.fwd.arc.WithLabelValues(result).Inc()
}
