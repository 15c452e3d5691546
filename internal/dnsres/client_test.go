package dnsres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"moat/internal/dnstest"
)

const zone = `$ORIGIN example.org.
$TTL 300
@        IN SOA ns.example.org. host.example.org. 1 3600 600 86400 120
@        IN MX  20 mx2
@        IN MX  10 mx1
@        IN MX  30 mx3
@        IN TXT "v=spf1 " "ip4:192.0.2.0/24 " "-all"
@        IN TXT "other"
mx1      IN A   192.0.2.1
mx1      IN AAAA 2001:db8::1
mx2      IN A   192.0.2.2
mx3      IN AAAA 2001:db8::3
www      IN CNAME mx1
c1       IN CNAME c2
c2       IN CNAME www
ext      IN CNAME host.other.test.
dangling IN CNAME nowhere
loop1    IN CNAME loop2
loop2    IN CNAME loop1
onlytxt  IN TXT "x"
a.b.c    IN A   192.0.2.9
1.2.0.192.in-addr.arpa. IN PTR mx1.example.org.
1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. IN PTR mx1.example.org.
other.test. IN SOA ns.other.test. h.other.test. 1 3600 600 86400 30
host.other.test. IN A 198.51.100.7
`

func newTest(t testing.TB, cfg Config) (*Client, *dnstest.Server) {
	t.Helper()
	srv := dnstest.NewServerWithZone(t, zone)
	cfg.Servers = append(cfg.Servers, srv.Addr())
	if cfg.Timeout == 0 {
		cfg.Timeout = 300 * time.Millisecond
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, srv
}

func kindOfErr(err error) string {
	if err == nil {
		return "ok"
	}
	var e *Error
	if !errors.As(err, &e) {
		return "foreign: " + err.Error()
	}
	return e.Kind.String()
}

func TestLookups(t *testing.T) {
	c, _ := newTest(t, Config{CacheSize: -1})
	ctx := context.Background()
	type call func() (string, error)
	str := func(v any, err error) (string, error) {
		if err != nil {
			return "", err
		}
		return fmt.Sprint(v), nil
	}
	mxs := func(name string) call {
		return func() (string, error) {
			mx, err := c.LookupMX(ctx, name)
			var hs []string
			for _, m := range mx {
				hs = append(hs, fmt.Sprintf("%d %s", m.Pref, m.Host))
			}
			return str(strings.Join(hs, ","), err)
		}
	}
	txt := func(name string) call {
		return func() (string, error) {
			v, err := c.LookupTXT(ctx, name)
			slices.Sort(v)
			return str(strings.Join(v, "|"), err)
		}
	}
	ips := func(network, name string) call {
		return func() (string, error) { return str(c.LookupIP(ctx, network, name)) }
	}
	ipaddrs := func(name string) call {
		return func() (string, error) { return str(c.LookupIPAddr(ctx, name)) }
	}
	ptr := func(addr string) call {
		return func() (string, error) { return str(c.LookupAddr(ctx, addr)) }
	}
	cname := func(name string) call {
		return func() (string, error) { return str(c.LookupCNAME(ctx, name)) }
	}
	tests := []struct {
		name string
		call call
		want string // value, or "!kind"
	}{
		{"mx sorted", mxs("example.org"), "10 mx1.example.org.,20 mx2.example.org.,30 mx3.example.org."},
		{"mx case-insensitive", mxs("EXAMPLE.Org."), "10 mx1.example.org.,20 mx2.example.org.,30 mx3.example.org."},
		{"mx nxdomain", mxs("nope.example.org"), "!nxdomain"},
		{"mx no data", mxs("mx1.example.org"), "!no data"},
		{"mx empty non-terminal", mxs("b.c.example.org"), "!no data"},
		{"txt concatenated", txt("example.org"), "other|v=spf1 ip4:192.0.2.0/24 -all"},
		{"txt nxdomain", txt("nope.example.org"), "!nxdomain"},
		{"txt no data", txt("mx1.example.org"), "!no data"},
		{"ip4", ips("ip4", "mx1.example.org"), "[192.0.2.1]"},
		{"ip6", ips("ip6", "mx1.example.org"), "[2001:db8::1]"},
		{"ip both", ips("ip", "mx1.example.org"), "[192.0.2.1 2001:db8::1]"},
		{"ip6 no data", ips("ip6", "mx2.example.org"), "!no data"},
		{"ip only v4", ips("ip", "mx2.example.org"), "[192.0.2.2]"},
		{"ip only v6", ips("ip", "mx3.example.org"), "[2001:db8::3]"},
		{"ip bad network", ips("tcp", "mx3.example.org"), "!error"},
		{"ipaddr", ipaddrs("mx1.example.org"), "[{192.0.2.1 } {2001:db8::1 }]"},
		{"ipaddr nxdomain", ipaddrs("nope.example.org"), "!nxdomain"},
		{"ipaddr no data", ipaddrs("onlytxt.example.org"), "!no data"},
		{"cname followed", ips("ip4", "www.example.org"), "[192.0.2.1]"},
		{"cname chain", ips("ip4", "c1.example.org"), "[192.0.2.1]"},
		{"cname out of zone, asked again", ips("ip4", "ext.example.org"), "[198.51.100.7]"},
		{"cname dangling", ips("ip4", "dangling.example.org"), "!nxdomain"},
		{"cname no data at target", mxs("www.example.org"), "!no data"},
		{"cname loop", ips("ip4", "loop1.example.org"), "!error"},
		{"LookupCNAME chain", cname("c1.example.org"), "mx1.example.org."},
		{"LookupCNAME none", cname("mx2.example.org"), "mx2.example.org."},
		{"LookupCNAME no A", cname("onlytxt.example.org"), "onlytxt.example.org."},
		{"LookupCNAME nxdomain", cname("nope.example.org"), "!nxdomain"},
		{"LookupCNAME loop", cname("loop2.example.org"), "!error"},
		{"ptr v4", ptr("192.0.2.1"), "[mx1.example.org.]"},
		{"ptr v6", ptr("2001:db8::1"), "[mx1.example.org.]"},
		{"ptr v4-mapped", ptr("::ffff:192.0.2.1"), "[mx1.example.org.]"},
		{"ptr nxdomain", ptr("192.0.2.2"), "!nxdomain"},
		{"ptr bad address", ptr("192.0.2"), "!error"},
		{"invalid empty label", txt("a..example.org"), "!error"},
		{"invalid long label", txt(strings.Repeat("a", 64) + ".example.org"), "!error"},
		{"invalid long name", txt(strings.Repeat("abcdefghi.", 26)), "!error"},
		{"invalid empty", txt(""), "!error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.call()
			if err != nil {
				got = "!" + kindOfErr(err)
			}
			if got != tc.want {
				t.Errorf("got %s (%v), want %s", got, err, tc.want)
			}
		})
	}
}

