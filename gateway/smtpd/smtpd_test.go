package smtpd

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"moat/internal/reply"
	"moat/internal/smtptest"
)

func TestEHLOAdvertises(t *testing.T) {
	cfg := testConfig()
	cfg.TLS = smtptest.ServerTLS(t, "mx.example.org")
	ts := start(t, cfg, nil)
	c := dial(t, ts.addr)
	text := c.Expect("EHLO client.example", 250, "250-mx.example.org Hello client.example")
	for _, ext := range []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "CHUNKING", "STARTTLS", "SMTPUTF8", "SIZE 65536", "LIMITS RCPTMAX=3"} {
		if !strings.Contains(text, "\n250-"+ext+"\n") && !strings.HasSuffix(text, "\n250 "+ext) {
			t.Errorf("%s not advertised:\n%s", ext, text)
		}
	}
	if strings.Contains(text, "AUTH") {
		t.Errorf("AUTH advertised before TLS (RFC 4954 §4):\n%s", text)
	}
	c.Expect("HELO client.example", 250, "mx.example.org Hello client.example")
}

// The commands and their replies, in order (RFC 5321 §4.1.4, §4.3.2).
func TestConversation(t *testing.T) {
	steps := []struct {
		line string
		code int
		sub  string
	}{
		{"MAIL FROM:<a@b.example>", 503, "5.5.1"},
		{"AUTH PLAIN", 503, "5.5.1"},
		{"", 500, "5.5.2"},
		{"EHLO", 501, "5.5.2"},
		{"EHLO client.example", 250, ""},
		{"RCPT TO:<alice@example.org>", 503, "5.5.1"},
		{"DATA", 503, "5.5.1"},
		{"BDAT 0 LAST", 503, "5.5.1"},
		{"BDAT +0 LAST", 501, "5.5.4"},
		{"BDAT 0 FIRST", 501, "5.5.4"},
		{"BDAT", 501, "5.5.4"},
		{"MAIL TO:<a@b.example>", 501, "5.5.2"},
		{"MAIL FROM:<not an address>", 501, "5.5.2"},
		{"MAIL FROM:<a@b.example>x", 501, "5.5.2"},
		{"MAIL FROM:<a@b.example> SIZE=100000", 552, "5.3.4"},
		{"MAIL FROM:<a@b.example> RET=HDRS", 555, "5.5.4"},
		{"MAIL FROM:<a@b.example> SIZE=10 BODY=8BITMIME SMTPUTF8", 250, "2.1.0"},
		{"MAIL FROM:<c@d.example>", 503, "5.5.1"},
		{"RCPT TO:<>", 501, "5.5.2"},
		{"RCPT TO:<alice@example.org> NOTIFY=NEVER", 555, "5.5.4"},
		{"RCPT TO:<nobody@example.org>", 550, "5.1.1 No such user here"},
		{"RCPT TO:<internal@error.example>", 451, "4.3.0"},
		{"RCPT TO:<nilreply@error.example>", 451, "4.3.0"},
		{"RCPT TO:<Postmaster>", 250, "2.1.5"},
		{"RCPT TO:<alice@example.org>", 250, "2.1.5"},
		{"RCPT TO:<bob@example.org>", 250, "2.1.5"},
		{"RCPT TO:<carol@example.org>", 452, "4.5.3"},
		{"DATA extra", 501, "5.5.4"},
		{"VRFY alice", 252, "2.5.0"},
		{"EXPN list", 502, "5.5.1"},
		{"HELP", 214, "2.0.0"},
		{"HELP MAIL", 214, "2.0.0"},
		{"NOOP whatever", 250, "2.0.0"},
		{"XYZZY", 500, "5.5.2"},
		{"NOOP whatever", 250, "2.0.0"},
		{"X-UNKNOWN-VERB arg", 500, "5.5.2"},
		{"NOOP whatever", 250, "2.0.0"},
		{"STARTTLS", 502, "5.5.1"},
		{"RSET", 250, "2.0.0"},
		{"RCPT TO:<alice@example.org>", 503, "5.5.1"},
		{"QUIT", 221, "2.0.0"},
	}
	ts := start(t, testConfig(), nil)
	c := dial(t, ts.addr)
	for _, s := range steps {
		text := c.Expect(s.line, s.code, s.sub)
		if strings.Contains(text, "secret") {
			t.Fatalf("internal error text reached the client: %q", text)
		}
	}
	if code, text := c.Reply(); code != 0 {
		t.Errorf("after QUIT: %q", text)
	}
	f := ts.last()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.from != "" || f.opts == nil || f.opts.Size != 10 || !f.opts.UTF8 || f.opts.Body != Body8BitMIME {
		t.Errorf("MAIL options %+v (from %q after RSET)", f.opts, f.from)
	}
	if f.logouts != 1 {
		t.Errorf("%d logouts", f.logouts)
	}
}

