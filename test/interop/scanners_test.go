//go:build interop

package interop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"moat/internal/reply"
	"moat/internal/smtptest"
	"moat/policy/scanner"
	"moat/policy/scanner/clamd"
	"moat/policy/scanner/milter"
	"moat/policy/scanner/rspamd"
	"moat/policy/scanner/spamd"
	"moat/test/testenv"
)

// moat's scanner clients (policy/scanner/...) against the real daemons
// from Debian (issue 22 item 5), then moat itself with `scanners:`
// configured, end to end over SMTP.

// scanTimeout is generous: the first scans of spamd and rspamd warm
// their rules up on a machine shared with other jobs. No assertion is
// about time.
const scanTimeout = 60 * time.Second

// scanRequest is a Request as the gateway builds it at DATA.
func scanRequest(msg []byte) *scanner.Request {
	return &scanner.Request{
		Message:    msg,
		ClientIP:   netip.MustParseAddr("127.0.0.1"),
		ClientPort: 40000,
		ClientName: "client.test",
		HELO:       "client.test",
		Sender:     "sender@client.test",
		Recipients: []string{"alice@moat.test"},
		QueueID:    "SCANTEST1",
		Hostname:   "moat.test",
	}
}

// scan runs one Scan under scanTimeout and fails the test on an error.
func scan(t *testing.T, s scanner.Scanner, msg []byte) *scanner.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scanTimeout)
	defer cancel()
	res, err := s.Scan(ctx, scanRequest(msg))
	if err != nil {
		t.Fatalf("%s: Scan: %v (kind %s)", s.Name(), err, scanner.KindOf(err))
	}
	if res == nil {
		t.Fatalf("%s: Scan returned no result and no error", s.Name())
	}
	return res
}

// ping runs Ping under scanTimeout and fails the test on an error.
func ping(t *testing.T, s scanner.Scanner) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scanTimeout)
	defer cancel()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("%s: Ping: %v", s.Name(), err)
	}
}

func cfg(name, typ, addr string) scanner.Config {
	return scanner.Config{Name: name, Type: typ, Address: addr, Timeout: scanTimeout, OnError: "tempfail"}
}

// TestClamdClient: EICAR in the body and as a base64 attachment is a
// virus with the signature's name, a clean message is clean, over TCP
// and over clamd's unix socket (INSTREAM, PING).
func TestClamdClient(t *testing.T) {
	cd := testenv.StartClamd(t)
	t.Logf("clamd started in %s", cd.Startup.Round(time.Millisecond))
	for _, addr := range []string{cd.Addr, "unix:" + cd.Socket} {
		t.Run(strings.SplitN(addr, ":", 2)[0], func(t *testing.T) {
			c, err := clamd.New(cfg("clamav", "clamd", addr))
			if err != nil {
				t.Fatal(err)
			}
			if c.Name() != "clamav" {
				t.Errorf("Name() = %q", c.Name())
			}
			ping(t, c)
			for name, msg := range map[string][]byte{"body": eicarMessage(), "attachment": eicarAttachment()} {
				res := scan(t, c, msg)
				if !res.Virus || !slices.Contains(res.VirusNames, testenv.EICARSignature) || res.Action != "infected" {
					t.Errorf("EICAR in the %s: %+v, want virus %s, action infected\n%s", name, res, testenv.EICARSignature, cd.Log())
				}
			}
			res := scan(t, c, cleanMessage())
			if res.Virus || len(res.VirusNames) != 0 || res.Action != "clean" {
				t.Errorf("clean message: %+v, want clean", res)
			}
		})
	}
}

