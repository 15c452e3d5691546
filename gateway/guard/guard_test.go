package guard

import (
	"crypto/tls"
	"errors"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/pires/go-proxyproto"

	"moat/internal/dnsres"
	"moat/internal/dnstest"
	"moat/internal/smtptest"
	"moat/internal/testclock"
	"moat/policy/dnsbl"
)

func TestMultiLineBannerAndPassCache(t *testing.T) {
	s := startServer(t, testConfig(), testOpts{listener: ListenerOptions{GreetDelay: 300 * time.Millisecond}})
	c := dial(t, s.addr, "127.0.0.2")
	// A patient client sees our first line, then go-smtp's final line.
	c.expect("220-" + testHost + " ESMTP\r\n")
	c.expect("220 " + testHost + " ESMTP Service Ready")
	c.send("EHLO client.test\r\n")
	c.expect("250-")
	f := s.nextFacts(t)
	if f.Pregreet != PregreetPass || f.Client.Addr() != netip.MustParseAddr("127.0.0.2") || f.Proxied || f.Listener != "mx" {
		t.Errorf("facts = %+v", f)
	}
	// Next time the client is in the pass cache: no delay, no "220-".
	c2 := dial(t, s.addr, "127.0.0.2")
	c2.expect("220 " + testHost)
	c2.send("HELO client.test\r\n")
	if f := s.nextFacts(t); f.Pregreet != PregreetCached {
		t.Errorf("second connection pregreet = %q, want cached", f.Pregreet)
	}
	if s.g.Stats().PregreetPassed() != 1 {
		t.Errorf("passed = %d", s.g.Stats().PregreetPassed())
	}
}

// TestEarlyTalkers: each is refused in the 30 s greet delay without
// waiting for it to end (the client gives up after 10 s): the pregreet
// bot because the action is drop, the others because they are never held.
func TestEarlyTalkers(t *testing.T) {
	tests := []struct {
		name, send, reply, reason string
	}{
		{"pregreet", "EHLO spam.test\r\n", "521 5.5.1 " + testHost + " Protocol error", ReasonPregreet},
		{"http", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "521 5.5.1", ReasonHTTP},
		{"tls", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", "", ReasonTLSOnPlain},
		{"proxy v1", "PROXY TCP4 192.0.2.1 192.0.2.2 1 25\r\n", "521 5.5.1", ReasonProxyUntrusted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			if tt.reason == ReasonPregreet {
				cfg.Pregreet.Action = PregreetDrop
			}
			s := startServer(t, cfg, testOpts{listener: ListenerOptions{GreetDelay: 30 * time.Second}})
			c := dial(t, s.addr, "127.0.0.3")
			c.c.SetDeadline(time.Now().Add(10 * time.Second))
			c.send(tt.send) // before the banner
			c.expect("220-")
			if tt.reply != "" {
				c.expect(tt.reply)
			}
			s.rejected(t, c, tt.reason, 1)
			if s.g.Stats().Admitted() != 0 {
				t.Error("early talker admitted")
			}
		})
	}
}

// TestPregreetHold: with the default action an early talker keeps its
// connection, and its reads are drained, until the greet delay ends; only
// then does it get its 521. One that sends more than holdDrain bytes is
// refused at once.
func TestPregreetHold(t *testing.T) {
	const delay = 700 * time.Millisecond
	s := startServer(t, testConfig(), testOpts{listener: ListenerOptions{GreetDelay: delay}})
	start := time.Now()
	c := dial(t, s.addr, "127.0.0.3")
	c.send("EHLO spam.test\r\n")
	c.expect("220-")
	c.send("MAIL FROM:<a@spam.test>\r\n") // still read and dropped
	c.expect("521 5.5.1")
	if held := time.Since(start); held < delay {
		t.Errorf("521 after %v, before the %v greet delay ended", held, delay)
	}
	s.rejected(t, c, ReasonPregreet, 1)

	// A flood ends the hold: the client gives up after 10 s, the delay is 30 s.
	s = startServer(t, testConfig(), testOpts{listener: ListenerOptions{GreetDelay: 30 * time.Second}})
	c = dial(t, s.addr, "127.0.0.3")
	c.c.SetDeadline(time.Now().Add(10 * time.Second))
	c.expect("220-")
	c.send("EHLO spam.test\r\n" + strings.Repeat("x", 2*holdDrain))
	c.expect("521 5.5.1")
	c.expectClosed()
	if s.g.Stats().Admitted() != 0 {
		t.Error("early talker admitted")
	}
}

