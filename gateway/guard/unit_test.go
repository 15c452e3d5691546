package guard

import (
	"moat/policy/dnsbl"

	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestTracker(t *testing.T) {
	type step struct {
		client, server string
	}
	tests := []struct {
		name     string
		maxLoops int
		steps    []step
		want     event
		errors   int
	}{
		{name: "plain session", steps: []step{{server: "220 x\r\n"}, {client: "EHLO a\r\n"}, {server: "250-x\r\n250 8BITMIME\r\n"}}},
		{name: "get", steps: []step{{client: "GET / HTTP/1.1\r\n"}}, want: evHTTP},
		{name: "get split", steps: []step{{client: "G"}, {client: "ET /"}, {client: " HTTP/1.1\r\n"}}, want: evHTTP},
		{name: "long get line without end", steps: []step{{client: "CONNECT " + strings.Repeat("a", 100)}}, want: evHTTP},
		{name: "header", steps: []step{{client: "User-Agent: x\r\n"}}, want: evHTTP},
		{name: "mail from is not a header", steps: []step{{client: "MAIL FROM:<a@b>\r\n"}}},
		{name: "tls", steps: []step{{client: "\x16\x03\x01"}}, want: evTLS},
		{name: "proxy v1", steps: []step{{client: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"}}, want: evProxy},
		{name: "proxy v1 later is ok", steps: []step{{client: "NOOP\r\nPROXY x\r\n"}}},
		{name: "proxy v2", steps: []step{{client: "\r\n\r\n\x00\r\nQUIT\n"}}, want: evProxy},
		{name: "loops", maxLoops: 2, steps: []step{{client: "NOOP\r\nrset\r\nhelo x\r\n"}}, want: evLoop},
		{name: "data hides commands", maxLoops: 1, steps: []step{
			{client: "DATA\r\n"}, {server: "354 go\r\n"},
			{client: "GET / HTTP/1.1\r\nNOOP\r\nNOOP\r\n\x16\r\n.\r\n"}, {server: "250 ok\r\n"},
			{client: "NOOP\r\n"}}},
		{name: "data end then commands in one read", maxLoops: 1, steps: []step{
			{client: "DATA\r\n"}, {server: "354 go\r\n"},
			{client: "x\r\n.\r\nNOOP\r\nNOOP\r\n"}}, want: evLoop},
		// The data ends where the SMTP loop ends it: CR CR LF is still a
		// line end for the dot after it, and so is ".\r\r\n".
		{name: "CR CR LF then the end", maxLoops: 1, steps: []step{
			{client: "DATA\r\n"}, {server: "354 go\r\n"},
			{client: "a\r\r\n.\r\nNOOP\r\nNOOP\r\n"}}, want: evLoop},
		{name: "dot CR CR LF then the end", maxLoops: 1, steps: []step{
			{client: "DATA\r\n"}, {server: "354 go\r\n"},
			{client: ".\r\r\n.\r\nNOOP\r\nNOOP\r\n"}}, want: evLoop},
		{name: "bare LF dot is not the end", maxLoops: 1, steps: []step{
			{client: "DATA\r\n"}, {server: "354 go\r\n"},
			{client: "x\n.\nNOOP\r\nNOOP\r\n"}}},
		{name: "refused DATA", steps: []step{
			{client: "DATA\r\n"}, {server: "503 5.5.1 no\r\n"},
			{client: "GET / HTTP/1.1\r\n"}}, want: evHTTP, errors: 1},
		{name: "pipelined DATA refused after 250s", steps: []step{
			{client: "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n"},
			{server: "250 ok\r\n250 ok\r\n"}, {server: "354 go\r\n"},
			{client: "GET / HTTP/1.1\r\n"}}},
		{name: "bdat", maxLoops: 1, steps: []step{
			{client: "BDAT 12 LAST\r\nNOOP\r\nNOOP\r\n"}, {server: "250 ok\r\n"}, {client: "NOOP\r\n"}}},
		{name: "starttls then ciphertext", steps: []step{
			{client: "STARTTLS\r\n"}, {server: "220 go ahead\r\n"}, {client: "\x16\x03\x01GET / HTTP/1.1\r\n"},
			{server: "\x17\x03\x03555 "}}},
		{name: "starttls refused", steps: []step{
			{client: "STARTTLS\r\n"}, {server: "454 4.7.0 no\r\n"}, {client: "GET / HTTP/1.1\r\n"}}, want: evHTTP},
		{name: "errors counted on final lines", steps: []step{
			{server: "550-a\r\n550-b\r\n55"}, {server: "0 c\r\n"}, {server: "502 5.5.1 x\r\n250 ok\r\n"}}, errors: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := tracker{maxLoops: tt.maxLoops}
			got := evNone
			for _, s := range tt.steps {
				if s.server != "" {
					tr.server([]byte(s.server))
				}
				if s.client != "" && got == evNone {
					got = tr.client([]byte(s.client))
				}
			}
			if got != tt.want {
				t.Errorf("event = %v, want %v", got, tt.want)
			}
			if tr.errors != tt.errors {
				t.Errorf("errors = %d, want %d", tr.errors, tt.errors)
			}
		})
	}
}

func TestTarpitDelay(t *testing.T) {
	l := connLimits{tarpitAfter: 3, tarpitBase: time.Second, tarpitMax: 10 * time.Second}
	for errs, want := range map[int]time.Duration{1: 0, 3: 0, 4: time.Second, 6: 3 * time.Second, 100: 10 * time.Second} {
		if got := l.tarpit(errs); got != want {
			t.Errorf("tarpit(%d) = %s, want %s", errs, got, want)
		}
	}
}

func TestParseList(t *testing.T) {
	in := "# comment\n\n192.0.2.1\n 198.51.100.0/24  # inline\n2001:db8::/32\n::ffff:192.0.2.9\n10.1.2.3/8\n"
	ps, err := ParseList(strings.NewReader(in), "x.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"192.0.2.1/32", "198.51.100.0/24", "2001:db8::/32", "192.0.2.9/32", "10.0.0.0/8"}
	if len(ps) != len(want) {
		t.Fatalf("got %v", ps)
	}
	for i, w := range want {
		if ps[i].String() != w {
			t.Errorf("[%d] = %s, want %s", i, ps[i], w)
		}
	}
	set := newPrefixSet(ps)
	for addr, in := range map[string]bool{
		"192.0.2.1": true, "192.0.2.2": false, "198.51.100.77": true, "2001:db8:1::1": true,
		"2001:db9::1": false, "::ffff:198.51.100.1": true, "10.200.0.1": true,
	} {
		if got := set.Contains(netip.MustParseAddr(addr)); got != in {
			t.Errorf("Contains(%s) = %v", addr, got)
		}
	}
	_, err = ParseList(strings.NewReader("192.0.2.1\nbogus\n300.1.1.1/8\n"), "bad.txt")
	if err == nil || !strings.Contains(err.Error(), "bad.txt:2") || !strings.Contains(err.Error(), "bad.txt:3") {
		t.Errorf("error = %v", err)
	}
	_, err = ParseList(strings.NewReader(strings.Repeat("1", 1000)), "long.txt")
	if err == nil || !strings.Contains(err.Error(), "long.txt:1") {
		t.Errorf("long line error = %v", err)
	}
}

func TestValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	tests := []struct {
		key    string
		mutate func(*Config)
	}{
		{"guard.max_connections", func(c *Config) { c.MaxConnections = 0 }},
		{"guard.per_ip.burst", func(c *Config) { c.PerIP.Burst = 0 }},
		{"guard.per_prefix.ipv4_prefix", func(c *Config) { c.PerPrefix.IPv4Prefix = 33 }},
		{"guard.per_prefix.ipv6_prefix", func(c *Config) { c.PerPrefix.IPv6Prefix = 8 }},
		{"guard.allow[1]", func(c *Config) { c.Allow = []string{"192.0.2.1", "nope"} }},
		{"guard.trusted_proxies[0]", func(c *Config) { c.TrustedProxies = []string{"x/8"} }},
		{"guard.dnsbl.zones[0].zone", func(c *Config) { c.DNSBL.Zones = []dnsbl.Zone{{}} }},
		{"guard.dnsbl.reply", func(c *Config) { c.DNSBL.Reply = 554 }},
		{"guard.pregreet.cache_size", func(c *Config) { c.Pregreet.CacheSize = 0 }},
		{"guard.pregreet.action", func(c *Config) { c.Pregreet.Action = "enforce" }},
		{"guard.log_limit", func(c *Config) { c.LogLimit = -1 }},
		{"guard.max_errors", func(c *Config) { c.MaxErrors = -1 }},
		{"guard.tarpit", func(c *Config) { c.Tarpit.Max = time.Hour }},
		{"guard.proxy_header_timeout", func(c *Config) { c.ProxyHeaderTimeout = 0 }},
		{"guard.submission_reserve", func(c *Config) { c.SubmissionReserve = 1 }},
		{"guard.stress.threshold", func(c *Config) { c.Stress.Threshold = 1.5 }},
		{"guard.stress.timeout", func(c *Config) { c.Stress.Timeout = 0 }},
		{"guard.dnsbl.on_error", func(c *Config) { c.DNSBL.OnError = "reject" }},
	}
	for _, tt := range tests {
		cfg := DefaultConfig()
		tt.mutate(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.key) {
			t.Errorf("%s: error = %v", tt.key, err)
		}
	}
	if _, err := New(DefaultConfig(), Options{}); err == nil {
		t.Error("New without hostname: want error")
	}
	cfg := DefaultConfig()
	cfg.DNSBL.Zones = []dnsbl.Zone{{Zone: "zen.test"}}
	if _, err := New(cfg, Options{Hostname: "mx"}); err == nil {
		t.Error("New with zones and no resolver: want error")
	}
}

func TestLimiterBounded(t *testing.T) {
	cfg := DefaultConfig()
	cfg.TrackedClients = 16
	l, err := newLimiter(cfg.TrackedClients, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1})
		rel, reason := l.acquire(ip, &cfg)
		if reason != "" {
			t.Fatalf("%s: %s", ip, reason)
		}
		rel.release()
		rel.release() // twice is harmless
	}
	if l.ips.Len() > 16 || l.nets.Len() > 16 {
		t.Errorf("lru sizes %d %d", l.ips.Len(), l.nets.Len())
	}
}

func FuzzParseList(f *testing.F) {
	f.Add("# c\n192.0.2.1\n2001:db8::/32 # x\n\n")
	f.Add("::ffff:1.2.3.4/120\n0.0.0.0/0\n")
	f.Add("fe80::1%eth0\n1.2.3.4/33\n")
	f.Fuzz(func(t *testing.T, s string) {
		ps, _ := ParseList(strings.NewReader(s), "f")
		set := newPrefixSet(ps)
		for _, p := range ps {
			if !p.IsValid() || p != p.Masked() {
				t.Fatalf("bad prefix %v", p)
			}
			if !set.Contains(p.Addr()) {
				t.Fatalf("set does not contain %v", p)
			}
		}
	})
}

// FuzzTracker feeds arbitrary client and server bytes in arbitrary
// chunks: the tracker must not panic and its state must stay bounded.
func FuzzTracker(f *testing.F) {
	f.Add([]byte("EHLO x\r\nDATA\r\nGET / \r\n.\r\nBDAT 3 LAST\r\nabcNOOP\r\n"), []byte("220 x\r\n250 ok\r\n354 go\r\n550 no\r\n"), uint8(3))
	f.Add([]byte("STARTTLS\r\n\x16\x03"), []byte("220 go\r\n"), uint8(1))
	f.Add([]byte("BDAT 99999999999999999999\r\n"), []byte("5"), uint8(7))
	f.Fuzz(func(t *testing.T, cli, srv []byte, chunk uint8) {
		tr := tracker{maxLoops: 50}
		n := int(chunk%16) + 1
		for len(cli) > 0 || len(srv) > 0 {
			k := min(n, len(cli))
			tr.client(cli[:k])
			cli = cli[k:]
			k = min(n, len(srv))
			tr.server(srv[:k])
			srv = srv[k:]
			if int(tr.lineN) > lineKeep || tr.bdatLeft < 0 || tr.pending < 0 || tr.replyN > 4 {
				t.Fatalf("state out of bounds: %+v", tr)
			}
		}
	})
}
