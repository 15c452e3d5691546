package verify

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"moat/internal/smtptest"
	"moat/relay/route"
)

func knownSink() *sink {
	return &sink{known: map[string]bool{"alice@corp.example": true, "bob@corp.example": true}}
}

func TestCallaheadKnownUnknown(t *testing.T) {
	s := knownSink()
	s.rcptErr = map[string]error{
		"nullmx@corp.example":   &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 10}, Message: "null MX"},
		"policy@corp.example":   &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "relay denied"},
		"syntax@corp.example":   &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "bad address"},
		"full@corp.example":     &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "mailbox full"},
		"busy@corp.example":     &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "busy"},
		"greylist@corp.example": &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "greylisted"},
	}
	addr, _ := startSink(t, s, nil)
	v, _ := newTest(t, DefaultConfig(), callaheadRoutes(addr), nil)
	tests := []struct {
		rcpt string
		code int
		enh  string
	}{
		{"alice@corp.example", 0, ""},
		{"<bob@CORP.example>", 0, ""},
		{"Alice@corp.example", 0, ""}, // the sink folds case
		{"carol@corp.example", 550, "5.1.1"},
		{"nullmx@corp.example", 550, "5.1.10"},
		{"policy@corp.example", 550, "5.1.1"},
		{"syntax@corp.example", 550, "5.1.3"},
		{"full@corp.example", 550, "5.1.1"},
		{"busy@corp.example", 451, "4.4.3"},
		{"greylist@corp.example", 451, "4.4.3"},
		{"@a,@b:x@corp.example", 501, "5.1.3"},
		{"x@[192.0.2.1]", 501, "5.1.3"},
		{"", 501, "5.1.3"},
	}
	for _, tt := range tests {
		t.Run(tt.rcpt, func(t *testing.T) {
			r := wantOutcome(t, check(t, v, client1, tt.rcpt), tt.code, tt.enh)
			if r != nil && (strings.Contains(r.Text, "corp.example") || strings.Contains(r.Text, addr)) {
				t.Errorf("reply text %q shows backend details", r.Text)
			}
		})
	}
	if _, ok := s.helos.Load("gw.test"); !ok {
		t.Error("backend did not see EHLO gw.test")
	}
	// Routes without verification accept anything; unknown routes are
	// an error, not a reply.
	if err := v.Check(context.Background(), client1, "plain", "nobody@corp.example"); err != nil {
		t.Errorf("route without verification: %v", err)
	}
	if err := v.Check(context.Background(), client1, "nope", "x@corp.example"); code(err) != -1 {
		t.Errorf("unknown route: got %v, want a plain error", err)
	}
}

func TestCallaheadCache(t *testing.T) {
	s := knownSink()
	addr, _ := startSink(t, s, nil)
	cfg := DefaultConfig()
	v, clk := newTest(t, cfg, callaheadRoutes(addr), nil)
	for _, rcpt := range []string{"alice@corp.example", "nobody@corp.example"} {
		before := s.rcpts.Load()
		first := code(check(t, v, client1, rcpt))
		second := code(check(t, v, client2, strings.ToUpper(rcpt[:1])+rcpt[1:]))
		if first != second {
			t.Errorf("%s: %d then %d", rcpt, first, second)
		}
		// The local part is kept as written (RFC 5321 §2.4), so
		// "Alice" is another probe; the same spelling is not.
		check(t, v, client2, rcpt)
		if got := s.rcpts.Load() - before; got != 2 {
			t.Errorf("%s: %d probes for 3 checks of 2 spellings, want 2", rcpt, got)
		}
	}
	st := v.Stats()
	if st.CacheHits != 2 || st.Probes != 4 {
		t.Errorf("stats %+v: want 2 cache hits, 4 probes", st)
	}
	// Negative answers expire before positive ones.
	clk.Add(cfg.NegativeTTL + time.Second)
	before := s.rcpts.Load()
	check(t, v, client1, "alice@corp.example")
	check(t, v, client1, "nobody@corp.example")
	if got := s.rcpts.Load() - before; got != 1 {
		t.Errorf("after the negative TTL: %d probes, want 1 (the negative one)", got)
	}
	clk.Add(cfg.PositiveTTL)
	check(t, v, client1, "alice@corp.example")
	if got := s.rcpts.Load() - before; got != 2 {
		t.Errorf("after the positive TTL: %d probes, want 2", got)
	}
}

func TestCallaheadBackendDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var dials sync.Map
	var n int
	var mu sync.Mutex
	cfg := DefaultConfig()
	v, clk := newTest(t, cfg, callaheadRoutes(addr), func(o *Options) {
		o.Dial = func(ctx context.Context, network, a string) (net.Conn, error) {
			mu.Lock()
			n++
			mu.Unlock()
			dials.Store(a, true)
			return (&net.Dialer{}).DialContext(ctx, network, a)
		}
	})
	attempts := func() int { mu.Lock(); defer mu.Unlock(); return n }
	r := smtptest.AsReply(t, check(t, v, client1, "alice@corp.example"))
	if r.Code != 451 || r.Enhanced.String() != "4.4.3" || !r.Temporary() {
		t.Fatalf("got %v, want 451 4.4.3", r)
	}
	// Another address does not dial again while the backend is marked
	// down; the same one is answered from the short cache.
	if c := code(check(t, v, client1, "bob@corp.example")); c != 451 {
		t.Fatalf("got %d, want 451", c)
	}
	if c := code(check(t, v, client1, "alice@corp.example")); c != 451 {
		t.Fatalf("got %d, want 451", c)
	}
	if got := attempts(); got != 1 {
		t.Fatalf("%d connection attempts, want 1", got)
	}
	// Not cached long: after tempfail_ttl, it tries again.
	clk.Add(cfg.TempfailTTL + time.Second)
	check(t, v, client1, "alice@corp.example")
	if got := attempts(); got != 2 {
		t.Fatalf("%d connection attempts after tempfail_ttl, want 2", got)
	}
	if st := v.Stats(); st.Unknown != 0 || st.ProbeTempfails == 0 {
		t.Errorf("stats %+v", st)
	}

	// callahead_tempfail: accept lets the recipient in.
	cfg.CallaheadTempfail = TempfailAccept
	va, _ := newTest(t, cfg, callaheadRoutes(addr), nil)
	if err := check(t, va, client1, "alice@corp.example"); err != nil {
		t.Fatalf("tempfail accept: got %v", err)
	}
}

func TestCallaheadNoTempfailCache(t *testing.T) {
	s := knownSink()
	s.rcptErr = map[string]error{"busy@corp.example": &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "busy"}}
	addr, _ := startSink(t, s, nil)
	cfg := DefaultConfig()
	cfg.TempfailTTL = 0
	v, _ := newTest(t, cfg, callaheadRoutes(addr), nil)
	for range 3 {
		if c := code(check(t, v, client1, "busy@corp.example")); c != 451 {
			t.Fatalf("got %d, want 451", c)
		}
	}
	if got := s.rcpts.Load(); got != 3 {
		t.Errorf("%d probes, want 3 (tempfail_ttl 0 caches nothing)", got)
	}
}

func TestCallaheadMailRefused(t *testing.T) {
	s := knownSink()
	s.mailErr = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "no null sender"}
	addr, _ := startSink(t, s, nil)
	v, _ := newTest(t, DefaultConfig(), callaheadRoutes(addr), nil)
	// A refused MAIL FROM:<> says nothing about the recipient: 4xx,
	// never 550.
	if c := code(check(t, v, client1, "alice@corp.example")); c != 451 {
		t.Fatalf("got %d, want 451", c)
	}
	if c := code(check(t, v, client1, "nobody@corp.example")); c != 451 {
		t.Fatalf("got %d, want 451", c)
	}
}

// wantTempfail runs a callahead of alice against a raw peer with the
// probe timeout given and wants 451: a peer that hangs or talks nonsense
// says nothing about the recipient.
func wantTempfail(t *testing.T, handle func(net.Conn), probe time.Duration) {
	t.Helper()
	addr := smtptest.ServeConns(t, handle)
	cfg := DefaultConfig()
	cfg.ProbeTimeout = probe
	v, _ := newTest(t, cfg, callaheadRoutes(addr), nil)
	if r := smtptest.AsReply(t, check(t, v, client1, "alice@corp.example")); r.Code != 451 {
		t.Fatalf("got %v, want 451", r)
	}
}

