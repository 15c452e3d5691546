package milter

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"moat/internal/reply"
	"moat/policy/scanner"
	"moat/policy/scanner/internal/scantest"
)

// record is what the test milter saw of one message.
type record struct {
	host, family, addr string
	port               uint16
	helo, from         string
	rcpts              []string
	headers            []string // "Name: value"
	body               []byte
	macros             map[string]string
}

// testMilter is a milter built on the library's server side. What it
// answers depends on the Subject: "reject", "tempfail", "discard",
// "changes", "quarantine", "accept-early"; a recipient starting with
// "bad" is refused.
type testMilter struct {
	gomilter.NoOpMilter
	rec     record
	subject string
	done    chan<- record
}

func (m *testMilter) macro(mod gomilter.Modifier, names ...string) {
	for _, n := range names {
		if v, ok := mod.GetEx(n); ok {
			m.rec.macros[n] = v
		}
	}
}

func (m *testMilter) Connect(host, family string, port uint16, addr string, mod gomilter.Modifier) (*gomilter.Response, error) {
	m.rec = record{host: host, family: family, port: port, addr: addr, macros: map[string]string{}}
	m.macro(mod, "j", "{daemon_name}", "{client_addr}", "{client_name}", "v")
	return gomilter.RespContinue, nil
}

func (m *testMilter) Helo(name string, mod gomilter.Modifier) (*gomilter.Response, error) {
	m.rec.helo = name
	return gomilter.RespContinue, nil
}

func (m *testMilter) MailFrom(from, _ string, mod gomilter.Modifier) (*gomilter.Response, error) {
	m.rec.from = from
	m.macro(mod, "{mail_addr}", "{auth_authen}", "i")
	return gomilter.RespContinue, nil
}

func (m *testMilter) RcptTo(rcpt, _ string, mod gomilter.Modifier) (*gomilter.Response, error) {
	m.macro(mod, "{rcpt_addr}")
	if strings.HasPrefix(rcpt, "bad") {
		return gomilter.RejectWithCodeAndReason(550, "5.1.1 no such user")
	}
	m.rec.rcpts = append(m.rec.rcpts, rcpt)
	return gomilter.RespContinue, nil
}

func (m *testMilter) Header(name, value string, mod gomilter.Modifier) (*gomilter.Response, error) {
	m.rec.headers = append(m.rec.headers, name+":"+value)
	if name == "Subject" {
		m.subject = strings.TrimSpace(value)
		if m.subject == "accept-early" {
			return gomilter.RespAccept, nil
		}
	}
	return gomilter.RespContinue, nil
}

func (m *testMilter) BodyChunk(chunk []byte, mod gomilter.Modifier) (*gomilter.Response, error) {
	m.rec.body = append(m.rec.body, chunk...)
	return gomilter.RespContinue, nil
}

func (m *testMilter) EndOfMessage(mod gomilter.Modifier) (*gomilter.Response, error) {
	m.macro(mod, "i")
	if m.done != nil {
		m.done <- m.rec
	}
	switch m.subject {
	case "reject":
		return gomilter.RejectWithCodeAndReason(554, "5.7.1 spam detected\nsee https://example.org")
	case "tempfail":
		return gomilter.RespTempFail, nil
	case "discard":
		return gomilter.RespDiscard, nil
	case "quarantine":
		mod.Quarantine("suspicious")
		return gomilter.RespContinue, nil
	case "changes":
		mod.AddHeader("X-Spam-Status", "No, score=1.0\r\n\ttests=NONE")
		mod.InsertHeader(0, "X-First", "1")
		mod.ChangeHeader(1, "Subject", "[SPAM] changes")
		mod.ChangeHeader(1, "X-Drop", "")
		mod.ReplaceBody(strings.NewReader("new body\r\n"))
		mod.ChangeFrom("other@example.org", "")
		mod.AddRecipient("extra@example.org", "")
		mod.DeleteRecipient("c@example.net")
		return gomilter.RespAccept, nil
	case "body-lf":
		// Bare LF line ends, in several chunks.
		mod.ReplaceBody(strings.NewReader(strings.Repeat("line\n", 30000)))
		return gomilter.RespAccept, nil
	case "body-empty":
		mod.ReplaceBodyRawChunk(nil)
		return gomilter.RespContinue, nil
	}
	return gomilter.RespContinue, nil
}