// TestClamavMilterClient: clamav-milter (OnInfected Reject, RejectMsg)
// answers EICAR with a reject and its reply (SMFIR_REPLYCODE, naming the
// signature), a clean message with an accept; Ping negotiates the
// options.
func TestClamavMilterClient(t *testing.T) {
	cd := testenv.StartClamd(t)
	cm := testenv.StartClamavMilter(t, cd.Addr)
	t.Logf("clamd started in %s, clamav-milter in %s", cd.Startup.Round(time.Millisecond), cm.Startup.Round(time.Millisecond))
	c, err := milter.New(cfg("clamav-milter", "milter", cm.Addr))
	if err != nil {
		t.Fatal(err)
	}
	ping(t, c)
	res := scan(t, c, eicarMessage())
	if res.Action != "reject" {
		t.Errorf("EICAR: action %q, want reject (%+v)\nmilter log:\n%s", res.Action, res, cm.Log())
	}
	if r := res.Reply; r == nil {
		t.Errorf("EICAR: no reply from the milter, want its 550 5.7.1 (%+v)", res)
	} else if r.Code != 550 || r.Enhanced != (reply.Enhanced{5, 7, 1}) || !strings.Contains(r.Text, testenv.EICARSignature) {
		t.Errorf("EICAR: the milter's reply %d %s %q, want 550 5.7.1 naming %s", r.Code, r.Enhanced, r.Text, testenv.EICARSignature)
	}
	res = scan(t, c, cleanMessage())
	if res.Action != "accept" && res.Action != "continue" {
		t.Errorf("clean message: action %q, want accept (%+v)\nmilter log:\n%s", res.Action, res, cm.Log())
	}
	if res.Reply != nil {
		t.Errorf("clean message: a reply %+v", res.Reply)
	}
	// The same connection pattern again: the milter answers every
	// message on its own session.
	for i := range 3 {
		if res := scan(t, c, eicarAttachment()); res.Action != "reject" {
			t.Errorf("EICAR attachment, round %d: action %q, want reject", i, res.Action)
		}
	}
}

// TestSpamdClient: GTUBE is spam with the GTUBE test among the symbols
// (SYMBOLS) and a score over the threshold; a clean message is ham; the
// CHECK command gives the score without symbols.
func TestSpamdClient(t *testing.T) {
	sd := testenv.StartSpamd(t)
	t.Logf("spamd started in %s", sd.Startup.Round(time.Millisecond))
	conf := cfg("spamassassin", "spamd", sd.Addr)
	conf.Command = "SYMBOLS"
	c, err := spamd.New(conf)
	if err != nil {
		t.Fatal(err)
	}
	ping(t, c)
	res := scan(t, c, gtubeMessage())
	if res.Action != "spam" || !res.HasScore || res.Score < res.Threshold || !slices.Contains(res.Symbols, "GTUBE") {
		t.Errorf("GTUBE: %+v, want spam with GTUBE\n%s", res, sd.Log())
	}
	res = scan(t, c, cleanMessage())
	if res.Action != "ham" || !res.HasScore || res.Score >= res.Threshold {
		t.Errorf("clean message: %+v, want ham under the threshold", res)
	}
	if !slices.IsSorted(res.Symbols) {
		t.Errorf("symbols not sorted: %v", res.Symbols)
	}

	conf.Command = "CHECK"
	conf.Name = "spamassassin-check"
	c, err = spamd.New(conf)
	if err != nil {
		t.Fatal(err)
	}
	res = scan(t, c, gtubeMessage())
	if res.Action != "spam" || !res.HasScore || res.Score < res.Threshold {
		t.Errorf("GTUBE with CHECK: %+v, want spam", res)
	}
}

// TestRspamdClient: GTUBE gets rspamd's reject action and the GTUBE
// symbol, a clean message "no action" under the reject score, through
// the URL and the host:port address forms.
func TestRspamdClient(t *testing.T) {
	rs := testenv.StartRspamd(t, testenv.RspamdOptions{})
	t.Logf("rspamd started in %s", rs.Startup.Round(time.Millisecond))
	for _, addr := range []string{rs.URL, rs.Addr} {
		t.Run(strings.SplitN(addr, ":", 2)[0], func(t *testing.T) {
			c, err := rspamd.New(cfg("rspamd", "rspamd", addr))
			if err != nil {
				t.Fatal(err)
			}
			ping(t, c)
			res := scan(t, c, gtubeMessage())
			if res.Action != "reject" || !slices.Contains(res.Symbols, "GTUBE") || !res.HasScore {
				t.Errorf("GTUBE: %+v, want reject with GTUBE\n%s", res, rs.Log())
			}
			res = scan(t, c, cleanMessage())
			if res.Action != "no action" || !res.HasScore || res.Score >= res.Threshold {
				t.Errorf("clean message: %+v, want no action\n%s", res, rs.Log())
			}
			if len(res.Symbols) == 0 || !slices.IsSorted(res.Symbols) {
				t.Errorf("clean message: symbols %v, want some, sorted", res.Symbols)
			}
		})
	}
}

