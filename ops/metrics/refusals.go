package metrics

import (
	"crypto/x509"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Refusal stages: the SMTP command refused (gateway.Checks.Refusal).
var refusalStages = []string{"connect", "helo", "auth", "mail", "rcpt", "data"}

// Refusal reasons every node has from the start (the gateway's own
// names; a check's name, like "spf" or "verify", is added when first
// seen, up to maxRefusalReasons).
var refusalReasons = []string{"relay_denied", "unknown_user", "bad_syntax", "too_many_recipients",
	"rules", "virus", "scanner", "protocol", "local", "bad_password", "locked", "malformed", "authzid"}

const (
	// maxRefusalReasons caps the reason label's values; more count as "other".
	maxRefusalReasons = 64
	// RecentRefusals is how many refusals Snapshot returns.
	RecentRefusals = 50
)

// RefusalEvent is one refused command on the status page.
type RefusalEvent struct {
	Time                        time.Time
	Stage, Reason, Kind, Client string
}

// refusalMetrics counts refusals (moat_refusals_total) and keeps the
// recent ones and the clients failing AUTH most for the status page.
type refusalMetrics struct {
	counter *prometheus.CounterVec
	reasons *labelSet

	mu      sync.Mutex
	topAuth *topK
	recent  [RecentRefusals]RefusalEvent
	n       int // total recorded; recent[(n-1)%len] is the newest
}

func (r *refusalMetrics) init(reg *prometheus.Registry) {
	r.counter = counterVec("moat_refusals_total", "Refused SMTP commands by stage (connect, helo, auth, mail, rcpt, data), reason (relay_denied, unknown_user, bad_syntax, rules, a check's name, ...) and result (rejected: 5xx, tempfailed: 4xx): every refusal of a command, RCPT included.", "stage", "reason", "result")
	reg.MustRegister(r.counter)
	r.reasons = newLabelSet(maxRefusalReasons)
	r.topAuth = newTopK(TopK)
	for _, v := range refusalReasons {
		r.reasons.known(v)
	}
	// Series that exist from the start, so rate() works before the first event.
	for _, s := range []string{"mail", "rcpt", "data"} {
		for _, v := range []string{"relay_denied", "unknown_user", "bad_syntax", "rules"} {
			if s == "rcpt" || v == "rules" || v == "bad_syntax" {
				r.counter.WithLabelValues(s, v, "rejected")
			}
		}
	}
}

// Refusal counts one refused command and keeps it for the status page.
// stage is one of connect, helo, auth, mail, rcpt, data (else "other");
// reason is the gateway's (a bounded set: see maxRefusalReasons); kind is
// "rejected" or "tempfailed" (anything else counts as rejected); client the client's IP address. It fits
// gateway.Checks.Refusal.
//
// A refusal that is not the rules' (a check's, the relay decision's,
// the protocol's) also feeds the top rejected clients: the rules' own
// reach that list through VerdictFrom. AUTH failures feed their own list.
func (m *Metrics) Refusal(stage, reason, kind, client string) {
	if !contains(refusalStages, stage) {
		stage = other
	}
	reason = m.ref.reasons.value(reason)
	if kind != "tempfailed" {
		kind = "rejected"
	}
	m.ref.counter.WithLabelValues(stage, reason, kind).Inc()
	client = cut(client, maxKeyLen)
	r := &m.ref
	r.mu.Lock()
	r.recent[r.n%len(r.recent)] = RefusalEvent{Time: m.now(), Stage: stage, Reason: reason, Kind: kind, Client: client}
	r.n++
	if stage == "auth" && client != "" {
		r.topAuth.add(client)
	}
	r.mu.Unlock()
	if stage != "auth" && client != "" && reason != "rules" && reason != "virus" {
		m.rejectedClient(client)
	}
}

// TLSCertificate exports moat_tls_certificate_not_after_seconds{name}:
// when the certificate that leaf returns expires (NotAfter, Unix
// seconds), read at each scrape, so a reloaded certificate shows at
// once. leaf returning nil exports nothing. A second call for the same
// name is ignored.
func (m *Metrics) TLSCertificate(name string, leaf func() *x509.Certificate) {
	name = strings.ToValidUTF8(cut(name, 128), "?")
	m.certs.add(name, leaf)
	// A registry refuses a second collector for the same name: the
	// first stays (the error says only that).
	_ = m.reg.Register(&certCollector{
		desc: prometheus.NewDesc("moat_tls_certificate_not_after_seconds",
			"When each loaded TLS certificate expires (its NotAfter, Unix seconds), by certificate name.",
			nil, prometheus.Labels{"name": name}),
		leaf: leaf,
	})
}

type certCollector struct {
	desc *prometheus.Desc
	leaf func() *x509.Certificate
}

func (c *certCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *certCollector) Collect(ch chan<- prometheus.Metric) {
	if l := c.leaf(); l != nil {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(l.NotAfter.Unix()))
	}
}

// refusalSnapshot fills the refusal parts of s.
func (r *refusalMetrics) snapshot(s *Snapshot, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s.TopAuthFailures = r.topAuth.list(n)
	k := min(r.n, len(r.recent))
	s.Refusals = make([]RefusalEvent, 0, k)
	for i := 1; i <= k; i++ {
		s.Refusals = append(s.Refusals, r.recent[(r.n-i)%len(r.recent)])
	}
}