func TestAbuseAfterBanner(t *testing.T) {
	tests := []struct {
		name, send, reply, reason string
	}{
		{"http get", "GET / HTTP/1.1\r\n", "521 5.5.1", ReasonHTTP},
		{"http post after noop", "NOOP\r\n", "250", ReasonHTTP},
		{"http header", "Host: example.org\r\n", "521", ReasonHTTP},
		{"tls hello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "", ReasonTLSOnPlain},
		{"proxy v1 untrusted", "PROXY TCP4 192.0.2.1 192.0.2.2 1 25\r\n", "521", ReasonProxyUntrusted},
		{"proxy v2 untrusted", "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c", "", ReasonProxyUntrusted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, testConfig(), testOpts{})
			c := dial(t, s.addr, "127.0.0.4")
			c.expect("220 ")
			c.send(tt.send)
			if tt.reply != "" {
				c.expect(tt.reply)
			}
			if tt.reply == "250" {
				c.send("POST /x HTTP/1.0\r\n")
				c.expect("521")
			}
			s.rejected(t, c, tt.reason, 1)
		})
	}
}

func TestConnectionLimits(t *testing.T) {
	clock := testclock.New(time.Unix(1e9, 0))
	cfg := testConfig()
	cfg.MaxConnections = 6
	cfg.PerIP = Limit{RatePerMinute: 1, Burst: 3, MaxConcurrent: 2}
	cfg.PerPrefix = PrefixLimit{IPv4Prefix: 24, IPv6Prefix: 64, Limit: Limit{MaxConcurrent: 3}}
	s := startServer(t, cfg, testOpts{opt: Options{Now: clock.Now}})
	busy := "421 4.7.0 " + testHost + " Too many connections from your address, try again later\r\n"

	a1 := dial(t, s.addr, "127.0.0.2")
	a1.expect("220 ")
	a2 := dial(t, s.addr, "127.0.0.2")
	a2.expect("220 ")
	a3 := dial(t, s.addr, "127.0.0.2")
	a3.expect(busy) // per-IP concurrency
	a3.expectClosed()
	b1 := dial(t, s.addr, "127.0.0.3")
	b1.expect("220 ")
	b2 := dial(t, s.addr, "127.0.0.4")
	b2.expect(busy) // per-prefix concurrency: 127.0.0.0/24 has 3
	b2.expectClosed()
	o1 := dial(t, s.addr, "127.0.1.2")
	o1.expect("220 ") // another /24
	o2 := dial(t, s.addr, "127.0.2.2")
	o2.expect("220 ")
	o3 := dial(t, s.addr, "127.0.3.2")
	o3.expect("220 ")
	o4 := dial(t, s.addr, "127.0.4.2")
	o4.expect("421 4.7.0 " + testHost + " Too many connections, try again later") // 6 open
	o4.expectClosed()

	// Closing frees the places.
	a1.c.Close()
	waitFor(t, "release", func() bool { return s.g.Active() == 5 })
	// The per-IP bucket had a burst of 3: two taken, one left.
	a4 := dial(t, s.addr, "127.0.0.2")
	a4.expect("220 ")
	a4.c.Close()
	waitFor(t, "release", func() bool { return s.g.Active() == 5 })
	a5 := dial(t, s.addr, "127.0.0.2")
	a5.expect(busy) // rate: bucket empty
	a5.expectClosed()
	clock.Add(time.Minute) // one token back
	a6 := dial(t, s.addr, "127.0.0.2")
	a6.expect("220 ")

	st := s.g.Stats()
	for reason, want := range map[string]uint64{
		ReasonPerIPConcurrency: 1, ReasonPerPrefixConcurrency: 1, ReasonMaxConnections: 1, ReasonPerIPRate: 1,
	} {
		if got := st.Rejected(reason); got != want {
			t.Errorf("%s = %d, want %d", reason, got, want)
		}
	}
}