// TestScannersDown: a scanner that is not running is a connect error for
// every client, never a result.
func TestScannersDown(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	clients := []scanner.Scanner{}
	for _, mk := range []func() (scanner.Scanner, error){
		func() (scanner.Scanner, error) { return clamd.New(cfg("c", "clamd", addr)) },
		func() (scanner.Scanner, error) { return milter.New(cfg("m", "milter", addr)) },
		func() (scanner.Scanner, error) { return spamd.New(cfg("s", "spamd", addr)) },
		func() (scanner.Scanner, error) { return rspamd.New(cfg("r", "rspamd", "http://"+addr)) },
	} {
		c, err := mk()
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	for _, c := range clients {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := c.Scan(ctx, scanRequest(cleanMessage()))
		cancel()
		var se *scanner.Error
		if err == nil || !errors.As(err, &se) || res != nil {
			t.Errorf("%s down: result %+v, error %v; want a *scanner.Error", c.Name(), res, err)
			continue
		}
		if se.Kind != scanner.KindConnect {
			t.Errorf("%s down: kind %s, want connect (%v)", c.Name(), se.Kind, err)
		}
	}
}

// scannersYAML is moat's `scanners:` list for the given entries
// ("name type address").
func scannersYAML(entries ...string) string {
	var b strings.Builder
	b.WriteString("scanners:\n")
	for _, e := range entries {
		f := strings.Fields(e)
		fmt.Fprintf(&b, "  - {name: %s, type: %s, address: %q, timeout: 60s, on_error: tempfail, required: true}\n", f[0], f[1], f[2])
	}
	return b.String()
}

// sendMsg sends msg to moat from sender@client.test to alice@moat.test
// and returns Send's error (nil for 250 after DATA).
func sendMsg(m *testenv.Moat, msg []byte) error {
	return smtptest.Send(m.Addr, "sender@client.test", []string{"alice@moat.test"}, msg)
}

// gtubeRule refuses a message that both spam scanners call spam by
// GTUBE: proof that each one's facts reach the rules.
const gtubeRule = `rules:
  - name: gtube-both
    stage: data
    when: scanner.rspamd.action == "reject" && "GTUBE" in scanner.rspamd.symbols && scanner.spamassassin.action == "spam" && "GTUBE" in scanner.spamassassin.symbols && scanner.spamassassin.score >= scanner.spamassassin.threshold
    action: reject
    reply: "550 5.7.1 GTUBE seen by rspamd and SpamAssassin"
`

// TestMoatWithScanners: moat configured with clamd, spamd and rspamd
// (`scanners:`) refuses EICAR at the end of DATA with 554 5.7.1 (the
// default virus policy), refuses GTUBE by a rule on the two spam
// scanners' facts, and delivers a clean message; nothing of the refused
// ones reaches the mailbox.
func TestMoatWithScanners(t *testing.T) {
	dns := testenv.StartDNS(t)
	sc := testenv.StartScanners(t, dns.Addr())
	ruleFile := filepath.Join(t.TempDir(), "50-gtube.yaml")
	if err := os.WriteFile(ruleFile, []byte(gtubeRule), 0o644); err != nil {
		t.Fatal(err)
	}
	m := testenv.NewMoat(t, testenv.MoatBinary(t), testenv.MoatOptions{
		LocalDomain: "moat.test",
		Users:       []string{"alice@moat.test"},
		Admin:       true,
		Extra: scannersYAML("clamav clamd "+sc.Clamd.Addr, "spamassassin spamd "+sc.Spamd.Addr,
			"rspamd rspamd "+sc.Rspamd.URL) + fmt.Sprintf("rules: {paths: [%q]}\n", ruleFile),
	})
	m.Start()

	err := sendMsg(m, eicarMessage())
	var se *gosmtp.SMTPError
	if !errors.As(err, &se) || se.Code != 554 || se.EnhancedCode != (gosmtp.EnhancedCode{5, 7, 1}) ||
		!strings.HasPrefix(err.Error(), "end of DATA") {
		t.Fatalf("EICAR: %v, want 554 5.7.1 at the end of DATA\nmoat log:\n%s", err, m.LogTail(30))
	}
	t.Logf("EICAR refused: %v", err)
	err = sendMsg(m, gtubeMessage())
	if !errors.As(err, &se) || se.Code != 550 || !strings.Contains(se.Message, "GTUBE seen by rspamd and SpamAssassin") {
		t.Fatalf("GTUBE: %v, want the rule's 550\nmoat log:\n%s", err, m.LogTail(30))
	}
	if err := sendMsg(m, cleanMessage()); err != nil {
		t.Fatalf("clean message: %v\nmoat log:\n%s", err, m.LogTail(30))
	}
	var files []string
	if !testenv.WaitFor(30*time.Second, func() bool { files = m.MaildirNew("alice@moat.test"); return len(files) >= 1 }) {
		t.Fatalf("the clean message was not delivered\nmoat log:\n%s", m.LogTail(30))
	}
	time.Sleep(300 * time.Millisecond)
	if files = m.MaildirNew("alice@moat.test"); len(files) != 1 {
		t.Fatalf("mailbox has %d messages, want 1 (the clean one)", len(files))
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "Subject: Lunch on Friday") || strings.Contains(string(b), "EICAR") || strings.Contains(string(b), "GTUBE") {
		t.Errorf("delivered message is not the clean one:\n%s", b)
	}
	// Every scanner is required and answers: ready.
	if m.Admin != "" {
		if code, body := httpGet(t, "http://"+m.Admin+"/readyz"); code != 200 {
			t.Errorf("/readyz: %d %s", code, body)
		}
	}
}

// httpGet returns the status and (at most 4 KiB of) the body of a GET.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b)
}

