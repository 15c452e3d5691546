package guard

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/dnstest"
	"moat/internal/smtptest"
	"moat/policy/dnsbl"
)

// holder accepts the admitted connections of a guard listener, greets
// each and keeps it open until the test ends.
type holder struct {
	ln    net.Listener
	addr  string
	conns chan net.Conn
}

func listenHold(t *testing.T, g *Guard, opt ListenerOptions) *holder {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &holder{addr: inner.Addr().String(), conns: make(chan net.Conn, 64)}
	h.ln = g.Listen(inner, opt)
	var ln net.Listener = h.ln
	if opt.TLS != nil {
		ln = tls.NewListener(h.ln, opt.TLS)
	}
	var mu sync.Mutex
	var open []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 1000; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			select {
			case h.conns <- c:
			default:
			}
			go func() {
				// Greet, then read until the client leaves, and close.
				c.SetWriteDeadline(time.Now().Add(10 * time.Second))
				c.Write([]byte("220 " + testHost + " ESMTP\r\n"))
				var buf [64]byte
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				for j := 0; j < 100; j++ {
					if _, err := c.Read(buf[:]); err != nil {
						break
					}
				}
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		h.ln.Close()
		<-done
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
	})
	return h
}

const tooMany = "421 4.7.0 " + testHost + " Too many connections, try again later\r\n"

// Issue 27 item 2: connection slots per listener. Port 25 at its share
// of guard.max_connections cannot take the slots kept for submission
// listeners (guard.submission_reserve), and a listener with a cap of its
// own (ListenerOptions.MaxConnections) stops there; a full listener says
// 421 4.7.0 instead of closing in silence.
func TestListenerSlots(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnections = 10
	cfg.SubmissionReserve = 0.2 // 2 of 10 for submission
	var rej rejections
	g, err := New(cfg, Options{Hostname: testHost, OnReject: rej.add})
	if err != nil {
		t.Fatal(err)
	}
	mx := listenHold(t, g, ListenerOptions{Name: "mx"})
	sub := listenHold(t, g, ListenerOptions{Name: "submission", Submission: true, MaxConnections: 3})

	for i := 0; i < 8; i++ {
		dial(t, mx.addr, "").expect("220 ")
	}
	c := dial(t, mx.addr, "")
	c.expect(tooMany) // port 25 has used its 8
	c.expectClosed()
	if r := rej.last(); r.Reason != ReasonListenerFull || r.Listener != "mx" {
		t.Errorf("rejection %+v", r)
	}
	// The reserve is there for submission.
	dial(t, sub.addr, "").expect("220 ")
	dial(t, sub.addr, "").expect("220 ")
	c = dial(t, sub.addr, "")
	c.expect(tooMany) // guard.max_connections: 10 in all
	c.expectClosed()
	if r := rej.last(); r.Reason != ReasonMaxConnections {
		t.Errorf("rejection %+v", r)
	}
	if g.Active() != 10 {
		t.Errorf("active %d", g.Active())
	}

	// A listener's own cap.
	cfg.MaxConnections = 100
	if err := g.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	dial(t, sub.addr, "").expect("220 ")
	c = dial(t, sub.addr, "")
	c.expect(tooMany) // 3 on submission
	c.expectClosed()
	if r := rej.last(); r.Reason != ReasonListenerFull || r.Listener != "submission" {
		t.Errorf("rejection %+v", r)
	}
}

// On an implicit-TLS listener (465) that is full, the client gets the
// 421 over TLS, not a bare close.
func TestImplicitTLSFull(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnections = 1
	g, err := New(cfg, Options{Hostname: testHost})
	if err != nil {
		t.Fatal(err)
	}
	h := listenHold(t, g, ListenerOptions{Name: "smtps", ImplicitTLS: true, TLS: smtptest.ServerTLS(t, testHost)})
	dialTLS := func() *bufio.Reader {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", h.addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("TLS dial: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return bufio.NewReader(c)
	}
	if l, err := dialTLS().ReadString('\n'); !strings.HasPrefix(l, "220 ") {
		t.Fatalf("first: %q %v", l, err)
	}
	if l, err := dialTLS().ReadString('\n'); l != tooMany {
		t.Fatalf("full: %q %v", l, err)
	}
}

