package main

import (
	"testing"
	"time"

	"moat/internal/smtptest"
)

func TestQuantile(t *testing.T) {
	s := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5}, {0.99, 10}, {0, 1}, {1, 10}} {
		if got := quantile(s, tc.q); got != tc.want {
			t.Errorf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
}

func TestMakeBody(t *testing.T) {
	for _, size := range []int{0, 10, 78, 2048, 2049} {
		b := makeBody(size)
		if len(b) > size || size-len(b) > 2 {
			t.Errorf("makeBody(%d) has %d bytes", size, len(b))
		}
	}
}

func TestLFLines(t *testing.T) {
	lf, err := lfLines([]byte("A: b\r\n c\r\n\r\nbody\r\n"))
	if err != nil || string(lf) != "A: b\n c\n\nbody\n" {
		t.Errorf("lfLines = %q, %v", lf, err)
	}
	for _, bad := range []string{"a\rb\r\n", "a\nb\r\n"} {
		if _, err := lfLines([]byte(bad)); err == nil {
			t.Errorf("lfLines(%q) accepted", bad)
		}
	}
}

func TestCheckLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{"127.0.0.1:25": true, "[::1]:25": true, "192.0.2.1:25": false, "example.org:25": false} {
		if err := checkLoopback(addr); (err == nil) != ok {
			t.Errorf("checkLoopback(%q) = %v", addr, err)
		}
	}
}

// TestRun sends a few messages to the in-process recording sink.
func TestRun(t *testing.T) {
	s := smtptest.StartSink(t)
	r := run(config{addr: s.Addr, n: 50, sessions: 4, size: 512, perConn: 5,
		from: "a@client.test", to: "b@relay.test", timeout: 10 * time.Second, runID: 1})
	if r.Sent != 50 || r.Failed != 0 || s.Count() != 50 {
		t.Fatalf("result %+v, sink has %d", r, s.Count())
	}
	if r.P50ms <= 0 || r.P99ms < r.P50ms || r.MaxMs < r.P99ms {
		t.Errorf("latencies out of order: %+v", r)
	}
}