func TestCallaheadHang(t *testing.T) {
	tests := []struct {
		name   string
		handle func(net.Conn)
	}{
		{"no greeting", lineServer("", nil)},
		{"no EHLO reply", lineServer("220 hi\r\n", func(string) string { return "" })},
		{"no RCPT reply", lineServer("220 hi\r\n", smtpAnswers(""))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantTempfail(t, tt.handle, 200*time.Millisecond) })
	}
}

func TestCallaheadGarbage(t *testing.T) {
	long := strings.Repeat("x", 5000)
	many := strings.Repeat("250-x\r\n", 500) + "250 ok\r\n"
	tests := []struct {
		name   string
		handle func(net.Conn)
	}{
		{"greeting not SMTP", lineServer("hello there\r\n", smtpAnswers("250 ok\r\n"))},
		{"greeting 554", lineServer("554 go away\r\n", smtpAnswers("250 ok\r\n"))},
		{"binary", lineServer("\x00\xff\x16\x03\x01\r\n", smtpAnswers("250 ok\r\n"))},
		{"long line", lineServer("220 "+long+"\r\n", smtpAnswers("250 ok\r\n"))},
		{"endless EHLO", lineServer("220 hi\r\n", func(l string) string {
			if strings.HasPrefix(l, "EHLO") {
				return many
			}
			return smtpAnswers("250 ok\r\n")(l)
		})},
		{"RCPT short", lineServer("220 hi\r\n", smtpAnswers("2\r\n"))},
		{"RCPT code 999", lineServer("220 hi\r\n", smtpAnswers("999 what\r\n"))},
		{"RCPT 354", lineServer("220 hi\r\n", smtpAnswers("354 go ahead\r\n"))},
		{"RCPT code changes", lineServer("220 hi\r\n", smtpAnswers("250-a\r\n550 b\r\n"))},
		{"RCPT bad separator", lineServer("220 hi\r\n", smtpAnswers("550x5.1.1 no\r\n"))},
		{"drop at RCPT", lineServer("220 hi\r\n", smtpAnswers("CLOSE"))},
		{"drop at greeting", func(c net.Conn) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantTempfail(t, tt.handle, 5*time.Second) })
	}
}

func TestCallaheadRawAnswers(t *testing.T) {
	// Well-formed answers from a hand-written server: multiline 5yz,
	// 252, and no enhanced code.
	tests := []struct {
		rcpt string
		code int
		enh  string
	}{
		{"250 2.1.5 ok\r\n", 0, ""},
		{"251 will forward\r\n", 0, ""},
		{"252 cannot verify, will try\r\n", 0, ""},
		{"550-5.1.1 no such\r\n550 5.1.1 user\r\n", 550, "5.1.1"},
		{"550 no enhanced code\r\n", 550, "5.1.1"},
		{"550 4.1.1 wrong class\r\n", 550, "5.1.1"},
		{"550\r\n", 550, "5.1.1"},
		{"421 4.3.2 shutting down\r\n", 451, "4.4.3"},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSpace(tt.rcpt), func(t *testing.T) {
			addr := smtptest.ServeConns(t, lineServer("220 raw ESMTP\r\n", smtpAnswers(tt.rcpt)))
			v, _ := newTest(t, DefaultConfig(), callaheadRoutes(addr), nil)
			wantOutcome(t, check(t, v, client1, "alice@corp.example"), tt.code, tt.enh)
		})
	}
}

func TestCallaheadReuse(t *testing.T) {
	s := knownSink()
	addr, ln := startSink(t, s, nil)
	v, _ := newTest(t, DefaultConfig(), callaheadRoutes(addr), nil)
	for i := range 10 {
		rcpt := "alice@corp.example"
		if i%3 == 1 {
			rcpt = fmt.Sprintf("nobody%d@corp.example", i)
		} else if i > 0 {
			rcpt = fmt.Sprintf("alice+%d@corp.example", i)
		}
		check(t, v, client1, rcpt)
	}
	if got := s.rcpts.Load(); got != 10 {
		t.Fatalf("%d probes, want 10", got)
	}
	if got := ln.Accepted(); got != 1 {
		t.Fatalf("%d connections for 10 probes, want 1", got)
	}
}

func TestCallaheadRetiresAfterNegatives(t *testing.T) {
	s := knownSink()
	addr, ln := startSink(t, s, nil)
	v, _ := newTest(t, DefaultConfig(), callaheadRoutes(addr), nil)
	for i := range maxNegativesPerConn + 1 {
		check(t, v, netipFor(i), fmt.Sprintf("nobody%d@corp.example", i))
	}
	if got := ln.Accepted(); got != 2 {
		t.Fatalf("%d connections, want 2 (a connection is retired after %d unknown answers)", got, maxNegativesPerConn)
	}
}

