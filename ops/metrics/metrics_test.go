package metrics

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"moat/relay/spool"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"moat/gateway"
	"moat/gateway/guard"
	"moat/internal/dnsres"
	"moat/internal/reply"
	"moat/relay/queue"
	"moat/relay/transport"
	"moat/rules"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTest(t *testing.T) (*Metrics, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2025, 3, 1, 12, 0, 30, 0, time.UTC)}
	return NewWithOptions(Options{Now: c.now}), c
}

func TestHooksMoveCounters(t *testing.T) {
	m, _ := newTest(t)
	m.GuardReject(guard.Rejection{Reason: guard.ReasonDenyList, Listener: "mx", Client: netip.MustParseAddrPort("192.0.2.1:4000")})
	m.GuardReject(guard.Rejection{Reason: guard.ReasonPregreet, Listener: "mx", Client: netip.MustParseAddrPort("192.0.2.1:4001")})
	m.ConnAccepted("mx")
	m.VerdictFrom(VerdictRejected, "dmarc-reject", "198.51.100.7")
	m.VerdictFrom(VerdictAccepted, "", "198.51.100.8")
	m.Verdict("weird", "")
	m.RuleHits([]rules.Hit{{Rule: "bulk", Action: rules.Reject, DryRun: true}, {Rule: "bulk", Action: rules.Reject, DryRun: true}})
	obs := m.RuleObserver()
	obs.ObserveRule(rules.RuleStat{Rule: "bulk", Timed: true, Duration: time.Millisecond, Err: errors.New("x")})
	obs.ObserveRule(rules.RuleStat{Rule: "bulk", Timed: true, Duration: time.Millisecond}) // its cached histogram
	obs.ObserveRule(rules.RuleStat{Rule: "bulk", Err: errors.New("y")})                    // untimed: counted, not observed
	m.Check("spf", 3*time.Millisecond)
	m.Check("nonsense", time.Millisecond)
	m.DNSObserve("TXT", "noerror", 2*time.Millisecond)
	m.DNSObserve("TYPE999", "servfail", time.Millisecond)
	m.TLS("TLS1.3")
	m.TLS("garbage")
	m.AuthFailure("bad_credentials")
	m.Delivery("backend", DeliveryDeferred)
	m.Chained("backend")
	m.Chained("backend")
	m.Reencoded("long_line")
	m.Reencoded("8bit")
	m.Reencoded("long_line")
	m.Reencoded("{nonsense}")

	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{"connections rejected", testutil.ToFloat64(m.connections.WithLabelValues("mx", "rejected")), 2},
		{"connections accepted", testutil.ToFloat64(m.connections.WithLabelValues("mx", "accepted")), 1},
		{"deny_list", testutil.ToFloat64(m.rejected.WithLabelValues(guard.ReasonDenyList)), 1},
		{"verdict rejected", testutil.ToFloat64(m.messages.WithLabelValues(VerdictRejected)), 1},
		{"verdict accepted", testutil.ToFloat64(m.messages.WithLabelValues(VerdictAccepted)), 1},
		{"verdict other", testutil.ToFloat64(m.messages.WithLabelValues("other")), 1},
		{"rule hits", testutil.ToFloat64(m.ruleHits.WithLabelValues("bulk", "reject", "true")), 2},
		{"rule errors", testutil.ToFloat64(m.ruleErrors.WithLabelValues("bulk")), 2}, // one timed, one not
		{"dns", testutil.ToFloat64(m.dnsQueries.WithLabelValues("TXT", "noerror")), 1},
		{"dns other type", testutil.ToFloat64(m.dnsQueries.WithLabelValues("other", "servfail")), 1},
		{"tls 1.3", testutil.ToFloat64(m.tlsConns.WithLabelValues("TLS1.3")), 1},
		{"tls other", testutil.ToFloat64(m.tlsConns.WithLabelValues("other")), 1},
		{"auth", testutil.ToFloat64(m.authFailures.WithLabelValues("bad_credentials")), 1},
		{"delivery", testutil.ToFloat64(m.deliveries.WithLabelValues("backend", DeliveryDeferred)), 1},
		{"chained", testutil.ToFloat64(m.chained.WithLabelValues("backend")), 2},
		{"reencoded long_line", testutil.ToFloat64(m.reencoded.WithLabelValues("long_line")), 2},
		{"reencoded 8bit", testutil.ToFloat64(m.reencoded.WithLabelValues("8bit")), 1},
		{"reencoded other", testutil.ToFloat64(m.reencoded.WithLabelValues("other")), 1},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	for _, name := range []string{"moat_check_duration_seconds", "moat_rule_evaluation_seconds", "moat_dns_lookup_duration_seconds"} {
		if n, err := testutil.GatherAndCount(m.Registry(), name); err != nil || n == 0 {
			t.Errorf("%s: %d series, %v", name, n, err)
		}
	}
	if n := histCount(t, m, "moat_rule_evaluation_seconds"); n != 2 {
		t.Errorf("rule evaluations observed = %d, want 2", n)
	}
	if n, _ := testutil.GatherAndCount(m.Registry(), "moat_check_duration_seconds"); n != 2 {
		t.Errorf("check series = %d, want 2 (spf, other)", n)
	}
	snap := m.Snapshot(10)
	if len(snap.TopClients) != 2 || snap.TopClients[0].Key != "192.0.2.1" || snap.TopClients[0].Count != 2 {
		t.Errorf("top clients = %+v", snap.TopClients)
	}
	if len(snap.TopRules) != 1 || snap.TopRules[0].Key != "dmarc-reject" {
		t.Errorf("top rules = %+v", snap.TopRules)
	}
}

