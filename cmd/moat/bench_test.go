package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"go.uber.org/zap"
)

// msg2K is a 2 KB message.
var msg2K = func() string {
	var b strings.Builder
	b.WriteString("From: bench@far.example\r\nTo: alice@example.org\r\nSubject: bench\r\n\r\n")
	for b.Len() < 2048-80 {
		b.WriteString(strings.Repeat("x", 76) + "\r\n")
	}
	return b.String()
}()

func benchApp(b *testing.B, extra string) (*app, string) {
	b.Helper()
	path, dataDir := testConfig(&testing.T{}, extra)
	_ = path
	cfg, err := loadConfig(path)
	if err != nil {
		b.Fatal(err)
	}
	a, err := newApp(cfg, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	if err := a.start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := contextTimeout(10 * time.Second)
		defer cancel()
		a.shutdown(ctx)
		os.RemoveAll(dataDir)
	})
	return a, dataDir
}

// BenchmarkLocalDelivery2K: 2 KB messages from 20 concurrent SMTP clients,
// each accepted (spool fsync before 250) and delivered into Maildir
// (fsync before rename). Reports messages/s from first MAIL to the last
// Maildir file.
func BenchmarkLocalDelivery2K(b *testing.B) {
	a, dataDir := benchApp(b, "guard: {allow: [127.0.0.0/8]}\n"+os.Getenv("MOAT_BENCH_EXTRA"))
	addr := a.gw.Addr("mx").String()
	const clients = 20
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	per := (b.N + clients - 1) / clients
	for c := 0; c < clients; c++ {
		n := per
		if rest := b.N - c*per; rest < n {
			n = rest
		}
		if n <= 0 {
			break
		}
		wg.Add(1)
		go func(n int) {
			defer wg.Done()
			if err := sendN(addr, n); err != nil {
				mu.Lock()
				firstErr = err
				mu.Unlock()
			}
		}(n)
	}
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	dir := filepath.Join(dataDir, "mailboxes", "example.org", "alice", "new")
	deadline := time.Now().Add(5 * time.Minute)
	for {
		ents, _ := os.ReadDir(dir)
		if len(ents) >= b.N {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d delivered", len(ents), b.N)
		}
		time.Sleep(5 * time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
}

func sendN(addr string, n int) error {
	c, err := gosmtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("bench.far.example"); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if err := c.SendMail("bench@far.example", []string{"alice@example.org"}, strings.NewReader(msg2K)); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
	}
	return c.Quit()
}

// BenchmarkIdleConnections: memory per idle SMTP connection (after the
// greeting and EHLO) through the whole stack (guard, go-smtp, session),
// as Go heap plus stack growth divided by the connections. Set
// MOAT_BENCH_IDLE to change the count (default 1000).
func BenchmarkIdleConnections(b *testing.B) {
	n := 1000
	if v := os.Getenv("MOAT_BENCH_IDLE"); v != "" {
		fmt.Sscan(v, &n)
	}
	a, _ := benchApp(b, "guard: {allow: [127.0.0.0/8], max_connections: 100000}\n")
	addr := a.gw.Addr("mx").String()
	for i := 0; i < b.N; i++ {
		before := heapAndStack()
		conns := make([]net.Conn, 0, n)
		for j := 0; j < n; j++ {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatalf("conn %d: %v", j, err)
			}
			buf := make([]byte, 512)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Read(buf); err != nil { // greeting
				b.Fatal(err)
			}
			c.Write([]byte("EHLO idle.example\r\n"))
			if _, err := c.Read(buf); err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		after := heapAndStack()
		b.ReportMetric(float64(after-before)/float64(n), "bytes/conn")
		for _, c := range conns {
			c.Close()
		}
	}
}

func heapAndStack() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}
