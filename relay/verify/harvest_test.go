package verify

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"moat/internal/smtptest"
)

func netipFor(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
}

func TestHarvest(t *testing.T) {
	s := knownSink()
	addr, _ := startSink(t, s, nil)
	cfg := DefaultConfig()
	v, clk := newTest(t, cfg, callaheadRoutes(addr), nil)
	var got []int
	for i := range 25 {
		got = append(got, code(check(t, v, client1, fmt.Sprintf("random%d@corp.example", i))))
	}
	for i, c := range got {
		want := 550
		if i >= cfg.HarvestLimit {
			want = 421
		}
		if c != want {
			t.Fatalf("rcpt %d: got %d, want %d (all: %v)", i, c, want, got)
		}
	}
	if n := s.rcpts.Load(); n != int32(cfg.HarvestLimit) {
		t.Fatalf("%d probes, want %d: refused RCPTs must not probe", n, cfg.HarvestLimit)
	}
	r := smtptest.AsReply(t, check(t, v, client1, "alice@corp.example"))
	if r.Code != 421 || r.Enhanced.String() != "4.7.0" {
		t.Fatalf("known address from a harvester: got %v, want 421 4.7.0", r)
	}
	// Another client is not affected, and a repeat is a cache hit.
	if c := code(check(t, v, client2, "random3@corp.example")); c != 550 {
		t.Fatalf("other client: got %d, want 550", c)
	}
	if err := check(t, v, client2, "alice@corp.example"); err != nil {
		t.Fatalf("other client: %v", err)
	}
	if st := v.Stats(); st.HarvestRefusals != 6 || st.Unknown != 21 {
		t.Errorf("stats %+v", st)
	}
	// The window ends.
	clk.Add(cfg.HarvestWindow)
	if c := code(check(t, v, client1, "random1@corp.example")); c != 550 {
		t.Fatalf("after the window: got %d, want 550", c)
	}
}

func TestHarvestIPv6Prefix(t *testing.T) {
	v, _ := newCallahead(t, func(c *Config) { c.HarvestLimit = 3 })
	for i := range 3 {
		a := netip.MustParseAddr(fmt.Sprintf("2001:db8:1:2::%x", i+1))
		check(t, v, a, fmt.Sprintf("x%d@corp.example", i))
	}
	if c := code(check(t, v, netip.MustParseAddr("2001:db8:1:2:ffff::1"), "alice@corp.example")); c != 421 {
		t.Fatalf("same /64: got %d, want 421", c)
	}
	if c := code(check(t, v, netip.MustParseAddr("2001:db8:1:3::1"), "alice@corp.example")); c != 0 {
		t.Fatalf("other /64: got %d, want accept", c)
	}
	// An invalid client address is never counted.
	for i := range 5 {
		check(t, v, netip.Addr{}, fmt.Sprintf("y%d@corp.example", i))
	}
	if c := code(check(t, v, netip.Addr{}, "alice@corp.example")); c != 0 {
		t.Fatalf("no client address: got %d, want accept", c)
	}
}

func TestHarvestKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"192.0.2.1", "192.0.2.1"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"2001:db8::1", "2001:db8::/64"},
		{"2001:db8:0:0:ffff::1", "2001:db8::/64"},
	}
	for _, tt := range tests {
		if got := harvestKey(netip.MustParseAddr(tt.in)); got != tt.want {
			t.Errorf("harvestKey(%s) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if harvestKey(netip.Addr{}) != "" {
		t.Error("invalid address has a key")
	}
}

func TestHarvestOff(t *testing.T) {
	v, _ := newCallahead(t, func(c *Config) { c.HarvestLimit = 0 })
	for i := range 30 {
		if c := code(check(t, v, client1, fmt.Sprintf("r%d@corp.example", i))); c != 550 {
			t.Fatalf("rcpt %d: got %d with harvest_limit 0", i, c)
		}
	}
	_ = time.Second
}

func TestHarvestSoft(t *testing.T) {
	s := knownSink()
	addr, _ := startSink(t, s, nil)
	cfg := DefaultConfig()
	cfg.HarvestLimit, cfg.HarvestCode = 1, 450
	v, _ := newTest(t, cfg, callaheadRoutes(addr), nil)
	check(t, v, client1, "x@corp.example")
	r := smtptest.AsReply(t, check(t, v, client1, "alice@corp.example"))
	if r.Code != 450 || r.Enhanced.String() != "4.7.1" {
		t.Fatalf("got %v, want 450 4.7.1", r)
	}
	if !v.Verifies("backend") || v.Verifies("plain") || v.Verifies("local") {
		t.Error("Verifies")
	}
}
