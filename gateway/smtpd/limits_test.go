package smtpd

import (
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// One line limit (issue 27 item 10): Config.MaxLineLength counts the
// octets of a line including its CRLF (RFC 5321 §4.5.3.1.6 counts a text
// line so, not counting a dot-stuffing dot), for commands and message
// data alike; a line of exactly the limit passes, one octet more does
// not.
func TestLineLimitExact(t *testing.T) {
	cfg := testConfig() // MaxLineLength 1000
	max := cfg.MaxLineLength
	ts := start(t, cfg, nil)

	// A command line: "NOOP " and padding, CRLF included.
	noop := func(total int) string { return "NOOP " + strings.Repeat("x", total-len("NOOP ")-2) }
	c := dial(t, ts.addr)
	if code, text := c.Cmd(noop(max)); code != 250 {
		t.Fatalf("command line of %d octets with CRLF: %q", max, text)
	}
	if code, text := c.Cmd(noop(max + 1)); code != 500 || !strings.Contains(text, "5.4.0") {
		t.Fatalf("command line of %d octets with CRLF: %q", max+1, text)
	}

	data := func(line string) (int, string) {
		c := dial(t, ts.addr)
		c.Expect("EHLO client.example", 250, "")
		c.Expect("MAIL FROM:<a@b.example>", 250, "")
		c.Expect("RCPT TO:<alice@example.org>", 250, "")
		c.Expect("DATA", 354, "")
		c.Send("Subject: x\r\n\r\n" + line + "\r\n.\r\n")
		return c.Reply()
	}
	if code, text := data(strings.Repeat("B", max-2)); code != 250 {
		t.Fatalf("data line of %d octets with CRLF: %q", max, text)
	}
	if code, text := data(strings.Repeat("B", max-1)); code != 500 || !strings.Contains(text, "5.4.0") {
		t.Fatalf("data line of %d octets with CRLF: %q", max+1, text)
	}
	// The dot added for transparency (RFC 5321 §4.5.2) is not counted.
	if code, text := data(".." + strings.Repeat("B", max-3)); code != 250 {
		t.Fatalf("dot-stuffed data line of %d octets with CRLF and the dot: %q", max+1, text)
	}
	if code, text := data(".." + strings.Repeat("B", max-2)); code != 500 {
		t.Fatalf("dot-stuffed data line of %d octets with CRLF and the dot: %q", max+2, text)
	}
}

// Slow DATA (issue 27 item 2): after 354 the message must come at
// MinDataRate, with ReadTimeout of grace (as Postfix's
// smtpd_min_data_rate): a client that sends a byte now and then, each
// within ReadTimeout, gets 421 4.4.2 and the connection closes.
func TestMinDataRate(t *testing.T) {
	cfg := testConfig()
	// Each byte comes well within ReadTimeout; only the rate can end it.
	cfg.ReadTimeout = 2 * time.Second
	cfg.MinDataRate = 1 << 20 // a byte every 100 ms is far too slow
	var slow atomic.Int32
	cfg.OnTimeout = func(kind string) {
		if kind == TimeoutDataRate {
			slow.Add(1)
		}
	}
	ts := start(t, cfg, nil)
	c := dial(t, ts.addr)
	c.Expect("EHLO client.example", 250, "")
	c.Expect("MAIL FROM:<a@b.example>", 250, "")
	c.Expect("RCPT TO:<alice@example.org>", 250, "")
	c.Expect("DATA", 354, "")
	if text := dripUntilReply(t, c.Conn, 100*time.Millisecond, 100); !strings.HasPrefix(text, "421 4.4.2 ") {
		t.Fatalf("slow data: %q", text)
	}
	if slow.Load() != 1 {
		t.Errorf("data-rate timeouts counted: %d", slow.Load())
	}
	// BDAT too (the rate runs from the first chunk).
	c = dial(t, ts.addr)
	c.Expect("EHLO client.example", 250, "")
	c.Expect("MAIL FROM:<a@b.example>", 250, "")
	c.Expect("RCPT TO:<alice@example.org>", 250, "")
	c.Send("BDAT 1000 LAST\r\n")
	if text := dripUntilReply(t, c.Conn, 100*time.Millisecond, 100); !strings.HasPrefix(text, "421 4.4.2 ") {
		t.Fatalf("slow BDAT: %q", text)
	}
	if slow.Load() != 2 {
		t.Errorf("data-rate timeouts counted: %d", slow.Load())
	}
	// A client at a normal pace is not hurt.
	cfg.MinDataRate = 1
	ts = start(t, cfg, nil)
	c = dial(t, ts.addr)
	c.Expect("EHLO client.example", 250, "")
	c.Expect("MAIL FROM:<a@b.example>", 250, "")
	c.Expect("RCPT TO:<alice@example.org>", 250, "")
	c.Expect("DATA", 354, "")
	c.Send("Subject: x\r\n\r\nbody\r\n")
	c.Expect(".", 250, "")
}

// The whole message must come within DataTimeout, however fast each
// read is.
func TestDataTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.ReadTimeout = 5 * time.Second
	cfg.DataTimeout = 500 * time.Millisecond
	var n atomic.Int32
	cfg.OnTimeout = func(kind string) {
		if kind == TimeoutData {
			n.Add(1)
		}
	}
	ts := start(t, cfg, nil)
	c := dial(t, ts.addr)
	c.Expect("EHLO client.example", 250, "")
	c.Expect("MAIL FROM:<a@b.example>", 250, "")
	c.Expect("RCPT TO:<alice@example.org>", 250, "")
	c.Expect("DATA", 354, "")
	if text := dripUntilReply(t, c.Conn, 100*time.Millisecond, 100); !strings.HasPrefix(text, "421 4.4.2 ") {
		t.Fatalf("data past the whole-message deadline: %q", text)
	}
	if n.Load() != 1 {
		t.Errorf("data timeouts counted: %d", n.Load())
	}
}