func TestCallaheadStaleConnection(t *testing.T) {
	// The server closes every connection after one probe: the pooled
	// connection fails at MAIL and the probe is retried on a new one.
	var mu sync.Mutex
	probes := 0
	addr := smtptest.ServeConns(t, lineServer("220 hi\r\n", func(l string) string {
		if strings.HasPrefix(l, "RSET") {
			return "CLOSE"
		}
		if strings.HasPrefix(l, "RCPT") {
			mu.Lock()
			probes++
			mu.Unlock()
		}
		return smtpAnswers("250 2.1.5 ok\r\n")(l)
	}))
	v, _ := newTest(t, DefaultConfig(), callaheadRoutes(addr), nil)
	for i := range 3 {
		if err := check(t, v, client1, fmt.Sprintf("u%d@corp.example", i)); err != nil {
			t.Fatalf("probe %d: %v", i, err)
		}
	}
	if probes != 3 {
		t.Fatalf("%d probes, want 3", probes)
	}
}

func TestCallaheadSingleFlight(t *testing.T) {
	s := knownSink()
	s.hold = make(chan struct{})
	addr, _ := startSink(t, s, nil)
	v, _ := newTest(t, DefaultConfig(), callaheadRoutes(addr), nil)
	const n = 20
	errs := make(chan error, n)
	for range n {
		go func() { errs <- check(t, v, client1, "alice@corp.example") }()
	}
	for v.Stats().Shared < n-1 || s.rcpts.Load() < 1 {
		time.Sleep(time.Millisecond)
	}
	close(s.hold)
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := s.rcpts.Load(); got != 1 {
		t.Fatalf("%d probes for %d concurrent checks, want 1", got, n)
	}
}

func TestCallaheadConcurrencyBound(t *testing.T) {
	s := knownSink()
	s.hold = make(chan struct{})
	addr, ln := startSink(t, s, nil)
	cfg := DefaultConfig()
	cfg.MaxConns = 2
	v, _ := newTest(t, cfg, callaheadRoutes(addr), nil)
	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- check(t, v, client1, fmt.Sprintf("alice+%d@corp.example", i)) }()
	}
	for s.rcpts.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	close(s.hold)
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := ln.Accepted(); got > 2 {
		t.Fatalf("%d connections with max_conns 2", got)
	}
	if got := s.maxAct.Load(); got > 2 {
		t.Fatalf("%d sessions at once with max_conns 2", got)
	}
}

func TestCallaheadContextEnds(t *testing.T) {
	s := knownSink()
	s.hold = make(chan struct{})
	defer close(s.hold)
	addr, _ := startSink(t, s, nil)
	v, _ := newTest(t, DefaultConfig(), callaheadRoutes(addr), nil)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for s.rcpts.Load() < 1 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	if c := code(v.Check(ctx, client1, "backend", "alice@corp.example")); c != 451 {
		t.Fatalf("got %d, want 451 when the caller gives up", c)
	}
}

func TestCallaheadTLS(t *testing.T) {
	cert, pool := smtptest.Cert(t, "backend.test", "127.0.0.1")
	withTLS := func(srv *smtp.Server) { srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}} }
	tests := []struct {
		name    string
		mode    string
		skip    bool
		srvTLS  bool
		pool    bool
		code    int
		wantTLS bool
	}{
		{"required verified", route.TLSRequired, false, true, true, 0, true},
		{"required unverifiable", route.TLSRequired, false, true, false, 451, false},
		{"required skip verify", route.TLSRequired, true, true, false, 0, true},
		{"required not offered", route.TLSRequired, false, false, true, 451, false},
		{"opportunistic", route.TLSOpportunistic, false, true, false, 0, true},
		{"opportunistic not offered", route.TLSOpportunistic, false, false, false, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := knownSink()
			var mod func(*smtp.Server)
			if tt.srvTLS {
				mod = withTLS
			}
			addr, _ := startSink(t, s, mod)
			routes := map[string]route.Route{"backend": {Type: route.TypeSMTP, Address: addr, TLS: tt.mode, TLSSkipVerify: tt.skip, VerifyRecipients: route.VerifyCallahead}}
			v, _ := newTest(t, DefaultConfig(), routes, func(o *Options) {
				if tt.pool {
					o.TLSConfig = &tls.Config{RootCAs: pool}
				}
			})
			if c := code(check(t, v, client1, "alice@corp.example")); c != tt.code {
				t.Fatalf("got %d, want %d", c, tt.code)
			}
			if s.tlsSeen.Load() != tt.wantTLS {
				t.Fatalf("TLS used: %v, want %v", s.tlsSeen.Load(), tt.wantTLS)
			}
		})
	}
}

