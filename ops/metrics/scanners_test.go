package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestScannerMetrics: the hooks count by scanner, unknown kinds and
// verdicts fold into "other", declared scanners have series from the start.
func TestScannerMetrics(t *testing.T) {
	m, _ := newTest(t)
	m.Scanners([]string{"clamd", "rspamd"})
	if got := testutil.ToFloat64(m.scan.verdicts.WithLabelValues("rspamd", "spam")); got != 0 {
		t.Fatalf("declared series %v", got)
	}
	m.ScannerVerdict("clamd", "infected")
	m.ScannerVerdict("clamd", "infected")
	m.ScannerVerdict("clamd", "something new")
	m.ScannerError("rspamd", "timeout")
	m.ScannerError("rspamd", "weird")
	m.ScannerDuration("rspamd", 30*time.Millisecond)
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"infected", testutil.ToFloat64(m.scan.verdicts.WithLabelValues("clamd", "infected")), 2},
		{"other verdict", testutil.ToFloat64(m.scan.verdicts.WithLabelValues("clamd", other)), 1},
		{"timeout", testutil.ToFloat64(m.scan.errors.WithLabelValues("rspamd", "timeout")), 1},
		{"other kind", testutil.ToFloat64(m.scan.errors.WithLabelValues("rspamd", other)), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.scan.duration); n != 1 {
		t.Errorf("%d duration series", n)
	}
}
