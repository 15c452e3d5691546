package reports

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/mail"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"moat/internal/dnsres"
	"moat/internal/dnstest"
	"moat/relay/dmarcrpt"
	"moat/relay/spool"
	"moat/relay/tlsrpt"
)

var (
	yesterday = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	today     = time.Date(2026, 12, 4, 2, 0, 0, 0, time.UTC)
)

type env struct {
	store *Store
	sp    *spool.Spool
	logs  *observer.ObservedLogs
	dns   *dnstest.Server
	rep   *Reporter
	now   time.Time
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{now: yesterday}
	e.store = Open(filepath.Join(dir, "reports.db"), func() time.Time { return e.now })
	sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	e.sp = sp
	e.dns = dnstest.NewServer(t)
	core, logs := observer.New(zap.DebugLevel)
	e.logs = logs
	e.rep = New(Options{Store: e.store, Resolver: dnsres.ForTest(e.dns.Addr()), From: "dmarc-reports@receiver.example",
		OrgName: "Receiver", DMARC: true, TLS: true, Spool: sp, Logger: zap.New(core),
		Now: func() time.Time { return e.now }})
	return e
}

func pub(rua ...string) dmarcrpt.Published {
	return dmarcrpt.Published{Domain: "sender.example", ADKIM: "r", ASPF: "r", P: "reject", Pct: 100, RUA: rua}
}

func row(ip string) dmarcrpt.Row {
	return dmarcrpt.Row{SourceIP: ip, Disposition: "none", DKIM: "pass", SPF: "pass", HeaderFrom: "sender.example",
		SPFAuth: []dmarcrpt.SPFResult{{Domain: "sender.example", Scope: "mfrom", Result: "pass"}}}
}