func TestCallaheadLMTP(t *testing.T) {
	s := knownSink()
	addr, _ := startSink(t, s, func(srv *smtp.Server) { srv.LMTP = true })
	routes := map[string]route.Route{"backend": {Type: route.TypeLMTP, Address: addr, VerifyRecipients: route.VerifyCallahead}}
	v, _ := newTest(t, DefaultConfig(), routes, nil)
	if err := check(t, v, client1, "alice@corp.example"); err != nil {
		t.Fatal(err)
	}
	if c := code(check(t, v, client1, "nobody@corp.example")); c != 550 {
		t.Fatalf("got %d, want 550", c)
	}
}

func TestCloseIdempotentCheck(t *testing.T) {
	v, _ := newCallahead(t, nil)
	check(t, v, client1, "alice@corp.example")
	v.Close()
	if c := code(check(t, v, client1, "bob@corp.example")); c != 451 {
		t.Fatalf("after Close: got %d, want 451", c)
	}
}

func TestCallaheadIdleClose(t *testing.T) {
	s := knownSink()
	addr, ln := startSink(t, s, nil)
	cfg := DefaultConfig()
	cfg.IdleTimeout = 20 * time.Millisecond
	v, _ := newTest(t, cfg, callaheadRoutes(addr), nil)
	check(t, v, client1, "alice@corp.example")
	// The idle connection is closed (QUIT), so the backend's session
	// ends; the next probe opens a new one.
	for s.active.Load() != 0 {
		time.Sleep(time.Millisecond)
	}
	check(t, v, client1, "bob@corp.example")
	if got := ln.Accepted(); got != 2 {
		t.Fatalf("%d connections, want 2", got)
	}
}

// memShared is a SharedCache in memory, standing for another node's Redis.
type memShared struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *memShared) Get(_ context.Context, k string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.m[k]
	return b, ok
}
func (s *memShared) Set(_ context.Context, k string, v []byte, _ time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[k] = append([]byte(nil), v...)
}

// Two verifiers sharing a cache (two nodes of a fleet): what one learned
// from the backend the other answers without probing; temporary failures
// are not shared.
func TestSharedCacheAcrossNodes(t *testing.T) {
	s := knownSink()
	s.rcptErr = map[string]error{"busy@corp.example": &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "busy"}}
	addr, _ := startSink(t, s, nil)
	shared := &memShared{m: map[string][]byte{}}
	a, _ := newTest(t, DefaultConfig(), callaheadRoutes(addr), func(o *Options) { o.Shared = shared })
	b, _ := newTest(t, DefaultConfig(), callaheadRoutes(addr), func(o *Options) { o.Shared = shared })
	if err := check(t, a, netip.Addr{}, "alice@corp.example"); err != nil {
		t.Fatalf("known at a: %v", err)
	}
	if err := check(t, a, netip.Addr{}, "carol@corp.example"); code(err) != 550 {
		t.Fatalf("unknown at a: %v", err)
	}
	check(t, a, netip.Addr{}, "busy@corp.example")
	before := b.Stats().Probes
	if err := check(t, b, netip.Addr{}, "alice@corp.example"); err != nil {
		t.Fatalf("known at b: %v", err)
	}
	if r := smtptest.AsReply(t, check(t, b, netip.Addr{}, "carol@corp.example")); r.Code != 550 || r.Enhanced.String() != "5.1.1" {
		t.Fatalf("unknown at b: %v", r)
	}
	if got := b.Stats().Probes; got != before {
		t.Fatalf("b probed %d times for answers a had shared", got-before)
	}
	check(t, b, netip.Addr{}, "busy@corp.example")
	if b.Stats().Probes != before+1 {
		t.Fatalf("a temporary failure was shared")
	}
}
