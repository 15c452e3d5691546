// Package metrics owns moat's Prometheus metrics and the small in-memory
// history the admin status page shows. The composition root (cmd/moat)
// creates one *Metrics and hands its methods to the parts as hooks
// (guard.Options.OnReject, dnsres.Config.Observe, rules.EngineOptions.Observer,
// gateway.Options.Wrap, the queue's transports …); no part imports this
// package and nothing here is process-wide: each Metrics has its own
// registry (prometheus.NewRegistry), so tests can make as many as they like.
//
// Every metric name starts with "moat_". Label values come from small closed
// sets (verdicts, check names, DNS types, TLS versions, guard reasons) or
// from the configuration (listener, route and rule names), and every label
// is further capped at maxLabelValues distinct values, the rest becoming
// "other". Client IPs and mail addresses are never labels: they appear only
// in the bounded top-k and recent-delivery lists of Snapshot.
package metrics

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"moat/gateway/guard"
	"moat/internal/dnsres"
	"moat/relay/queue"
	"moat/relay/transport"
	"moat/rules"
)

// Verdicts counted by moat_messages_total and the per-minute chart: the
// names rules.Action.Verdict gives.
const (
	VerdictAccepted    = "accepted"
	VerdictRejected    = "rejected"
	VerdictTempfailed  = "tempfailed"
	VerdictGreylisted  = "greylisted"
	VerdictDiscarded   = "discarded"
	VerdictQuarantined = "quarantined"
	VerdictJunk        = "junk" // accepted as spam: the Junk folder, or tagged
)

// Verdicts lists the verdict label values in chart order.
var verdicts = [...]string{VerdictAccepted, VerdictRejected, VerdictTempfailed, VerdictGreylisted, VerdictDiscarded, VerdictQuarantined, VerdictJunk}

// Verdicts returns the verdict label values, in chart order.
func Verdicts() []string { return append([]string(nil), verdicts[:]...) }

// Delivery results counted by moat_delivery_attempts_total.
const (
	DeliveryDelivered = "delivered"
	DeliveryDeferred  = "deferred"
	DeliveryBounced   = "bounced"
)

// Checks timed by moat_check_duration_seconds.
var checks = []string{"spf", "dkim", "dmarc", "iprev", "dnsbl", "arc", "content"}

// dnsTypes are the query types that get their own label value.
var dnsTypes = []string{"A", "AAAA", "MX", "TXT", "PTR", "CNAME", "NS", "SOA", "TLSA", "SRV"}

var tlsVersions = []string{"TLS1.0", "TLS1.1", "TLS1.2", "TLS1.3", "SSL3.0"}

const (
	// maxLabelValues caps the distinct values of one open label (rule,
	// listener, route, auth reason); further values are counted as "other".
	maxLabelValues = 500
	// TopK is how many clients and rules the status page's counters keep.
	TopK = 100
	// RecentDeliveries is how many deliveries Snapshot returns.
	RecentDeliveries = 50
	// maxKeyLen bounds a client or rule name kept in memory.
	maxKeyLen = 255
	other     = "other"
)

// Options tune New. The zero value is the default.
type Options struct {
	// Now is the clock of the per-minute history; default time.Now.
	Now func() time.Time
	// NoRuntimeCollectors leaves out the Go and process collectors.
	NoRuntimeCollectors bool
}