func TestDataAndBDAT(t *testing.T) {
	ts := start(t, testConfig(), nil)
	c := dial(t, ts.addr)
	c.Expect("EHLO client.example", 250, "")
	c.Expect("MAIL FROM:<a@b.example>", 250, "")
	c.Expect("RCPT TO:<alice@example.org>", 250, "")
	c.Expect("DATA", 354, "")
	c.Send("Subject: x\r\n\r\n..leading dot\r\n.\r\n")
	got, text := c.Reply()
	if got != 250 {
		t.Fatalf("end of data: %q", text)
	}
	// RFC 3030: chunks, then LAST; the chunk's bytes are not commands.
	c.Expect("MAIL FROM:<a@b.example>", 250, "")
	c.Expect("RCPT TO:<alice@example.org>", 250, "")
	c.Send("BDAT 12\r\nQUIT\r\nRSET\r\n")
	if got, text := c.Reply(); got != 250 {
		t.Fatalf("BDAT: %q", text)
	}
	c.Expect("BDAT 0 LAST", 250, "")
	c.Expect("DATA", 503, "5.5.1")
	// Too big in total: refused, the transaction ends.
	c.Expect("MAIL FROM:<a@b.example>", 250, "")
	c.Expect("RCPT TO:<alice@example.org>", 250, "")
	c.Send("BDAT 70000 LAST\r\n" + strings.Repeat("x", 70000))
	if got, text := c.Reply(); got != 552 {
		t.Fatalf("oversized BDAT: %q", text)
	}
	c.Send("BDAT 1 LAST\r\nx")
	if got, text := c.Reply(); got != 503 {
		t.Fatalf("BDAT after the transaction ended: %q", text)
	}
	// DATA over the size limit: 552, and the session goes on.
	c.Expect("MAIL FROM:<a@b.example>", 250, "")
	c.Expect("RCPT TO:<alice@example.org>", 250, "")
	c.Expect("DATA", 354, "")
	line := strings.Repeat("y", 998) + "\r\n"
	c.Send(strings.Repeat(line, 70) + ".\r\n")
	if got, text := c.Reply(); got != 552 || !strings.Contains(text, "5.3.4") {
		t.Fatalf("oversized DATA: %q", text)
	}
	c.Expect("NOOP", 250, "")
	msgs := ts.last().messages()
	if len(msgs) != 2 || string(msgs[0]) != "Subject: x\r\n\r\n.leading dot\r\n" || string(msgs[1]) != "QUIT\r\nRSET\r\n" {
		t.Fatalf("messages %q", msgs)
	}
}

// RFC 2920 §3.2: replies to a pipelined group go out in one write; while
// the client is silent the connection holds neither buffer.
func TestPipeliningAndIdleBuffers(t *testing.T) {
	var writes atomic.Int64
	ts := start(t, testConfig(), func(l net.Listener) net.Listener { return countListener{Listener: l, writes: &writes} })
	c := dial(t, ts.addr)
	st := <-ts.idle // after the greeting
	if st.readBuf || st.writeBuf || st.kept != 0 {
		t.Fatalf("idle after greeting holds %+v", st)
	}
	before := writes.Load()
	c.Send("EHLO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nNOOP\r\n")
	for _, want := range []int{250, 250, 250, 250, 250} {
		if got, text := c.Reply(); got != want {
			t.Fatalf("got %q, want %d", text, want)
		}
	}
	st = <-ts.idle
	if st.readBuf || st.writeBuf || st.kept != 0 {
		t.Fatalf("idle after a burst holds %+v", st)
	}
	if n := writes.Load() - before; n != 1 {
		t.Errorf("%d writes for one pipelined group, want 1", n)
	}
	// Half a command: kept in a small slice of its own, not the buffer.
	c.Send("NO")
	st = <-ts.idle
	if st.readBuf || st.writeBuf || st.kept != 2 {
		t.Fatalf("idle with a partial line holds %+v", st)
	}
	c.Expect("OP", 250, "2.0.0")
}

