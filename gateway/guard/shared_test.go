package guard

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fakeShared is a SharedState in memory that can fail.
type fakeShared struct {
	mu      sync.Mutex
	fail    bool
	deny    map[string]bool // RateAllow keys to refuse
	passes  map[netip.Addr]time.Time
	rateLog []string
}

func (f *fakeShared) err() error {
	if f.fail {
		return errors.New("store down")
	}
	return nil
}

func (f *fakeShared) PassUntil(_ context.Context, ip netip.Addr) (time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.passes[ip], f.err()
}

func (f *fakeShared) SetPass(_ context.Context, ip netip.Addr, until time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.err(); err != nil {
		return err
	}
	f.passes[ip] = until
	return nil
}

func (f *fakeShared) RateAllow(_ context.Context, key string, _ float64, _ int) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rateLog = append(f.rateLog, key)
	return !f.deny[key], f.err()
}

func (f *fakeShared) set(fn func(*fakeShared)) {
	f.mu.Lock()
	fn(f)
	f.mu.Unlock()
}

func TestSharedState(t *testing.T) {
	sh := &fakeShared{deny: map[string]bool{}, passes: map[netip.Addr]time.Time{}}
	s := startServer(t, testConfig(), testOpts{
		listener: ListenerOptions{GreetDelay: 50 * time.Millisecond},
		opt:      Options{Shared: sh},
	})
	busy := "421 4.7.0 " + testHost + " Too many connections from your address, try again later\r\n"

	// A client that passed on another node skips the pregreet test here.
	sh.set(func(f *fakeShared) { f.passes[netip.MustParseAddr("127.0.0.2")] = time.Now().Add(time.Hour) })
	c := dial(t, s.addr, "127.0.0.2")
	c.expect("220 " + testHost)
	c.send("HELO client.test\r\n")
	if f := s.nextFacts(t); f.Pregreet != PregreetCached {
		t.Errorf("pregreet = %q, want cached", f.Pregreet)
	}
	// A pass here is written to the shared cache.
	c3 := dial(t, s.addr, "127.0.0.3")
	c3.greeting()
	c3.send("HELO client.test\r\n")
	s.nextFacts(t)
	sh.mu.Lock()
	_, ok := sh.passes[netip.MustParseAddr("127.0.0.3")]
	log := append([]string(nil), sh.rateLog...)
	sh.mu.Unlock()
	if !ok {
		t.Error("the pass was not shared")
	}
	if len(log) < 2 || log[0] != "ip:127.0.0.2" || log[1] != "net:127.0.0.0/24" {
		t.Errorf("rate keys = %q", log)
	}

	// The shared buckets refuse: 421, counted as the rate reason.
	sh.set(func(f *fakeShared) { f.deny["ip:127.0.0.4"] = true; f.deny["net:127.0.5.0/24"] = true })
	c4 := dial(t, s.addr, "127.0.0.4")
	c4.expect(busy)
	c4.expectClosed()
	c5 := dial(t, s.addr, "127.0.5.1")
	c5.expect(busy)
	c5.expectClosed()
	if st := s.g.Stats(); st.Rejected(ReasonPerIPRate) != 1 || st.Rejected(ReasonPerPrefixRate) != 1 {
		t.Errorf("rejections = %v", st.Snapshot())
	}
	waitFor(t, "release", func() bool { return s.g.Active() == 2 })

	// The store fails: the local state decides (it admits).
	sh.set(func(f *fakeShared) { f.fail = true })
	c6 := dial(t, s.addr, "127.0.0.4")
	c6.greeting()
	c6.send("HELO client.test\r\n")
	if f := s.nextFacts(t); f.Pregreet != PregreetPass {
		t.Errorf("pregreet with the store down = %q", f.Pregreet)
	}
}
