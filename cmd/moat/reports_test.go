package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moat/gateway"
	"moat/internal/dnsres"
	"moat/internal/dnstest"
	"moat/internal/smtptest"
	"moat/policy"
	"moat/policy/content"
	"moat/policy/dkim"
	"moat/policy/dkimsign"
	"moat/relay/dmarcrpt"
	"moat/relay/reports"
	"moat/relay/tlsrpt"
	"moat/rules"
)

// reportsConfig writes a configuration with DMARC and TLS reports on,
// a DKIM key for example.org published in dnsSrv, and the relay domain
// reports.test routed to sink.
func reportsConfig(t *testing.T, dnsSrv *dnstest.Server, sinkAddr string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	priv, txt, err := dkimsign.GenerateKey("ed25519")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "example.org.key")
	if err := os.WriteFile(keyFile, priv, 0o600); err != nil {
		t.Fatal(err)
	}
	dnsSrv.AddTXT("sel._domainkey.example.org.", txt)
	cfg := `
hostname: mx.example.org
data_dir: ` + dir + `
admin: {address: ""}
listeners:
  - {name: mx, address: "127.0.0.1:0", mode: mx, tls: none}
trusted_networks: []
domains:
  local: [example.org]
  relay: {reports.test: sink}
routes:
  sink: {type: smtp, address: "` + sinkAddr + `", tls: none}
dns:
  servers: ["` + dnsSrv.Addr() + `"]
  timeout: 500ms
mailboxes:
  users:
    alice@example.org: {}
dkim:
  sign: [{domain: example.org, selector: sel, key_file: ` + keyFile + `}]
reports:
  from: dmarc-reports@example.org
  org_name: Example Org
  contact: postmaster@example.org
  dmarc: {enabled: true}
  tlsrpt: {enabled: true}
`
	path := filepath.Join(dir, "moat.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, dir
}

