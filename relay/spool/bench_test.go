package spool

import (
	"bytes"
	"context"
	"runtime"
	"testing"
	"time"
)

// BenchmarkPut measures durable Puts of 2 KB messages from 20 goroutines
// (on a 2-core machine, SetParallelism(10)), fsync on: "files-before" is
// the earlier file-per-message Put path (baseline_test.go), "log" the
// segment log with group commit.
//
//	go test ./relay/spool -run '^$' -bench Put -count 5
func BenchmarkPut(b *testing.B) {
	msg := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n"), 32) // 2 KiB
	newEnv := func(id string) *Envelope {
		return &Envelope{
			ID:         id,
			Sender:     "alice@example.org",
			Recipients: []Recipient{{Address: "bob@example.net", Route: "mx", Status: StatusPending}},
			Received:   time.Now(),
		}
	}
	run := func(b *testing.B, newID func() string, put func(*Envelope) error) {
		b.SetParallelism(20 / max(1, parallelism()))
		b.SetBytes(int64(len(msg)))
		start := time.Now()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := put(newEnv(newID())); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	}
	b.Run("files-before", func(b *testing.B) {
		ids, err := Open(b.TempDir(), Options{NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		defer ids.Close()
		s, err := openFileSpool(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		run(b, ids.NewID, func(env *Envelope) error { return s.Put(env, bytes.NewReader(msg)) })
	})
	b.Run("log", func(b *testing.B) {
		s, err := Open(b.TempDir(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		run(b, s.NewID, func(env *Envelope) error { return s.Put(context.Background(), env, bytes.NewReader(msg)) })
	})
}

// BenchmarkCycle measures the whole life of a message in the log: Put,
// one Update (delivered), Remove.
func BenchmarkCycle(b *testing.B) {
	msg := bytes.Repeat([]byte("x"), 2048)
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.SetParallelism(20 / max(1, parallelism()))
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			env := &Envelope{ID: s.NewID(), Recipients: []Recipient{{Address: "bob@example.net", Route: "mx", Status: StatusPending}}}
			if err := s.Put(context.Background(), env, bytes.NewReader(msg)); err != nil {
				b.Error(err)
				return
			}
			env.Recipients[0].Status = StatusDelivered
			if err := s.Update(env); err != nil {
				b.Error(err)
				return
			}
			if err := s.Remove(env.ID); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// parallelism is GOMAXPROCS: RunParallel starts SetParallelism·GOMAXPROCS
// goroutines.
func parallelism() int { return runtime.GOMAXPROCS(0) }