func TestInvalidNameSendsNothing(t *testing.T) {
	c, srv := newTest(t, Config{})
	for _, name := range []string{"", "a..b", strings.Repeat("x", 64) + ".org", strings.Repeat("abcdefghi.", 26)} {
		if _, err := c.LookupTXT(context.Background(), name); err == nil || IsTemporary(err) || IsNotFound(err) {
			t.Errorf("%q: want permanent error, got %v", name, err)
		}
	}
	if n := srv.Queries(); n != 0 {
		t.Errorf("%d queries sent for invalid names", n)
	}
}

func TestFailures(t *testing.T) {
	tests := []struct {
		failure   dnstest.Failure
		kind      Kind
		temporary bool
		queries   int // DefaultAttempts rounds only while no server answers
	}{
		{dnstest.ServFail, ServFail, true, 1},
		{dnstest.Refused, Refused, true, 1},
		{dnstest.Timeout, Timeout, true, DefaultAttempts},
	}
	for _, tc := range tests {
		t.Run(tc.failure.String(), func(t *testing.T) {
			c, srv := newTest(t, Config{Timeout: 100 * time.Millisecond})
			srv.Fail("example.org", dns.TypeANY, tc.failure)
			_, err := c.LookupTXT(context.Background(), "example.org")
			var e *Error
			if !errors.As(err, &e) || e.Kind != tc.kind {
				t.Fatalf("got %v, want kind %v", err, tc.kind)
			}
			if IsTemporary(err) != tc.temporary || IsNotFound(err) {
				t.Errorf("IsTemporary %v IsNotFound %v", IsTemporary(err), IsNotFound(err))
			}
			if e.Name != "example.org." || e.Type != "TXT" {
				t.Errorf("Name %q Type %q", e.Name, e.Type)
			}
			if srv.Queries() != tc.queries {
				t.Errorf("%d queries, want %d", srv.Queries(), tc.queries)
			}
			// Not cached: the next lookup asks again and sees the repair.
			srv.Fail("example.org", dns.TypeANY, 0)
			if _, err := c.LookupTXT(context.Background(), "example.org"); err != nil {
				t.Errorf("after repair: %v", err)
			}
		})
	}
}

