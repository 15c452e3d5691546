package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"moat/gateway"
)

func TestForwarding(t *testing.T) {
	m := NewWithOptions(Options{NoRuntimeCollectors: true})
	_ = gateway.Checks{Forwarding: m.Forwarding, ARCResult: m.ARCResult}
	m.Forwarding("srs_rewritten")
	m.Forwarding("srs_rewritten")
	m.Forwarding("srs_refused")
	m.Forwarding("nonsense")
	m.ARCResult("pass")
	m.ARCResult("weird")
	for _, c := range []struct {
		event string
		want  float64
	}{{"srs_rewritten", 2}, {"srs_refused", 1}, {"srs_reversed", 0}, {"other", 1}} {
		if got := testutil.ToFloat64(m.fwd.events.WithLabelValues(c.event)); got != c.want {
			t.Errorf("%s = %v, want %v", c.event, got, c.want)
		}
	}
	if got := testutil.ToFloat64(m.fwd.arc.WithLabelValues("pass")); got != 1 {
		t.Errorf("arc pass = %v", got)
	}
	if got := testutil.ToFloat64(m.fwd.arc.WithLabelValues("other")); got != 1 {
		t.Errorf("arc other = %v", got)
	}
}
