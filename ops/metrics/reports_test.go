package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestReportMetric: known kinds and outcomes count; anything else is
// not a new series.
func TestReportMetric(t *testing.T) {
	m, _ := newTest(t)
	m.Report("dmarc", "sent")
	m.Report("dmarc", "sent")
	m.Report("tlsrpt", "kept")
	m.Report("other", "sent")
	m.Report("dmarc", "lost")
	if got := testutil.ToFloat64(m.reports.WithLabelValues("dmarc", "sent")); got != 2 {
		t.Errorf("dmarc sent %v", got)
	}
	if got := testutil.ToFloat64(m.reports.WithLabelValues("tlsrpt", "kept")); got != 1 {
		t.Errorf("tlsrpt kept %v", got)
	}
	if n := testutil.CollectAndCount(m.reports); n != len(reportKinds)*len(reportOutcomes) {
		t.Errorf("%d series", n)
	}
}
