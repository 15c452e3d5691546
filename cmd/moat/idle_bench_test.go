package main

// The idle-connection memory benchmark of the issue "Hardened listener".

import (
	"fmt"
	"net"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"go.uber.org/zap"
)

// BenchmarkIdleConnectionsRSS: process RSS growth divided by the
// connections, with MOAT_BENCH_IDLE (default 2000) idle SMTP sessions
// (greeting and EHLO done) through the whole stack, as the issue asks;
// Go heap plus stack growth per connection beside it. Both include the
// client side of each connection (in this same process, a net.Conn and
// no goroutine), so they overstate the server's share slightly.
func BenchmarkIdleConnectionsRSS(b *testing.B) {
	n := envInt("MOAT_BENCH_IDLE", 2000)
	raiseNoFile(b, uint64(2*n+500))
	path := writeConfig(b, appConfig{
		extra: fmt.Sprintf("guard: {allow: [127.0.0.0/8], max_connections: %d}\n", 2*n+1000),
	})
	a, _ := runApp(b, path, zap.NewNop(), nil)
	addr := a.gw.Addr("mx").String()
	buf := make([]byte, 512)
	for i := 0; i < b.N; i++ {
		runtime.GC()
		debug.FreeOSMemory()
		rss0, heap0, g0 := vmRSS(b), heapAndStack(), runtime.NumGoroutine()
		conns := make([]net.Conn, 0, n)
		for j := 0; j < n; j++ {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatalf("conn %d: %v", j, err)
			}
			conns = append(conns, c)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Read(buf); err != nil { // greeting
				b.Fatal(err)
			}
			c.Write([]byte("EHLO idle.example\r\n"))
			if _, err := c.Read(buf); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		rss1, heap1, g1 := vmRSS(b), heapAndStack(), runtime.NumGoroutine()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(rss1-rss0)/float64(n), "rss_bytes/conn")
		b.ReportMetric(float64(heap1-heap0)/float64(n), "heap+stack_bytes/conn")
		b.ReportMetric(float64(g1-g0)/float64(n), "goroutines/conn")
		b.ReportMetric(float64(ms.StackInuse)/float64(n), "stack_bytes/conn")
		for _, c := range conns {
			c.Close()
		}
	}
}
