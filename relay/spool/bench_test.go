package spool

import (
	"bytes"
	"context"
	"runtime"
	"testing"
	"time"
)

// BenchmarkPut measures durable Puts of 2 KB messages from 20 goroutines
// (on a 2-core machine, SetParallelism(10)), fsync on, per sync mode:
//
//	go test ./relay/spool -run '^$' -bench Put -benchtime 3s
func BenchmarkPut(b *testing.B) {
	msg := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n"), 32) // 2 KiB
	for _, mode := range []struct {
		name string
		opt  Options
	}{
		{"syncfs", Options{Sync: SyncFS}},
		{"syncfiles", Options{Sync: SyncFiles}},
		{"each", Options{Sync: SyncEach}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			s, err := Open(b.TempDir(), mode.opt)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.SetParallelism(20 / max(1, parallelism()))
			b.SetBytes(int64(len(msg)))
			start := time.Now()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					env := &Envelope{
						ID:         s.NewID(),
						Sender:     "alice@example.org",
						Recipients: []Recipient{{Address: "bob@example.net", Route: "mx", Status: StatusPending}},
						Received:   time.Now(),
					}
					if err := s.Put(context.Background(), env, bytes.NewReader(msg)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}

// parallelism is GOMAXPROCS: RunParallel starts SetParallelism·GOMAXPROCS
// goroutines.
func parallelism() int { return runtime.GOMAXPROCS(0) }
