package main

// Benchmarks for the issue "Hardened listener": a legitimate sender's
// throughput while thousands of abusive connections are open, and the
// process memory (RSS) each idle connection costs. Loopback only; every
// abusive connection is closed when the benchmark ends.

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"go.uber.org/zap"

	"moat/gateway/guard"
)

// envInt reads a positive integer from the environment, or def.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// raiseNoFile lifts the soft RLIMIT_NOFILE to the hard limit and fails
// when that is below need.
func raiseNoFile(b *testing.B, need uint64) {
	b.Helper()
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		b.Fatal(err)
	}
	if rl.Max < need {
		// Root may raise the hard limit itself (up to fs.nr_open).
		raised := syscall.Rlimit{Cur: need, Max: need}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			rl = raised
		}
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			b.Fatal(err)
		}
	}
	if rl.Cur < need {
		b.Skipf("RLIMIT_NOFILE %d is below the %d descriptors needed", rl.Cur, need)
	}
}

var legitIP = net.ParseIP("127.0.0.2")

// abuserIP spreads abusers over 127.1.0.0/16, 40 to a /24, so that each
// stays under the default per-prefix concurrency (50): they are admitted
// and must be dealt with, rather than turned away at once.
func abuserIP(i int) net.IP { return net.IPv4(127, 1, byte(i/40), byte(i%40+1)) }

func dialFrom(ip net.IP, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 10 * time.Second}
	return d.Dial("tcp", addr)
}

// legitSend sends n 2 KB messages from 127.0.0.2 in one session.
func legitSend(addr string, n int) error {
	conn, err := dialFrom(legitIP, addr)
	if err != nil {
		return err
	}
	c := gosmtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("legit.far.example"); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if err := c.SendMail("bench@far.example", []string{"alice@example.org"}, strings.NewReader(msg2K)); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
	}
	return c.Quit()
}

