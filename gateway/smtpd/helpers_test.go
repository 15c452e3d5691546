package smtpd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"

	"moat/internal/reply"
	"moat/internal/smtptest"
)

// fakeSession records what the loop hands it.
type fakeSession struct {
	mu      sync.Mutex
	from    string
	opts    *MailOptions
	rcpts   []string
	msgs    [][]byte
	resets  int
	logouts int
	// refuse makes Rcpt refuse this address with 550 5.1.1.
	refuse string
}

var _ AuthSession = (*fakeSession)(nil)

func (f *fakeSession) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resets++
	f.from, f.rcpts = "", nil
}

func (f *fakeSession) Logout() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logouts++
	return nil
}

func (f *fakeSession) Mail(from string, opts *MailOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.from, f.opts = from, opts
	return nil
}

func (f *fakeSession) Rcpt(to string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if to == f.refuse {
		return reply.NoSuchUser
	}
	if to == "internal@error.example" {
		return errors.New("secret internal detail")
	}
	if to == "nilreply@error.example" {
		var r *reply.Reply // a nil reply inside a non-nil error
		return r
	}
	f.rcpts = append(f.rcpts, to)
	return nil
}

func (f *fakeSession) Data(r io.Reader) *reply.Reply {
	b, err := io.ReadAll(r)
	if err != nil {
		if rp := (*reply.Reply)(nil); errors.As(err, &rp) {
			return rp
		}
		return reply.TempLocal
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, b)
	return nil
}

func (f *fakeSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (f *fakeSession) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, reply.AuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user == "u" && pass == "p" {
			return nil
		}
		return reply.AuthFailed
	}), nil
}

func (f *fakeSession) messages() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.msgs...)
}

// testServer is a Server on 127.0.0.1:0 whose sessions are recorded.
type testServer struct {
	srv  *Server
	addr string
	mu   sync.Mutex
	ses  []*fakeSession
	idle chan idleState // each idle wait, when wanted
}

// idleState is what a connection held when it went idle.
type idleState struct {
	readBuf, writeBuf bool
	kept              int
}

func (ts *testServer) sessions() []*fakeSession {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]*fakeSession(nil), ts.ses...)
}

func (ts *testServer) last() *fakeSession {
	s := ts.sessions()
	if len(s) == 0 {
		return nil
	}
	return s[len(s)-1]
}

func testConfig() Config {
	return Config{
		Hostname:        "mx.example.org",
		MaxMessageBytes: 1 << 16,
		MaxRecipients:   3,
		MaxLineLength:   1000,
		ReadTimeout:     5 * time.Second,
		WriteTimeout:    5 * time.Second,
		SMTPUTF8:        true,
	}
}

// start runs a server; wrap, if set, wraps the listener.
func start(t *testing.T, cfg Config, wrap func(net.Listener) net.Listener) *testServer {
	t.Helper()
	ts := &testServer{idle: make(chan idleState, 100)}
	ts.srv = New(cfg, func(c *Conn) (Session, error) {
		if c.Hostname() == "refuse.example" {
			return nil, reply.ShuttingDown.WithHost("mx.example.org")
		}
		f := &fakeSession{refuse: "nobody@example.org"}
		ts.mu.Lock()
		ts.ses = append(ts.ses, f)
		ts.mu.Unlock()
		return f, nil
	}, nil)
	ts.srv.idleHook = func(c *Conn) {
		select {
		case ts.idle <- idleState{readBuf: c.readBuf != nil, writeBuf: c.replyBuf != nil, kept: len(c.partial)}:
		default:
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.addr = ln.Addr().String()
	if wrap != nil {
		ln = wrap(ln)
	}
	done := make(chan struct{})
	go func() { defer close(done); ts.srv.Serve(ln) }()
	t.Cleanup(func() {
		ts.srv.Close()
		<-done
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := ts.srv.Shutdown(ctx); err != nil {
			t.Errorf("connections left after Close: %v", err)
		}
	})
	return ts
}

// dial connects a raw client to the test server and checks its greeting.
func dial(t *testing.T, addr string) *smtptest.Raw {
	t.Helper()
	c := smtptest.DialRaw(t, addr)
	if !strings.Contains(c.Greeting, "mx.example.org ESMTP") {
		t.Fatalf("greeting %q", c.Greeting)
	}
	return c
}

// countConn counts the writes to a connection, and unwraps like moat's
// own wrappers.
type countConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}
func (c countConn) Unwrap() net.Conn { return c.Conn }

type countListener struct {
	net.Listener
	writes *atomic.Int64
}

func (l countListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countConn{Conn: c, writes: l.writes}, nil
}

// preConn has read bytes ahead of the server, like the guard after a
// PROXY header, and says so with Buffered.
type preConn struct {
	net.Conn
	pre []byte
}

func (c *preConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
func (c *preConn) Buffered() int     { return len(c.pre) }
func (c *preConn) NetConn() net.Conn { return c.Conn }

// byteConn serves fixed client bytes and collects what is written.
type byteConn struct {
	r   io.Reader
	out bytes.Buffer
}

func (b *byteConn) Read(p []byte) (int, error)       { return b.r.Read(p) }
func (b *byteConn) Write(p []byte) (int, error)      { return b.out.Write(p) }
func (b *byteConn) Close() error                     { return nil }
func (b *byteConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (b *byteConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (b *byteConn) SetDeadline(time.Time) error      { return nil }
func (b *byteConn) SetReadDeadline(time.Time) error  { return nil }
func (b *byteConn) SetWriteDeadline(time.Time) error { return nil }
func (b *byteConn) String() string                   { return b.out.String() }

func newByteConn(r io.Reader) *byteConn { return &byteConn{r: r} }

func (ts *testServer) conn(nc net.Conn) *Conn { return newConn(ts.srv, nc) }
