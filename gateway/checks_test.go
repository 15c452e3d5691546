package gateway

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"moat/internal/dnsres"
	"moat/internal/dnstest"
	"moat/internal/smtptest"
	"moat/policy"
	"moat/policy/dkim"
	"moat/policy/dkimsign"
	"moat/rules"
)

// withChecks turns the checks on, with a real DNS server and the rule
// file text given (may be empty).
func withChecks(t *testing.T, srv *dnstest.Server, ruleText string, extra func(*Checks)) func(*Options) {
	t.Helper()
	eng := loadRules(t, ruleText, rules.LoadOptions{})
	res, err := dnsres.New(dnsres.Config{Servers: []string{srv.Addr()}, Timeout: 300 * time.Millisecond, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	return func(o *Options) {
		o.Checks = &Checks{
			Resolver:   res,
			Rules:      eng,
			AuthservID: "mx.example.org",
			Timeout:    2 * time.Second,
		}
		if extra != nil {
			extra(o.Checks)
		}
	}
}

// sendRaw runs one transaction and returns the final reply text.
func sendRaw(t *testing.T, addr, from, to, msg string) (int, string) {
	t.Helper()
	rc := smtptest.DialRaw(t, addr)
	rc.Expect("EHLO client.far.example", 250, "")
	if code, text := rc.Cmd("MAIL FROM:<" + from + ">"); code != 250 {
		return code, text
	}
	if code, text := rc.Cmd("RCPT TO:<" + to + ">"); code != 250 {
		return code, text
	}
	rc.Expect("DATA", 354, "")
	rc.Send(msg)
	return rc.Cmd(".")
}

const farMsg = "From: Boss <boss@far.example>\r\nTo: alice@example.org\r\nSubject: pay now\r\n" +
	"Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=far.example; dmarc=pass header.from=far.example\r\n" +
	"Authentication-Results: other.example; spf=fail\r\n\r\nbody\r\n"

func TestDMARCRejectByDefaultPolicy(t *testing.T) {
	dnsSrv := dnstest.NewServer(t)
	dnsSrv.Add(`far.example. 300 IN TXT "v=spf1 ip4:192.0.2.1 -all"`,
		`_dmarc.far.example. 300 IN TXT "v=DMARC1; p=reject"`)
	ts := startServer(t, withChecks(t, dnsSrv, "", nil))
	code, text := sendRaw(t, ts.addr, "boss@far.example", "alice@example.org", farMsg)
	if code != 550 || !strings.Contains(text, "5.7.1") || !strings.Contains(text, "DMARC") {
		t.Fatalf("got %q, want 550 5.7.1 naming DMARC", text)
	}
	if !regexp.MustCompile(`\[incident [A-Z0-9]{10}\]`).MatchString(text) {
		t.Errorf("no incident id in %q", text)
	}
	if len(ts.spool.all()) != 0 {
		t.Fatal("rejected message spooled")
	}
}

func TestDMARCTemperrorIsTemporary(t *testing.T) {
	dnsSrv := dnstest.NewServer(t)
	dnsSrv.Add(`far.example. 300 IN TXT "v=spf1 -all"`)
	dnsSrv.Fail("_dmarc.far.example.", dns.TypeTXT, dnstest.ServFail)
	ts := startServer(t, withChecks(t, dnsSrv, "", nil))
	code, text := sendRaw(t, ts.addr, "boss@far.example", "alice@example.org", farMsg)
	if code != 451 || !strings.Contains(text, "4.7.") {
		t.Fatalf("got %q, want 451 4.7.x", text)
	}
}

func TestAuthenticationResultsWrittenAndForgeriesRemoved(t *testing.T) {
	dnsSrv := dnstest.NewServer(t)
	dnsSrv.Add(`far.example. 300 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"`,
		`_dmarc.far.example. 300 IN TXT "v=DMARC1; p=reject"`,
		`1.0.0.127.in-addr.arpa. 300 IN PTR client.far.example.`,
		`client.far.example. 300 IN A 127.0.0.1`)
	ts := startServer(t, withChecks(t, dnsSrv, "", nil))
	code, text := sendRaw(t, ts.addr, "boss@far.example", "alice@example.org", farMsg)
	if code != 250 {
		t.Fatalf("got %q", text)
	}
	data := string(ts.spool.all()[0].data)
	head, _, _ := strings.Cut(data, "\r\n\r\n")
	if strings.Count(head, "Authentication-Results: mx.example.org") != 1 {
		t.Fatalf("want exactly our one A-R header:\n%s", head)
	}
	for _, want := range []string{"spf=pass", "dmarc=pass", "iprev=pass", "Authentication-Results: other.example; spf=fail",
		"Received: from client.far.example (client.far.example [127.0.0.1])"} {
		if !strings.Contains(head, want) {
			t.Errorf("header lacks %q:\n%s", want, head)
		}
	}
	// Ours comes first, above the message's own fields.
	if strings.Index(head, "Authentication-Results: mx.example.org") > strings.Index(head, "From: Boss") {
		t.Errorf("our A-R is not on top:\n%s", head)
	}
}

const ruleFile = `
rules:
  - name: no-pills
    stage: mail
    when: sender.domain == "pills.example"
    action: reject
    reply: "550 5.7.1 We do not take mail from you"
  - name: hold-invoices
    stage: data
    when: subject contains "invoice"
    action: quarantine
  - name: tag-far
    stage: data
    when: from.domain == "far.example"
    action: add_header
    header: {name: X-Far, value: "yes"}
`

func TestRulesRejectQuarantineAndHeader(t *testing.T) {
	dnsSrv := dnstest.NewServer(t)
	q := &memSpool{}
	ts := startServer(t, withChecks(t, dnsSrv, ruleFile, func(c *Checks) { c.Quarantine = q }))
	code, text := sendRaw(t, ts.addr, "x@pills.example", "alice@example.org", farMsg)
	if code != 550 || !strings.Contains(text, "We do not take mail from you [incident ") {
		t.Fatalf("mail rule: %q", text)
	}
	code, text = sendRaw(t, ts.addr, "boss@far.example", "alice@example.org",
		"From: boss@far.example\r\nSubject: your invoice\r\n\r\nx\r\n")
	if code != 250 || len(q.all()) != 1 || len(ts.spool.all()) != 0 {
		t.Fatalf("quarantine: %q, %d quarantined, %d queued", text, len(q.all()), len(ts.spool.all()))
	}
	code, text = sendRaw(t, ts.addr, "boss@far.example", "alice@example.org", farMsg)
	if code != 250 {
		t.Fatalf("%q", text)
	}
	if !bytes.Contains(ts.spool.all()[0].data, []byte("\r\nX-Far: yes\r\n")) {
		t.Errorf("header not added:\n%s", ts.spool.all()[0].data)
	}
}

// Mail from a trusted network is not checked but signed, and the
// signature verifies against the published key.
func TestTrustedMailIsDKIMSigned(t *testing.T) {
	dnsSrv := dnstest.NewServer(t)
	priv, txt, err := dkimsign.GenerateKey("ed25519")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "k.pem")
	os.WriteFile(keyFile, priv, 0o600)
	signer, err := dkimsign.NewSigner([]dkimsign.Key{{Domain: "example.org", Selector: "s1", KeyFile: keyFile}})
	if err != nil {
		t.Fatal(err)
	}
	dnsSrv.Add(`s1._domainkey.example.org. 300 IN TXT "` + txt + `"`)
	ts := startServer(t, func(o *Options) {
		trusted(o)
		withChecks(t, dnsSrv, "", func(c *Checks) { c.Signer = signer })(o)
	})
	code, text := sendRaw(t, ts.addr, "alice@example.org", "someone@far.example",
		"From: Alice <alice@example.org>\r\nTo: someone@far.example\r\nSubject: hello\r\n\r\nHi.\r\n")
	if code != 250 {
		t.Fatalf("%q", text)
	}
	data := ts.spool.all()[0].data
	if bytes.Contains(data, []byte("Authentication-Results:")) {
		t.Error("trusted mail got inbound checks")
	}
	res := dkim.Verify(context.Background(), dnsresFor(t, dnsSrv), bytes.NewReader(data), dkim.Options{})
	if res.Result != policy.ResultPass || res.Signatures[0].Domain != "example.org" {
		t.Fatalf("signature does not verify: %+v\n%s", res, data)
	}
}

func dnsresFor(t *testing.T, srv *dnstest.Server) dnsres.Resolver {
	r, err := dnsres.New(dnsres.Config{Servers: []string{srv.Addr()}, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return r
}