// Metrics is moat's registry and the hooks that feed it. Its methods are
// safe for concurrent use; a nil *Metrics is not valid.
type Metrics struct {
	reg *prometheus.Registry
	now func() time.Time

	connections   *prometheus.CounterVec
	rejected      *prometheus.CounterVec
	sessions      prometheus.Gauge
	messages      *prometheus.CounterVec
	ruleHits      *prometheus.CounterVec
	ruleDuration  *prometheus.HistogramVec
	ruleErrors    *prometheus.CounterVec
	deliveries    *prometheus.CounterVec
	chained       *prometheus.CounterVec
	reencoded     *prometheus.CounterVec
	outboundTLS   *prometheus.CounterVec // outbound_tls.go
	suppressed    *prometheus.CounterVec
	dnsQueries    *prometheus.CounterVec
	dnsDuration   *prometheus.HistogramVec
	checkDuration *prometheus.HistogramVec
	tlsConns      *prometheus.CounterVec
	authFailures  *prometheus.CounterVec
	redisUp       prometheus.Gauge
	redisChanges  *prometheus.CounterVec
	dnsblErrors   *prometheus.CounterVec
	stress        *prometheus.GaugeVec
	smtpTimeouts  *prometheus.CounterVec
	smuggling     *prometheus.CounterVec
	scan          *scannerMetrics
	reports       *prometheus.CounterVec // moat_reports_total (reports.go)
	ref           refusalMetrics
	certs         certList // for the status page (certs.go)
	fwd           *forwardingMetrics

	listenerNames, routeNames, ruleNames, authReasons, guardReasons, dnsblZones *labelSet

	queueStats atomic.Pointer[func() queue.Stats]
	spoolBytes atomic.Pointer[func() int64]

	mu         sync.Mutex
	minutes    ring
	topClients *topK
	topRules   *topK
	recent     [RecentDeliveries]DeliveryEvent
	recentN    int // total recorded; recent[(recentN-1)%len] is the newest
}

// New returns a Metrics with its own registry holding every moat_ metric
// and the Go and process collectors.
func New() *Metrics { return NewWithOptions(Options{}) }

