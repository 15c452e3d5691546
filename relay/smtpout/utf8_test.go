package smtpout

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	"moat/internal/reply"
	"moat/internal/smtptest"
	"moat/relay/route"
)

// deliverTo delivers msg to a scripted server that offers ext and
// returns the results by recipient and the command lines it got.
func deliverTo(t *testing.T, ext []string, msg func() (sender string, utf8 bool, body string), rcpts ...string) (map[string]error, []string) {
	t.Helper()
	srv := &scripted{ehlo: ext}
	addr := startScripted(t, srv)
	c := NewSMTP(Options{Address: addr, TLS: route.TLSNone})
	defer c.Close()
	sender, utf8, body := msg()
	m := testMsg(body)
	m.Sender, m.UTF8 = sender, utf8
	m.Open = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }
	res := map[string]error{}
	for _, r := range c.Deliver(context.Background(), m, rcpts) {
		res[r.Recipient] = r.Err
	}
	if len(res) != len(rcpts) {
		t.Fatalf("%d results for %d recipients", len(res), len(rcpts))
	}
	return res, srv.commands()
}

func is567(t *testing.T, err error) {
	t.Helper()
	if rp := smtptest.AsReply(t, err); rp.Code != 550 || rp.Enhanced != (reply.Enhanced{5, 6, 7}) {
		t.Errorf("%v, want 550 5.6.7", rp)
	}
}

// Issue 27 item 4: the envelope goes to the next hop with its domains in
// A-label form, the form routing used, whether or not the next hop
// offers SMTPUTF8; the results keep the recipients as spooled.
func TestALabelEnvelope(t *testing.T) {
	const dom = "b\u00fccher.example"
	utf8Msg := func() (string, bool, string) { return "s@" + dom, true, testBody }
	for _, ext := range [][]string{{"PIPELINING", "SMTPUTF8"}, {"SMTPUTF8"}} {
		res, cmds := deliverTo(t, ext, utf8Msg, "u@"+dom, "\u00fc@"+dom)
		for r, err := range res {
			if err != nil {
				t.Errorf("%v %s: %v", ext, r, err)
			}
		}
		for _, want := range []string{"MAIL FROM:<s@xn--bcher-kva.example> SMTPUTF8", "RCPT TO:<u@xn--bcher-kva.example>", "RCPT TO:<\u00fc@xn--bcher-kva.example>"} {
			if !slices.Contains(cmds, want) {
				t.Errorf("%v: no %q in %q", ext, want, cmds)
			}
		}
	}
}

// A next hop without SMTPUTF8 takes what has an ASCII form: the A-label
// domain of an ASCII local part, without the SMTPUTF8 parameter, when
// the header is ASCII too (RFC 6531 §3.2 forbids only the downgrade of
// what needs the extension). A non-ASCII local part fails for that
// recipient alone, permanently (550 5.6.7); a non-ASCII sender or header
// for all, and nothing is sent.
func TestNoSMTPUTF8NextHop(t *testing.T) {
	const dom = "b\u00fccher.example"
	ext := []string{"PIPELINING"}
	res, cmds := deliverTo(t, ext, func() (string, bool, string) { return "s@" + dom, true, testBody }, "u@"+dom, "\u00fc@"+dom, "v@example.net")
	if res["u@"+dom] != nil || res["v@example.net"] != nil {
		t.Errorf("ASCII forms not delivered: %v", res)
	}
	is567(t, res["\u00fc@"+dom])
	for _, want := range []string{"MAIL FROM:<s@xn--bcher-kva.example>", "RCPT TO:<u@xn--bcher-kva.example>", "RCPT TO:<v@example.net>"} {
		if !slices.Contains(cmds, want) {
			t.Errorf("no %q in %q", want, cmds)
		}
	}
	for _, c := range cmds {
		if strings.Contains(c, "\u00fc") {
			t.Errorf("sent %q", c)
		}
	}

	// A non-ASCII sender, or a header that needs SMTPUTF8 (RFC 6532).
	for name, m := range map[string]func() (string, bool, string){
		"sender": func() (string, bool, string) { return "\u00df@" + dom, true, testBody },
		"header": func() (string, bool, string) { return "s@" + dom, true, "Subject: Gr\u00fc\u00dfe\r\n\r\nHello.\r\n" },
	} {
		res, cmds := deliverTo(t, ext, m, "u@"+dom)
		is567(t, res["u@"+dom])
		for _, c := range cmds {
			if strings.HasPrefix(c, "MAIL") {
				t.Errorf("%s: %q sent", name, c)
			}
		}
	}

	// A message that came without SMTPUTF8 (an alias to an IDN domain):
	// the A-label form too.
	res, cmds = deliverTo(t, ext, func() (string, bool, string) { return "s@example.org", false, testBody }, "u@"+dom)
	if res["u@"+dom] != nil || !slices.Contains(cmds, "RCPT TO:<u@xn--bcher-kva.example>") {
		t.Errorf("%v %q", res, cmds)
	}
}

func TestHeaderNeedsUTF8(t *testing.T) {
	long := strings.Repeat("x", 5000)
	for body, want := range map[string]bool{
		testBody:                                    false,
		"Subject: a\r\n\r\nGr\u00fc\u00dfe\r\n":     false, // the body is not the header
		"Subject: Gr\u00fc\u00dfe\r\n\r\nx\r\n":     true,
		"Subject: a\r\n":                            false,
		"X-Long: " + long + "\r\n\r\n":              false,
		"X-Long: " + long + "\r\nS: \u00fc\r\n\r\n": true,
		// The rest of a long line is no blank line.
		"X-Long: " + long[:4096-8] + "\r\n" + "S: \u00fc\r\n\r\n": true,
		"X-Long: " + long[:4096-9] + "\r\n" + "S: \u00fc\r\n\r\n": true,
	} {
		m := testMsg(body)
		if got, err := headerNeedsUTF8(m); err != nil || got != want {
			t.Errorf("%.40q...: %v, %v; want %v", body, got, err, want)
		}
	}
}