// A wrapper that read ahead (the guard after a PROXY header) is drained
// before the loop waits on the socket.
func TestBufferedWrapper(t *testing.T) {
	ts := start(t, testConfig(), func(l net.Listener) net.Listener {
		return preListener{l}
	})
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl := smtptest.NewRaw(t, c)
	if code, text := cl.Reply(); code != 220 {
		t.Fatalf("greeting %q", text)
	}
	// The EHLO was "read ahead" by the wrapper: its reply comes
	// although the client has sent nothing.
	if code, text := cl.Reply(); code != 250 || !strings.Contains(text, "Hello early.example") {
		t.Fatalf("reply to the buffered EHLO: %q", text)
	}
	cl.Expect("QUIT", 221, "")
}

type preListener struct{ net.Listener }

func (l preListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &preConn{Conn: c, pre: []byte("EHLO early.example\r\n")}, nil
}

func TestLongLineAndTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.ReadTimeout = 300 * time.Millisecond
	ts := start(t, cfg, nil)
	c := dial(t, ts.addr)
	c.Send(strings.Repeat("A", 1001) + "\r\n")
	if code, text := c.Reply(); code != 500 || !strings.Contains(text, "5.4.0") {
		t.Fatalf("long line: %q", text)
	}
	c = dial(t, ts.addr)
	c.Expect("EHLO client.example", 250, "")
	if code, text := c.Reply(); code != 421 || !strings.Contains(text, "4.4.2") {
		t.Fatalf("idle: %q", text)
	}
	// The whole command line must come within the timeout: dripping
	// bytes does not renew it.
	c = dial(t, ts.addr)
	for _, part := range []string{"NO", "O", "P"} {
		c.Send(part)
		time.Sleep(cfg.ReadTimeout * 2 / 3)
	}
	if code, text := c.Reply(); code != 421 || !strings.Contains(text, "4.4.2") {
		t.Fatalf("dripped command: %q", text)
	}
	// A long DATA line ends the connection too.
	c = dial(t, ts.addr)
	c.Expect("EHLO client.example", 250, "")
	c.Expect("MAIL FROM:<a@b.example>", 250, "")
	c.Expect("RCPT TO:<alice@example.org>", 250, "")
	c.Expect("DATA", 354, "")
	c.Send(strings.Repeat("B", 1003) + "\r\n.\r\n")
	if code, text := c.Reply(); code != 500 || !strings.Contains(text, "5.4.0") {
		t.Fatalf("long data line: %q", text)
	}
}

func TestSessionRefused(t *testing.T) {
	ts := start(t, testConfig(), nil)
	c := dial(t, ts.addr)
	c.Expect("EHLO refuse.example", 421, "4.3.2")
	if code, text := c.Reply(); code != 0 {
		t.Fatalf("still open after 421: %q", text)
	}
}

func TestTooManyErrors(t *testing.T) {
	ts := start(t, testConfig(), nil)
	c := dial(t, ts.addr)
	for i := 0; i < 3; i++ {
		c.Expect("XXXX", 500, "5.5.2")
	}
	c.Expect("YYYY", 500, "5.5.2")
	if code, text := c.Reply(); code != 421 {
		t.Fatalf("after too many errors: %q", text)
	}
}