// NewWithOptions is New with options (a test clock).
func NewWithOptions(opt Options) *Metrics {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	m := &Metrics{
		reg:           prometheus.NewRegistry(),
		now:           opt.Now,
		listenerNames: newLabelSet(maxLabelValues),
		routeNames:    newLabelSet(maxLabelValues),
		ruleNames:     newLabelSet(maxLabelValues),
		authReasons:   newLabelSet(64),
		guardReasons:  newLabelSet(64),
		dnsblZones:    newLabelSet(64),
		topClients:    newTopK(TopK),
		topRules:      newTopK(TopK),
	}
	for _, r := range guard.Reasons() {
		m.guardReasons.known(r)
	}
	latency := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	m.connections = counterVec("moat_connections_total", "SMTP connections by listener and result (accepted by the guard, or rejected).", "listener", "result")
	m.rejected = counterVec("moat_connections_rejected_total", "Connections the guard rejected, by reason.", "reason")
	m.sessions = gauge("moat_sessions_active", "SMTP sessions open now.")
	m.messages = counterVec("moat_messages_total", "Messages by final verdict.", "verdict")
	m.ruleHits = counterVec("moat_rule_hits_total", "Rules that matched, by rule, action and dry run.", "rule", "action", "dry_run")
	ruleLatency := []float64{.000001, .000005, .00001, .00005, .0001, .0005, .001, .005, .01, .05, .1, .5, 1}
	m.ruleDuration = histogramVec("moat_rule_evaluation_seconds", "Time to evaluate one rule's condition, for the rules of one message stage in 8 (a sample: the count is not the number of evaluations).", ruleLatency, "rule")
	m.ruleErrors = counterVec("moat_rule_errors_total", "Rule evaluations that failed at run time.", "rule")
	m.deliveries = counterVec("moat_delivery_attempts_total", "Delivery attempts per recipient, by route and result (delivered, deferred, bounced).", "route", "result")
	m.reencoded = counterVec("moat_outbound_reencoded_total", "Messages re-encoded on their way out so that no line is over 998 octets (reason long_line, RFC 5321 §4.5.3.1.6) or no 8-bit octet goes to a next hop without 8BITMIME (reason 8bit, RFC 6152 §3).", "reason")
	m.chained = counterVec("moat_delivery_chained_total", "Mail transactions sent behind the final dot of the one before on a session, by route (RFC 2920 §3.1).", "route")
	m.suppressed = counterVec("moat_bounces_suppressed_total", "Delivery status notices not sent because the envelope sender was not verified at acceptance (queue.bounce_unverified_senders), by notice (failure, delay).", "notice")
	m.dnsQueries = counterVec("moat_dns_lookups_total", "DNS queries sent, by type and outcome.", "qtype", "outcome")
	m.dnsDuration = histogramVec("moat_dns_lookup_duration_seconds", "DNS query latency by type.", latency, "qtype")
	m.checkDuration = histogramVec("moat_check_duration_seconds", "Policy check latency by check.", latency, "check")
	m.tlsConns = counterVec("moat_tls_connections_total", "TLS handshakes completed, by protocol version.", "version")
	m.redisUp = gauge("moat_cluster_redis_up", "1 while the shared Redis answers, 0 while the node counts alone.")
	m.redisChanges = counterVec("moat_cluster_redis_state_changes_total", "Changes of the shared Redis between up and down.", "state")
	m.reg.MustRegister(m.redisUp, m.redisChanges)
	m.redisChanges.WithLabelValues("up")
	m.redisChanges.WithLabelValues("down")
	m.authFailures = counterVec("moat_auth_failures_total", "Failed SMTP AUTH attempts by reason.", "reason")
	m.dnsblErrors = counterVec("moat_dnsbl_errors_total", "DNS list lookups for connecting clients that failed (timeout, SERVFAIL), by zone.", "zone")
	m.stress = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "moat_stress_mode", Help: "1 while a listener is in stress mode (guard.stress: shorter timeouts under overload), else 0."}, []string{"listener"})
	m.smtpTimeouts = counterVec("moat_smtp_timeouts_total", "SMTP connections closed for a timeout, by listener and kind (idle, data_rate, data).", "listener", "kind")
	m.reg.MustRegister(m.dnsblErrors, m.stress, m.smtpTimeouts)
	m.reg.MustRegister(m.connections, m.rejected, m.sessions, m.messages, m.ruleHits, m.ruleDuration,
		m.ruleErrors, m.deliveries, m.chained, m.reencoded, m.suppressed, m.dnsQueries, m.dnsDuration, m.checkDuration, m.tlsConns, m.authFailures,
		&queueCollector{m: m}, &spoolCollector{m: m})
	if !opt.NoRuntimeCollectors {
		m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	m.smuggling = counterVec("moat_smuggling_total", "Messages whose data held a bare CR or LF (kind bare_eol) or a NUL octet (kind nul), by action (rejected or normalized, smtp.bare_line_endings).", "kind", "action")
	m.reg.MustRegister(m.smuggling)
	m.outboundTLS = newOutboundTLS(m.reg)
	m.scan = newScannerMetrics(m.reg)
	m.fwd = newForwardingMetrics(m.reg)
	m.reports = newReportMetrics(m.reg)
	m.ref.init(m.reg)
	for _, k := range smugglingKinds {
		for _, a := range smugglingActions {
			m.smuggling.WithLabelValues(k, a)
		}
	}
	// Series that exist from the start, so rate() works before the first event.
	for _, v := range verdicts {
		m.messages.WithLabelValues(v)
	}
	for _, r := range guard.Reasons() {
		m.rejected.WithLabelValues(r)
	}
	m.suppressed.WithLabelValues(queue.NoticeFailure)
	m.suppressed.WithLabelValues(queue.NoticeDelay)
	return m
}

// Registry returns the registry to serve on /metrics.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// --- connections ---------------------------------------------------------

// GuardReject counts one connection the guard refused. Wire it as
// guard.Options.OnReject.
func (m *Metrics) GuardReject(r guard.Rejection) {
	m.connections.WithLabelValues(m.listenerNames.value(r.Listener), "rejected").Inc()
	m.rejected.WithLabelValues(m.guardReasons.value(r.Reason)).Inc()
	if r.Client.IsValid() {
		m.rejectedClient(r.Client.Addr().Unmap().String())
	}
}

