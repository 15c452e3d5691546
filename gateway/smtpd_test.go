package gateway

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"

	"moat/gateway/guard"
	"moat/internal/smtptest"
	"moat/relay/route"
)

// unwrapConn stands for the metrics wrapper: it unwraps with Unwrap, not
// NetConn.
type unwrapConn struct{ net.Conn }

func (c unwrapConn) Unwrap() net.Conn { return c.Conn }

type unwrapListener struct{ net.Listener }

func (l unwrapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return unwrapConn{c}, nil
}

// A trusted proxy's PROXY header and the client's first command arrive in
// one segment: the guard holds the command (read ahead), and the session
// loop must run it rather than wait on the silent socket. The guard's
// facts and the carried client address reach the session through the
// metrics-style wrapper.
func TestProxyHeaderWithPipelinedCommand(t *testing.T) {
	gcfg := guard.DefaultConfig()
	gcfg.TrustedProxies = []string{"127.0.0.1/32"}
	g, err := guard.New(gcfg, guard.Options{Hostname: "mx.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, func(o *Options) {
		o.Listeners[0].ProxyProtocol = true
		o.Wrap = func(l net.Listener, c Listener) net.Listener {
			return unwrapListener{g.Listen(l, guard.ListenerOptions{Name: c.Name, ProxyProtocol: true})}
		}
	})
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc := smtptest.NewRaw(t, c)
	rc.Send("PROXY TCP4 192.0.2.7 192.0.2.25 1234 25\r\nEHLO client.example\r\n")
	if code, text := rc.Reply(); code != 220 {
		t.Fatalf("greeting: %q", text)
	}
	if code, text := rc.Reply(); code != 250 {
		t.Fatalf("EHLO read ahead by the guard: %q", text)
	}
	rc.Expect("MAIL FROM:<s@far.example>", 250, "")
	rc.Expect("RCPT TO:<alice@example.org>", 250, "")
	rc.Expect("DATA", 354, "")
	rc.Send(simpleMsg)
	rc.Expect(".", 250, "")
	env := ts.spool.all()[0].env
	if env.ClientIP != "192.0.2.7" {
		t.Errorf("client %q, want the one from the PROXY header", env.ClientIP)
	}
}