// TestReportsEndToEnd: a message is evaluated and recorded, TLS results
// are recorded, the run queues one DMARC and one TLS report, the queue
// delivers them to an SMTP sink, and each is signed, well formed and
// counts what happened.
func TestReportsEndToEnd(t *testing.T) {
	dnsSrv := dnstest.NewServer(t)
	dnsSrv.AddTXT("far.example.", "v=spf1 ip4:127.0.0.1 -all")
	dnsSrv.AddTXT("_dmarc.far.example.", "v=DMARC1; p=reject; rua=mailto:dmarc@reports.test!10m")
	dnsSrv.AddTXT("far.example._report._dmarc.reports.test.", "v=DMARC1")
	dnsSrv.AddTXT("_smtp._tls.reports.test.", "v=TLSRPTv1; rua=mailto:tls@reports.test")
	sink := smtptest.StartSink(t)
	path, _ := reportsConfig(t, dnsSrv, sink.Addr)
	a := startApp(t, path)

	send(t, a.gw.Addr("mx").String(), "sender@far.example", []string{"alice@example.org"}, e2eMsg)
	sink2 := a.reports.tlsSink()
	if sink2 == nil {
		t.Fatal("no TLS sink with reports.tlsrpt.enabled")
	}
	// Outbound delivery reports each session's TLS result to that store.
	if got := a.smtpOptions(a.cfg.Load(), "mx").TLSResults; got != sink2 {
		t.Fatalf("MX delivery reports TLS results to %v, not the report store", got)
	}
	sink2.RecordTLS(tlsrpt.Result{PolicyDomain: "reports.test", Policy: tlsrpt.PolicyNotFound, MXHost: "mx.reports.test", ReceivingIP: "192.0.2.1", Success: true})
	sink2.RecordTLS(tlsrpt.Result{PolicyDomain: "reports.test", Policy: tlsrpt.PolicyNotFound, MXHost: "mx.reports.test", ReceivingIP: "192.0.2.1",
		Failure: tlsrpt.StartTLSNotSupported})

	// The message is recorded once the data stage decided; wait (bounded)
	// for the mailbox, which comes after.
	waitMaildir(t, filepath.Dir(path), "alice@example.org", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := a.reports.reporter.Send(ctx, reports.SendOptions{Day: reports.Day(time.Now())})
	if err != nil {
		t.Fatal(err)
	}
	if out.Sent != 2 {
		t.Fatalf("sent %d reports, want 2 (%+v)", out.Sent, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for sink.Count() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("sink got %d messages, want 2", sink.Count())
		}
		time.Sleep(20 * time.Millisecond)
	}
	res := dnsres.ForTest(dnsSrv.Addr())
	var gotDMARC, gotTLS bool
	for id := range sink.Seen() {
		raw := sink.Message(id)
		d := dkim.Verify(ctx, res, bytes.NewReader(raw), dkim.Options{})
		if d.Result != policy.ResultPass || d.Signatures[0].Domain != "example.org" {
			t.Fatalf("report %s: DKIM %+v", id, d)
		}
		m, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get("From") != "dmarc-reports@example.org" {
			t.Errorf("From: %q", m.Header.Get("From"))
		}
		att, ctype, name := attachment(t, m)
		doc := gunzip(t, att)
		switch {
		case strings.HasPrefix(m.Header.Get("Subject"), "Report Domain: far.example Submitter: example.org Report-ID: <"):
			gotDMARC = true
			if ctype != "application/gzip" || !strings.HasPrefix(name, "example.org!far.example!") || !strings.HasSuffix(name, ".xml.gz") {
				t.Errorf("DMARC attachment %s %q", ctype, name)
			}
			var f dmarcrpt.Feedback
			if err := xml.Unmarshal(doc, &f); err != nil {
				t.Fatal(err)
			}
			if f.Policy.Domain != "far.example" || f.Policy.P != "reject" || len(f.Records) != 1 {
				t.Fatalf("feedback %+v", f)
			}
			r := f.Records[0]
			if r.Row.SourceIP != "127.0.0.1" || r.Row.Count != 1 || r.Row.Policy.SPF != "pass" ||
				r.Row.Policy.Disposition != "none" || r.Identifiers.HeaderFrom != "far.example" ||
				len(r.AuthResults.SPF) != 1 || r.AuthResults.SPF[0].Result != "pass" {
				t.Errorf("record %+v", r)
			}
		case m.Header.Get("TLS-Report-Domain") == "reports.test":
			gotTLS = true
			if m.Header.Get("TLS-Report-Submitter") != "example.org" || ctype != "application/tlsrpt+gzip" ||
				!strings.HasSuffix(name, ".json.gz") {
				t.Errorf("TLS report headers %v, %s %q", m.Header, ctype, name)
			}
			var rep tlsrpt.Report
			if err := json.Unmarshal(doc, &rep); err != nil {
				t.Fatal(err)
			}
			if len(rep.Policies) != 1 || rep.Policies[0].Summary.Success != 1 || rep.Policies[0].Summary.Failure != 1 ||
				rep.Policies[0].FailureDetails[0].ResultType != tlsrpt.StartTLSNotSupported {
				t.Errorf("TLS report %+v", rep)
			}
		default:
			t.Errorf("unexpected message %v", m.Header)
		}
	}
	if !gotDMARC || !gotTLS {
		t.Fatalf("dmarc %v tls %v", gotDMARC, gotTLS)
	}
	// The entries were deleted once queued: a second run sends nothing.
	if out, err := a.reports.reporter.Send(ctx, reports.SendOptions{Day: reports.Day(time.Now())}); err != nil || out.Sent != 0 {
		t.Fatalf("second run: %+v %v", out, err)
	}
}

// attachment returns the second part of a multipart message: its
// decoded body, media type and file name.
func attachment(t *testing.T, m *mail.Message) ([]byte, string, string) {
	t.Helper()
	_, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	var parts int
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			t.Fatalf("no attachment in %d parts", parts)
		}
		if err != nil {
			t.Fatal(err)
		}
		if parts++; parts == 2 {
			ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
			b, err := io.ReadAll(p) // multipart decodes quoted-printable only
			if err != nil {
				t.Fatal(err)
			}
			dec := make([]byte, len(b))
			n, err := base64Decode(dec, b)
			if err != nil {
				t.Fatal(err)
			}
			return dec[:n], ct, p.FileName()
		}
	}
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func base64Decode(dst, src []byte) (int, error) {
	return base64.StdEncoding.Decode(dst, bytes.ReplaceAll(src, []byte("\r\n"), nil))
}