// DNSBLError counts one DNS list that failed for a connecting client.
// Wire it as guard.Options.OnDNSBLError.
func (m *Metrics) DNSBLError(zone string) {
	m.dnsblErrors.WithLabelValues(m.dnsblZones.value(zone)).Inc()
}

// Stress sets a listener's stress-mode gauge. Wire it as
// guard.Options.OnStress.
func (m *Metrics) Stress(listener string, on bool) {
	v := 0.0
	if on {
		v = 1
	}
	m.stress.WithLabelValues(m.listenerNames.value(listener)).Set(v)
}

// SMTPTimeout counts one connection closed for a timeout (kind: idle,
// data_rate, data). Wire it as gateway.Options.OnTimeout.
func (m *Metrics) SMTPTimeout(listener, kind string) {
	switch kind {
	case "idle", "data_rate", "data":
	default:
		kind = other
	}
	m.smtpTimeouts.WithLabelValues(m.listenerNames.value(listener), kind).Inc()
}

// ConnAccepted counts one connection admitted on listener.
func (m *Metrics) ConnAccepted(listener string) {
	m.connections.WithLabelValues(m.listenerNames.value(listener), "accepted").Inc()
}

// SessionStart and SessionEnd move the active sessions gauge.
func (m *Metrics) SessionStart() { m.sessions.Inc() }

// SessionEnd: see SessionStart.
func (m *Metrics) SessionEnd() { m.sessions.Dec() }

// WrapListener counts the connections l yields as accepted on listener and
// keeps the active-sessions gauge (up at Accept, down at the first Close).
// It fits gateway.Options.Wrap, outside the guard's listener so that only
// admitted connections are seen:
//
//	Wrap: func(l net.Listener, c gateway.Listener) net.Listener {
//		return m.WrapListener(c.Name, g.Listen(l, ...))
//	}
func (m *Metrics) WrapListener(listener string, l net.Listener) net.Listener {
	return &countListener{Listener: l, m: m, name: listener}
}

type countListener struct {
	net.Listener
	m    *Metrics
	name string
}

func (l *countListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.m.ConnAccepted(l.name)
	l.m.SessionStart()
	return &countConn{Conn: c, m: l.m}, nil
}

type countConn struct {
	net.Conn
	m    *Metrics
	once sync.Once
}

func (c *countConn) Close() error {
	c.once.Do(c.m.SessionEnd)
	return c.Conn.Close()
}

// Unwrap returns the wrapped connection (as the gateway's own wrappers do).
func (c *countConn) Unwrap() net.Conn { return c.Conn }

// TLS counts one completed handshake. version is "TLS1.3" (the gateway's
// Conn.TLSVersion fact) or tls.VersionName's "TLS 1.3"; the label is the
// first form.
func (m *Metrics) TLS(version string) {
	version = strings.ReplaceAll(version, " ", "")
	if !contains(tlsVersions, version) {
		version = other
	}
	m.tlsConns.WithLabelValues(version).Inc()
}

// Label values of moat_smuggling_total; others count as "other".
var (
	smugglingKinds   = []string{"bare_eol", "nul"}
	smugglingActions = []string{"rejected", "normalized"}
)

// Smuggling counts one message whose data held a bare line end or a NUL
// octet, and what was done. It fits gateway.Checks.Smuggling.
func (m *Metrics) Smuggling(kind, action string) {
	if !contains(smugglingKinds, kind) {
		kind = other
	}
	if !contains(smugglingActions, action) {
		action = other
	}
	m.smuggling.WithLabelValues(kind, action).Inc()
}

// AuthFailure counts one failed AUTH; reason is a short fixed word from the
// gateway ("bad_credentials", "mechanism", "rate", "tls_required" …), never
// the user name.
// RedisEnabled marks the shared Redis as in use (and up until told
// otherwise); without it the gauge stays 0 and no change is counted.
func (m *Metrics) RedisEnabled() { m.redisUp.Set(1) }