func TestDenyAllowAndReload(t *testing.T) {
	dir := t.TempDir()
	denyFile := filepath.Join(dir, "deny.txt")
	os.WriteFile(denyFile, []byte("# spammers\n127.0.0.7 # one\n127.0.9.0/24\n"), 0o600)
	cfg := testConfig()
	cfg.DenyFiles = []string{denyFile}
	cfg.Allow = []string{"127.0.0.6"}
	cfg.PerIP.MaxConcurrent = 1
	s := startServer(t, cfg, testOpts{listener: ListenerOptions{GreetDelay: 30 * time.Second}})

	for _, src := range []string{"127.0.0.7", "127.0.9.9"} {
		c := dial(t, s.addr, src)
		c.expect("554 5.7.1 " + testHost + " Access denied for [" + src + "]")
		c.expectClosed()
	}
	// Allow-listed: no pregreet delay, no concurrency limit.
	a1 := dial(t, s.addr, "127.0.0.6")
	a1.expect("220 ")
	a2 := dial(t, s.addr, "127.0.0.6")
	a2.expect("220 ")
	a2.send("HELO client.test\r\n")
	if f := s.nextFacts(t); !f.Allowlisted || f.Pregreet != PregreetAllowlisted {
		t.Errorf("facts = %+v", f)
	}

	// Reload: the file changes, an inline entry is added.
	os.WriteFile(denyFile, []byte("127.0.0.8\n"), 0o600)
	cfg.Deny = []string{"127.0.0.6"} // deny wins over allow
	if err := s.g.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	c := dial(t, s.addr, "127.0.0.6")
	c.expect("554 5.7.1")
	c = dial(t, s.addr, "127.0.0.8")
	c.expect("554 5.7.1")
	// A bad reload keeps the old lists.
	os.WriteFile(denyFile, []byte("not-an-ip\n"), 0o600)
	if err := s.g.Reload(cfg); err == nil || !strings.Contains(err.Error(), "deny.txt:1") {
		t.Errorf("reload error = %v", err)
	}
	c = dial(t, s.addr, "127.0.0.8")
	c.expect("554 5.7.1")
	if got := s.g.Stats().Rejected(ReasonDenyList); got != 5 {
		t.Errorf("deny_list = %d", got)
	}
}

type rejections struct {
	mu  sync.Mutex
	got []Rejection
}

func (r *rejections) add(x Rejection) { r.mu.Lock(); r.got = append(r.got, x); r.mu.Unlock() }
func (r *rejections) last() Rejection {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) == 0 {
		return Rejection{}
	}
	return r.got[len(r.got)-1]
}

func TestDNSBLFake(t *testing.T) {
	res := &dnstest.AddrMap{A: map[string][]string{
		"2.0.0.127.zen.test.": {"127.0.0.2"},
		"3.0.0.127.wl.test.":  {"127.0.15.1"},
	}, Fail: map[string]bool{"3.0.0.127.zen.test.": true}}
	cfg := testConfig()
	cfg.DNSBL.Zones = []dnsbl.Zone{{Zone: "zen.test", Weight: 2, Match: []string{"127.0.0.2-127.0.0.11"}}, {Zone: "wl.test", Weight: -5}}
	cfg.DNSBL.Threshold = 2
	var rej rejections
	s := startServer(t, cfg, testOpts{opt: Options{Resolver: res, OnReject: rej.add}, listener: ListenerOptions{GreetDelay: 30 * time.Second}})

	// Listed: rejected as soon as the answer is in, naming the list.
	c := dial(t, s.addr, "127.0.0.2")
	c.expect("220-")
	c.expect("550 5.7.1 " + testHost + " Service unavailable; client [127.0.0.2] blocked using zen.test\r\n")
	c.expectClosed()
	if r := rej.last(); r.Reason != ReasonDNSBL || r.Detail != "zen.test" {
		t.Errorf("rejection = %+v", r)
	}
	// DNSWL: the negative score ends the 30 s pregreet wait.
	c = dial(t, s.addr, "127.0.0.3")
	c.greeting()
	c.send("HELO client.test\r\n")
	f := s.nextFacts(t)
	if f.Pregreet != PregreetDNSWL || f.DNSBL.Score != -5 || len(f.DNSBLFailed) != 1 || f.DNSBLFailed[0] != "zen.test" {
		t.Errorf("facts = %+v", f)
	}

	// 421 variant.
	cfg.DNSBL.Reply = 421
	if err := s.g.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	c = dial(t, s.addr, "127.0.0.2")
	c.expect("220-")
	c.expect("421 4.7.1 " + testHost + " Service unavailable; client [127.0.0.2] blocked")
}

