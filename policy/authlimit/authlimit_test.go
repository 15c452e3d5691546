package authlimit

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/reply"
	"moat/internal/testclock"
)

func newLimiter(t testing.TB, cfg Config) (*Limiter, *testclock.Clock) {
	t.Helper()
	clk := testclock.New(time.Unix(1_700_000_000, 0))
	l, err := New(cfg, Options{Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return l, clk
}

var (
	ip1 = netip.MustParseAddr("192.0.2.1")
	ip2 = netip.MustParseAddr("192.0.2.2")
)

// wantLocked checks that err is the 454 4.7.0 lock-out reply.
func wantLocked(t *testing.T, err error, what string) {
	t.Helper()
	var r *reply.Reply
	if !errors.As(err, &r) || r.Code != 454 || r.Enhanced != (reply.Enhanced{4, 7, 0}) {
		t.Fatalf("%s: got %v, want 454 4.7.0", what, err)
	}
}

func TestDelaysGrow(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Auth.PerIP.MaxFailures = 0 // no lock-out: watch the delay reach its cap
	cfg.Auth.PerUser.MaxFailures = 0
	l, _ := newLimiter(t, cfg)
	want := []time.Duration{0, 1, 2, 4, 8, 16, 30, 30, 30}
	for i, w := range want {
		d, err := l.BeforeAuth(ip1, "alice@example.org")
		if err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
		if d != w*time.Second {
			t.Fatalf("attempt %d: delay %v, want %v", i, d, w*time.Second)
		}
		l.AuthFailed(ip1, "alice@example.org")
	}
	// Many more failures never overflow the shift.
	for range 100 {
		l.AuthFailed(ip1, "")
	}
	if d, _ := l.BeforeAuth(ip1, ""); d != 30*time.Second {
		t.Fatalf("after 109 failures: %v", d)
	}
	// Delay off.
	cfg.Auth.DelayBase = 0
	l, _ = newLimiter(t, cfg)
	l.AuthFailed(ip1, "u")
	if d, _ := l.BeforeAuth(ip1, "u"); d != 0 {
		t.Fatalf("delay_base 0: %v", d)
	}
}

func TestDelayFromUserOrIP(t *testing.T) {
	l, _ := newLimiter(t, DefaultConfig())
	for range 3 {
		l.AuthFailed(ip1, "alice@example.org")
	}
	// Another address guessing alice's password inherits her delay ...
	if d, _ := l.BeforeAuth(ip2, "ALICE@example.org "); d != 4*time.Second {
		t.Fatalf("user delay from another address: %v", d)
	}
	// ... and ip1 keeps its own for another user.
	if d, _ := l.BeforeAuth(ip1, "bob@example.org"); d != 4*time.Second {
		t.Fatalf("address delay for another user: %v", d)
	}
	if d, _ := l.BeforeAuth(ip2, "bob@example.org"); d != 0 {
		t.Fatalf("unrelated: %v", d)
	}
}

func TestLockout(t *testing.T) {
	tests := []struct {
		name       string
		ipMax      int
		userMax    int
		failIPs    []netip.Addr // one failure each, user "alice"
		wantReason string
		// probe after the failures
		probeIP   netip.Addr
		probeUser string
		locked    bool
	}{
		{"user locked from any address", 10, 5, []netip.Addr{ip1, ip2, ip1, ip2, ip1}, ReasonLockedUser,
			netip.MustParseAddr("198.51.100.7"), "alice", true},
		{"user lock does not touch others", 10, 5, []netip.Addr{ip1, ip2, ip1, ip2, ip1}, "",
			netip.MustParseAddr("198.51.100.7"), "bob", false},
		{"ip locked for every user", 3, 100, []netip.Addr{ip1, ip1, ip1}, ReasonLockedIP,
			ip1, "bob", true},
		{"ip lock does not touch other ips", 3, 100, []netip.Addr{ip1, ip1, ip1}, "",
			ip2, "bob", false},
		{"below both thresholds", 3, 5, []netip.Addr{ip1, ip1}, "", ip1, "alice", false},
		{"ipv6 counted by /64", 3, 100, []netip.Addr{
			netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("2001:db8::ffff:3")},
			ReasonLockedIP, netip.MustParseAddr("2001:db8::abcd"), "bob", true},
		{"other /64 free", 3, 100, []netip.Addr{
			netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("2001:db8::3")},
			"", netip.MustParseAddr("2001:db8:0:1::1"), "bob", false},
		{"ipv4-mapped is ipv4", 2, 100, []netip.Addr{netip.MustParseAddr("::ffff:192.0.2.9"), netip.MustParseAddr("192.0.2.9")},
			ReasonLockedIP, netip.MustParseAddr("192.0.2.9"), "bob", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Auth.PerIP.MaxFailures = tc.ipMax
			cfg.Auth.PerUser.MaxFailures = tc.userMax
			l, _ := newLimiter(t, cfg)
			for _, ip := range tc.failIPs {
				if _, err := l.BeforeAuth(ip, "alice"); err != nil {
					t.Fatalf("locked before threshold: %v", err)
				}
				l.AuthFailed(ip, "alice")
			}
			d, err := l.BeforeAuth(tc.probeIP, tc.probeUser)
			if !tc.locked {
				if err != nil {
					t.Fatalf("unexpected lock: %v", err)
				}
				return
			}
			wantLocked(t, err, "probe")
			if d != 0 {
				t.Fatalf("locked reply must be at once, delay %v", d)
			}
			if got := l.Stats().Failures[tc.wantReason]; got != 1 {
				t.Fatalf("stats %s = %d, want 1 (%v)", tc.wantReason, got, l.Stats())
			}
		})
	}
}

func TestLockoutExpiry(t *testing.T) {
	l, clk := newLimiter(t, DefaultConfig()) // user: 5 in 15m, lock 15m
	for range 5 {
		l.AuthFailed(ip1, "alice")
	}
	if s := l.Stats(); s.UserLockouts != 1 || s.IPLockouts != 0 || s.Failures[ReasonBadPassword] != 5 {
		t.Fatalf("stats: %+v", s)
	}
	clk.Add(15*time.Minute - time.Second)
	_, err := l.BeforeAuth(ip2, "alice")
	wantLocked(t, err, "just before expiry")
	// A success (a race with the lock) does not lift the user's lock.
	l.AuthSucceeded(ip2, "alice")
	_, err = l.BeforeAuth(ip2, "alice")
	wantLocked(t, err, "after a success")
	clk.Add(time.Second)
	d, err := l.BeforeAuth(ip2, "alice")
	if err != nil || d != 0 {
		t.Fatalf("after expiry: delay %v, err %v; want a fresh start", d, err)
	}
	// ip1's window (5 failures, threshold 10) is over too.
	if d, err := l.BeforeAuth(ip1, "bob"); err != nil || d != 0 {
		t.Fatalf("ip1 after its window: delay %v, err %v", d, err)
	}
}

func TestWindowExpiry(t *testing.T) {
	l, clk := newLimiter(t, DefaultConfig())
	for range 4 {
		l.AuthFailed(ip1, "alice")
	}
	clk.Add(15 * time.Minute) // the window that began at the first failure is over
	if d, err := l.BeforeAuth(ip1, "alice"); err != nil || d != 0 {
		t.Fatalf("window over: delay %v, err %v", d, err)
	}
	for range 4 {
		l.AuthFailed(ip1, "alice")
	}
	if _, err := l.BeforeAuth(ip1, "alice"); err != nil {
		t.Fatalf("4 in a new window locked: %v", err)
	}
	l.AuthFailed(ip1, "alice")
	_, err := l.BeforeAuth(ip1, "alice")
	wantLocked(t, err, "5th in the window")
}

func TestSuccessResetsIP(t *testing.T) {
	l, _ := newLimiter(t, DefaultConfig())
	for range 4 {
		l.AuthFailed(ip1, "alice")
	}
	for range 5 {
		l.AuthFailed(ip1, "mallory") // locks mallory, ip1 at 9
	}
	l.AuthSucceeded(ip1, "alice")
	// ip1's counter is gone: one more failure does not lock it out.
	l.AuthFailed(ip1, "bob")
	if d, err := l.BeforeAuth(ip1, "carol"); err != nil || d != time.Second {
		t.Fatalf("ip after success: delay %v, err %v; want 1s, nil", d, err)
	}
	// alice's own counter is gone too.
	if d, err := l.BeforeAuth(ip2, "alice"); err != nil || d != 0 {
		t.Fatalf("alice after success: %v %v", d, err)
	}
	// mallory stays locked whoever succeeds elsewhere.
	_, err := l.BeforeAuth(ip2, "mallory")
	wantLocked(t, err, "mallory")
}

func TestUnknownSides(t *testing.T) {
	l, _ := newLimiter(t, DefaultConfig())
	for range 20 {
		l.AuthFailed(netip.Addr{}, "")
	}
	if d, err := l.BeforeAuth(netip.Addr{}, ""); d != 0 || err != nil {
		t.Fatalf("nothing to count: %v %v", d, err)
	}
	long := strings.Repeat("a", 5000)
	for range 5 {
		l.AuthFailed(netip.Addr{}, long)
	}
	_, err := l.BeforeAuth(netip.Addr{}, long[:maxUserBytes]+"zzz")
	wantLocked(t, err, "long user names are cut")
}

func TestLockReplyHidesCause(t *testing.T) {
	l, _ := newLimiter(t, DefaultConfig())
	for range 5 {
		l.AuthFailed(ip1, "alice")
	}
	_, errUser := l.BeforeAuth(ip2, "alice")
	for range 10 {
		l.AuthFailed(ip1, "x")
	}
	_, errIP := l.BeforeAuth(ip1, "nobody")
	var ru, ri *reply.Reply
	errors.As(errUser, &ru)
	errors.As(errIP, &ri)
	if ru == nil || ri == nil || ru.Text != ri.Text || ru.Code != ri.Code {
		t.Fatalf("the client sees the same reply for both locks: %v / %v", errUser, errIP)
	}
	if ru.Cause == nil || ri.Cause == nil {
		t.Fatal("the log needs a cause")
	}
}

func TestSendLimits(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Send.MessagesPerHour = 3
	cfg.Send.RecipientsPerHour = 10
	l, clk := newLimiter(t, cfg)
	code := func(err error) string {
		if err == nil {
			return "ok"
		}
		var r *reply.Reply
		if !errors.As(err, &r) {
			return "not a reply: " + err.Error()
		}
		return fmt.Sprintf("%d %s", r.Code, r.Enhanced)
	}
	steps := []struct {
		advance time.Duration
		user    string
		rcpts   int
		want    string
	}{
		{0, "alice", 4, "ok"},
		{0, "alice", 11, "550 5.5.3"}, // never fits
		{0, "alice", 4, "ok"},
		{0, "alice", 4, "452 4.5.3"}, // 2 recipients left
		{0, "ALICE", 2, "ok"},        // same user; 3rd message
		{0, "alice", 1, "450 4.7.1"}, // messages used up
		{0, "bob", 10, "ok"},         // per user
		{20 * time.Minute, "alice", 1, "ok"},
		{0, "alice", 1, "450 4.7.1"},
		{time.Hour, "alice", 10, "ok"}, // refilled to the cap, not beyond
		{0, "alice", 1, "452 4.5.3"},
	}
	for i, s := range steps {
		clk.Add(s.advance)
		if got := code(l.AllowMessage(s.user, s.rcpts)); got != s.want {
			t.Fatalf("step %d (%s, %d rcpts): %s, want %s", i, s.user, s.rcpts, got, s.want)
		}
	}
	st := l.Stats()
	if st.Failures[ReasonRateMessages] != 2 || st.Failures[ReasonRateRecipients] != 3 {
		t.Fatalf("stats: %+v", st)
	}
	err := l.AllowMessage("alice", 1)
	if !strings.Contains(err.Error(), "10 recipients an hour") || !strings.Contains(err.Error(), "try again in") {
		t.Fatalf("reply text: %v", err)
	}

	// 0 is unlimited.
	cfg.Send.MessagesPerHour, cfg.Send.RecipientsPerHour = 0, 0
	l, _ = newLimiter(t, cfg)
	for range 1000 {
		if err := l.AllowMessage("alice", 1000); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Send.MessagesPerHour, cfg.Send.RecipientsPerHour = 0, 5
	l, _ = newLimiter(t, cfg)
	for range 5 {
		if err := l.AllowMessage("alice", 1); err != nil {
			t.Fatal(err)
		}
	}
	if got := code(l.AllowMessage("alice", 1)); got != "452 4.5.3" {
		t.Fatalf("recipients only: %s", got)
	}
}

func TestRoundUp(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{0, "1 s"}, {time.Millisecond, "1 s"}, {59 * time.Second, "59 s"}, {time.Minute, "1 min"}, {61 * time.Second, "2 min"}} {
		if got := roundUp(tc.d); got != tc.want {
			t.Errorf("roundUp(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestBoundedMemory(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Auth.TrackedIPs, cfg.Auth.TrackedUsers, cfg.Send.TrackedUsers = 1000, 500, 200
	l, _ := newLimiter(t, cfg)
	for i := range 100_000 {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		u := fmt.Sprintf("user%d@example.org", i)
		l.AuthFailed(ip, u)
		_, _ = l.BeforeAuth(ip, u)
		_ = l.AllowMessage(u, 1)
	}
	if n := l.ips.len(); n != 1000 {
		t.Errorf("ip table: %d entries, want 1000", n)
	}
	if n := l.users.len(); n != 500 {
		t.Errorf("user table: %d entries, want 500", n)
	}
	l.sendMu.Lock()
	n := l.rates.Len()
	l.sendMu.Unlock()
	if n != 200 {
		t.Errorf("send table: %d entries, want 200", n)
	}
}

func TestConcurrent(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Auth.TrackedIPs = 64
	cfg.Send.MessagesPerHour = 1000
	l, clk := newLimiter(t, cfg)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				ip := netip.AddrFrom4([4]byte{192, 0, 2, byte(i % 100)})
				u := fmt.Sprintf("u%d", (g+i)%7)
				if _, err := l.BeforeAuth(ip, u); err == nil {
					if i%5 == 0 {
						l.AuthSucceeded(ip, u)
					} else {
						l.AuthFailed(ip, u)
					}
				}
				_ = l.AllowMessage(u, 1)
				if i%50 == 0 {
					clk.Add(time.Minute)
					_ = l.Stats()
				}
			}
		})
	}
	wg.Wait()
	s := l.Stats()
	if s.Failures[ReasonBadPassword] == 0 {
		t.Fatalf("stats: %+v", s)
	}
	// 8·500 messages, 1000 an hour, 80 minutes passed: some were refused
	// and some allowed; nothing was lost or double counted.
	if s.Failures[ReasonRateMessages] > 8*500 {
		t.Fatalf("stats: %+v", s)
	}
}