// RedisState records a change of the shared Redis (policy/cluster
// Options.OnStateChange).
func (m *Metrics) RedisState(up bool) {
	if up {
		m.redisUp.Set(1)
		m.redisChanges.WithLabelValues("up").Inc()
		return
	}
	m.redisUp.Set(0)
	m.redisChanges.WithLabelValues("down").Inc()
}

func (m *Metrics) AuthFailure(reason string) {
	m.authFailures.WithLabelValues(m.authReasons.value(reason)).Inc()
}

// --- messages and rules --------------------------------------------------

// Verdict counts one message decision (one of the Verdict… constants;
// anything else counts as "other"); rule is the rule that decided ("" for
// none) and feeds the top-rules list. It fits gateway.Checks.Verdict.
func (m *Metrics) Verdict(verdict, rule string) { m.VerdictFrom(verdict, rule, "") }

// VerdictFrom is Verdict with the client's IP ("" if unknown), which for
// rejected and tempfailed verdicts feeds the top rejected clients list.
func (m *Metrics) VerdictFrom(verdict, rule, client string) {
	i := verdictIndex(verdict)
	if i < 0 {
		verdict = other
	}
	m.messages.WithLabelValues(verdict).Inc()
	m.mu.Lock()
	defer m.mu.Unlock()
	if i >= 0 {
		m.minutes.add(m.now(), i)
	}
	if rule != "" {
		m.topRules.add(rule)
	}
	if client != "" && (verdict == VerdictRejected || verdict == VerdictTempfailed) {
		m.topClients.add(client)
	}
}

func (m *Metrics) rejectedClient(client string) {
	m.mu.Lock()
	m.topClients.add(client)
	m.mu.Unlock()
}

// RuleHits counts the rules that matched in one evaluation (pass
// Verdict.Explain after each Engine.Evaluate).
func (m *Metrics) RuleHits(hits []rules.Hit) {
	for _, h := range hits {
		m.RuleHit(h.Rule, string(h.Action), h.DryRun)
	}
}

// RuleHit counts one matching rule.
func (m *Metrics) RuleHit(rule, action string, dryRun bool) {
	dr := "false"
	if dryRun {
		dr = "true"
	}
	if action == "" {
		action = "continue"
	}
	m.ruleHits.WithLabelValues(m.ruleNames.value(rule), m.ruleNames.value(action), dr).Inc()
}

// RuleObserver returns the rules.Observer for rules.EngineOptions.Observer:
// it times each rule and counts its run-time errors.
func (m *Metrics) RuleObserver() rules.Observer {
	// Each rule's histogram, looked up once rather than by label values
	// for every rule of every message; at most maxLabelValues entries.
	var (
		hists sync.Map // rule name → prometheus.Observer
		n     atomic.Int64
	)
	return rules.ObserverFunc(func(s rules.RuleStat) {
		if s.Err != nil {
			m.ruleErrors.WithLabelValues(m.ruleNames.value(s.Rule)).Inc()
		}
		if !s.Timed {
			return
		}
		h, ok := hists.Load(s.Rule)
		if !ok {
			h = m.ruleDuration.WithLabelValues(m.ruleNames.value(s.Rule))
			if n.Add(1) <= maxLabelValues {
				hists.Store(s.Rule, h)
			}
		}
		h.(prometheus.Observer).Observe(s.Duration.Seconds())
	})
}

// Check records how long one policy check took (check is spf, dkim,
// dmarc, iprev, dnsbl, arc or content; anything else is "other").
func (m *Metrics) Check(check string, d time.Duration) {
	if !contains(checks, check) {
		check = other
	}
	m.checkDuration.WithLabelValues(check).Observe(d.Seconds())
}

