package gateway

import (
	"context"
	"strings"
	"testing"

	"moat/internal/smtptest"
	"moat/relay/route"
)

// TestNonASCIIAddresses (issue 27 item 4, issue 23 item 8): an address
// with a non-ASCII octet is refused with 553 5.6.7 when MAIL did not
// carry SMTPUTF8 (RFC 6531 §3.5), for the sender and for each recipient;
// with SMTPUTF8 its domain must be valid U-labels as sent (RFC 5891
// §5.3-5.4: no UTS #46 mapping of what a peer sent), so the fullwidth
// letters, the fullwidth and ideographic full stops and the soft hyphen
// that the lookup mapping would quietly turn into "pf.test" are syntax
// errors (501 5.1.7 / 5.1.3). Invalid UTF-8 is refused always. The
// client is trusted: each of these was taken with 250 before.
func TestNonASCIIAddresses(t *testing.T) {
	variants := map[string]string{
		"fullwidth letters":  "\uff50\uff46.test",
		"fullwidth stop":     "pf\uff0etest",
		"ideographic stop":   "pf\u3002test",
		"soft hyphen":        "p\u00adf.test",
		"upper case U-label": "B\u00dcCHER.example",
	}
	ts := startServer(t, trusted)
	rc := smtptest.DialRaw(t, ts.addr)
	rc.Expect("EHLO c.example", 250, "SMTPUTF8")
	for name, d := range variants {
		// Without SMTPUTF8: 553 5.6.7 for the sender and the recipient.
		if _, text := rc.Cmd("MAIL FROM:<s@" + d + ">"); !strings.HasPrefix(text, "553 5.6.7") {
			t.Errorf("%s: MAIL without SMTPUTF8: %q, want 553 5.6.7", name, text)
			rc.Cmd("RSET")
		}
		rc.Expect("MAIL FROM:<s@far.example>", 250, "")
		if _, text := rc.Cmd("RCPT TO:<u@" + d + ">"); !strings.HasPrefix(text, "553 5.6.7") {
			t.Errorf("%s: RCPT without SMTPUTF8: %q, want 553 5.6.7", name, text)
		}
		rc.Expect("RSET", 250, "")
		// With SMTPUTF8: not a valid domain as sent.
		if _, text := rc.Cmd("MAIL FROM:<s@" + d + "> SMTPUTF8"); !strings.HasPrefix(text, "501 5.1.7") {
			t.Errorf("%s: MAIL with SMTPUTF8: %q, want 501 5.1.7", name, text)
			rc.Cmd("RSET")
		}
		rc.Expect("MAIL FROM:<s@far.example> SMTPUTF8", 250, "")
		if _, text := rc.Cmd("RCPT TO:<u@" + d + ">"); !strings.HasPrefix(text, "501 5.1.3") {
			t.Errorf("%s: RCPT with SMTPUTF8: %q, want 501 5.1.3", name, text)
		}
		rc.Expect("RSET", 250, "")
	}

	// A valid U-label domain or a non-ASCII local part: 553 5.6.7
	// without SMTPUTF8, taken with it.
	for _, a := range []string{"u@b\u00fccher.example", "\u00fc@far.example", "u@xn--bcher-kva.b\u00fccher.example"} {
		rc.Expect("MAIL FROM:<s@far.example>", 250, "")
		rc.Expect("RCPT TO:<"+a+">", 553, "5.6.7")
		rc.Expect("RSET", 250, "")
		rc.Expect("MAIL FROM:<"+a+">", 553, "5.6.7")
		rc.Expect("MAIL FROM:<"+a+"> SMTPUTF8", 250, "")
		rc.Expect("RCPT TO:<"+a+">", 250, "")
		rc.Expect("RSET", 250, "")
	}
	// An A-label domain is ASCII: no SMTPUTF8 needed.
	rc.Expect("MAIL FROM:<s@xn--bcher-kva.example>", 250, "")
	rc.Expect("RCPT TO:<u@xn--bcher-kva.example>", 250, "")
	rc.Expect("RSET", 250, "")
	// Invalid UTF-8: a syntax error, with or without SMTPUTF8.
	rc.Expect("MAIL FROM:<s@p\xfff.test> SMTPUTF8", 501, "5.1.7")
	rc.Expect("MAIL FROM:<s@far.example> SMTPUTF8", 250, "")
	rc.Expect("RCPT TO:<u\xc3@far.example>", 501, "5.1.3")
	rc.Expect("RSET", 250, "")
	// A bad A-label is no domain.
	rc.Expect("MAIL FROM:<s@far.example>", 250, "")
	rc.Expect("RCPT TO:<u@xn--ab.example>", 501, "5.1.3")
	rc.Expect("QUIT", 221, "")
}