// serveMilter runs the test milter on network and returns the address.
func serveMilter(t testing.TB, network string, done chan<- record) string {
	t.Helper()
	var (
		ln   net.Listener
		err  error
		addr string
	)
	if network == "unix" {
		path := filepath.Join(t.TempDir(), "milter.sock")
		ln, err = net.Listen("unix", path)
		addr = "unix:" + path
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			addr = ln.Addr().String()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	srv := gomilter.NewServer(
		gomilter.WithMilter(func() gomilter.Milter { return &testMilter{done: done} }),
		gomilter.WithActions(gomilter.OptAddHeader|gomilter.OptChangeHeader|gomilter.OptChangeBody|gomilter.OptChangeFrom|
			gomilter.OptAddRcpt|gomilter.OptRemoveRcpt|gomilter.OptQuarantine),
	)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); wg.Wait() })
	return addr
}

func newClient(t testing.TB, addr string, timeout time.Duration) *Client {
	t.Helper()
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	c, err := New(scanner.Config{Name: "mf", Type: "milter", Address: addr, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func request(subject string, rcpts ...string) *scanner.Request {
	if rcpts == nil {
		rcpts = []string{"b@example.net", "c@example.net"}
	}
	return &scanner.Request{
		Message: []byte("From: a@example.org\r\nSubject: " + subject + "\r\nX-Long: one\r\n two\r\nX-Drop: x\r\n\r\n" +
			"body line 1\r\nbody line 2\r\n"),
		ClientIP:   netip.MustParseAddr("192.0.2.7"),
		ClientPort: 40000,
		ClientName: "mail.example.org",
		HELO:       "helo.example.org",
		Sender:     "a@example.org",
		Recipients: rcpts,
		AuthUser:   "alice",
		QueueID:    "Q123",
		Hostname:   "mx.example.net",
	}
}

func TestScan(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			done := make(chan record, 10)
			c := newClient(t, serveMilter(t, network, done), 0)
			res, err := c.Scan(context.Background(), request("hello"))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(res, &scanner.Result{Action: "accept"}) {
				t.Errorf("%+v", res)
			}
			rec := <-done
			want := record{
				host: "mail.example.org", family: "tcp4", port: 40000, addr: "192.0.2.7",
				helo: "helo.example.org", from: "a@example.org", rcpts: []string{"b@example.net", "c@example.net"},
				headers: []string{"From:a@example.org", "Subject:hello", "X-Long:one\n two", "X-Drop:x"},
				body:    []byte("body line 1\r\nbody line 2\r\n"),
				macros: map[string]string{"j": "mx.example.net", "{daemon_name}": "moat", "v": "moat",
					"{client_addr}": "192.0.2.7", "{client_name}": "mail.example.org",
					"{mail_addr}": "a@example.org", "{auth_authen}": "alice", "i": "Q123", "{rcpt_addr}": "c@example.net"},
			}
			if !reflect.DeepEqual(rec, want) {
				t.Errorf("milter saw\n%+v\nwant\n%+v", rec, want)
			}
			if err := c.Ping(context.Background()); err != nil {
				t.Errorf("Ping: %v", err)
			}
		})
	}
}

func TestVerdicts(t *testing.T) {
	c := newClient(t, serveMilter(t, "tcp", nil), 0)
	cases := []struct {
		req  *scanner.Request
		want *scanner.Result
	}{
		{request("reject"), &scanner.Result{Action: "reject", Reply: &reply.Reply{Code: 554, Enhanced: reply.Enhanced{5, 7, 1}, Text: "spam detected see https://example.org"}}},
		{request("tempfail"), &scanner.Result{Action: "tempfail"}},
		{request("discard"), &scanner.Result{Action: "discard"}},
		{request("quarantine"), &scanner.Result{Action: "quarantine"}},
		{request("accept-early"), &scanner.Result{Action: "accept"}},
		{request("changes"), &scanner.Result{Action: "accept",
			Symbols: []string{"milter:body-change", "milter:from-change", "milter:rcpt-add", "milter:rcpt-delete"},
			Changes: []scanner.HeaderChange{
				{Op: scanner.HeaderAdd, Name: "X-Spam-Status", Value: "No, score=1.0\r\n\ttests=NONE"},
				{Op: scanner.HeaderInsert, Name: "X-First", Value: "1", Index: 0},
				{Op: scanner.HeaderReplace, Name: "Subject", Value: "[SPAM] changes", Index: 1},
				{Op: scanner.HeaderReplace, Name: "X-Drop", Value: "", Index: 1},
			},
			Body: []byte("new body\r\n")}},
		{request("body-lf"), &scanner.Result{Action: "accept", Symbols: []string{"milter:body-change"},
			Body: []byte(strings.Repeat("line\r\n", 30000))}},
		{request("body-empty"), &scanner.Result{Action: "accept", Symbols: []string{"milter:body-change"}, Body: []byte{}}},
		{request("hello", "bad@example.net", "b@example.net"), &scanner.Result{Action: "accept", Symbols: []string{"milter:rcpt-reject"}}},
		{request("hello", "bad1@example.net", "bad2@example.net"), &scanner.Result{Action: "reject", Symbols: []string{"milter:rcpt-reject"},
			Reply: &reply.Reply{Code: 550, Enhanced: reply.Enhanced{5, 1, 1}, Text: "no such user"}}},
	}
	for _, tc := range cases {
		res, err := c.Scan(context.Background(), tc.req)
		if err != nil {
			t.Errorf("%q: %v", tc.req.Message[:40], err)
			continue
		}
		if !reflect.DeepEqual(res, tc.want) {
			t.Errorf("%q %v:\n got %+v\nwant %+v", tc.req.Message[:40], tc.req.Recipients, res, tc.want)
		}
	}
}