func TestRegistryGathersWithRuntimeCollectors(t *testing.T) {
	m := New()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var goSeen, moatSeen bool
	for _, mf := range mfs {
		goSeen = goSeen || strings.HasPrefix(mf.GetName(), "go_")
		moatSeen = moatSeen || mf.GetName() == "moat_messages_total"
	}
	if !goSeen || !moatSeen {
		t.Errorf("go collector %v, moat_messages_total %v", goSeen, moatSeen)
	}
	// Two instances never collide: nothing is registered globally.
	_ = New()
}

func TestQueueAndSpoolGauges(t *testing.T) {
	m, _ := newTest(t)
	if n, _ := testutil.GatherAndCount(m.Registry(), "moat_queue_messages"); n != 0 {
		t.Fatalf("queue series before QueueStats: %d", n)
	}
	m.QueueStats(func() queue.Stats {
		return queue.Stats{Messages: 10, Active: 1, Deferred: 3, Held: 2, Recipients: 12, Oldest: 90 * time.Second}
	})
	m.SpoolBytes(func() int64 { return 4096 })
	want := `
# HELP moat_queue_messages Messages in the queue by state (active, deferred, held, waiting).
# TYPE moat_queue_messages gauge
moat_queue_messages{state="active"} 1
moat_queue_messages{state="deferred"} 3
moat_queue_messages{state="held"} 2
moat_queue_messages{state="waiting"} 4
# HELP moat_queue_oldest_age_seconds Age of the oldest queued message.
# TYPE moat_queue_oldest_age_seconds gauge
moat_queue_oldest_age_seconds 90
# HELP moat_spool_bytes Bytes the spool's files take on disk: messages, removed ones until their segment goes, and up to 1 MiB of zeros written ahead.
# TYPE moat_spool_bytes gauge
moat_spool_bytes 4096
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "moat_queue_messages", "moat_queue_oldest_age_seconds", "moat_spool_bytes"); err != nil {
		t.Error(err)
	}
	if s := m.Snapshot(0); !s.HasQueue || s.Queue.Messages != 10 {
		t.Errorf("snapshot queue = %+v %v", s.Queue, s.HasQueue)
	}
}

func TestVerdictRing(t *testing.T) {
	m, c := newTest(t)
	start := c.t
	m.VerdictFrom(VerdictAccepted, "", "")
	c.t = start.Add(time.Minute)
	m.VerdictFrom(VerdictRejected, "r", "192.0.2.9")
	m.VerdictFrom(VerdictRejected, "r", "192.0.2.9")
	c.t = start.Add(60 * time.Minute) // the first minute has left the window
	m.VerdictFrom(VerdictQuarantined, "", "")
	s := m.Snapshot(0)
	if len(s.Minutes) != 60 {
		t.Fatalf("minutes = %d", len(s.Minutes))
	}
	var acc, rej, qua uint64
	for _, mn := range s.Minutes {
		acc += mn.Counts[VerdictAccepted]
		rej += mn.Counts[VerdictRejected]
		qua += mn.Counts[VerdictQuarantined]
	}
	if acc != 0 || rej != 2 || qua != 1 {
		t.Errorf("accepted %d rejected %d quarantined %d; want 0 2 1", acc, rej, qua)
	}
	if last := s.Minutes[59]; last.Counts[VerdictQuarantined] != 1 || !last.Start.Equal(c.t.Truncate(time.Minute)) {
		t.Errorf("last minute = %+v", last)
	}
	// A minute slot reused after an hour starts from zero.
	c.t = start.Add(120 * time.Minute)
	m.VerdictFrom(VerdictAccepted, "", "")
	if n := m.Snapshot(0).Minutes[59].Total; n != 1 {
		t.Errorf("reused slot total = %d, want 1", n)
	}
}

func TestTopKBounded(t *testing.T) {
	tk := newTopK(10)
	for i := 0; i < 1000; i++ {
		tk.add(fmt.Sprintf("c%d", i))
		if i%4 == 0 {
			tk.add("heavy")
		}
	}
	if len(tk.m) != 10 {
		t.Fatalf("kept %d keys", len(tk.m))
	}
	l := tk.list(3)
	if len(l) != 3 || l[0].Key != "heavy" || l[0].Count < 250 {
		t.Errorf("top = %+v", l)
	}
	long := strings.Repeat("x", 1000)
	tk.add(long)
	for k := range tk.m {
		if len(k) > maxKeyLen {
			t.Errorf("key of %d bytes kept", len(k))
		}
	}
}

func TestLabelCardinalityBounded(t *testing.T) {
	m, _ := newTest(t)
	for i := 0; i < maxLabelValues+50; i++ {
		m.Delivery(fmt.Sprintf("route%d", i), DeliveryDelivered)
	}
	m.Delivery("bad\nroute", DeliveryDelivered)
	n, err := testutil.GatherAndCount(m.Registry(), "moat_delivery_attempts_total")
	if err != nil {
		t.Fatal(err)
	}
	if n != maxLabelValues+1 {
		t.Errorf("series = %d, want %d", n, maxLabelValues+1)
	}
	if got := testutil.ToFloat64(m.deliveries.WithLabelValues(other, DeliveryDelivered)); got != 51 {
		t.Errorf("other = %v, want 51", got)
	}
}

func TestWrapTransportAndRecent(t *testing.T) {
	m, _ := newTest(t)
	inner := transport.Func(func(_ context.Context, _ *transport.Message, rcpts []string) []transport.Result {
		return []transport.Result{
			{Recipient: rcpts[0]},
			{Recipient: rcpts[1], Err: reply.New(550, 1, 1, "no such user")},
			{Recipient: rcpts[2], Err: errors.New("connection refused")},
		}
	})
	tr := m.WrapTransport("backend", inner)
	for i := 0; i < RecentDeliveries+5; i++ {
		tr.Deliver(context.Background(), &transport.Message{ID: fmt.Sprintf("Q%d", i)}, []string{"a@x", "b@x", "c@x"})
	}
	n := float64(RecentDeliveries + 5)
	for res, want := range map[string]float64{DeliveryDelivered: n, DeliveryBounced: n, DeliveryDeferred: n} {
		if got := testutil.ToFloat64(m.deliveries.WithLabelValues("backend", res)); got != want {
			t.Errorf("%s = %v, want %v", res, got, want)
		}
	}
	s := m.Snapshot(0)
	if len(s.Deliveries) != RecentDeliveries {
		t.Fatalf("recent = %d", len(s.Deliveries))
	}
	first := s.Deliveries[0]
	if first.QueueID != fmt.Sprintf("Q%d", RecentDeliveries+4) || first.Recipient != "c@x" || first.Result != DeliveryDeferred {
		t.Errorf("newest = %+v", first)
	}
}

func TestWrapListenerCountsSessions(t *testing.T) {
	m, _ := newTest(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	wl := m.WrapListener("mx", ln)
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			defer c.Close()
			buf := make([]byte, 1)
			c.Read(buf)
		}
	}()
	c, err := wl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if g := testutil.ToFloat64(m.sessions); g != 1 {
		t.Errorf("active = %v", g)
	}
	c.Close()
	c.Close()
	if g := testutil.ToFloat64(m.sessions); g != 0 {
		t.Errorf("active after close = %v", g)
	}
	if g := testutil.ToFloat64(m.connections.WithLabelValues("mx", "accepted")); g != 1 {
		t.Errorf("accepted = %v", g)
	}
}

func TestSpoolDirBytes(t *testing.T) {
	dir := t.TempDir()
	if n := SpoolDirBytes(filepath.Join(dir, "none"), time.Hour)(); n != 0 {
		t.Errorf("missing dir: %d", n)
	}
	sp, err := spool.Open(dir, spool.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	env := &spool.Envelope{ID: sp.NewID(), Sender: "a@example.org", Received: time.Now(),
		Recipients: []spool.Recipient{{Address: "b@example.org", Route: "local", Status: spool.StatusPending}}}
	if err := sp.Put(context.Background(), env, strings.NewReader(strings.Repeat("x", 5000))); err != nil {
		t.Fatal(err)
	}
	f := SpoolDirBytes(dir, time.Hour)
	if n := f(); n < 5000 {
		t.Errorf("spool with a 5000-byte message: %d bytes", n)
	}
}

// TestVerdictNames: the names the gateway reports (rules.Action.Verdict)
// are the labels counted here, so that none lands in "other".
func TestVerdictNames(t *testing.T) {
	for a, want := range map[rules.Action]string{
		rules.Continue: VerdictAccepted, rules.Accept: VerdictAccepted, rules.Reject: VerdictRejected,
		rules.Tempfail: VerdictTempfailed, rules.Greylist: VerdictGreylisted, rules.Discard: VerdictDiscarded,
		rules.Quarantine: VerdictQuarantined, rules.Route: VerdictAccepted, rules.Score: VerdictAccepted,
	} {
		if got := a.Verdict(); got != want {
			t.Errorf("%q: %q, want %q", a, got, want)
		}
	}
}

func BenchmarkVerdict(b *testing.B) {
	m := NewWithOptions(Options{NoRuntimeCollectors: true})
	for i := 0; b.Loop(); i++ {
		m.VerdictFrom(VerdictRejected, "rule", fmt.Sprintf("192.0.2.%d", i%250))
	}
}

// The dashboards and alerts in deploy/ name these metrics
// (deploy/METRICS.txt); every one must exist once its hook has run.
func TestDeployMetricNamesExist(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "METRICS.txt"))
	if err != nil {
		t.Skipf("no deploy/METRICS.txt: %v", err)
	}
	m, _ := newTest(t)
	m.GuardReject(guard.Rejection{Reason: guard.ReasonDenyList, Listener: "mx"})
	m.ConnAccepted("mx")
	m.RuleHit("r", "reject", false)
	m.RuleObserver().ObserveRule(rules.RuleStat{Rule: "r", Timed: true})
	m.Delivery("mx", DeliveryDelivered)
	m.DNSObserve("A", "noerror", time.Millisecond)
	m.Check("spf", time.Millisecond)
	m.TLS("TLS1.3")
	m.AuthFailure("bad_credentials")
	m.DNSBLError("zen.example")
	m.Stress("mx", false)
	m.SMTPTimeout("mx", "data_rate")
	m.ScannerDuration("clamd", time.Millisecond)
	m.ScannerError("clamd", "timeout")
	m.ScannerVerdict("clamd", "clean")
	m.QueueStats(func() queue.Stats { return queue.Stats{} })
	m.SpoolBytes(func() int64 { return 0 })
	m.Refusal("rcpt", "relay_denied", "rejected", "192.0.2.1")
	m.SpoolFilesystem(t.TempDir())
	m.OutboundTLS("mta-sts", "success")
	m.TLSCertificate("mx", func() *x509.Certificate { return &x509.Certificate{NotAfter: time.Unix(2e9, 0)} })
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, mf := range mfs {
		have[mf.GetName()] = true
	}
	for _, name := range strings.Fields(string(b)) {
		if !have[name] {
			t.Errorf("deploy/METRICS.txt names %s, which the registry does not have", name)
		}
	}
}

// The hooks fit the parts' option fields as they are.
func TestHooksFitTheParts(t *testing.T) {
	m := NewWithOptions(Options{NoRuntimeCollectors: true})
	_ = gateway.Checks{Observe: m.Check, Verdict: m.VerdictFrom, AuthFailure: m.AuthFailure, RuleHits: m.RuleHits, TLS: m.TLS}
	_ = gateway.Checks{Smuggling: m.Smuggling, Refusal: m.Refusal}
	_ = gateway.Options{Wrap: func(l net.Listener, c gateway.Listener) net.Listener { return m.WrapListener(c.Name, l) }}
	_ = guard.Options{OnReject: m.GuardReject, OnStress: m.Stress, OnDNSBLError: m.DNSBLError}
	_ = gateway.Options{OnTimeout: m.SMTPTimeout}
	_ = dnsres.Config{Observe: m.DNSObserve}
	_ = rules.EngineOptions{Observer: m.RuleObserver()}
	_ = queue.Options{Suppressed: m.BounceSuppressed}
}

func TestRedisState(t *testing.T) {
	m := New()
	m.RedisEnabled()
	m.RedisState(false)
	m.RedisState(true)
	m.RedisState(false)
	if got := testutil.ToFloat64(m.redisUp); got != 0 {
		t.Errorf("redis up gauge %v", got)
	}
	if d, u := testutil.ToFloat64(m.redisChanges.WithLabelValues("down")), testutil.ToFloat64(m.redisChanges.WithLabelValues("up")); d != 2 || u != 1 {
		t.Errorf("changes down %v up %v", d, u)
	}
}

// histCount is the sample count summed over the series of a histogram.
func histCount(t *testing.T, m *Metrics, name string) (n uint64) {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, s := range mf.GetMetric() {
				n += s.GetHistogram().GetSampleCount()
			}
		}
	}
	return n
}

func TestBounceSuppressed(t *testing.T) {
	m := NewWithOptions(Options{NoRuntimeCollectors: true})
	m.BounceSuppressed(queue.NoticeFailure)
	m.BounceSuppressed(queue.NoticeFailure)
	m.BounceSuppressed(queue.NoticeDelay)
	m.BounceSuppressed("made up")
	for kind, want := range map[string]float64{queue.NoticeFailure: 2, queue.NoticeDelay: 1, other: 1} {
		if got := testutil.ToFloat64(m.suppressed.WithLabelValues(kind)); got != want {
			t.Errorf("moat_bounces_suppressed_total{notice=%q} = %v, want %v", kind, got, want)
		}
	}
}