func TestSTARTTLSAndAUTH(t *testing.T) {
	cfg := testConfig()
	cfg.TLS = smtptest.ServerTLS(t, "mx.example.org")
	ts := start(t, cfg, nil)
	c := dial(t, ts.addr)
	c.Expect("EHLO client.example", 250, "STARTTLS")
	c.Expect("AUTH PLAIN AHUAcA==", 523, "5.7.10")
	c.Expect("STARTTLS extra", 501, "5.5.4")
	// RFC 3207 §5: a command pipelined after STARTTLS in plain text must
	// not be run inside TLS (CVE-2011-0411).
	c.Send("STARTTLS\r\nRSET\r\n")
	if code, text := c.Reply(); code != 220 {
		t.Fatalf("STARTTLS: %q", text)
	}
	tc := tls.Client(c.Conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c = smtptest.NewRaw(t, tc)
	c.Expect("NOOP", 250, "")
	// Idle inside TLS: no read buffer held either (a small read waits).
	// Every wait from here on is inside TLS, and one follows this NOOP.
	for len(ts.idle) > 0 {
		<-ts.idle
	}
	c.Expect("NOOP", 250, "")
	select {
	case st := <-ts.idle:
		if st.readBuf || st.writeBuf {
			t.Fatalf("idle inside TLS holds %+v", st)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no idle wait inside TLS: it reads with a buffer held")
	}
	text := c.Expect("EHLO client.example", 250, "AUTH PLAIN")
	if strings.Contains(text, "STARTTLS") {
		t.Errorf("STARTTLS offered inside TLS:\n%s", text)
	}
	c.Expect("STARTTLS", 503, "5.5.1")
	c.Expect("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00u\x00wrong")), 535, "5.7.8")
	c.Expect("AUTH CRAM-MD5", 504, "5.7.4")
	c.Expect("AUTH PLAIN", 334, "")
	c.Expect("not base64!", 501, "5.5.2")
	c.Expect("AUTH PLAIN", 334, "")
	c.Expect("*", 501, "5.0.0")
	c.Expect("AUTH PLAIN", 334, "")
	c.Expect(base64.StdEncoding.EncodeToString([]byte("\x00u\x00p")), 235, "2.0.0")
	c.Expect("AUTH PLAIN", 503, "5.5.1")
	if n := len(ts.sessions()); n != 2 {
		t.Errorf("%d sessions; STARTTLS must start a new one", n)
	}
	first := ts.sessions()[0]
	first.mu.Lock()
	defer first.mu.Unlock()
	if first.logouts != 1 {
		t.Error("the session before TLS was not logged out")
	}
}

func TestImplicitTLS(t *testing.T) {
	cfg := testConfig()
	tlsCfg := smtptest.ServerTLS(t, "mx.example.org")
	var state atomic.Bool
	ts := start(t, cfg, func(l net.Listener) net.Listener { return tls.NewListener(l, tlsCfg) })
	ts.srv.newSession = func(c *Conn) (Session, error) {
		_, ok := c.TLSConnectionState()
		state.Store(ok)
		return &fakeSession{}, nil
	}
	tc, err := tls.Dial("tcp", ts.addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	c := smtptest.NewRaw(t, tc)
	if code, text := c.Reply(); code != 220 {
		t.Fatalf("greeting %q", text)
	}
	text := c.Expect("EHLO client.example", 250, "AUTH PLAIN")
	if strings.Contains(text, "STARTTLS") || !state.Load() {
		t.Errorf("implicit TLS not seen (state %v):\n%s", state.Load(), text)
	}
}

func TestShutdownWaits(t *testing.T) {
	ts := start(t, testConfig(), nil)
	// Sessions still there at the deadline hear 421 4.3.2 and are closed
	// (RFC 5321 §3.8), whether they said EHLO or not.
	c := dial(t, ts.addr)
	c.Expect("EHLO client.example", 250, "")
	silent := dial(t, ts.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown returned with sessions open")
	}
	for _, cl := range []*smtptest.Raw{c, silent} {
		if code, text := cl.Reply(); code != 421 || !strings.Contains(text, "4.3.2") {
			t.Errorf("at the deadline: %d %q, want 421 4.3.2", code, text)
		}
		if _, err := cl.R.ReadByte(); err == nil {
			t.Error("the connection stayed open after the 421")
		}
	}
	// With nobody left, Shutdown returns at once.
	if err := ts.srv.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown with no session: %v", err)
	}
}

