//go:build interop

package cluster

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"moat/internal/testclock"
)

// redisServer runs the redis-server named by $REDIS_SERVER (skipping the
// test when it is unset or missing) on a free 127.0.0.1 port, with no
// persistence. It returns the address and a restart function.
func redisServer(t *testing.T) (addr string, stop, start func()) {
	t.Helper()
	bin := os.Getenv("REDIS_SERVER")
	if bin == "" {
		t.Skip("REDIS_SERVER is not set (e.g. REDIS_SERVER=/usr/bin/redis-server)")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("REDIS_SERVER: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	dir := t.TempDir()
	var cmd *exec.Cmd
	start = func() {
		cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait (bounded) until it accepts connections.
		for i := 0; ; i++ {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				return
			}
			if i == 500 {
				t.Fatalf("redis-server did not start: %v", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	stop = func() {
		if cmd == nil || cmd.Process == nil {
			return
		}
		cmd.Process.Kill()
		cmd.Wait()
		cmd = nil
	}
	start()
	t.Cleanup(stop)
	return addr, stop, start
}

// TestRealRedis runs the shared stores against a real redis-server: two
// clients share limits, greylist, guard state and a cache; the server is
// killed (fallback, one state change) and started again (used again).
func TestRealRedis(t *testing.T) {
	addr, stop, start := redisServer(t)
	clock := testclock.New(time.Now())
	h := &hook{}
	mk := func(hk func(bool)) *Client {
		cfg := DefaultConfig()
		cfg.Redis.Address = addr
		cfg.Redis.Timeout = time.Second
		c, err := New(cfg, Options{Clock: clock.Now, OnStateChange: hk})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	ca, cb := mk(h.on), mk(nil)
	ctx := context.Background()

	la, lb := ca.Limiter(), cb.Limiter()
	for i, want := range []bool{true, true, false} {
		l := la
		if i%2 == 1 {
			l = lb
		}
		if ok, _ := l.Allow(ctx, "k", 2, time.Minute); ok != want {
			t.Fatalf("limiter event %d: %v", i+1, ok)
		}
	}
	ga, gb := ca.Greylister(), cb.Greylister()
	if r, _ := ga.Check(ctx, "t", time.Minute, time.Hour); r.Pass {
		t.Fatal("new triplet passed")
	}
	clock.Add(time.Minute)
	if r, _ := gb.Check(ctx, "t", time.Minute, time.Hour); !r.Pass {
		t.Fatal("retry through B did not pass")
	}
	sa, sb := ca.GuardState(), cb.GuardState()
	ip := netip.MustParseAddr("192.0.2.9")
	until := clock.Now().Add(time.Hour).Truncate(time.Millisecond)
	if err := sa.SetPass(ctx, ip, until); err != nil {
		t.Fatal(err)
	}
	if got, err := sb.PassUntil(ctx, ip); err != nil || !got.Equal(until) {
		t.Fatalf("pass on B: %v, %v", got, err)
	}
	for i, want := range []bool{true, true, false} {
		s := sa
		if i%2 == 1 {
			s = sb
		}
		if ok, err := s.RateAllow(ctx, "ip:192.0.2.9", 1, 2); ok != want || err != nil {
			t.Fatalf("bucket %d: %v, %v", i+1, ok, err)
		}
	}
	cacheA, _ := ca.Cache("callahead", 16)
	cacheB, _ := cb.Cache("callahead", 16)
	cacheA.Set(ctx, "x", []byte("v"), time.Hour)
	if v, ok := cacheB.Get(ctx, "x"); !ok || string(v) != "v" {
		t.Fatalf("cache on B: %q %v", v, ok)
	}
	// Failed AUTH: the scripts on a real Redis; two failures through A
	// and one through B reach max 3 and lock the user out for both.
	fa, fb := ca.AuthFailures(), cb.AuthFailures()
	for i, f := range []*AuthFailures{fa, fa, fb} {
		started, err := f.AuthFail(ctx, "user:alice@example.org", 3, time.Minute, time.Hour)
		if err != nil || started != (i == 2) {
			t.Fatalf("auth failure %d: started %v, %v", i+1, started, err)
		}
	}
	if locked, _, err := fa.AuthCheck(ctx, "user:alice@example.org"); !locked || err != nil {
		t.Fatalf("user not locked on A: %v", err)
	}
	if err := fb.AuthReset(ctx, "user:alice@example.org", true); err != nil {
		t.Fatal(err)
	}
	if locked, _, _ := fa.AuthCheck(ctx, "user:alice@example.org"); !locked {
		t.Fatal("a success lifted the lock-out")
	}

	stop()
	if ok, _ := la.Allow(ctx, "k2", 1, time.Minute); !ok {
		t.Fatal("local fallback refused")
	}
	if got := h.get(); len(got) != 1 || got[0] {
		t.Fatalf("changes = %v", got)
	}
	start()
	for i := 0; !ca.Up(); i++ {
		if i == 1000 {
			t.Fatalf("not up again: %+v", ca.Stats())
		}
		clock.Add(2 * time.Second)
		la.Allow(ctx, "k3", 10, time.Minute)
		time.Sleep(10 * time.Millisecond)
	}
	if got := h.get(); len(got) != 2 || !got[1] {
		t.Fatalf("changes = %v", got)
	}
}

func BenchmarkRealRedisLimiter(b *testing.B) {
	bin := os.Getenv("REDIS_SERVER")
	if bin == "" {
		b.Skip("REDIS_SERVER is not set")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", b.TempDir())
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	cfg := DefaultConfig()
	cfg.Redis.Address = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cfg.Redis.Timeout = time.Second
	c, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for i := 0; c.Ping(context.Background()) != nil; i++ {
		if i == 500 {
			b.Fatal("redis-server did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	l := c.Limiter()
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		l.Allow(ctx, "k", 1<<30, time.Hour)
	}
}
