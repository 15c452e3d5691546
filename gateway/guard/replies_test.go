package guard

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestReplies(t *testing.T) {
	g, err := New(testConfig(), Options{Hostname: testHost})
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("192.0.2.7")
	tests := []struct{ reason, want string }{
		{ReasonMaxConnections, "421 4.7.0 mx.test Too many connections, try again later\r\n"},
		{ReasonPerIPRate, "421 4.7.0 mx.test Too many connections from your address, try again later\r\n"},
		{ReasonPerIPConcurrency, "421 4.7.0 mx.test Too many connections from your address, try again later\r\n"},
		{ReasonPerPrefixRate, "421 4.7.0 mx.test Too many connections from your address, try again later\r\n"},
		{ReasonPerPrefixConcurrency, "421 4.7.0 mx.test Too many connections from your address, try again later\r\n"},
		{ReasonDenyList, "554 5.7.1 mx.test Access denied for [192.0.2.7]\r\n"},
		{ReasonPregreet, "521 5.5.1 mx.test Protocol error\r\n"},
		{ReasonHTTP, "521 5.5.1 mx.test Protocol error\r\n"},
		{ReasonProxyUntrusted, "521 5.5.1 mx.test Protocol error\r\n"},
		{ReasonTooManyErrors, "421 4.7.0 mx.test Too many errors, closing connection\r\n"},
		{ReasonCommandLoop, "421 4.7.0 mx.test Too many commands, closing connection\r\n"},
		{ReasonTLSOnPlain, ""},
		{ReasonProxyBadHeader, ""},
		{ReasonDNSBL, ""}, // dnsblReply names the lists
		{ReasonListenerFull, "421 4.7.0 mx.test Too many connections, try again later\r\n"},
		{ReasonDNSBLError, ""}, // DNSBLDecision names the lists
		{"no such reason", ""},
	}
	for _, tt := range tests {
		r := g.replyFor(tt.reason, ip)
		if r == nil {
			if tt.want != "" {
				t.Errorf("replyFor(%s) = nil, want %q", tt.reason, tt.want)
			}
			continue
		}
		if got := string(r.AppendWire(nil)); got != tt.want {
			t.Errorf("replyFor(%s) = %q, want %q", tt.reason, got, tt.want)
		}
		if b := g.rep.bytesOf(reasonIndex(tt.reason), r); string(b) != tt.want {
			t.Errorf("bytesOf(%s) = %q", tt.reason, b)
		}
		if err := r.Validate(); err != nil {
			t.Errorf("replyFor(%s): %v", tt.reason, err)
		}
	}
	if got := string(g.rep.banner); got != "220-mx.test ESMTP\r\n" {
		t.Errorf("banner = %q", got)
	}
}

func TestLogLimiter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	type step struct {
		at      time.Duration
		reason  int
		ok      bool
		skipped int
	}
	tests := []struct {
		name  string
		rate  int
		steps []step
	}{
		{"no limit", 0, []step{{0, 0, true, 0}, {0, 0, true, 0}, {0, 0, true, 0}}},
		{"unknown reason always", 1, []step{{0, -1, true, 0}, {0, -1, true, 0}}},
		{"two a second", 2, []step{
			{0, 0, true, 0}, {10 * time.Millisecond, 0, true, 0},
			{20 * time.Millisecond, 0, false, 0}, {900 * time.Millisecond, 0, false, 0},
			{time.Second, 0, true, 2}, {time.Second, 0, true, 0}, {time.Second, 0, false, 0},
			{3 * time.Second, 0, true, 1},
		}},
		{"reasons apart", 1, []step{{0, 0, true, 0}, {0, 0, false, 0}, {0, 1, true, 0}, {0, 1, false, 0}, {time.Second, 1, true, 1}}},
		{"clock going back opens a window", 1, []step{{time.Second, 0, true, 0}, {0, 0, true, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l logLimiter
			for i, s := range tt.steps {
				ok, skipped := l.allow(s.reason, t0.Add(s.at), tt.rate)
				if ok != s.ok || skipped != s.skipped {
					t.Errorf("step %d: allow = %v, %d; want %v, %d", i, ok, skipped, s.ok, s.skipped)
				}
			}
		})
	}
}

// discardConn is a net.Conn that takes every write.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error)      { return len(p), nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }

func TestRejectLogLimit(t *testing.T) {
	now := time.Unix(1000, 0)
	core, logs := observer.New(zapcore.InfoLevel)
	var seen int
	cfg := testConfig()
	cfg.LogLimit = 3
	g, err := New(cfg, Options{
		Hostname: testHost, Logger: zap.New(core),
		Now: func() time.Time { return now }, OnReject: func(Rejection) { seen++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	l := &listener{g: g, opt: ListenerOptions{Name: "mx"}}
	client := netip.MustParseAddrPort("192.0.2.7:4000")
	for i := 0; i < 10; i++ {
		g.reject(l, discardConn{}, client, ReasonPregreet, g.replyFor(ReasonPregreet, client.Addr()), "")
	}
	g.reject(l, discardConn{}, client, ReasonHTTP, g.replyFor(ReasonHTTP, client.Addr()), "")
	now = now.Add(time.Second)
	g.reject(l, discardConn{}, client, ReasonPregreet, g.replyFor(ReasonPregreet, client.Addr()), "")

	if got := g.Stats().Rejected(ReasonPregreet); got != 11 {
		t.Errorf("pregreet counted %d, want 11", got)
	}
	if seen != 12 {
		t.Errorf("OnReject saw %d, want 12", seen)
	}
	var lines []string
	for _, e := range logs.All() {
		ctx := e.ContextMap()
		lines = append(lines, ctx["reason"].(string))
		if n, ok := ctx["not_logged"]; ok && (ctx["reason"] != ReasonPregreet || n.(int64) != 7) {
			t.Errorf("not_logged = %v on %v", n, ctx["reason"])
		}
	}
	want := []string{ReasonPregreet, ReasonPregreet, ReasonPregreet, ReasonHTTP, ReasonPregreet}
	if len(lines) != len(want) {
		t.Fatalf("logged %q, want %q", lines, want)
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Fatalf("logged %q, want %q", lines, want)
		}
	}
	if last := logs.All()[4].ContextMap(); last["not_logged"] != int64(7) {
		t.Errorf("last line %v, want not_logged 7", last)
	}
}

// BenchmarkReject is the guard's own cost of turning a connection away
// (counting, the log line when enabled, the reply), without the socket.
func BenchmarkReject(b *testing.B) {
	for _, tc := range []struct {
		name string
		log  *zap.Logger
	}{{"nolog", zap.NewNop()}, {"log", zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(discardConn{}), zap.InfoLevel))}} {
		b.Run(tc.name, func(b *testing.B) {
			g, err := New(testConfig(), Options{Hostname: testHost, Logger: tc.log})
			if err != nil {
				b.Fatal(err)
			}
			l := &listener{g: g, opt: ListenerOptions{Name: "mx"}}
			client := netip.MustParseAddrPort("192.0.2.7:4000")
			b.ReportAllocs()
			for b.Loop() {
				g.reject(l, discardConn{}, client, ReasonPregreet, g.replyFor(ReasonPregreet, client.Addr()), "")
			}
		})
	}
}