// TestGoroutineReuse checks that a goroutine done with one connection
// serves the next, that at most maxWaiting wait, and that stopping the
// server ends their wait.
func TestGoroutineReuse(t *testing.T) {
	ts := start(t, testConfig(), nil)
	waitFor := func(n int32) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ts.srv.waiting.Load() != n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d goroutines wait for a connection, want %d", ts.srv.waiting.Load(), n)
			}
		}
	}
	quit := func(c *smtptest.Raw) {
		c.Expect("QUIT", 221, "")
		c.Conn.Close()
	}
	first := dial(t, ts.addr)
	first.Expect("EHLO client.example", 250, "")
	quit(first)
	waitFor(1)
	// The next connection is served by the goroutine that waited.
	second := dial(t, ts.addr)
	waitFor(0)
	second.Expect("EHLO client.example", 250, "")
	second.Expect("MAIL FROM:<a@example.org>", 250, "")
	quit(second)
	waitFor(1)

	var many []*smtptest.Raw
	for range maxWaiting + 6 {
		many = append(many, dial(t, ts.addr))
	}
	for _, c := range many {
		quit(c)
	}
	waitFor(maxWaiting)

	ts.srv.Close()
	waitFor(0)
}

// The DATA states: dot-stuffing undone, only CRLF.CRLF ends, CR and LF
// handed over as they came.
func TestDataReader(t *testing.T) {
	cases := []struct {
		in, want, rest string
	}{
		{"a\r\n.\r\nNEXT", "a\r\n", "NEXT"},
		{".\r\n", "", ""},
		{"..a\r\n.\r\n", ".a\r\n", ""},
		{"a\r\n..\r\n.\r\n", "a\r\n.\r\n", ""},
		{"a\n.\nb\r\n.\r\n", "a\n.\nb\r\n", ""},
		{"a\n.\r\nb\r\n.\r\n", "a\n.\r\nb\r\n", ""},
		{"a\r.\r\nb\r\n.\r\n", "a\r.\r\nb\r\n", ""},
		{"a\r\r\n.\r\nX", "a\r\r\n", "X"},
		{"a\r\n.\rb\r\n.\r\n", "a\r\n\rb\r\n", ""},
		{"a\r\n.\r\r\n.\r\n", "a\r\n\r\r\n", ""},
		{"a\r\n.x\r\n.\r\n", "a\r\nx\r\n", ""},
		{"\x00\r\n.\r\n", "\x00\r\n", ""},
	}
	for _, tc := range cases {
		for _, chunked := range []bool{false, true} {
			ts := &testServer{srv: New(testConfig(), nil, nil)}
			var r io.Reader = strings.NewReader(tc.in)
			if chunked {
				r = iotest.OneByteReader(r)
			}
			c := ts.conn(newByteConn(r))
			got, err := io.ReadAll(iotest.HalfReader(&dataReader{c: c, left: 1 << 20}))
			rest := ""
			if c.readBuf != nil {
				rest = string((*c.readBuf)[c.used:c.filled])
			}
			more, _ := io.ReadAll(r)
			rest += string(more)
			if err != nil || string(got) != tc.want || rest != tc.rest {
				t.Errorf("%q (one byte at a time %v): %q, rest %q, %v; want %q, rest %q", tc.in, chunked, got, rest, err, tc.want, tc.rest)
			}
		}
	}
	// Without an end: an unexpected EOF, never a message.
	ts := &testServer{srv: New(testConfig(), nil, nil)}
	c := ts.conn(newByteConn(strings.NewReader("a\r\n.\n")))
	if _, err := io.ReadAll(&dataReader{c: c, left: 1 << 20}); err != io.ErrUnexpectedEOF {
		t.Errorf("unterminated data: %v", err)
	}
	// The size limit.
	c = ts.conn(newByteConn(strings.NewReader("abcdef\r\n.\r\n")))
	if _, err := io.ReadAll(&dataReader{c: c, left: 4}); err != ErrDataTooLarge {
		t.Errorf("over the limit: %v", err)
	}
}

func TestReplyFormat(t *testing.T) {
	ts := &testServer{srv: New(testConfig(), nil, nil)}
	b := newByteConn(strings.NewReader(""))
	c := ts.conn(b)
	c.reply(reply.Plain(250, "one\ntwo"))
	c.reply(reply.New(550, 7, 1, "a\nb\r\x00c"))
	c.reply(reply.New(451, 0, 0, "x"))
	c.flush()
	want := "250-one\r\n250 two\r\n550-5.7.1 a\r\n550 5.7.1 b  c\r\n451 4.0.0 x\r\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}