func TestContextDeadline(t *testing.T) {
	c, srv := newTest(t, Config{Timeout: 10 * time.Second})
	srv.Fail("example.org", dns.TypeANY, dnstest.Timeout)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.LookupMX(ctx, "example.org")
	if !errors.Is(err, context.DeadlineExceeded) || !IsTemporary(err) {
		t.Fatalf("got %v, want a temporary error wrapping DeadlineExceeded", err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel2() }()
	if _, err := c.LookupMX(ctx2, "example.org"); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestServersInOrder(t *testing.T) {
	bad := dnstest.NewServer(t)
	bad.Fail("example.org", dns.TypeANY, dnstest.ServFail)
	dead := dnstest.NewServer(t)
	dead.Fail("example.org", dns.TypeANY, dnstest.Timeout)
	c, srv := newTest(t, Config{Servers: []string{bad.Addr(), dead.Addr()}, Timeout: 100 * time.Millisecond})
	txt, err := c.LookupTXT(context.Background(), "example.org")
	if err != nil || len(txt) != 2 {
		t.Fatalf("got %v, %v", txt, err)
	}
	if bad.Queries() != 1 || dead.Queries() != 1 || srv.Queries() != 1 {
		t.Errorf("queries: %d %d %d", bad.Queries(), dead.Queries(), srv.Queries())
	}
}

func TestTruncationFallsBackToTCP(t *testing.T) {
	var mu sync.Mutex
	var outcomes []string
	c, srv := newTest(t, Config{Observe: func(qtype, outcome string, d time.Duration) {
		mu.Lock()
		outcomes = append(outcomes, qtype+" "+outcome)
		mu.Unlock()
	}})
	srv.Fail("example.org", dns.TypeTXT, dnstest.Truncate)
	txt, err := c.LookupTXT(context.Background(), "example.org")
	if err != nil || len(txt) != 2 {
		t.Fatalf("got %v, %v", txt, err)
	}
	// A large answer: more than 1232 octets, truncated by the server.
	for i := range 40 {
		srv.Add(fmt.Sprintf(`big.example.org. 60 IN TXT "%s%02d"`, strings.Repeat("x", 60), i))
	}
	txt, err = c.LookupTXT(context.Background(), "big.example.org")
	if err != nil || len(txt) != 40 {
		t.Fatalf("big: got %d, %v", len(txt), err)
	}
	want := []string{"TXT truncated", "TXT noerror", "TXT truncated", "TXT noerror"}
	if !slices.Equal(outcomes, want) {
		t.Errorf("observed %v, want %v", outcomes, want)
	}
}

func TestCache(t *testing.T) {
	c, srv := newTest(t, Config{})
	ctx := context.Background()
	steps := []struct {
		name  string
		do    func() error
		asked int // queries the server sees for this step
	}{
		{"first mx", func() error { _, err := c.LookupMX(ctx, "example.org"); return err }, 1},
		{"second mx cached", func() error { _, err := c.LookupMX(ctx, "EXAMPLE.ORG."); return err }, 0},
		{"nxdomain", func() error { _, err := c.LookupTXT(ctx, "nope.example.org"); return nil2(err, IsNXDomain) }, 1},
		{"nxdomain cached", func() error { _, err := c.LookupTXT(ctx, "nope.example.org"); return nil2(err, IsNXDomain) }, 0},
		{"no data", func() error { _, err := c.LookupMX(ctx, "mx1.example.org"); return nil2(err, IsNoData) }, 1},
		{"no data cached", func() error { _, err := c.LookupMX(ctx, "mx1.example.org"); return nil2(err, IsNoData) }, 0},
		{"cname chain", func() error { _, err := c.LookupIP(ctx, "ip4", "ext.example.org"); return err }, 2},
		{"cname chain cached", func() error { _, err := c.LookupIP(ctx, "ip4", "ext.example.org"); return err }, 0},
		{"target cached too", func() error { _, err := c.LookupIP(ctx, "ip4", "host.other.test"); return err }, 0},
	}
	for _, st := range steps {
		before := srv.Queries()
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := srv.Queries() - before; got != st.asked {
			t.Errorf("%s: %d queries, want %d", st.name, got, st.asked)
		}
	}
}

func nil2(err error, ok func(error) bool) error {
	if ok(err) {
		return nil
	}
	return fmt.Errorf("unexpected %v", err)
}

func TestCacheExpiry(t *testing.T) {
	c, srv := newTest(t, Config{})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }
	srv.Add("ttl0.example.org. 0 IN A 192.0.2.50")
	ctx := context.Background()
	tests := []struct {
		name    string
		host    string
		advance time.Duration
		asked   int
	}{
		{"positive", "mx2.example.org", 0, 1},
		{"positive fresh", "mx2.example.org", 299 * time.Second, 0},
		{"positive expired", "mx2.example.org", 2 * time.Second, 1},
		// example.org SOA: TTL 300, MINIMUM 120 → 120 s (RFC 2308 §5).
		{"negative", "nope.example.org", 0, 1},
		{"negative fresh", "nope.example.org", 119 * time.Second, 0},
		{"negative expired", "nope.example.org", 2 * time.Second, 1},
		// No SOA above this name: DefaultNegativeTTL.
		{"negative no SOA", "nope.none.", 0, 1},
		{"negative no SOA fresh", "nope.none.", DefaultNegativeTTL - time.Second, 0},
		{"negative no SOA expired", "nope.none.", 2 * time.Second, 1},
		{"ttl 0 not cached", "ttl0.example.org", 0, 1},
		{"ttl 0 not cached again", "ttl0.example.org", 0, 1},
	}
	for _, tc := range tests {
		now = now.Add(tc.advance)
		before := srv.Queries()
		c.LookupIP(ctx, "ip4", tc.host)
		if got := srv.Queries() - before; got != tc.asked {
			t.Errorf("%s: %d queries, want %d", tc.name, got, tc.asked)
		}
	}
}

func TestNetDNSError(t *testing.T) {
	c, srv := newTest(t, Config{Timeout: 100 * time.Millisecond, CacheSize: -1})
	srv.Add("sf.example.org. 300 IN TXT \"x\"", "to.example.org. 300 IN TXT \"x\"")
	srv.Fail("sf.example.org", dns.TypeANY, dnstest.ServFail)
	srv.Fail("to.example.org", dns.TypeANY, dnstest.Timeout)
	tests := []struct {
		name                       string
		notFound, temporary, tmout bool
	}{
		{"nope.example.org", true, false, false},
		{"mx1.example.org", true, false, false},
		{"sf.example.org", false, true, false},
		{"to.example.org", false, true, true},
		{"a..b", false, false, false},
	}
	for _, tc := range tests {
		_, err := c.LookupTXT(context.Background(), tc.name)
		// What blitiri.com.ar/go/spf and go-msgauth do: a type assertion.
		de, ok := err.(*net.DNSError)
		if !ok {
			t.Fatalf("%s: %T is not *net.DNSError", tc.name, err)
		}
		if de.IsNotFound != tc.notFound || de.Temporary() != tc.temporary || de.Timeout() != tc.tmout {
			t.Errorf("%s: %+v", tc.name, de)
		}
		var ne net.Error
		if !errors.As(err, &ne) || ne.Temporary() != tc.temporary {
			t.Errorf("%s: net.Error", tc.name)
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("%s: no *Error inside", tc.name)
		}
		// A bare *Error converts with errors.As too.
		var de2 *net.DNSError
		if !errors.As(error(e), &de2) || de2.IsNotFound != tc.notFound || de2.Temporary() != tc.temporary {
			t.Errorf("%s: As on bare *Error: %+v", tc.name, de2)
		}
	}
}

func TestIPAddrCombination(t *testing.T) {
	tests := []struct {
		name     string
		failA    dnstest.Failure
		failAAAA dnstest.Failure
		host     string
		want     string
	}{
		{"both ok", 0, 0, "mx1.example.org", "ok"},
		{"A fails, AAAA found", dnstest.ServFail, 0, "mx1.example.org", "ok"},
		{"AAAA fails, A found", 0, dnstest.ServFail, "mx1.example.org", "ok"},
		{"AAAA fails, A found only", 0, dnstest.ServFail, "mx2.example.org", "ok"},
		{"A fails, AAAA found only", dnstest.Timeout, 0, "mx3.example.org", "ok"},
		{"A no data, AAAA fails", 0, dnstest.ServFail, "onlytxt.example.org", "servfail"},
		{"A fails, AAAA no data", dnstest.Refused, 0, "onlytxt.example.org", "refused"},
		{"both no data", 0, 0, "onlytxt.example.org", "no data"},
		{"both nxdomain", 0, 0, "nope.example.org", "nxdomain"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, srv := newTest(t, Config{CacheSize: -1})
			if tc.failA != 0 {
				srv.Fail(tc.host, dns.TypeA, tc.failA)
			}
			if tc.failAAAA != 0 {
				srv.Fail(tc.host, dns.TypeAAAA, tc.failAAAA)
			}
			_, err := c.LookupIPAddr(context.Background(), tc.host)
			if got := kindOfErr(err); got != tc.want {
				t.Errorf("got %s (%v), want %s", got, err, tc.want)
			}
		})
	}
}

