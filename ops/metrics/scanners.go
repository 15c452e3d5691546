package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// scannerMetrics are the metrics of the external scanners (scanners:,
// issue 22): latency, failures by kind, answers by verdict, per scanner.
// The scanner label is the configured name, capped as other open labels.
type scannerMetrics struct {
	names    *labelSet
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
	verdicts *prometheus.CounterVec
}

// Label values of the scanner metrics; others count as "other".
var (
	scannerErrorKinds = []string{"timeout", "connect", "protocol", "refused", "io", "panic"}
	scannerVerdicts   = []string{"clean", "spam", "infected", "reject", "soft_reject", "greylist",
		"tempfail", "discard", "quarantine", "skipped"}
)

func newScannerMetrics(reg *prometheus.Registry) *scannerMetrics {
	s := &scannerMetrics{names: newLabelSet(64)}
	// Scanners answer in milliseconds to seconds; timeouts reach minutes.
	buckets := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	s.duration = histogramVec("moat_scanner_duration_seconds", "Time for one scan by an external scanner, by scanner name.", buckets, "scanner")
	s.errors = counterVec("moat_scanner_errors_total", "Scans and pings an external scanner could not answer, by scanner and kind (timeout, connect, protocol, refused, io, panic).", "scanner", "kind")
	s.verdicts = counterVec("moat_scanner_verdicts_total", "Answers of the external scanners, by scanner and verdict (clean, spam, infected, reject, soft_reject, greylist, tempfail, discard, quarantine, skipped).", "scanner", "verdict")
	reg.MustRegister(s.duration, s.errors, s.verdicts)
	return s
}

// ScannerDuration records one scan's latency; it fits
// gateway.ScannersOptions.Observe.
func (m *Metrics) ScannerDuration(scanner string, d time.Duration) {
	m.scan.duration.WithLabelValues(m.scan.names.value(scanner)).Observe(d.Seconds())
}

// ScannerError counts one failure by kind; it fits
// gateway.ScannersOptions.Error.
func (m *Metrics) ScannerError(scanner, kind string) {
	if !contains(scannerErrorKinds, kind) {
		kind = other
	}
	m.scan.errors.WithLabelValues(m.scan.names.value(scanner), kind).Inc()
}

// ScannerVerdict counts one answer; it fits gateway.ScannersOptions.Verdict.
func (m *Metrics) ScannerVerdict(scanner, verdict string) {
	if !contains(scannerVerdicts, verdict) {
		verdict = other
	}
	m.scan.verdicts.WithLabelValues(m.scan.names.value(scanner), verdict).Inc()
}

// Scanners declares the configured scanners, so that their series exist
// from the start (rate() works before the first message).
func (m *Metrics) Scanners(names []string) {
	for _, n := range names {
		n = m.scan.names.value(n)
		for _, v := range scannerVerdicts {
			m.scan.verdicts.WithLabelValues(n, v)
		}
		for _, k := range scannerErrorKinds {
			m.scan.errors.WithLabelValues(n, k)
		}
	}
}