func TestSleep(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	if err := Sleep(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := Sleep(ctx, time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled sleep: %v", err)
	}
	if err := Sleep(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled, no delay: %v", err)
	}
}

func TestValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"negative failures", func(c *Config) { c.Auth.PerIP.MaxFailures = -1 }, "submission.auth_limits.per_ip.max_failures:"},
		{"zero window", func(c *Config) { c.Auth.PerUser.Window = 0 }, "submission.auth_limits.per_user.window:"},
		{"zero lockout", func(c *Config) { c.Auth.Lockout = 0 }, "submission.auth_limits.lockout:"},
		{"negative delay", func(c *Config) { c.Auth.DelayBase = -time.Second }, "submission.auth_limits.delay_base:"},
		{"max below base", func(c *Config) { c.Auth.DelayMax = 500 * time.Millisecond }, "submission.auth_limits.delay_max:"},
		{"delay too long", func(c *Config) { c.Auth.DelayMax = time.Hour }, "submission.auth_limits.delay_max:"},
		{"ipv6 prefix", func(c *Config) { c.Auth.IPv6Prefix = 129 }, "submission.auth_limits.ipv6_prefix:"},
		{"tracked ips", func(c *Config) { c.Auth.TrackedIPs = 0 }, "submission.auth_limits.tracked_ips:"},
		{"tracked users", func(c *Config) { c.Auth.TrackedUsers = 0 }, "submission.auth_limits.tracked_users:"},
		{"messages", func(c *Config) { c.Send.MessagesPerHour = -1 }, "submission.send_limits.messages_per_hour:"},
		{"recipients", func(c *Config) { c.Send.RecipientsPerHour = -5 }, "submission.send_limits.recipients_per_hour:"},
		{"send tracked", func(c *Config) { c.Send.TrackedUsers = 0 }, "submission.send_limits.tracked_users:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			err := c.Validate()
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error starting %q", err, tc.want)
			}
			if _, err := New(c, Options{}); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
	c := DefaultConfig()
	c.Auth.PerIP.MaxFailures, c.Send.MessagesPerHour, c.Auth.DelayBase = 0, 0, 0
	if err := c.Validate(); err != nil {
		t.Fatalf("0 means off: %v", err)
	}
}

func BenchmarkBeforeAuthFailed(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Auth.TrackedIPs = 4096
	l, _ := newLimiter(b, cfg)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ip := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		_, _ = l.BeforeAuth(ip, "alice@example.org")
		l.AuthFailed(ip, "bob@example.org")
		i++
	}
}

func BenchmarkAllowMessage(b *testing.B) {
	l, _ := newLimiter(b, DefaultConfig())
	b.ReportAllocs()
	for b.Loop() {
		_ = l.AllowMessage("alice@example.org", 3)
	}
}