// DNSObserve records one DNS query; it is dnsres.Config.Observe.
func (m *Metrics) DNSObserve(qtype, outcome string, d time.Duration) {
	if !contains(dnsTypes, qtype) {
		qtype = other
	}
	switch outcome {
	case dnsres.OutcomeNoError, dnsres.OutcomeNXDomain, dnsres.OutcomeServFail, dnsres.OutcomeRefused,
		dnsres.OutcomeOther, dnsres.OutcomeTimeout, dnsres.OutcomeError, dnsres.OutcomeTruncated:
	default:
		outcome = other
	}
	m.dnsQueries.WithLabelValues(qtype, outcome).Inc()
	m.dnsDuration.WithLabelValues(qtype).Observe(d.Seconds())
}

// --- delivery ------------------------------------------------------------

// DeliveryEvent is one recipient's delivery attempt, for the status page.
type DeliveryEvent struct {
	Time      time.Time
	QueueID   string
	Recipient string
	Route     string
	Result    string // delivered, deferred, bounced
	Error     string // the error text, cut to 200 bytes
}

// Delivery counts one recipient's attempt on route (result is one of the
// Delivery… constants).
func (m *Metrics) Delivery(route, result string) {
	switch result {
	case DeliveryDelivered, DeliveryDeferred, DeliveryBounced:
	default:
		result = other
	}
	m.deliveries.WithLabelValues(m.routeNames.value(route), result).Inc()
}

// BounceSuppressed counts one notice the queue withheld from an
// unverified sender; kind is queue.NoticeFailure or queue.NoticeDelay.
// Wire it as queue.Options.Suppressed.
func (m *Metrics) BounceSuppressed(kind string) {
	if kind != queue.NoticeFailure && kind != queue.NoticeDelay {
		kind = other
	}
	m.suppressed.WithLabelValues(kind).Inc()
}

// Chained counts one transaction chained on a session of route.
func (m *Metrics) Chained(route string) {
	m.chained.WithLabelValues(m.routeNames.value(route)).Inc()
}

// Reencoded counts one message re-encoded on its way out, for reason
// "8bit" or "long_line" (relay/smtpout Options.Reencoded).
func (m *Metrics) Reencoded(reason string) {
	if reason != "8bit" && reason != "long_line" {
		reason = other
	}
	m.reencoded.WithLabelValues(reason).Inc()
}

// DeliveryResult counts ev like Delivery and keeps it in the recent list.
func (m *Metrics) DeliveryResult(ev DeliveryEvent) {
	m.Delivery(ev.Route, ev.Result)
	if ev.Time.IsZero() {
		ev.Time = m.now()
	}
	ev.QueueID = cut(ev.QueueID, 64)
	ev.Recipient = cut(ev.Recipient, maxKeyLen)
	ev.Route = cut(ev.Route, 64)
	ev.Error = cut(ev.Error, 200)
	m.mu.Lock()
	m.recent[m.recentN%len(m.recent)] = ev
	m.recentN++
	m.mu.Unlock()
}

// WrapTransport returns t counting every per-recipient result on route
// (nil → delivered, transport.IsPermanent → bounced, else deferred) and
// keeping it in the recent deliveries. Wrap each transport where the
// composition root builds the route → transport map.
func (m *Metrics) WrapTransport(route string, t transport.Transport) transport.Transport {
	return transport.Func(func(ctx context.Context, msg *transport.Message, rcpts []string) []transport.Result {
		res := t.Deliver(ctx, msg, rcpts)
		now := m.now()
		for _, r := range res {
			ev := DeliveryEvent{Time: now, QueueID: msg.ID, Recipient: r.Recipient, Route: route, Result: DeliveryDelivered}
			switch {
			case r.Err == nil:
			case transport.IsPermanent(r.Err):
				ev.Result, ev.Error = DeliveryBounced, r.Err.Error()
			default:
				ev.Result, ev.Error = DeliveryDeferred, r.Err.Error()
			}
			m.DeliveryResult(ev)
		}
		return res
	})
}

// --- gauges fed by functions --------------------------------------------