// TestMoatScannerDown: with clamd stopped under it, moat (on_error:
// tempfail) answers every message 451 4.7.0 at the end of DATA and delivers
// none of them: nothing accepted unscanned, nothing lost (the client
// keeps each message).
func TestMoatScannerDown(t *testing.T) {
	cd := testenv.StartClamd(t)
	m := testenv.NewMoat(t, testenv.MoatBinary(t), testenv.MoatOptions{
		LocalDomain: "moat.test",
		Users:       []string{"alice@moat.test"},
		Extra:       scannersYAML("clamav clamd " + cd.Addr),
	})
	m.Start()
	if err := sendMsg(m, cleanMessage()); err != nil {
		t.Fatalf("clean message with clamd up: %v\nmoat log:\n%s", err, m.LogTail(30))
	}
	cd.Stop()
	const n = 100
	for i := range n {
		err := sendMsg(m, cleanMessage())
		var se *gosmtp.SMTPError
		if !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (gosmtp.EnhancedCode{4, 7, 0}) || !strings.HasPrefix(err.Error(), "end of DATA") {
			t.Fatalf("message %d with clamd down: %v, want 451 4.7.0 at the end of DATA\nmoat log:\n%s", i, err, m.LogTail(30))
		}
	}
	if !testenv.WaitFor(30*time.Second, func() bool { return len(m.MaildirNew("alice@moat.test")) >= 1 }) {
		t.Fatalf("the message sent while clamd was up was not delivered\nmoat log:\n%s", m.LogTail(30))
	}
	time.Sleep(500 * time.Millisecond)
	if got := len(m.MaildirNew("alice@moat.test")); got != 1 {
		t.Errorf("mailbox has %d messages, want 1: a message was accepted while clamd was down", got)
	}
}

// TestMoatWithClamavMilter: moat with clamav-milter as its one scanner
// refuses EICAR at the end of DATA with the milter's own reply (550
// 5.7.1 and its text) and accepts a clean message.
func TestMoatWithClamavMilter(t *testing.T) {
	cd := testenv.StartClamd(t)
	cm := testenv.StartClamavMilter(t, cd.Addr)
	m := testenv.NewMoat(t, testenv.MoatBinary(t), testenv.MoatOptions{
		LocalDomain: "moat.test",
		Users:       []string{"alice@moat.test"},
		Extra:       scannersYAML("clamav-milter milter " + cm.Addr),
	})
	m.Start()
	err := sendMsg(m, eicarAttachment())
	var se *gosmtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (gosmtp.EnhancedCode{5, 7, 1}) ||
		!strings.Contains(se.Message, testenv.EICARSignature) || !strings.HasPrefix(err.Error(), "end of DATA") {
		t.Fatalf("EICAR through clamav-milter: %v, want the milter's 550 5.7.1 at the end of DATA\nmoat log:\n%s\nmilter log:\n%s",
			err, m.LogTail(30), cm.Log())
	}
	t.Logf("EICAR refused: %v", err)
	if err := sendMsg(m, cleanMessage()); err != nil {
		t.Fatalf("clean message: %v\nmoat log:\n%s", err, m.LogTail(30))
	}
	if !testenv.WaitFor(30*time.Second, func() bool { return len(m.MaildirNew("alice@moat.test")) == 1 }) {
		t.Fatalf("the clean message was not delivered\nmoat log:\n%s", m.LogTail(30))
	}
}
