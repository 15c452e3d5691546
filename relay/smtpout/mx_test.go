package smtpout

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"moat/internal/dnsres"
	"moat/internal/dnstest"
	"moat/internal/reply"
	"moat/internal/smtptest"
	"moat/relay/mx"
	"moat/relay/route"
	"moat/relay/transport"
)

// mxClient returns an MX client whose DNS is a dnstest server and whose
// port is that of addr (every exchanger listens on the same port; the
// address in DNS picks the host).
func mxClient(t *testing.T, srv *dnstest.Server, addr string) *Client {
	t.Helper()
	r, err := dnsres.New(dnsres.Config{Servers: []string{srv.Addr()}, Timeout: time.Second, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	c := NewMX(Options{
		Hostname: "moat.test",
		Resolver: r,
		Port:     port,
		TLS:      route.TLSNone,
		Self:     mx.Self{AllowLoopback: true},
		Timeouts: Timeouts{Connect: 2 * time.Second},
	})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestMX(t *testing.T) {
	b := &backend{}
	addr, _ := startServer(t, b, nil)
	srv := dnstest.NewServer(t)
	srv.Add(
		// 127.0.0.2 is loopback too, but nothing listens there: refused.
		"fallback.test. 300 IN MX 10 down.test.",
		"fallback.test. 300 IN MX 20 up.test.",
		"down.test. 300 IN A 127.0.0.2",
		"up.test. 300 IN A 127.0.0.1",
		"null.test. 300 IN MX 0 .",
		"amx.test. 300 IN A 127.0.0.1",
		"amx.test. 300 IN TXT \"no mx here\"",
		"loop.test. 300 IN MX 10 moat.test.",
		"moat.test. 300 IN A 127.0.0.1",
		"flaky.test. 300 IN A 127.0.0.1",
	)
	srv.Fail("flaky.test.", dns.TypeMX, dnstest.ServFail)
	c := mxClient(t, srv, addr)

	tests := []struct {
		rcpt     string
		ok       bool
		perm     bool
		enhanced reply.Enhanced
	}{
		{rcpt: "a@fallback.test", ok: true},
		{rcpt: "a@amx.test", ok: true},
		{rcpt: "a@null.test", perm: true, enhanced: reply.Enhanced{5, 1, 10}},
		{rcpt: "a@loop.test", perm: true, enhanced: reply.Enhanced{5, 4, 6}},
		{rcpt: "a@nxdomain.test", perm: true, enhanced: reply.Enhanced{5, 1, 2}},
		{rcpt: "a@flaky.test", enhanced: reply.Enhanced{4, 4, 3}},
	}
	for _, tt := range tests {
		r := c.Deliver(context.Background(), testMsg(testBody), []string{tt.rcpt})[0]
		if tt.ok {
			if r.Err != nil {
				t.Errorf("%s: %v", tt.rcpt, r.Err)
			}
			continue
		}
		if r.Err == nil || transport.IsPermanent(r.Err) != tt.perm {
			t.Errorf("%s: %v, want permanent=%v", tt.rcpt, r.Err, tt.perm)
			continue
		}
		if rp := smtptest.AsReply(t, r.Err); rp.Enhanced != tt.enhanced {
			t.Errorf("%s: %v, want %s", tt.rcpt, rp, tt.enhanced)
		}
	}
	if got := b.received(); len(got) != 2 {
		t.Errorf("received %d messages, want 2", len(got))
	}
}

func TestMXGroupsDomains(t *testing.T) {
	b := &backend{}
	addr, ln := startServer(t, b, nil)
	srv := dnstest.NewServer(t)
	srv.Add("one.test. 300 IN MX 10 mx.test.", "two.test. 300 IN MX 10 mx.test.", "mx.test. 300 IN A 127.0.0.1")
	c := mxClient(t, srv, addr)
	rs := c.Deliver(context.Background(), testMsg(testBody), []string{"a@one.test", "b@two.test", "c@one.test", "@bad:d@one.test"})
	res := byRcpt(rs)
	for _, r := range []string{"a@one.test", "b@two.test", "c@one.test"} {
		if res[r] != nil {
			t.Errorf("%s: %v", r, res[r])
		}
	}
	if !transport.IsPermanent(res["@bad:d@one.test"]) {
		t.Errorf("source route: %v", res["@bad:d@one.test"])
	}
	// Two transactions (one per domain) over one reused connection.
	if got := b.received(); len(got) != 2 {
		t.Errorf("received %+v", got)
	}
	if n := ln.Accepted(); n != 1 {
		t.Errorf("%d connections", n)
	}
}

func TestMXAllDown(t *testing.T) {
	srv := dnstest.NewServer(t)
	srv.Add("down.test. 300 IN MX 10 a.down.test.", "down.test. 300 IN MX 20 b.down.test.",
		"a.down.test. 300 IN A 127.0.0.2", "b.down.test. 300 IN A 127.0.0.3")
	c := mxClient(t, srv, "127.0.0.1:1")
	r := c.Deliver(context.Background(), testMsg(testBody), []string{"a@down.test"})[0]
	if r.Err == nil || transport.IsPermanent(r.Err) {
		t.Errorf("%v, want temporary", r.Err)
	}
}

func TestMXNoResolver(t *testing.T) {
	c := NewMX(Options{})
	defer c.Close()
	if r := c.Deliver(context.Background(), testMsg(testBody), []string{"a@example.net"})[0]; r.Err == nil || transport.IsPermanent(r.Err) {
		t.Errorf("%v", r.Err)
	}
}
