package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestSmuggling(t *testing.T) {
	m := NewWithOptions(Options{NoRuntimeCollectors: true})
	m.Smuggling("nul", "rejected")
	m.Smuggling("nul", "rejected")
	m.Smuggling("bare_eol", "normalized")
	m.Smuggling("strange", "kind")
	for _, c := range []struct {
		kind, action string
		want         float64
	}{{"nul", "rejected", 2}, {"bare_eol", "normalized", 1}, {"bare_eol", "rejected", 0}, {"other", "other", 1}} {
		if got := testutil.ToFloat64(m.smuggling.WithLabelValues(c.kind, c.action)); got != c.want {
			t.Errorf("%s/%s = %v, want %v", c.kind, c.action, got, c.want)
		}
	}
}
