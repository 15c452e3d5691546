package gateway

import (
	"strings"
	"testing"

	"moat/internal/dnstest"
	"moat/policy/scanner"
)

// A quarantined message keeps why: the rule, the score, the incident id
// and the facts the rule read; an accepted one keeps nothing.
func TestQuarantineKeepsReason(t *testing.T) {
	dnsSrv := dnstest.NewServer(t)
	const rules = `
rules:
  - name: some-points
    stage: data
    when: subject contains "invoice"
    action: score
    score: 2.5
  - name: hold-invoices
    stage: data
    when: subject contains "invoice"
    action: quarantine
`
	q := &memSpool{}
	ts := startServer(t, withChecks(t, dnsSrv, rules, func(c *Checks) { c.Quarantine = q }))
	code, text := sendRaw(t, ts.addr, "boss@far.example", "alice@example.org",
		"From: boss@far.example\r\nSubject: your invoice\r\n\r\nx\r\n")
	if code != 250 || len(q.all()) != 1 {
		t.Fatalf("%d %q, %d quarantined", code, text, len(q.all()))
	}
	r := q.all()[0].env.Quarantine
	if r == nil || r.Rule != "hold-invoices" || r.Score != 2.5 || r.Incident == "" {
		t.Fatalf("reason %+v", r)
	}
	var found bool
	for _, f := range r.Facts {
		if strings.HasPrefix(f, "hold-invoices: ") && strings.Contains(f, "subject=your invoice") {
			found = true
		}
	}
	if !found {
		t.Errorf("facts %q lack the subject the rule read", r.Facts)
	}
	code, _ = sendRaw(t, ts.addr, "boss@far.example", "alice@example.org", "Subject: hello\r\n\r\nx\r\n")
	if code != 250 || len(ts.spool.all()) != 1 || ts.spool.all()[0].env.Quarantine != nil {
		t.Errorf("accepted message: %d, %d queued, reason %+v", code, len(ts.spool.all()), ts.spool.all())
	}
}

// A scanner's quarantine (after the rules) names the scanner.
func TestVirusQuarantineReason(t *testing.T) {
	sc := NewScanners(ScannersOptions{VirusAction: VirusQuarantine, Scanners: []ScannerSpec{spec("clamd", scanner.TypeClamd,
		&fakeScanner{scan: answer(scanner.Result{Action: "infected", Virus: true, VirusNames: []string{"Eicar-Signature"}})})}})
	q := &memSpool{}
	ts := startServer(t, func(o *Options) { o.Checks = &Checks{Scanners: sc, Quarantine: q} })
	if code, text := sendRaw(t, ts.addr, "a@far.example", "alice@example.org", "Subject: x\r\n\r\nX5O!P%@AP\r\n"); code != 250 {
		t.Fatalf("%d %s", code, text)
	}
	if all := q.all(); len(all) != 1 || all[0].env.Quarantine == nil || all[0].env.Quarantine.Rule != "scanner:virus" {
		t.Fatalf("quarantined %+v", all)
	}
}