// A null sender, no client address and a message without a body.
func TestEdges(t *testing.T) {
	done := make(chan record, 1)
	c := newClient(t, serveMilter(t, "tcp", done), 0)
	req := &scanner.Request{Message: []byte("Subject: x"), Recipients: []string{"b@example.net"}}
	res, err := c.Scan(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	rec := <-done
	if res.Action != "accept" || rec.from != "" || rec.host != "unknown" || len(rec.headers) != 1 || len(rec.body) != 0 {
		t.Errorf("%+v %+v", res, rec)
	}
}

func readPacket(r io.Reader) (byte, []byte, error) {
	var n uint32
	if err := binary.Read(r, binary.BigEndian, &n); err != nil {
		return 0, nil, err
	}
	if n == 0 || n > 1<<24 {
		return 0, nil, errors.New("bad length")
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return 0, nil, err
	}
	return b[0], b[1:], nil
}

func packet(code byte, data []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(data)+1))
	return append(append(b, code), data...)
}

// negotiated answers the option negotiation (version 6, no actions, every
// stage sent and answered), then runs then on each later packet.
func negotiated(then func(c net.Conn, code byte)) func(net.Conn) {
	return func(c net.Conn) {
		code, _, err := readPacket(c)
		if err != nil || code != 'O' {
			return
		}
		c.Write(packet('O', []byte{0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0}))
		for range 100 {
			code, _, err := readPacket(c)
			if err != nil {
				return
			}
			then(c, code)
		}
	}
}

func kindOf(t *testing.T, err error, want scanner.ErrorKind) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s", want)
	}
	var se *scanner.Error
	if !errors.As(err, &se) {
		t.Fatalf("%v is not a *scanner.Error", err)
	}
	if se.Kind != want || se.Scanner != "mf" {
		t.Errorf("error %v: kind %s, want %s", err, se.Kind, want)
	}
}

func TestErrors(t *testing.T) {
	onOptneg := func(answer []byte) func(net.Conn) {
		return func(c net.Conn) {
			if _, _, err := readPacket(c); err == nil {
				c.Write(answer)
			}
		}
	}
	cases := []struct {
		name   string
		handle func(net.Conn)
		kind   scanner.ErrorKind
	}{
		{"garbage", onOptneg([]byte("HTTP/1.1 400 Bad Request\r\n\r\n")), scanner.KindProtocol},
		{"unexpected code", onOptneg(packet('Z', []byte("hello"))), scanner.KindProtocol},
		{"empty packet", onOptneg([]byte{0, 0, 0, 0}), scanner.KindProtocol},
		{"huge packet", onOptneg([]byte{0x7f, 0xff, 0xff, 0xff, 'O'}), scanner.KindProtocol},
		{"old version", onOptneg(packet('O', []byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0})), scanner.KindProtocol},
		{"closed mid-answer", onOptneg([]byte{0, 0, 0, 13, 'O', 0, 0}), scanner.KindIO},
		{"closed at once", func(net.Conn) {}, scanner.KindIO},
		{"bad action after connect", negotiated(func(c net.Conn, code byte) {
			if code == 'C' {
				c.Write(packet('x', nil))
			}
		}), scanner.KindProtocol},
		{"bad reply code", negotiated(func(c net.Conn, code byte) {
			if code == 'C' {
				c.Write(packet('y', []byte("hello\x00")))
			}
		}), scanner.KindProtocol},
		{"endless progress", negotiated(func(c net.Conn, code byte) {
			if code == 'C' {
				for range 1 << 20 {
					if _, err := c.Write(packet('p', bytes.Repeat([]byte{0}, 1000))); err != nil {
						return
					}
				}
			}
		}), scanner.KindProtocol},
		{"hangs", nil, scanner.KindTimeout},
		{"hangs after negotiation", negotiated(func(c net.Conn, code byte) {
			if code == 'C' {
				io.Copy(io.Discard, c) // until the client gives up
			}
		}), scanner.KindTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var addr string
			if tc.handle == nil {
				addr = scantest.ServeStop(t, "tcp", scantest.Hang)
			} else {
				addr = scantest.Serve(t, "tcp", tc.handle)
			}
			ctx := context.Background()
			if tc.kind == scanner.KindTimeout {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
				defer cancel()
			}
			_, err := newClient(t, addr, 0).Scan(ctx, request("x"))
			kindOf(t, err, tc.kind)
		})
	}
}

