//go:build interop

package interop

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"moat/internal/smtptest"
	"moat/test/testenv"
)

// TestPostfixBackend: moat in front of an existing mail server, a
// private Postfix instance with two virtual mailboxes of corp.test. The
// route verifies recipients with a callahead (MAIL FROM:<>, RCPT TO, RSET
// against Postfix, relay/verify), so that:
//
//	(a) mail for a known user is relayed and lands in Postfix's Maildir,
//	    and Postfix logs the original client moat told it with XFORWARD
//	    (Postfix XFORWARD_README) as orig_client=;
//	(b) an unknown user gets 550 at moat's RCPT, the answer Postfix gave
//	    the probe (RFC 5321 §3.6.2: no accept-then-bounce), and nothing
//	    is queued;
//	(c) with Postfix stopped, an uncached recipient gets 4xx at RCPT
//	    (RFC 5321 §4.2.5: the answer is unknown, not negative) while a
//	    recipient the cache knows is accepted and queued; once Postfix
//	    is back, `moat queue flush` delivers it;
//	(d) a burst of 60 messages from 12 clients at once, for alice (a
//	    recipient the callahead cache knows), reaches Postfix
//	    once each, with more deliveries than sessions to the backend,
//	    so that transactions follow final dots in the same write (RFC
//	    2920 §3.1, relay/smtpout/chain.go; moat_delivery_chained_total
//	    counts them), and Postfix logs no improper pipelining.
func TestPostfixBackend(t *testing.T) {
	pf := testenv.StartPostfix(t, "corp.test", []string{"alice", "bob"})
	m := testenv.NewMoat(t, testenv.MoatBinary(t), testenv.MoatOptions{
		Relay:      map[string]string{"corp.test": "backend"},
		Routes:     map[string]string{"backend": "smtp " + pf.Addr},
		RouteExtra: map[string]string{"backend": "verify_recipients: callahead"},
		Admin:      true,
	})
	m.Start()
	logs := func() string {
		return "\npostfix log:\n" + pf.Log() + "\nmoat log:\n" + m.LogTail(40)
	}

	// (a) A known user: relayed, delivered by Postfix's virtual(8).
	marker := fmt.Sprintf("postfix-body-%d", time.Now().UnixNano())
	msg := smtptest.Message("sender@client.test", "alice@corp.test", marker+"@client.test", marker+"\r\n")
	if err := smtptest.Send(m.Addr, "sender@client.test", []string{"alice@corp.test"}, msg); err != nil {
		t.Fatalf("(a) send to alice: %v%s", err, logs())
	}
	var files []string
	if !testenv.WaitFor(30*time.Second, func() bool { files = pf.Delivered("alice@corp.test"); return len(files) == 1 }) {
		t.Fatalf("(a) Postfix Maildir of alice has %d new files, want 1%s", len(files), logs())
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(smtptest.Body(b), []byte(marker)) {
		t.Errorf("(a) Postfix's copy lacks the body %q:\n%s", marker, b)
	}
	// XFORWARD: Postfix's smtpd logs the original client moat told it
	// about next to the real one (moat, here also on 127.0.0.1, whose
	// name Postfix does not look up: smtpd_peername_lookup = no).
	if !testenv.WaitFor(10*time.Second, func() bool {
		return strings.Contains(pf.Log(), "client=unknown[127.0.0.1], orig_client=client.test[127.0.0.1]")
	}) {
		t.Errorf("(a) Postfix's log has no orig_client= from XFORWARD%s", logs())
	}

	// (b) An unknown user: 550 at RCPT, from Postfix's answer to the probe.
	ghost := smtptest.Message("sender@client.test", "ghost@corp.test", "ghost@client.test", "nobody home\r\n")
	err = smtptest.Send(m.Addr, "sender@client.test", []string{"ghost@corp.test"}, ghost)
	if code := smtptest.ReplyCode(err); code != 550 || !strings.HasPrefix(err.Error(), "RCPT ghost@corp.test") {
		t.Fatalf("(b) ghost@corp.test: got %v (code %d), want 550 at RCPT%s", err, code, logs())
	}
	var se *gosmtp.SMTPError
	if errors.As(err, &se) && se.EnhancedCode != (gosmtp.EnhancedCode{5, 1, 1}) {
		t.Errorf("(b) ghost@corp.test: %v, enhanced code %v, want 5.1.1", err, se.EnhancedCode)
	}
	if !testenv.WaitFor(10*time.Second, func() bool {
		return strings.Contains(pf.Log(), "<ghost@corp.test>: Recipient address rejected")
	}) {
		t.Errorf("(b) Postfix never refused ghost@corp.test: the 550 did not come from a callahead%s", logs())
	}
	if out, err := m.Queue("list"); err != nil || strings.Contains(out, "ghost@corp.test") {
		t.Errorf("(b) moat queue list: err %v, output mentions ghost:\n%s", err, out)
	}

	// (c) Postfix down.
	pf.Stop()
	err = smtptest.Send(m.Addr, "sender@client.test", []string{"bob@corp.test"},
		smtptest.Message("sender@client.test", "bob@corp.test", "bob@client.test", "bob\r\n"))
	if code := smtptest.ReplyCode(err); code/100 != 4 || !strings.HasPrefix(err.Error(), "RCPT bob@corp.test") {
		t.Fatalf("(c) uncached bob@corp.test with Postfix down: got %v (code %d), want 4xx at RCPT%s", err, code, logs())
	}
	marker2 := fmt.Sprintf("postfix-queued-%d", time.Now().UnixNano())
	msg2 := smtptest.Message("sender@client.test", "alice@corp.test", marker2+"@client.test", marker2+"\r\n")
	if err := smtptest.Send(m.Addr, "sender@client.test", []string{"alice@corp.test"}, msg2); err != nil {
		t.Fatalf("(c) cached alice@corp.test with Postfix down: %v, want accepted%s", err, logs())
	}
	var listed string
	if !testenv.WaitFor(30*time.Second, func() bool {
		out, err := m.Queue("list")
		listed = out
		// Queued and tried at least once against the stopped Postfix.
		return err == nil && strings.Contains(out, "alice@corp.test") && strings.Contains(strings.ToLower(out), "refused")
	}) {
		t.Fatalf("(c) moat queue list does not show alice's message deferred:\n%s%s", listed, logs())
	}
	t.Logf("(c) queued while Postfix is down:\n%s", listed)
	if n := len(pf.Delivered("alice@corp.test")); n != 1 {
		t.Fatalf("(c) alice has %d messages while Postfix is down, want 1", n)
	}

	pf.Start()
	if out, err := m.Queue("flush"); err != nil {
		t.Fatalf("(c) moat queue flush: %v\n%s", err, out)
	}
	if !testenv.WaitFor(30*time.Second, func() bool { files = pf.Delivered("alice@corp.test"); return len(files) == 2 }) {
		t.Fatalf("(c) after Postfix came back, alice has %d messages, want 2%s", len(files), logs())
	}
	found := false
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && bytes.Contains(smtptest.Body(b), []byte(marker2)) {
			found = true
		}
	}
	if !found {
		t.Errorf("(c) the queued message (%s) is not among alice's", marker2)
	}
	if !testenv.WaitFor(30*time.Second, func() bool {
		out, err := m.Queue("list")
		listed = out
		return err == nil && !strings.Contains(out, "alice@corp.test")
	}) {
		t.Errorf("(c) the delivered message is still queued:\n%s", listed)
	}

	// (d) A burst.
	const clients, each = 12, 5
	burst := fmt.Sprintf("burst-%d", time.Now().UnixNano())
	errs := make(chan error, clients*each)
	for c := range clients {
		go func() {
			for i := range each {
				id := fmt.Sprintf("%s-%d-%d", burst, c, i)
				errs <- smtptest.Send(m.Addr, "sender@client.test", []string{"alice@corp.test"},
					smtptest.Message("sender@client.test", "alice@corp.test", id+"@client.test", id+"\r\n"))
			}
		}()
	}
	for range clients * each {
		if err := <-errs; err != nil {
			t.Fatalf("(d) burst: %v%s", err, logs())
		}
	}
	count := func() (n int, ids map[string]int) {
		ids = map[string]int{}
		for _, f := range pf.Delivered("alice@corp.test") {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			body := string(smtptest.Body(b))
			if strings.Contains(body, burst) {
				n++
				ids[strings.TrimSpace(body)]++
			}
		}
		return n, ids
	}
	if !testenv.WaitFor(60*time.Second, func() bool { n, _ := count(); return n >= clients*each }) {
		n, _ := count()
		t.Fatalf("(d) alice has %d of the %d burst messages%s", n, clients*each, logs())
	}
	if n, ids := count(); n != clients*each || len(ids) != clients*each {
		t.Errorf("(d) %d burst messages at Postfix, %d distinct, want %d once each", n, len(ids), clients*each)
	}
	if strings.Contains(pf.Log(), "improper command pipelining") {
		t.Errorf("(d) Postfix complains of the pipelining:%s", logs())
	}
	resp, err := http.Get("http://" + m.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	chained := regexp.MustCompile(`(?m)^moat_delivery_chained_total\{route="backend"\} (\d+)$`).FindSubmatch(metrics)
	if chained == nil || string(chained[1]) == "0" {
		t.Errorf("(d) no transaction was chained to Postfix: %q", chained)
	} else {
		t.Logf("(d) %s of the %d burst transactions were chained", chained[1], clients*each)
	}
}