func reportTxn(t *testing.T, raw string, d policy.DMARC) *gateway.Txn {
	t.Helper()
	m, err := content.Parse([]byte(raw), content.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	tx := &gateway.Txn{}
	tx.Facts.Conn.IP = netip.MustParseAddr("192.0.2.9")
	tx.Facts.Message = m
	tx.Facts.DMARC = d
	tx.Facts.SPF = policy.SPF{Result: policy.ResultPass, Domain: "bounce.far.example", Identity: "mailfrom"}
	tx.Facts.DKIM = policy.DKIM{Result: policy.ResultFail, Signatures: []policy.DKIMSignature{{Result: policy.ResultFail, Domain: "Far.Example", Selector: "s1"}}}
	return tx
}

// TestDMARCRow: what one message adds to a report, and what adds
// nothing (no record, temporary results, trusted clients, a tempfail
// that comes again, a message that is itself a report).
func TestDMARCRow(t *testing.T) {
	pub := &policy.DMARCPublished{Domain: "far.example", ADKIM: "r", ASPF: "r", P: "reject", Pct: 100, RUA: []string{"mailto:d@far.example"}}
	fail := policy.DMARC{Result: policy.ResultFail, Policy: "reject", Domain: "far.example", Sampled: true, Published: pub}
	const msg = "From: a@far.example\r\nSubject: hi\r\n\r\nbody\r\n"

	tx := reportTxn(t, msg, fail)
	reject := &rules.Verdict{Action: rules.Reject}
	tx.Verdict = *reject
	p, r, ok := dmarcRow(tx, errors.New("550"))
	if !ok || r.Disposition != "reject" || r.Reason != "" || r.DKIM != "fail" || r.SPF != "fail" || p.Domain != "far.example" ||
		r.SourceIP != "192.0.2.9" || r.DKIMAuth[0].Domain != "far.example" || r.SPFAuth[0].Scope != "mfrom" {
		t.Fatalf("rejected: %+v %+v %v", p, r, ok)
	}
	tx = reportTxn(t, msg, fail) // delivered although p=reject: local policy
	if _, r, ok = dmarcRow(tx, nil); !ok || r.Disposition != "none" || r.Reason != "local_policy" {
		t.Fatalf("delivered: %+v", r)
	}
	tx.Quarantine = "dmarc-quarantine"
	if _, r, _ = dmarcRow(tx, nil); r.Disposition != "quarantine" || r.Reason != "local_policy" {
		t.Fatalf("quarantined: %+v", r)
	}
	sampled := fail
	sampled.Sampled, sampled.Policy = false, "quarantine"
	tx = reportTxn(t, msg, sampled)
	tx.Junk = true
	if _, r, _ = dmarcRow(tx, nil); r.Disposition != "quarantine" || r.Reason != "sampled_out" {
		t.Fatalf("sampled out: %+v", r)
	}
	for name, tx := range map[string]*gateway.Txn{
		"no record":  reportTxn(t, msg, policy.DMARC{Result: policy.ResultNone}),
		"temperror":  reportTxn(t, msg, policy.DMARC{Result: policy.ResultTempError, Published: pub}),
		"tlsrpt":     reportTxn(t, "From: r@far.example\r\nTLS-Report-Domain: example.org\r\nSubject: x\r\n\r\n", fail),
		"dmarc rpt":  reportTxn(t, "From: r@far.example\r\nSubject: Report Domain: example.org Submitter: far.example Report-ID: <1>\r\n\r\n", fail),
		"trusted":    func() *gateway.Txn { x := reportTxn(t, msg, fail); x.Facts.Conn.Trusted = true; return x }(),
		"tempfailed": reportTxn(t, msg, fail),
	} {
		var refusal error
		if name == "tempfailed" {
			refusal = errors.New("451")
			tx.Verdict = rules.Verdict{Action: rules.Tempfail}
		}
		if _, _, ok := dmarcRow(tx, refusal); ok {
			t.Errorf("%s: recorded", name)
		}
	}
}

// TestReportDryRunCommand: `moat dmarc report --dry-run` prints what the
// store holds; without --dry-run it refuses.
func TestReportDryRunCommand(t *testing.T) {
	dnsSrv := dnstest.NewServer(t)
	sink := smtptest.StartSink(t)
	path, dir := reportsConfig(t, dnsSrv, sink.Addr)
	store := reports.Open(reports.DBPath(dir), nil)
	store.RecordDMARC(dmarcrpt.Published{Domain: "far.example", ADKIM: "r", ASPF: "r", P: "none", Pct: 100, RUA: []string{"mailto:d@far.example"}},
		dmarcrpt.Row{SourceIP: "192.0.2.1", Disposition: "none", DKIM: "pass", SPF: "pass", HeaderFrom: "far.example"})
	if err := store.Flush(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	root := rootCommand()
	root.SetOut(&out)
	root.SetArgs([]string{"dmarc", "report", "--dry-run", "--config", path, "--day", reports.Day(time.Now())})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"=== dmarc report for far.example", "to: d@far.example", "from: dmarc-reports@example.org",
		"<source_ip>192.0.2.1</source_ip>", "1 report(s) would be sent"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	root = rootCommand()
	root.SetOut(io.Discard)
	root.SetArgs([]string{"tlsrpt", "report", "--config", path})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "--dry-run") {
		t.Fatalf("without --dry-run: %v", err)
	}
}

// TestReportsConfigErrors: the reports section is validated with the
// rest, errors naming the key.
func TestReportsConfigErrors(t *testing.T) {
	path, _ := testConfig(t, "reports: {hour: 25, from: \"x\", dmarc: {enabled: true}}\n")
	_, err := loadConfig(path)
	if err == nil || !strings.Contains(err.Error(), "reports.hour") || !strings.Contains(err.Error(), "reports.from") {
		t.Fatalf("%v", err)
	}
}