// legitRun sends n messages over clients concurrent sessions and waits
// (bounded) until the mailbox holds want files; it returns messages per
// second from the first MAIL to the last Maildir file.
func legitRun(b *testing.B, addr, dataDir string, clients, n, want int) float64 {
	b.Helper()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	per := (n + clients - 1) / clients
	for c := 0; c < clients; c++ {
		k := min(per, n-c*per)
		if k <= 0 {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := legitSend(addr, k); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	dir := filepath.Join(dataDir, "mailboxes", "example.org", "alice", "new")
	deadline := time.Now().Add(5 * time.Minute)
	for {
		ents, _ := os.ReadDir(dir)
		if len(ents) >= want {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d delivered", len(ents), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return float64(n) / time.Since(start).Seconds()
}

// abuse runs the abusive clients until stop is closed.
type abuse struct {
	addr    string
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]bool
	once    sync.Once
	dials   atomic.Int64
	settled atomic.Int64 // slowloris past EHLO, pregreet bots after their first try
}

func (ab *abuse) track(c net.Conn) bool {
	ab.mu.Lock()
	defer ab.mu.Unlock()
	select {
	case <-ab.stop:
		return false
	default:
	}
	ab.conns[c] = true
	return true
}

func (ab *abuse) untrack(c net.Conn) {
	ab.mu.Lock()
	delete(ab.conns, c)
	ab.mu.Unlock()
	c.Close()
}

func (ab *abuse) open() int {
	ab.mu.Lock()
	defer ab.mu.Unlock()
	return len(ab.conns)
}

// pause waits d or until stop; false when stopped.
func (ab *abuse) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ab.stop:
		return false
	case <-t.C:
		return true
	}
}

// slowloris waits for the banner, says EHLO, then sends one byte of a
// command line every drip (a line that never ends); when the server
// closes it, it connects again.
func (ab *abuse) slowloris(ip net.IP, drip time.Duration) {
	defer ab.wg.Done()
	first := true
	for {
		c, err := dialFrom(ip, ab.addr)
		ab.dials.Add(1)
		if err == nil && ab.track(c) {
			r := bufio.NewReader(c)
			c.SetDeadline(time.Now().Add(30 * time.Second))
			ok := readReply(r) == nil
			if ok {
				_, err = c.Write([]byte("EHLO x\r\n"))
				ok = err == nil && readReply(r) == nil
			}
			if ok && first {
				ab.settled.Add(1)
				first = false
			}
			c.SetDeadline(time.Time{})
			for ok {
				if !ab.pause(drip) {
					break
				}
				_, err := c.Write([]byte("N"))
				ok = err == nil
			}
			ab.untrack(c)
		} else if c != nil {
			c.Close()
		}
		if !ab.pause(time.Second) {
			return
		}
	}
}

// pregreet talks before the banner, reads until the server hangs up, and
// comes back after redial.
func (ab *abuse) pregreet(ip net.IP, redial time.Duration) {
	defer ab.wg.Done()
	// Spread the bots over the redial period so they do not come in step.
	if !ab.pause(rand.N(redial)) {
		return
	}
	first := true
	for {
		c, err := dialFrom(ip, ab.addr)
		ab.dials.Add(1)
		if err == nil && ab.track(c) {
			c.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := c.Write([]byte("EHLO bot.example\r\n")); err == nil {
				var buf [512]byte
				for {
					if _, err := c.Read(buf[:]); err != nil {
						break
					}
				}
			}
			ab.untrack(c)
		} else if c != nil {
			c.Close()
		}
		if first {
			ab.settled.Add(1)
			first = false
		}
		if !ab.pause(redial) {
			return
		}
	}
}

// readReply reads one complete (possibly multi-line) SMTP reply.
func readReply(r *bufio.Reader) error {
	for i := 0; i < 100; i++ {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if len(line) >= 4 && line[3] == ' ' {
			return nil
		}
	}
	return fmt.Errorf("reply too long")
}

// shutdown stops every abuser and closes every abusive connection.
func (ab *abuse) shutdown() {
	ab.once.Do(func() {
		ab.mu.Lock()
		close(ab.stop)
		for c := range ab.conns {
			c.Close()
		}
		ab.mu.Unlock()
	})
	ab.wg.Wait()
}

// BenchmarkLegitThroughputUnderAbuse: a legitimate sender (127.0.0.2,
// allow-listed) sends b.N 2 KB messages to a local mailbox over 20
// sessions, first alone, then while MOAT_BENCH_ABUSERS (default 2000)
// abusive clients from 127.1.x.y hit the same listener (greet_delay 2s,
// default guard limits): half slowloris (banner, EHLO, then one byte every
// MOAT_BENCH_DRIP_MS, default 5000), half pregreet bots (talk before the
// banner, are hung up on, come back after MOAT_BENCH_REDIAL_MS, default
// 2000), then alone again. Reports the three rates (first MAIL to last
// Maildir file), the ratio abused / mean of the two alone runs (target
// ≥ 0.90), and what the guard did (rejections by kind, abusive
// connection attempts a second, abusive connections open).
func BenchmarkLegitThroughputUnderAbuse(b *testing.B) {
	abusers := envInt("MOAT_BENCH_ABUSERS", 2000)
	drip := time.Duration(envInt("MOAT_BENCH_DRIP_MS", 5000)) * time.Millisecond
	redial := time.Duration(envInt("MOAT_BENCH_REDIAL_MS", 2000)) * time.Millisecond
	raiseNoFile(b, uint64(2*abusers+500))
	dataDir := b.TempDir()
	path := writeConfig(b, appConfig{
		dataDir:  dataDir,
		listener: "greet_delay: 2s",
		extra:    fmt.Sprintf("guard: {allow: [127.0.0.2/32], max_connections: %d}\n", 2*abusers+1000),
	})
	a, _ := runApp(b, path, zap.NewNop(), nil)
	addr := a.gw.Addr("mx").String()
	const clients, warm = 20, 200
	// Warm up (connections, Maildir directories, page cache), untimed.
	legitRun(b, addr, dataDir, clients, warm, warm)

	b.ResetTimer()
	alone := legitRun(b, addr, dataDir, clients, b.N, warm+b.N)
	b.StopTimer()

	ab := &abuse{addr: addr, stop: make(chan struct{}), conns: map[net.Conn]bool{}}
	defer ab.shutdown()
	half := abusers / 2
	base := (half + 39) / 40 * 40 // pregreet bots in their own /24s
	for i := 0; i < abusers; i++ {
		ab.wg.Add(1)
		if i < half {
			go ab.slowloris(abuserIP(i), drip)
		} else {
			go ab.pregreet(abuserIP(base+i-half), redial)
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for ab.settled.Load() < int64(abusers) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	settled, openAtStart, dials0 := ab.settled.Load(), ab.open(), ab.dials.Load()
	t0 := time.Now()

	b.StartTimer()
	under := legitRun(b, addr, dataDir, clients, b.N, warm+2*b.N)
	b.StopTimer()

	dialRate := float64(ab.dials.Load()-dials0) / time.Since(t0).Seconds()
	openAtEnd := ab.open()
	ab.shutdown()

	// Alone again: the two alone runs bracket the abused one, so that a
	// drift (page cache, other load on the machine) does not pass for an
	// effect of the abuse.
	b.StartTimer()
	after := legitRun(b, addr, dataDir, clients, b.N, warm+3*b.N)
	b.StopTimer()

	b.ReportMetric(alone, "alone_msgs/s")
	b.ReportMetric(after, "alone_after_msgs/s")
	b.ReportMetric(under, "abused_msgs/s")
	b.ReportMetric(under/((alone+after)/2), "ratio")
	b.ReportMetric(float64(openAtStart), "abusive_open_start")
	b.ReportMetric(float64(openAtEnd), "abusive_open_end")
	b.ReportMetric(dialRate, "abusive_dials/s")
	st := a.guard.Stats()
	var limited uint64
	for _, r := range []string{guard.ReasonPerIPRate, guard.ReasonPerIPConcurrency, guard.ReasonPerPrefixRate, guard.ReasonPerPrefixConcurrency, guard.ReasonMaxConnections} {
		limited += st.Rejected(r)
	}
	b.ReportMetric(float64(st.Rejected(guard.ReasonPregreet)), "pregreet_rejects")
	b.ReportMetric(float64(limited), "limit_rejects")
	if settled < int64(abusers) {
		b.Logf("only %d of %d abusers got going", settled, abusers)
	}
}

// vmRSS returns the process's resident set size in bytes.
func vmRSS(b *testing.B) int64 {
	b.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skipf("no /proc/self/status: %v", err)
	}
	for _, l := range bytes.Split(data, []byte("\n")) {
		if rest, ok := bytes.CutPrefix(l, []byte("VmRSS:")); ok {
			f := strings.Fields(string(rest))
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return kb << 10
				}
			}
		}
	}
	b.Fatal("no VmRSS in /proc/self/status")
	return 0
}