func TestProxyProtocol(t *testing.T) {
	cfg := testConfig()
	cfg.TrustedProxies = []string{"127.0.0.9/32"}
	cfg.Deny = []string{"192.0.2.66"}
	cfg.ProxyHeaderTimeout = 300 * time.Millisecond
	s := startServer(t, cfg, testOpts{listener: ListenerOptions{ProxyProtocol: true}})

	v2, err := proxyproto.HeaderProxyFromAddrs(2,
		&net.TCPAddr{IP: net.ParseIP("2001:db8::7"), Port: 40000},
		&net.TCPAddr{IP: net.ParseIP("2001:db8::25"), Port: 25}).Format()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, header, want string
	}{
		{"v1", "PROXY TCP4 192.0.2.7 192.0.2.25 1234 25\r\n", "192.0.2.7:1234"},
		{"v2", string(v2), "[2001:db8::7]:40000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, s.addr, "127.0.0.9")
			c.send(tt.header)
			c.expect("220 ")
			c.send("EHLO x\r\n")
			c.expect("250")
			f := s.nextFacts(t)
			if f.Client.String() != tt.want || !f.Proxied || f.Peer.Addr() != netip.MustParseAddr("127.0.0.9") {
				t.Errorf("facts = %+v", f)
			}
		})
	}
	// The carried address is the one checked.
	c := dial(t, s.addr, "127.0.0.9")
	c.send("PROXY TCP4 192.0.2.66 192.0.2.25 1234 25\r\n")
	c.expect("554 5.7.1 " + testHost + " Access denied for [192.0.2.66]")

	// A trusted proxy must send the header.
	c = dial(t, s.addr, "127.0.0.9")
	c.send("EHLO x\r\n")
	c.expectClosed()
	c = dial(t, s.addr, "127.0.0.9") // silent: the header deadline
	s.rejected(t, c, ReasonProxyBadHeader, 2)

	// Anyone else is a direct client, and a header from it is abuse.
	c = dial(t, s.addr, "127.0.0.10")
	c.expect("220 ")
	c.send("PROXY TCP4 192.0.2.7 192.0.2.25 1234 25\r\n")
	c.expect("521")
	s.rejected(t, c, ReasonProxyUntrusted, 1)
}

func TestSlowClientsDoNotBlockAccept(t *testing.T) {
	cfg := testConfig()
	cfg.Allow = []string{"127.0.0.21"}
	s := startServer(t, cfg, testOpts{listener: ListenerOptions{GreetDelay: 30 * time.Second}})
	var slow []*client
	for i := 0; i < 50; i++ {
		c := dial(t, s.addr, "127.0.0.20")
		slow = append(slow, c)
	}
	for _, c := range slow {
		c.expect("220-") // each is in its pregreet wait
	}
	good := dial(t, s.addr, "127.0.0.21")
	good.expect("220 ")
	good.send("EHLO good.test\r\n")
	good.expect("250-")
	if got := s.g.Active(); got != 51 {
		t.Errorf("active = %d, want 51", got)
	}
	if s.g.Stats().Admitted() != 1 {
		t.Errorf("admitted = %d", s.g.Stats().Admitted())
	}
}

func TestTooManyErrorsAndTarpit(t *testing.T) {
	cfg := testConfig()
	cfg.MaxErrors = 3
	cfg.Tarpit = Tarpit{After: 1, Base: time.Millisecond, Max: 5 * time.Millisecond}
	s := startServer(t, cfg, testOpts{})
	c := dial(t, s.addr, "127.0.0.2")
	c.expect("220 ")
	c.ehlo()
	c.send("MAIL FROM:<a@example.org>\r\n")
	c.expect("250")
	for i := 0; i < 3; i++ {
		c.send("RCPT TO:<bad@example.org>\r\n")
		c.expect("550 5.1.1")
	}
	c.send("RCPT TO:<bad@example.org>\r\n")
	c.expect("421 4.7.0 " + testHost + " Too many errors, closing connection")
	s.rejected(t, c, ReasonTooManyErrors, 1)
}

func TestCommandLoop(t *testing.T) {
	cfg := testConfig()
	cfg.MaxCommandLoops = 5
	s := startServer(t, cfg, testOpts{})
	c := dial(t, s.addr, "127.0.0.2")
	c.expect("220 ")
	for i := 0; i < 5; i++ {
		c.send("NOOP\r\n")
		c.expect("250")
	}
	c.send("RSET\r\n")
	c.expect("421 4.7.0 " + testHost + " Too many commands")
	s.rejected(t, c, ReasonCommandLoop, 1)
}

