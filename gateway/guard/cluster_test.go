package guard

import (
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"moat/internal/testclock"
	"moat/policy/cluster"
)

// TestTwoGuardsShareState runs two guards (two nodes) over one Redis
// (miniredis): a pregreet pass on one is honoured by the other, and the
// per-IP rate is counted over both. With Redis gone each falls back to
// its own buckets.
func TestTwoGuardsShareState(t *testing.T) {
	mr := miniredis.RunT(t)
	clock := testclock.New(time.Unix(1.7e9, 0))
	node := func() *server {
		ccfg := cluster.DefaultConfig()
		ccfg.Redis.Address = mr.Addr()
		ccfg.Redis.Timeout = 500 * time.Millisecond
		c, err := cluster.New(ccfg, cluster.Options{Clock: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cfg := testConfig()
		cfg.PerIP = Limit{RatePerMinute: 1, Burst: 3, MaxConcurrent: 100}
		return startServer(t, cfg, testOpts{
			listener: ListenerOptions{GreetDelay: 50 * time.Millisecond},
			opt:      Options{Now: clock.Now, Shared: c.GuardState()},
		})
	}
	a, b := node(), node()
	busy := "421 4.7.0 " + testHost + " Too many connections from your address, try again later\r\n"

	c1 := dial(t, a.addr, "127.0.0.2") // token 1, on A: the pregreet test
	c1.greeting()
	c1.send("HELO client.test\r\n")
	if f := a.nextFacts(t); f.Pregreet != PregreetPass {
		t.Fatalf("pregreet on A = %q", f.Pregreet)
	}
	c2 := dial(t, b.addr, "127.0.0.2") // token 2, on B: passed on A
	c2.expect("220 " + testHost)
	c2.send("HELO client.test\r\n")
	if f := b.nextFacts(t); f.Pregreet != PregreetCached {
		t.Fatalf("pregreet on B = %q, want cached", f.Pregreet)
	}
	c3 := dial(t, b.addr, "127.0.0.2") // token 3
	c3.expect("220 ")
	c4 := dial(t, a.addr, "127.0.0.2") // A's own bucket has 2 left; the shared one none
	c4.expect(busy)
	c4.expectClosed()
	if a.g.Stats().Rejected(ReasonPerIPRate) != 1 {
		t.Errorf("A rejections = %v", a.g.Stats().Snapshot())
	}

	// Redis gone: A's local bucket (2 taken of 3) decides.
	mr.Close()
	c5 := dial(t, a.addr, "127.0.0.2")
	c5.expect("220 ")
	c6 := dial(t, a.addr, "127.0.0.2")
	c6.expect(busy)
	c6.expectClosed()
}