// QueueStats sets the function called at each scrape (and Snapshot) for
// the queue gauges; pass (*queue.Manager).Stats.
func (m *Metrics) QueueStats(f func() queue.Stats) { m.queueStats.Store(&f) }

// SpoolBytes sets the function called at each scrape for moat_spool_bytes.
func (m *Metrics) SpoolBytes(f func() int64) { m.spoolBytes.Store(&f) }

func (m *Metrics) queueStatsNow() (queue.Stats, bool) {
	f := m.queueStats.Load()
	if f == nil || *f == nil {
		return queue.Stats{}, false
	}
	return (*f)(), true
}

var (
	queueMessagesDesc = prometheus.NewDesc("moat_queue_messages", "Messages in the queue by state (active, deferred, held, waiting).", []string{"state"}, nil)
	queueRcptsDesc    = prometheus.NewDesc("moat_queue_recipients", "Pending recipients in the queue.", nil, nil)
	queueOldestDesc   = prometheus.NewDesc("moat_queue_oldest_age_seconds", "Age of the oldest queued message.", nil, nil)
	spoolBytesDesc    = prometheus.NewDesc("moat_spool_bytes", "Bytes the spool's files take on disk: messages, removed ones until their segment goes, and up to 1 MiB of zeros written ahead.", nil, nil)
)

type queueCollector struct{ m *Metrics }

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueMessagesDesc
	ch <- queueRcptsDesc
	ch <- queueOldestDesc
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	s, ok := c.m.queueStatsNow()
	if !ok {
		return
	}
	for state, n := range map[string]int{"active": s.Active, "deferred": s.Deferred, "held": s.Held, "waiting": waiting(s)} {
		ch <- prometheus.MustNewConstMetric(queueMessagesDesc, prometheus.GaugeValue, float64(n), state)
	}
	ch <- prometheus.MustNewConstMetric(queueRcptsDesc, prometheus.GaugeValue, float64(s.Recipients))
	ch <- prometheus.MustNewConstMetric(queueOldestDesc, prometheus.GaugeValue, s.Oldest.Seconds())
}

// waiting is the messages never attempted yet and not held or running.
func waiting(s queue.Stats) int { return max(0, s.Messages-s.Active-s.Deferred-s.Held) }

type spoolCollector struct{ m *Metrics }

func (c *spoolCollector) Describe(ch chan<- *prometheus.Desc) { ch <- spoolBytesDesc }

func (c *spoolCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.m.spoolBytes.Load()
	if f == nil || *f == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(spoolBytesDesc, prometheus.GaugeValue, float64((*f)()))
}

// --- helpers -------------------------------------------------------------

func verdictIndex(v string) int {
	for i, x := range verdicts {
		if x == v {
			return i
		}
	}
	return -1
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// cut shortens s to at most n bytes without splitting a UTF-8 sequence.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && s[len(s)-1]&0xC0 == 0x80 {
		s = s[:len(s)-1]
	}
	if len(s) > 0 && s[len(s)-1] >= 0xC0 {
		s = s[:len(s)-1]
	}
	return s
}

// labelSet caps the distinct values of one label: the first n values seen
// (plus the ones declared known) are kept, later ones become "other".
type labelSet struct {
	mu   sync.Mutex
	n    int
	seen map[string]struct{}
}

func newLabelSet(n int) *labelSet { return &labelSet{n: n, seen: map[string]struct{}{}} }

func (s *labelSet) known(v string) {
	s.mu.Lock()
	s.seen[v] = struct{}{}
	s.mu.Unlock()
}

func (s *labelSet) value(v string) string {
	if v == "" {
		return "none"
	}
	if len(v) > 128 || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return other
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[v]; ok {
		return v
	}
	if len(s.seen) >= s.n {
		return other
	}
	s.seen[v] = struct{}{}
	return v
}

// counterVec, gauge and histogramVec make the collectors of New.
func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

func gauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
}

func histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
}