// dripUntilReply sends one octet of a data line, then waits up to pause
// for a reply line; at most max rounds. It returns the reply line, or ""
// when none came.
func dripUntilReply(t *testing.T, c net.Conn, pause time.Duration, max int) string {
	t.Helper()
	var got []byte
	buf := make([]byte, 256)
	for i := 0; i < max; i++ {
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("x")); err != nil && len(got) == 0 {
			// The server closed: what it said is still to read.
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _ := c.Read(buf)
			return string(buf[:n])
		}
		c.SetReadDeadline(time.Now().Add(pause))
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if strings.Contains(string(got), "\r\n") {
			return string(got)
		}
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			return string(got)
		}
	}
	return string(got)
}

// Under stress (the guard's connection counts near their caps, said by a
// connection in the wrapper chain with StressTimeout), the wait for a
// command shrinks to the stress timeout.
func TestStressTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.ReadTimeout = time.Minute
	var on atomic.Bool
	ts := start(t, cfg, func(ln net.Listener) net.Listener { return stressListener{ln, &on} })
	on.Store(true)
	c := dial(t, ts.addr)
	c.Expect("EHLO client.example", 250, "")
	// Silent: the 421 comes after the stress timeout, not a minute.
	if code, text := c.Reply(); code != 421 || !strings.Contains(text, "4.4.2") {
		t.Fatalf("idle under stress: %q", text)
	}
}

type stressListener struct {
	net.Listener
	on *atomic.Bool
}

func (l stressListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return stressConn{c, l.on}, nil
}

type stressConn struct {
	net.Conn
	on *atomic.Bool
}

func (c stressConn) Unwrap() net.Conn { return c.Conn }
func (c stressConn) StressTimeout() time.Duration {
	if c.on.Load() {
		return 300 * time.Millisecond
	}
	return 0
}
