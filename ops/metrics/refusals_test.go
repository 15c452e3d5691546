package metrics

import (
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Every refusal is counted by stage and reason; RCPT refusals reach the
// top rejected clients (the rules' own come through VerdictFrom, once);
// AUTH failures have their own list; the recent ones are kept.
func TestRefusalsCounted(t *testing.T) {
	m, c := newTest(t)
	m.Refusal("rcpt", "relay_denied", "rejected", "192.0.2.1")
	m.Refusal("rcpt", "relay_denied", "rejected", "192.0.2.1")
	m.Refusal("rcpt", "unknown_user", "rejected", "192.0.2.2")
	m.Refusal("data", "rules", "rejected", "192.0.2.3") // and:
	m.VerdictFrom(VerdictRejected, "r", "192.0.2.3")
	c.t = c.t.Add(time.Second)
	m.Refusal("auth", "bad_password", "rejected", "198.51.100.9")
	m.Refusal("bogus\n", "x", "rejected", "")
	m.Refusal("rcpt", "rules", "tempfailed", "192.0.2.4") // greylisted
	for _, tc := range []struct {
		stage, reason, result string
		want                  float64
	}{{"rcpt", "relay_denied", "rejected", 2}, {"rcpt", "unknown_user", "rejected", 1}, {"data", "rules", "rejected", 1},
		{"auth", "bad_password", "rejected", 1}, {"other", "x", "rejected", 1}, {"rcpt", "rules", "tempfailed", 1}} {
		if got := testutil.ToFloat64(m.ref.counter.WithLabelValues(tc.stage, tc.reason, tc.result)); got != tc.want {
			t.Errorf("moat_refusals_total{stage=%q,reason=%q} = %v, want %v", tc.stage, tc.reason, got, tc.want)
		}
	}
	snap := m.Snapshot(10)
	want := map[string]uint64{"192.0.2.1": 2, "192.0.2.2": 1, "192.0.2.3": 1}
	// (192.0.2.4 was greylisted by a rule: VerdictFrom's to count.)
	if len(snap.TopClients) != len(want) {
		t.Fatalf("top clients %+v", snap.TopClients)
	}
	for _, cl := range snap.TopClients {
		if want[cl.Key] != cl.Count {
			t.Errorf("top client %s: %d, want %d", cl.Key, cl.Count, want[cl.Key])
		}
	}
	if len(snap.TopAuthFailures) != 1 || snap.TopAuthFailures[0] != (Count{Key: "198.51.100.9", Count: 1}) {
		t.Errorf("top AUTH failures %+v", snap.TopAuthFailures)
	}
	if len(snap.Refusals) != 7 || snap.Refusals[2].Stage != "auth" || snap.Refusals[2].Reason != "bad_password" ||
		!snap.Refusals[2].Time.Equal(c.t) || snap.Refusals[6].Reason != "relay_denied" {
		t.Errorf("recent refusals %+v", snap.Refusals)
	}
}

// The reason label and the recent list stay bounded whatever the input.
func TestRefusalsBounded(t *testing.T) {
	m, _ := newTest(t)
	for i := range 1000 {
		m.Refusal("rcpt", fmt.Sprintf("reason%d", i), "rejected", fmt.Sprintf("192.0.2.%d", i%250))
	}
	if n := testutil.CollectAndCount(m.ref.counter); n > maxRefusalReasons*(len(refusalStages)+1)*2 {
		t.Errorf("%d series", n)
	}
	if got := testutil.ToFloat64(m.ref.counter.WithLabelValues("rcpt", other, "rejected")); got == 0 {
		t.Error("no reason counted as other")
	}
	if n := len(m.Snapshot(TopK).Refusals); n != RecentRefusals {
		t.Errorf("%d recent refusals", n)
	}
}

func TestTLSCertificateNotAfter(t *testing.T) {
	m, _ := newTest(t)
	na := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	cur := &x509.Certificate{NotAfter: na}
	m.TLSCertificate("mx.example.org", func() *x509.Certificate { return cur })
	m.TLSCertificate("mx.example.org", func() *x509.Certificate { return nil }) // ignored
	m.TLSCertificate("none", func() *x509.Certificate { return nil })
	want := func(v time.Time) string {
		return fmt.Sprintf(`# HELP moat_tls_certificate_not_after_seconds When each loaded TLS certificate expires (its NotAfter, Unix seconds), by certificate name.
# TYPE moat_tls_certificate_not_after_seconds gauge
moat_tls_certificate_not_after_seconds{name="mx.example.org"} %d
`, v.Unix())
	}
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want(na)), "moat_tls_certificate_not_after_seconds"); err != nil {
		t.Error(err)
	}
	// A reload shows at the next scrape.
	na2 := na.AddDate(0, 3, 0)
	cur = &x509.Certificate{NotAfter: na2}
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want(na2)), "moat_tls_certificate_not_after_seconds"); err != nil {
		t.Error(err)
	}
}
