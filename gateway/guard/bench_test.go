package guard

import (
	"io"
	"log"
	"net"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// BenchmarkIdleConnMemory measures the memory (Go heap in use + stacks)
// per idle SMTP connection, after the greeting, with and without the
// guard in front of go-smtp. N is 2000, or MOAT_BENCH_IDLE_CONNS. Run:
//
//	go test ./gateway/guard -run '^$' -bench IdleConnMemory -benchtime 1x
//
// The client sockets live in the same process; their share (a few hundred
// bytes each) is included in both figures.
func BenchmarkIdleConnMemory(b *testing.B) {
	n := 2000
	if s := os.Getenv("MOAT_BENCH_IDLE_CONNS"); s != "" {
		if v, err := strconv.Atoi(s); err == nil && v > 0 {
			n = v
		}
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur < rl.Max {
		rl.Cur = rl.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur < uint64(2*n+100) {
		b.Skipf("RLIMIT_NOFILE %d is too low for %d connections", rl.Cur, n)
	}
	for _, withGuard := range []bool{false, true} {
		name := "plain"
		if withGuard {
			name = "guard"
		}
		b.Run(name+"/"+strconv.Itoa(n), func(b *testing.B) {
			for range b.N {
				b.ReportMetric(idleConnBytes(b, n, withGuard), "B/conn")
			}
		})
	}
}

func idleConnBytes(b *testing.B, n int, withGuard bool) float64 {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var ln net.Listener = inner
	if withGuard {
		cfg := DefaultConfig()
		cfg.MaxConnections = n + 100
		cfg.PerIP = Limit{MaxConcurrent: 0}
		cfg.PerPrefix.Limit = Limit{MaxConcurrent: 0}
		g, err := New(cfg, Options{Hostname: testHost})
		if err != nil {
			b.Fatal(err)
		}
		ln = g.Listen(inner, ListenerOptions{Name: "bench"})
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &session{}, nil }))
	srv.Domain = testHost
	srv.ReadTimeout = 5 * time.Minute
	srv.WriteTimeout = time.Minute
	srv.ErrorLog = log.New(io.Discard, "", 0)
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	defer func() { srv.Close(); <-done }()

	measure := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse + m.StackInuse
	}
	before := measure()
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var buf [128]byte
	for i := 0; i < n; i++ {
		// Spread the clients over 127.0.x.y so no source runs out of ports.
		src := net.IPv4(127, 0, byte(1+i/250), byte(1+i%250))
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 10 * time.Second}
		c, err := d.Dial("tcp", inner.Addr().String())
		if err != nil {
			b.Fatalf("conn %d: %v", i, err)
		}
		conns = append(conns, c)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(buf[:]); err != nil { // the 220 greeting
			b.Fatalf("conn %d greeting: %v", i, err)
		}
	}
	after := measure()
	return float64(after-before) / float64(n)
}

// BenchmarkPregreetReject is one early talker turned away, end to end
// over loopback: connect, read "220-", talk, read the 521, see the close.
// The client's work is included (same process); allocs/op is the sum of
// both sides. Run:
//
//	go test ./gateway/guard -run '^$' -bench PregreetReject
func BenchmarkPregreetReject(b *testing.B) {
	cfg := DefaultConfig()
	cfg.MaxConnections = 10000
	cfg.PerIP = Limit{}
	cfg.PerPrefix.Limit = Limit{}
	cfg.Pregreet.Action = PregreetDrop // the refusal's cost, not the hold
	s := startServer(b, cfg, testOpts{listener: ListenerOptions{GreetDelay: 10 * time.Second}})
	buf := make([]byte, 256)
	b.ReportAllocs()
	for b.Loop() {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			b.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(buf); err != nil { // 220-
			b.Fatal(err)
		}
		c.Write([]byte("EHLO bot.example\r\n"))
		for {
			if _, err := c.Read(buf); err != nil { // 521, then the close
				break
			}
		}
		c.Close()
	}
	b.StopTimer()
	if got := s.g.Stats().Rejected(ReasonPregreet); got == 0 {
		b.Fatal("no pregreet rejection counted")
	}
}