func (e *env) queued(t *testing.T) []*spool.Envelope {
	t.Helper()
	l, err := e.sp.List()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func (e *env) message(t *testing.T, id string) []byte {
	t.Helper()
	r, err := e.sp.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, _ := io.ReadAll(r)
	return b
}

// TestStoreCounts: equal rows add up across merges; days and domains
// stay apart; Read filters by day.
func TestStoreCounts(t *testing.T) {
	e := newEnv(t)
	e.store.RecordDMARC(pub("mailto:d@sender.example"), row("192.0.2.1"))
	e.store.RecordDMARC(pub("mailto:d@sender.example"), row("192.0.2.1"))
	if err := e.store.Flush(); err != nil {
		t.Fatal(err)
	}
	e.store.RecordDMARC(pub("mailto:d@sender.example"), row("192.0.2.1"))
	e.store.RecordDMARC(pub("mailto:d@sender.example"), row("192.0.2.2"))
	e.store.RecordTLS(tlsrpt.Result{PolicyDomain: "Sender.Example", Policy: tlsrpt.PolicyNotFound, Success: true})
	e.store.RecordTLS(tlsrpt.Result{}) // no policy domain: ignored
	e.now = today
	e.store.RecordDMARC(pub("mailto:d@sender.example"), row("192.0.2.1"))
	if err := e.store.Flush(); err != nil {
		t.Fatal(err)
	}
	snap, err := e.store.Read(func(day string) bool { return day == "2026-12-03" })
	if err != nil {
		t.Fatal(err)
	}
	d := snap.DMARC["2026-12-03|sender.example"]
	if d == nil || len(d.Rows) != 2 || d.Rows[row("192.0.2.1").Key()].Count != 3 || len(snap.DMARC) != 1 {
		t.Fatalf("%+v", snap.DMARC)
	}
	if tl := snap.TLS["2026-12-03|sender.example"]; tl == nil || len(tl.Policies) != 1 || len(snap.TLS) != 1 {
		t.Fatalf("%+v", snap.TLS)
	}
}

// TestStoreBounded: the memory between merges is bounded; what does not
// fit is counted as dropped, not kept.
func TestStoreBounded(t *testing.T) {
	e := newEnv(t)
	for i := 0; i < maxPending+10; i++ {
		e.store.RecordDMARC(pub(), row(fmt.Sprintf("10.%d.%d.%d", i/65536, i/256%256, i%256)))
	}
	if e.store.Dropped() != 10 {
		t.Fatalf("dropped %d, want 10", e.store.Dropped())
	}
}

// TestSendDMARC: an internal rua gets the report from the reporter
// address (never <>); the day's entry is then gone.
func TestSendDMARC(t *testing.T) {
	e := newEnv(t)
	e.store.RecordDMARC(pub("mailto:dmarc@sender.example"), row("192.0.2.1"))
	e.now = today
	out, err := e.rep.Send(context.Background(), SendOptions{})
	if err != nil || out.Sent != 1 {
		t.Fatalf("%+v %v", out, err)
	}
	q := e.queued(t)
	if len(q) != 1 || q[0].Sender != "dmarc-reports@receiver.example" || q[0].Recipients[0].Address != "dmarc@sender.example" ||
		q[0].SenderCheck != spool.SenderLocal {
		t.Fatalf("%+v", q)
	}
	m, err := mail.ReadMessage(bytes.NewReader(e.message(t, q[0].ID)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m.Header.Get("Subject"), "Report Domain: sender.example Submitter: receiver.example Report-ID: <20261203.") ||
		!strings.HasPrefix(m.Header.Get("Content-Type"), "multipart/mixed;") {
		t.Fatalf("%v", m.Header)
	}
	body, _ := io.ReadAll(m.Body)
	if !bytes.Contains(body, []byte(`filename="receiver.example!sender.example!1796256000!1796342399.xml.gz"`)) {
		t.Fatalf("no attachment name in\n%s", body)
	}
	if out, err := e.rep.Send(context.Background(), SendOptions{}); err != nil || out.Sent != 0 {
		t.Fatalf("second run %+v %v", out, err)
	}
}

// TestExternalDestination: RFC 7489 §7.1 — an outside rua without the
// authorisation record is skipped with a log line; with it, it is sent;
// a DNS failure keeps the entry for the next run.
func TestExternalDestination(t *testing.T) {
	e := newEnv(t)
	e.store.RecordDMARC(pub("mailto:a@thirdparty.example", "mailto:b@unauthorised.example"), row("192.0.2.1"))
	e.dns.AddTXT("sender.example._report._dmarc.thirdparty.example.", "v=DMARC1")
	e.now = today
	out, err := e.rep.Send(context.Background(), SendOptions{})
	if err != nil || out.Sent != 1 || out.Skipped != 1 {
		t.Fatalf("%+v %v", out, err)
	}
	if q := e.queued(t); len(q) != 1 || q[0].Recipients[0].Address != "a@thirdparty.example" {
		t.Fatalf("%+v", q)
	}
	if l := e.logs.FilterMessageSnippet("external destination not authorised").All(); len(l) != 1 {
		t.Fatalf("log lines: %v", e.logs.All())
	}

	e.now = yesterday
	e.store.RecordDMARC(pub("mailto:a@broken.example"), row("192.0.2.1"))
	e.dns.AddTXT("sender.example._report._dmarc.broken.example.", "v=DMARC1")
	e.dns.Fail("sender.example._report._dmarc.broken.example.", dns.TypeTXT, dnstest.ServFail)
	e.now = today
	out, err = e.rep.Send(context.Background(), SendOptions{})
	if err != nil || out.Kept != 1 || out.Sent != 0 {
		t.Fatalf("%+v %v", out, err)
	}
	e.dns.Fail("sender.example._report._dmarc.broken.example.", dns.TypeTXT, 0)
	if out, err = e.rep.Send(context.Background(), SendOptions{}); err != nil || out.Sent != 1 {
		t.Fatalf("retry: %+v %v", out, err)
	}
}

// TestSizeLimit: a destination whose "!size" the report exceeds is
// skipped; one with room gets it.
func TestSizeLimit(t *testing.T) {
	e := newEnv(t)
	e.store.RecordDMARC(pub("mailto:small@sender.example!1k", "mailto:big@sender.example!10m"), row("192.0.2.1"))
	e.now = today
	out, err := e.rep.Send(context.Background(), SendOptions{})
	if err != nil || out.Sent != 1 || out.Skipped != 1 {
		t.Fatalf("%+v %v", out, err)
	}
	if q := e.queued(t); len(q) != 1 || q[0].Recipients[0].Address != "big@sender.example" {
		t.Fatalf("%+v", q)
	}
}

// TestDryRun: the preview names the recipient, the sizes and the
// decoded report; nothing is queued and the entry stays.
func TestDryRun(t *testing.T) {
	e := newEnv(t)
	e.store.RecordDMARC(pub("mailto:dmarc@sender.example"), row("192.0.2.1"))
	e.store.RecordTLS(tlsrpt.Result{PolicyDomain: "sender.example", Policy: tlsrpt.PolicyNotFound, MXHost: "mx.sender.example",
		ReceivingIP: "192.0.2.25", Failure: tlsrpt.StartTLSNotSupported})
	e.dns.AddTXT("_smtp._tls.sender.example.", "v=TLSRPTv1; rua=mailto:tls@sender.example,https://sender.example/tlsrpt")
	e.now = today
	var w bytes.Buffer
	out, err := e.rep.Send(context.Background(), SendOptions{DryRun: true, Out: &w})
	if err != nil || out.Sent != 2 || out.Skipped != 1 {
		t.Fatalf("%+v %v", out, err)
	}
	s := w.String()
	for _, want := range []string{"=== dmarc report for sender.example", "to: dmarc@sender.example", "from: dmarc-reports@receiver.example",
		"message size: ", "<source_ip>192.0.2.1</source_ip>", "=== tlsrpt report for sender.example", "to: tls@sender.example",
		`"result-type": "starttls-not-supported"`} {
		if !strings.Contains(s, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, s)
		}
	}
	if q := e.queued(t); len(q) != 0 {
		t.Fatalf("dry run queued %d", len(q))
	}
	if out, err := e.rep.Send(context.Background(), SendOptions{}); err != nil || out.Sent != 2 {
		t.Fatalf("after dry run: %+v %v", out, err)
	}
}

// TestTLSReportMessage: the RFC 8460 §5.3 shape: headers, the
// multipart/report type and the attachment's media type.
func TestTLSReportMessage(t *testing.T) {
	e := newEnv(t)
	e.store.RecordTLS(tlsrpt.Result{PolicyDomain: "sender.example", Policy: tlsrpt.PolicyNotFound, Success: true})
	e.dns.AddTXT("_smtp._tls.sender.example.", "v=TLSRPTv1; rua=mailto:tls@sender.example")
	e.now = today
	if out, err := e.rep.Send(context.Background(), SendOptions{}); err != nil || out.Sent != 1 {
		t.Fatalf("%+v %v", out, err)
	}
	q := e.queued(t)
	m, err := mail.ReadMessage(bytes.NewReader(e.message(t, q[0].ID)))
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get("TLS-Report-Domain") != "sender.example" || m.Header.Get("TLS-Report-Submitter") != "receiver.example" ||
		!strings.HasPrefix(m.Header.Get("Content-Type"), `multipart/report; report-type="tlsrpt";`) {
		t.Fatalf("%v", m.Header)
	}
	body, _ := io.ReadAll(m.Body)
	if !bytes.Contains(body, []byte("Content-Type: application/tlsrpt+gzip")) || !bytes.Contains(body, []byte(".json.gz\"")) {
		t.Fatalf("%s", body)
	}
}

// TestNoRecordNoReport: a domain without rua= or without a TLSRPT
// record gets nothing, and its entry is dropped.
func TestNoRecordNoReport(t *testing.T) {
	e := newEnv(t)
	e.store.RecordDMARC(pub(), row("192.0.2.1"))
	e.store.RecordTLS(tlsrpt.Result{PolicyDomain: "quiet.example", Policy: tlsrpt.PolicyNotFound, Success: true})
	e.now = today
	if out, err := e.rep.Send(context.Background(), SendOptions{}); err != nil || out.Sent != 0 {
		t.Fatalf("%+v %v", out, err)
	}
	snap, err := e.store.Read(func(string) bool { return true })
	if err != nil || len(snap.DMARC)+len(snap.TLS) != 0 {
		t.Fatalf("%+v %v", snap, err)
	}
}

func TestConfig(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil || c.Enabled() {
		t.Fatal(err)
	}
	c.DMARC.Enabled = true
	c.SetDefaults("mx.example.org")
	if err := c.Validate(); err != nil || c.From != "dmarc-reports@mx.example.org" || c.OrgName != "mx.example.org" {
		t.Fatalf("%+v %v", c, err)
	}
	for _, tc := range []struct {
		c    Config
		want string
	}{
		{Config{Hour: 24}, "reports.hour"},
		{Config{DMARC: KindConfig{Enabled: true}}, "reports.from: required"},
		{Config{From: "Reports <r@example.org>", TLS: KindConfig{Enabled: true}}, "reports.from"},
		{Config{From: "<>", TLS: KindConfig{Enabled: true}}, "reports.from"},
	} {
		if err := tc.c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %s", tc.c, err, tc.want)
		}
	}
}

// TestRun: the daily job sends the complete days once the clock is past
// reports.hour, and merges what was recorded at the end.
func TestRun(t *testing.T) {
	e := newEnv(t)
	e.store.RecordDMARC(pub("mailto:dmarc@sender.example"), row("192.0.2.1"))
	e.now = today // 02:00 UTC, past the hour of the run (0)
	e.rep.opt.Tick = 5 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.rep.Run(ctx) }()
	for i := 0; ; i++ {
		if q := e.queued(t); len(q) == 1 {
			break
		}
		if i > 4000 {
			t.Fatal("the job sent nothing")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Recorded while running: merged at the end, kept for tomorrow's run.
	e.store.RecordDMARC(pub("mailto:dmarc@sender.example"), row("192.0.2.2"))
	cancel()
	<-done
	snap, err := e.store.Read(func(string) bool { return true })
	if err != nil || len(snap.DMARC) != 1 || snap.DMARC["2026-12-04|sender.example"] == nil {
		t.Fatalf("%+v %v", snap, err)
	}
	if q := e.queued(t); len(q) != 1 {
		t.Fatalf("sent %d reports, want 1 (once a day)", len(q))
	}
}