// An untrusted client gets the same answers for a domain of ours:
// 553 5.6.7, not a relay refusal, for a non-ASCII local part without
// SMTPUTF8; and with it the message is taken.
func TestNonASCIILocalPartUntrusted(t *testing.T) {
	ts := startServer(t, nil)
	rc := smtptest.DialRaw(t, ts.addr)
	rc.Expect("EHLO c.example", 250, "")
	rc.Expect("MAIL FROM:<s@far.example>", 250, "")
	rc.Expect("RCPT TO:<\u00fc@corp.example>", 553, "5.6.7")
	rc.Expect("RCPT TO:<u@corp\uff0eexample>", 553, "5.6.7")
	rc.Expect("RSET", 250, "")
	rc.Expect("MAIL FROM:<s@far.example> SMTPUTF8", 250, "")
	rc.Expect("RCPT TO:<u@corp\uff0eexample>", 501, "5.1.3")
	rc.Expect("RCPT TO:<\u00fc@corp.example>", 250, "")
	rc.Expect("DATA", 354, "")
	rc.Send("Subject: x\r\n\r\nhi\r\n")
	rc.Expect(".", 250, "")
	got := ts.spool.all()
	if len(got) != 1 || !got[0].env.UTF8 || len(got[0].env.Recipients) != 1 {
		t.Fatalf("spooled %d", len(got))
	}
}

// TestNonASCIIRelay: with SMTPUTF8, a look-alike of our domain and a
// non-ASCII mailbox elsewhere are still relay attempts for an untrusted
// client; the U-label form of a relay domain routes as its A-label.
func TestNonASCIIRelay(t *testing.T) {
	ts := startServer(t, func(o *Options) {
		o.State.Router = route.NewRouter(route.Config{
			LocalDomains: []string{"example.org"},
			RelayDomains: map[string]string{"xn--bcher-kva.example": "backend"},
			Routes:       map[string]route.Route{"backend": {Type: "smtp", Address: "127.0.0.1:1"}},
		})
	})
	rc := smtptest.DialRaw(t, ts.addr)
	rc.Expect("EHLO c.example", 250, "")
	rc.Expect("MAIL FROM:<s@far.example> SMTPUTF8", 250, "")
	rc.Expect("RCPT TO:<user@ex\u00e4mple.org>", 554, "5.7.1")
	rc.Expect("RCPT TO:<\u00fcser@far.example>", 554, "5.7.1")
	rc.Expect("RCPT TO:<u@b\u00fccher.example>", 250, "")
	rc.Expect("DATA", 354, "")
	rc.Send("Subject: x\r\n\r\nhi\r\n")
	rc.Expect(".", 250, "")
	got := ts.spool.all()
	if len(got) != 1 || got[0].env.Recipients[0].Route != "backend" || got[0].env.Recipients[0].Address != "u@b\u00fccher.example" {
		t.Fatalf("spooled %+v", got)
	}
}

// The offline session (moat rules test) says SMTPUTF8 when its addresses
// need it, and refuses what a live session refuses with it.
func TestOfflineNonASCII(t *testing.T) {
	s := offlineSession("hi")
	s.From = "\u00fc@far.example"
	if res := RunOffline(context.Background(), PipelineOptions{Hostname: "mx.example.org"}, s); res.Final.Code != 250 {
		t.Errorf("non-ASCII sender offline: %v", res.Final)
	}
	s.From = "s@far\uff0eexample"
	if res := RunOffline(context.Background(), PipelineOptions{Hostname: "mx.example.org"}, s); res.Final.Code != 501 || res.Final.Enhanced.String() != "5.1.7" {
		t.Errorf("fullwidth stop offline: %v", res.Final)
	}
}
