package verify

import (
	"context"
	"testing"
)

func BenchmarkCheckCached(b *testing.B) {
	s := knownSink()
	addr, _ := startSink(b, s, nil)
	v, _ := newTest(b, DefaultConfig(), callaheadRoutes(addr), nil)
	ctx := context.Background()
	if err := v.Check(ctx, client1, "backend", "alice@corp.example"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := v.Check(ctx, client1, "backend", "alice@corp.example"); err != nil {
				b.Fatal(err)
			}
		}
	})
	if s.rcpts.Load() != 1 {
		b.Fatalf("%d probes", s.rcpts.Load())
	}
}