// RFC 5321 §4.5.1: RCPT TO:<Postmaster> without a domain (any case) is
// accepted, from anyone, on every listener: for the postmaster of this
// host, or, when no local domain holds the host name, of the first local
// domain, or, with no local domain at all, of the first relay domain (the
// backend's).
func TestBarePostmaster(t *testing.T) {
	relayOnly := route.Config{
		RelayDomains: map[string]string{"corp.example": "backend", "b.example": "backend", ".sub.example": "backend"},
		Routes:       map[string]route.Route{"backend": {Type: "smtp", Address: "127.0.0.1:1"}},
	}
	cases := []struct {
		name     string
		hostname string
		rcpt     string
		state    func() *State
		want     string
		route    string
	}{
		{name: "host in a local domain", hostname: "mx.example.org", rcpt: "Postmaster", want: "postmaster@example.org", route: "local"},
		{name: "host in no local domain", hostname: "mx.elsewhere.example", rcpt: "postmaster", want: "postmaster@example.org", route: "local"},
		{name: "no local domain: the backend", hostname: "mx.elsewhere.example", rcpt: "PostMaster", want: "postmaster@b.example", route: "backend",
			state: func() *State {
				return &State{Router: route.NewRouter(relayOnly), Directory: mapDir{}, Postmaster: DefaultPostmaster(relayOnly)}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, func(o *Options) {
				o.Hostname = tc.hostname
				if tc.state != nil {
					o.State = tc.state()
				}
			})
			rc := smtptest.DialRaw(t, ts.addr)
			rc.Expect("EHLO c.example", 250, "")
			rc.Expect("MAIL FROM:<s@far.example>", 250, "")
			rc.Expect("RCPT TO:<"+tc.rcpt+">", 250, "")
			rc.Expect("DATA", 354, "")
			rc.Send(simpleMsg)
			rc.Expect(".", 250, "")
			env := ts.spool.all()[0].env
			if len(env.Recipients) != 1 || env.Recipients[0].Address != tc.want || env.Recipients[0].Route != tc.route {
				t.Fatalf("recipients %+v, want %s by route %s", env.Recipients, tc.want, tc.route)
			}
		})
	}
	// On a submission listener, after AUTH.
	ts := startServer(t, func(o *Options) {
		o.Hostname = "mx.elsewhere.example"
		o.Listeners = []Listener{{Name: "sub", Address: "127.0.0.1:0", Mode: "submission", TLS: "starttls"}}
		o.TLS = smtptest.ServerTLS(t, "mx.elsewhere.example")
		o.State.Users = fakeUsers{"alice@example.org": "correct horse"}
		o.Checks = &Checks{AuthLimits: &fakeLimiter{}}
	})
	c := dialTLS(t, ts.addr)
	if err := c.Auth(sasl.NewPlainClient("", "alice@example.org", "correct horse")); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("alice@example.org", []string{"POSTMASTER"}, strings.NewReader("From: alice@example.org\r\nSubject: hi\r\n\r\nhello\r\n")); err != nil {
		t.Fatalf("submission to the bare postmaster: %v", err)
	}
	if env := ts.spool.all()[0].env; len(env.Recipients) != 1 || env.Recipients[0].Address != "postmaster@example.org" {
		t.Fatalf("submission: recipients %+v", env.Recipients)
	}
	// No local domain and no relay domain: nobody to take it, 550, not a relay.
	ts = startServer(t, func(o *Options) {
		o.Hostname = "mx.elsewhere.example"
		o.State = &State{Router: route.NewRouter(route.Config{}), Directory: mapDir{}}
	})
	rc := smtptest.DialRaw(t, ts.addr)
	rc.Expect("EHLO c.example", 250, "")
	rc.Expect("MAIL FROM:<s@far.example>", 250, "")
	rc.Expect("RCPT TO:<postmaster>", 550, "5.1.1")
}

// DefaultPostmaster: the first local domain as configured, else the first
// relay domain in sorted order that is not a wildcard.
func TestDefaultPostmaster(t *testing.T) {
	for _, tc := range []struct {
		cfg  route.Config
		want string
	}{
		{route.Config{LocalDomains: []string{".wild.example", "Example.ORG.", "b.example"}}, "postmaster@example.org"},
		{route.Config{RelayDomains: map[string]string{"z.example": "r", "a.example": "r", ".a.example": "r"}}, "postmaster@a.example"},
		{route.Config{}, ""},
	} {
		if got := DefaultPostmaster(tc.cfg); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.cfg, got, tc.want)
		}
	}
}

// Shutdown tells a client waiting before or after EHLO: 421 4.3.2.
func TestShutdownTellsWaitingClients421(t *testing.T) {
	for _, ehlo := range []bool{false, true} {
		ts := startServer(t, nil)
		rc := smtptest.DialRaw(t, ts.addr)
		if ehlo {
			rc.Expect("EHLO c.example", 250, "")
		}
		ctx, cancel := contextWithTimeout(200 * time.Millisecond)
		done := make(chan error, 1)
		go func() { done <- ts.srv.Shutdown(ctx) }()
		code, text := rc.Reply()
		if code != 421 || !strings.Contains(text, "4.3.2") {
			t.Fatalf("after EHLO %v: got %q, want 421 4.3.2", ehlo, text)
		}
		<-done
		cancel()
	}
}

// A session refused with 421 (here: EHLO while shutting down) ends the
// connection after the reply (RFC 5321 §3.8), so Shutdown need not wait.
func TestRefusalWith421Closes(t *testing.T) {
	ts := startServer(t, nil)
	rc := smtptest.DialRaw(t, ts.addr)
	ctx, cancel := contextWithTimeout(5 * time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ts.srv.Shutdown(ctx) }()
	for !ts.srv.isClosing() {
		time.Sleep(time.Millisecond)
	}
	rc.Expect("EHLO c.example", 421, "4.3.2")
	if code, text := rc.Reply(); code != 0 {
		t.Fatalf("still open after 421: %q", text)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