func TestNoRecipients(t *testing.T) {
	req := request("x")
	req.Recipients = []string{}
	_, err := newClient(t, scantest.Unused(t), 0).Scan(context.Background(), req)
	kindOf(t, err, scanner.KindRefused)
}

func TestDown(t *testing.T) {
	c := newClient(t, scantest.Unused(t), 0)
	_, err := c.Scan(context.Background(), request("x"))
	kindOf(t, err, scanner.KindConnect)
	kindOf(t, c.Ping(context.Background()), scanner.KindConnect)
}

func TestPingTimeout(t *testing.T) {
	c := newClient(t, scantest.ServeStop(t, "unix", scantest.Hang), 200*time.Millisecond)
	kindOf(t, c.Ping(context.Background()), scanner.KindTimeout)
}

func TestNew(t *testing.T) {
	for _, addr := range []string{"", "inet:11332@localhost", "http://h:1", "unix:"} {
		if _, err := New(scanner.Config{Name: "mf", Address: addr}); err == nil {
			t.Errorf("address %q accepted", addr)
		}
	}
	if _, err := New(scanner.Config{Name: "mf", Address: "unix:/run/milter.sock"}); err != nil {
		t.Error(err)
	}
}

func TestParseReply(t *testing.T) {
	cases := []struct {
		code int
		in   string
		want string
	}{
		{550, "550 5.7.1 go away", "550 5.7.1 go away"},
		{451, "451 4.7.0 try later", "451 4.7.0 try later"},
		{550, "550-5.7.1 line one\r\n550 5.7.1 line two", "550 5.7.1 line one line two"},
		{550, "550 4.7.1 wrong class", "550 5.0.0 wrong class"},
		{550, "550", "550 5.0.0 rejected by a content filter"},
		{554, "554 no enhanced code", "554 5.0.0 no enhanced code"},
		{599, "599 5.7.1 odd", "550 5.7.1 odd"},
		{450, "450 4.2.0 mailbox busy \x01", "450 4.2.0 mailbox busy ?"},
	}
	for _, tc := range cases {
		if got := ParseReply(tc.code, tc.in).Error(); got != tc.want {
			t.Errorf("ParseReply(%d, %q) = %q, want %q", tc.code, tc.in, got, tc.want)
		}
	}
}

func TestHeaderChange(t *testing.T) {
	bad := []gomilter.ModifyAction{
		{Type: gomilter.ActionAddHeader, HeaderName: "Bad Name", HeaderValue: "x"},
		{Type: gomilter.ActionAddHeader, HeaderName: "X", HeaderValue: "a\nInjected: yes"},
		{Type: gomilter.ActionAddHeader, HeaderName: "X", HeaderValue: "a\rb"},
		{Type: gomilter.ActionAddHeader, HeaderName: "", HeaderValue: "x"},
	}
	for _, m := range bad {
		if hc, ok := headerChange(m); ok {
			t.Errorf("%+v accepted as %+v", m, hc)
		}
	}
}

func TestSplitMessage(t *testing.T) {
	fields, body := splitMessage([]byte("A: 1\r\nB:2\r\n\tcont\r\nnot a field\r\n\tits cont\r\nC : 3\r\n\r\nbody\r\n\r\nmore"))
	want := []field{{"A", " 1"}, {"B", "2\n\tcont"}, {"C", " 3"}}
	if !reflect.DeepEqual(fields, want) || string(body) != "body\r\n\r\nmore" {
		t.Errorf("%q %q", fields, body)
	}
}