// Stress mode: past guard.stress.threshold of a cap, the admitted
// connections say StressTimeout (the SMTP server's waits shrink to it);
// each change is told to OnStress, and it ends below 90% of the level.
func TestStressMode(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnections = 10
	cfg.Stress = Stress{Threshold: 0.5, Timeout: 3 * time.Second}
	var mu sync.Mutex
	var changes []bool
	g, err := New(cfg, Options{Hostname: testHost, OnStress: func(listener string, on bool) {
		mu.Lock()
		changes = append(changes, on)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	h := listenHold(t, g, ListenerOptions{Name: "mx"})
	var clients []*client
	for i := 0; i < 5; i++ {
		c := dial(t, h.addr, "")
		c.expect("220 ")
		clients = append(clients, c)
	}
	first := <-h.conns
	st, ok := first.(interface{ StressTimeout() time.Duration })
	if !ok {
		t.Fatal("an admitted connection has no StressTimeout")
	}
	if d := st.StressTimeout(); d != 0 {
		t.Errorf("5 of 10: stress timeout %s", d)
	}
	c := dial(t, h.addr, "")
	c.expect("220 ")
	clients = append(clients, c)
	if d := st.StressTimeout(); d != 3*time.Second {
		t.Errorf("6 of 10: stress timeout %s", d)
	}
	// 5 is not below 90% of the level of 5: still on; 4 is.
	clients[5].c.Close()
	waitFor(t, "release", func() bool { return g.Active() == 5 })
	if d := st.StressTimeout(); d != 3*time.Second {
		t.Errorf("back to 5: stress timeout %s", d)
	}
	clients[4].c.Close()
	waitFor(t, "release", func() bool { return g.Active() == 4 })
	if d := st.StressTimeout(); d != 0 {
		t.Errorf("4 of 10: stress timeout %s", d)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(changes) != 2 || !changes[0] || changes[1] {
		t.Errorf("stress changes %v", changes)
	}
}

// Issue 27 item 9: a DNS list that fails counts as no answer (the
// default, guard.dnsbl.on_error: accept), or refuses with 421 4.7.0
// (tempfail) when its weight could have reached the threshold; every
// failure is counted by zone, and the facts name the failed lists.
func TestDNSBLOnError(t *testing.T) {
	res := &dnstest.AddrMap{A: map[string][]string{}, Fail: map[string]bool{
		"2.0.0.127.zen.test.": true, "2.0.0.127.small.test.": true, "3.0.0.127.small.test.": true,
	}}
	cfg := testConfig()
	cfg.DNSBL.Zones = []dnsbl.Zone{{Zone: "zen.test", Weight: 2}, {Zone: "small.test", Weight: 0.5}}
	cfg.DNSBL.Threshold = 1
	var mu sync.Mutex
	errs := map[string]int{}
	h := startServer(t, cfg, testOpts{opt: Options{Resolver: res, OnDNSBLError: func(zone string) {
		mu.Lock()
		errs[zone]++
		mu.Unlock()
	}}})

	c := dial(t, h.addr, "127.0.0.2")
	c.greeting()
	c.send("HELO client.test\r\n")
	if f := h.nextFacts(t); len(f.DNSBLFailed) != 2 {
		t.Errorf("facts %+v", f)
	}

	cfg.DNSBL.OnError = DNSBLTempfail
	if err := h.g.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	c = dial(t, h.addr, "127.0.0.2")
	c.expect("421 4.7.0 " + testHost + " ")
	c.expectClosed()
	if n := h.g.Stats().Rejected(ReasonDNSBLError); n != 1 {
		t.Errorf("dnsbl_error rejections %d", n)
	}
	// A failed list whose weight could not reach the threshold changes
	// nothing.
	c = dial(t, h.addr, "127.0.0.3")
	c.greeting()
	mu.Lock()
	defer mu.Unlock()
	if errs["zen.test"] != 2 || errs["small.test"] != 3 {
		t.Errorf("errors by zone %v", errs)
	}
}
