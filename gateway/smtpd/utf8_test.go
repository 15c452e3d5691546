package smtpd

import "testing"

// Invalid UTF-8 in a path is a syntax error whatever the parameters
// (RFC 6531 §3.3 extends the Mailbox grammar with UTF-8 characters, RFC
// 3629, never with stray octets): 501 5.1.7 for the sender, 501 5.1.3
// for a recipient (RFC 3463 §3.2). Issue 27 item 4.
func TestInvalidUTF8Path(t *testing.T) {
	ts := start(t, testConfig(), nil)
	c := dial(t, ts.addr)
	c.Expect("EHLO client.example", 250, "")
	c.Expect("MAIL FROM:<s@p\xfff.test>", 501, "5.1.7")
	c.Expect("MAIL FROM:<s\xc3@pf.test> SMTPUTF8", 501, "5.1.7")
	c.Expect("MAIL FROM:<\"s\xed\xa0\x80\"@pf.test> SMTPUTF8", 501, "5.1.7") // an encoded surrogate
	c.Expect("MAIL FROM:<s@pf.test> SMTPUTF8", 250, "")
	c.Expect("RCPT TO:<u@p\xfff.test>", 501, "5.1.3")
	c.Expect("RCPT TO:<u\xc0\xaf@pf.test>", 501, "5.1.3") // overlong "/"
	c.Expect("RCPT TO:<u@pf.test>", 250, "")
	if got := ts.last().rcpts; len(got) != 1 || got[0] != "u@pf.test" {
		t.Errorf("recipients %q", got)
	}
}