// Message content is not commands: HTTP-looking lines and NOOPs inside
// DATA and BDAT pass, and counting resumes after the message.
func TestDataIsNotInspected(t *testing.T) {
	cfg := testConfig()
	cfg.MaxCommandLoops = 3
	s := startServer(t, cfg, testOpts{})
	c := dial(t, s.addr, "127.0.0.2")
	c.expect("220 ")
	c.ehlo()
	// Pipelined (RFC 2920), with the body sent after the 354.
	c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("354")
	c.send("Subject: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nNOOP\r\nNOOP\r\nNOOP\r\n\x16\x03\r\n.\r\n")
	c.expect("250")
	body := "GET / HTTP/1.1\r\nNOOP\r\nNOOP\r\n"
	c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nBDAT " + itoa(len(body)) + " LAST\r\n" + body)
	c.expect("250")
	c.expect("250")
	c.expect("250")
	c.send("NOOP\r\nNOOP\r\n") // EHLO + 2 = 3
	c.expect("250")
	c.expect("250")
	c.send("NOOP\r\n")
	c.expect("421")
	c.expectClosed()
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }

// After STARTTLS the bytes are TLS: the ClientHello must not be taken for
// a TLS-on-plaintext client, and the facts survive the TLS wrapper.
func TestStartTLS(t *testing.T) {
	s := startServer(t, testConfig(), testOpts{tls: smtptest.ServerTLS(t, testHost), listener: ListenerOptions{GreetDelay: 100 * time.Millisecond}})
	conn, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.5")}}).Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c, err := smtp.NewClientStartTLS(conn, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 3; i++ {
		if err := c.Noop(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Mail("a@example.org", nil); err != nil {
		t.Fatal(err)
	}
	s.nextFacts(t)
	f := s.nextFacts(t) // the session after STARTTLS, through *tls.Conn
	if f.Client.Addr() != netip.MustParseAddr("127.0.0.5") || f.Pregreet != PregreetPass {
		t.Errorf("facts after STARTTLS = %+v", f)
	}
	if n := s.g.Stats().Rejected(ReasonTLSOnPlain); n != 0 {
		t.Errorf("tls_on_plain = %d", n)
	}
}

// ImplicitTLS: the guard under tls.NewListener sees only ciphertext.
func TestImplicitTLS(t *testing.T) {
	cfg := testConfig()
	g, err := New(cfg, Options{Hostname: testHost})
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := tls.NewListener(g.Listen(inner, ListenerOptions{Name: "smtps", ImplicitTLS: true, GreetDelay: time.Minute}), smtptest.ServerTLS(t, testHost))
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &session{}, nil }))
	srv.Domain = testHost
	go srv.Serve(ln)
	defer srv.Close()
	c, err := smtp.DialTLS(inner.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("x"); err != nil {
		t.Fatal(err)
	}
	if err := c.Noop(); err != nil {
		t.Fatal(err)
	}
}

func TestListenerClose(t *testing.T) {
	g, err := New(testConfig(), Options{Hostname: testHost})
	if err != nil {
		t.Fatal(err)
	}
	inner, _ := net.Listen("tcp", "127.0.0.1:0")
	ln := g.Listen(inner, ListenerOptions{Name: "x", GreetDelay: time.Minute})
	c := dial(t, inner.Addr().String(), "127.0.0.2")
	c.expect("220-")
	errc := make(chan error, 1)
	go func() { _, err := ln.Accept(); errc <- err }()
	ln.Close()
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close = %v", err)
	}
	c.expectClosed() // the pending connection is closed too
	waitFor(t, "release", func() bool { return g.Active() == 0 })
}

// The same through the project's resolver and a real DNS server.
func TestDNSBLRealDNS(t *testing.T) {
	srv := dnstest.NewServer(t)
	srv.Add("2.0.0.127.zen.test. 300 IN A 127.0.0.2", "3.0.0.127.wl.test. 300 IN A 127.0.10.1")
	res, err := dnsres.New(dnsres.Config{Servers: []string{srv.Addr()}, Timeout: 200 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.DNSBL.Zones = []dnsbl.Zone{{Zone: "zen.test", Weight: 1}, {Zone: "wl.test", Weight: -2}}
	cfg.DNSBL.Timeout = time.Second
	s := startServer(t, cfg, testOpts{opt: Options{Resolver: res}, listener: ListenerOptions{GreetDelay: 30 * time.Second}})

	c := dial(t, s.addr, "127.0.0.2")
	c.expect("220-")
	c.expect("550 5.7.1 " + testHost + " Service unavailable; client [127.0.0.2] blocked using zen.test")
	c = dial(t, s.addr, "127.0.0.3")
	c.greeting()
	c.send("HELO x\r\n")
	if f := s.nextFacts(t); f.Pregreet != PregreetDNSWL || len(f.DNSBL.Hits) != 1 || !f.DNSBL.Hits[0].Allowed {
		t.Errorf("facts = %+v", f)
	}
	waitFor(t, "count", func() bool { return s.g.Stats().Rejected(ReasonDNSBL) == 1 })
}
