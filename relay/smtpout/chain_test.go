package smtpout

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"moat/relay/route"
	"moat/relay/transport"
)

// deliverAll runs n deliveries at once, one recipient each, through a
// client with a single session to the server, and returns each one's
// result by recipient and how many were chained (Options.Chained).
func deliverAll(t *testing.T, addr string, n int) (map[string]error, int) {
	t.Helper()
	var chained atomic.Int32
	c := NewSMTP(Options{Address: addr, TLS: route.TLSNone, MaxConns: 1, MaxConnsPerDest: 1,
		Chained: func() { chained.Add(1) }})
	defer c.Close()
	var mu sync.Mutex
	got := map[string]error{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rcpt := fmt.Sprintf("r%d@example.net", i)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for _, r := range c.Deliver(ctx, testMsg(testBody), []string{rcpt}) {
				mu.Lock()
				got[r.Recipient] = r.Err
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(got) != n {
		t.Fatalf("%d results for %d deliveries", len(got), n)
	}
	return got, int(chained.Load())
}

// count sorts the results: delivered, refused for good, to try again.
func count(res map[string]error) (ok, perm, temp int) {
	for _, err := range res {
		switch {
		case err == nil:
			ok++
		case transport.IsPermanent(err):
			perm++
		default:
			temp++
		}
	}
	return
}

// TestChainedTransactions: deliveries waiting for the one session ride
// on it, their commands sent behind the final dot of the message before
// (RFC 2920 §3.1), with no RSET in between.
func TestChainedTransactions(t *testing.T) {
	s := &scripted{ehlo: []string{"PIPELINING"}, delay: 100 * time.Millisecond}
	addr := startScripted(t, s)
	res, chained := deliverAll(t, addr, 8)
	if ok, _, _ := count(res); ok != 8 {
		t.Fatalf("results %v", res)
	}
	if chained != s.chained() {
		t.Errorf("Options.Chained called %d times, %d dots had commands behind them", chained, s.chained())
	}
	if s.messages() != 8 {
		t.Errorf("%d messages at the server, want 8", s.messages())
	}
	if s.chained() == 0 {
		t.Error("no MAIL followed a final dot in the same write")
	}
	rsets, mails := 0, 0
	for _, l := range s.commands() {
		rsets += strings.Count(l, "RSET")
		if strings.HasPrefix(l, "MAIL") {
			mails++
		}
	}
	if mails != 8 || rsets > 7-s.chained() {
		t.Errorf("%d MAIL and %d RSET for 8 messages, %d chained", mails, rsets, s.chained())
	}
}

// Without PIPELINING nothing is chained.
func TestNoChainWithoutPipelining(t *testing.T) {
	s := &scripted{delay: 100 * time.Millisecond}
	addr := startScripted(t, s)
	res, chained := deliverAll(t, addr, 4)
	if ok, _, _ := count(res); ok != 4 || s.messages() != 4 || s.chained() != 0 || chained != 0 {
		t.Errorf("delivered %d, %d at the server, %d chained (%d counted)", ok, s.messages(), s.chained(), chained)
	}
}

// TestChainedFailures: what goes wrong at the first message's final dot
// does not cost the message riding behind it, whose commands followed
// the dot: every message's content reaches the server once.
//   - refused (550): the rider is delivered on the same session;
//   - the connection closed without a reply: that message is deferred
//     (it may have arrived), the rider is made on a new connection;
//   - the connection closed right after the 250, before the replies to
//     the rider's commands: the rider tries a new connection at once, as
//     with a dead pooled one.
func TestChainedFailures(t *testing.T) {
	for _, tt := range []struct {
		name           string
		server         *scripted
		ok, perm, temp int
	}{
		{"refused", &scripted{failDot: 1}, 5, 1, 0},
		{"lost", &scripted{dropDot: 1}, 5, 0, 1},
		{"closed after 250", &scripted{closeDot: 1}, 6, 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.server
			s.ehlo, s.delay = []string{"PIPELINING"}, 100*time.Millisecond
			res, _ := deliverAll(t, startScripted(t, s), 6)
			if ok, perm, temp := count(res); ok != tt.ok || perm != tt.perm || temp != tt.temp {
				t.Errorf("delivered %d, refused %d, deferred %d: %v", ok, perm, temp, res)
			}
			if s.messages() != 6 || s.chainedFrom(0) == s.chainedFrom(1) {
				t.Errorf("%d messages at the server, want 6; the first carried no commands behind it (%d chained)", s.messages(), s.chained())
			}
		})
	}
}

// BenchmarkChainRTT delivers through one session to a server 1 ms of
// round trip away, 8 deliveries at a time: chained, each message costs
// one round trip instead of two.
func BenchmarkChainRTT(b *testing.B) {
	for _, chain := range []bool{false, true} {
		b.Run(fmt.Sprintf("chain=%v", chain), func(b *testing.B) {
			s := &scripted{ehlo: []string{"PIPELINING"}, rtt: time.Millisecond}
			addr := startScripted(b, s)
			c := NewSMTP(Options{Address: addr, TLS: route.TLSNone, MaxConns: 1, MaxConnsPerDest: 1, MaxMessagesPerConn: 1 << 30})
			c.lim.noChain = !chain
			defer c.Close()
			var next sync.WaitGroup
			jobs := make(chan int)
			for range 8 {
				next.Add(1)
				go func() {
					defer next.Done()
					for i := range jobs {
						for _, r := range c.Deliver(context.Background(), testMsg(testBody), []string{fmt.Sprintf("r%d@example.net", i)}) {
							if r.Err != nil {
								b.Error(r.Err)
							}
						}
					}
				}()
			}
			b.ResetTimer()
			for i := range b.N {
				jobs <- i
			}
			close(jobs)
			next.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