// FuzzScan feeds arbitrary octets as the milter's side of a session: the
// client never panics, and fails with a *scanner.Error or gives a sound
// Result.
func FuzzScan(f *testing.F) {
	neg := packet('O', []byte{0, 0, 0, 6, 0, 0, 0, 0x1f, 0, 0, 0, 0})
	cont := packet('c', nil)
	var ok []byte
	ok = append(ok, neg...)
	for range 9 {
		ok = append(ok, cont...)
	}
	f.Add(ok)
	f.Add(append(append([]byte{}, ok...), packet('h', []byte("X-A\x00v\x00"))...))
	f.Add(append(append([]byte{}, neg...), packet('y', []byte("550 5.7.1 no\x00"))...))
	f.Add(append(append([]byte{}, neg...), packet('m', []byte{0, 0, 0, 1, 'S', 0, 0})...))
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		c := newClient(t, "127.0.0.1:1", 0)
		c.dial = func(context.Context) (net.Conn, error) {
			client, server := net.Pipe()
			go func() {
				go io.Copy(io.Discard, server)
				server.Write(data)
				server.Close()
			}()
			return client, nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := c.Scan(ctx, request("x"))
		if err != nil {
			var se *scanner.Error
			if !errors.As(err, &se) || res != nil {
				t.Fatalf("error %v, result %v", err, res)
			}
			return
		}
		switch res.Action {
		case "accept", "reject", "tempfail", "discard", "quarantine":
		default:
			t.Fatalf("action %q", res.Action)
		}
		if res.Reply != nil && res.Reply.Validate() != nil {
			t.Fatalf("reply %v", res.Reply)
		}
		if len(res.Changes) > MaxChanges {
			t.Fatal("too many changes")
		}
	})
}

func FuzzParseReply(f *testing.F) {
	f.Add(550, "550 5.7.1 go away")
	f.Add(451, "451-4.7.1 a\r\n451 4.7.1 b")
	f.Add(599, "599 9.9.9")
	f.Add(400, "")
	f.Fuzz(func(t *testing.T, code int, s string) {
		if code < 400 || code > 599 { // the library lets through only these
			return
		}
		r := ParseReply(code, s)
		if err := r.Validate(); err != nil {
			t.Fatalf("ParseReply(%d, %q) = %v: %v", code, s, r, err)
		}
		if r.Code/100 != code/100 {
			t.Fatalf("class changed: %d → %d", code, r.Code)
		}
	})
}

// FuzzSplitMessage: the message is the client's; the split never loses a
// field name or the body.
func FuzzSplitMessage(f *testing.F) {
	f.Add([]byte("A: 1\r\nB:2\r\n\tcont\r\n\r\nbody"))
	f.Add([]byte("no header\r\n\r\n"))
	f.Add([]byte("\r\n\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		fields, body := splitMessage(msg)
		if len(body) > len(msg) {
			t.Fatal("body longer than the message")
		}
		if len(body) > 0 && !bytes.HasSuffix(msg, body) {
			t.Fatal("body is not the end of the message")
		}
		for _, f := range fields {
			if f.name == "" || strings.ContainsAny(f.name, ":\r\n") {
				t.Fatalf("field name %q", f.name)
			}
		}
	})
}

// BenchmarkScan: one 2 KB message per milter connection, against the
// library's server side.
func BenchmarkScan(b *testing.B) {
	c := newClient(b, serveMilter(b, "tcp", nil), 0)
	req := request("bench")
	req.Message = append(req.Message, strings.Repeat("0123456789abcdef\r\n", 110)...)
	b.SetBytes(int64(len(req.Message)))
	for b.Loop() {
		if _, err := c.Scan(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCRLF: every line end of a replacement body becomes CRLF, once.
func TestCRLF(t *testing.T) {
	for in, want := range map[string]string{
		"":               "",
		"no line end":    "no line end",
		"a\r\nb\r\n":     "a\r\nb\r\n",
		"a\nb\n":         "a\r\nb\r\n",
		"a\rb\r":         "a\r\nb\r\n",
		"a\n\r\nb\r\r\n": "a\r\n\r\nb\r\n\r\n",
	} {
		if got := string(crlf([]byte(in))); got != want {
			t.Errorf("crlf(%q) = %q, want %q", in, got, want)
		}
	}
}
