package metrics

import "github.com/prometheus/client_golang/prometheus"

// reportKinds and reportOutcomes are the label values of
// moat_reports_total (relay/reports).
var (
	reportKinds    = []string{"dmarc", "tlsrpt"}
	reportOutcomes = []string{"sent", "skipped", "kept"}
)

func newReportMetrics(reg *prometheus.Registry) *prometheus.CounterVec {
	c := counterVec("moat_reports_total", "DMARC aggregate and SMTP TLS reports by kind (dmarc, tlsrpt) and outcome: sent (queued for one destination), skipped (a destination not authorised, over its size limit or not mailto:), kept (a DNS failure: tried again later).", "kind", "outcome")
	reg.MustRegister(c)
	for _, k := range reportKinds {
		for _, o := range reportOutcomes {
			c.WithLabelValues(k, o)
		}
	}
	return c
}

// Report counts one report outcome; it fits reports.Options.Observe.
func (m *Metrics) Report(kind, outcome string) {
	if !oneOf(kind, reportKinds) || !oneOf(outcome, reportOutcomes) {
		return
	}
	m.reports.WithLabelValues(kind, outcome).Inc()
}

func oneOf(s string, set []string) bool {
	for _, v := range set {
		if s == v {
			return true
		}
	}
	return false
}