func TestConcurrent(t *testing.T) {
	c, _ := newTest(t, Config{CacheSize: 4})
	hosts := []string{"mx1.example.org", "mx2.example.org", "mx3.example.org", "www.example.org", "c1.example.org", "nope.example.org"}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 16 {
		wg.Go(func() {
			for i := range 20 {
				h := hosts[(g+i)%len(hosts)]
				_, err := c.LookupIPAddr(context.Background(), h)
				if (err != nil) != (h == "nope.example.org") {
					errs <- fmt.Errorf("%s: %v", h, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestNoServersFromResolvConf(t *testing.T) {
	dir := t.TempDir()
	empty := dir + "/empty.conf"
	if err := writeFile(empty, "search example.org\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{resolvConf: empty}); err == nil || !strings.Contains(err.Error(), "dns.servers") {
		t.Errorf("empty resolv.conf: %v", err)
	}
	good := dir + "/good.conf"
	if err := writeFile(good, "nameserver 127.0.0.1\nnameserver ::1\n"); err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{resolvConf: good})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"127.0.0.1:53", "[::1]:53"}; !slices.Equal(c.servers, want) {
		t.Errorf("servers %v, want %v", c.servers, want)
	}
}

func TestForTest(t *testing.T) {
	srv := dnstest.NewServer(t)
	srv.Add("example.org. 60 IN A 192.0.2.1")
	c := ForTest(srv.Addr())
	if _, err := c.LookupIP(context.Background(), "ip4", "example.org"); err != nil {
		t.Fatal(err)
	}
	srv.Remove("example.org", dns.TypeA)
	if _, err := c.LookupIP(context.Background(), "ip4", "example.org"); !IsNXDomain(err) {
		t.Fatalf("ForTest must not cache: %v", err)
	}
}

func TestUnreachableServer(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := pc.LocalAddr().String()
	pc.Close()
	c, err := New(Config{Servers: []string{closed}, Timeout: 200 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.LookupTXT(context.Background(), "example.org")
	if !IsTemporary(err) || IsNotFound(err) {
		t.Fatalf("closed port: %v (%s), want temporary", err, kindOfErr(err))
	}
	// The next server answers.
	c2, srv := newTest(t, Config{Servers: []string{closed}, Timeout: 200 * time.Millisecond})
	if _, err := c2.LookupTXT(context.Background(), "example.org"); err != nil || srv.Queries() != 1 {
		t.Fatalf("fallback: %v, %d queries", err, srv.Queries())
	}
}
