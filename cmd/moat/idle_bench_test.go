package main

// The idle-connection memory benchmark of issue #4 ("Hardened listener":
// at most 12 KiB of process memory per idle SMTP connection at 10,000
// idle connections).

import (
	"bufio"
	"cmp"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"moat/internal/smtptest"
)

// The helper process is told where to connect and how often by these.
const (
	idleHelperAddr = "MOAT_IDLE_HELPER_ADDR"
	idleHelperN    = "MOAT_IDLE_HELPER_CONNS"
	idleHelperTLS  = "MOAT_IDLE_HELPER_TLS"
	idleReady      = "moat-idle-ready"
	idleFailed     = "moat-idle-failed"
)

// BenchmarkIdleConnectionsRSS measures what an idle SMTP session (greeting
// and EHLO done, then silence) costs moat: the growth of the process's RSS,
// of the Go heap plus stacks, and of the goroutine stacks alone, each
// divided by the connections; MOAT_BENCH_IDLE of them (default 2000, the
// issue's figure is 10000), through the whole stack (guard, metrics,
// gateway). MOAT_BENCH_IDLE_PROFILE=file writes a heap profile while the
// connections are idle. MOAT_BENCH_IDLE_TLS=1 measures sessions idle
// after STARTTLS (TLS 1.3, a P-256 certificate) and a second EHLO.
//
// The client side runs in a child process (this test binary again, as
// TestIdleClientHelper), so that the figures are the server's alone and so
// that 10,000 connections fit the descriptor limit (each end of a loopback
// connection is a descriptor; the hard RLIMIT_NOFILE here is 20,000).
//
// runtime.GC runs several times before each reading: goroutine stacks
// shrink only at a garbage collection (a goroutine that once needed 8 KiB
// keeps it until then), and debug.FreeOSMemory hands freed spans back so
// that RSS shows what is live.
func BenchmarkIdleConnectionsRSS(b *testing.B) {
	n := envInt("MOAT_BENCH_IDLE", 2000)
	if os.Getenv("MOAT_BENCH_IDLE_PROFILE") != "" {
		runtime.MemProfileRate = 64 // fine enough to see a few bytes per connection
	}
	raiseNoFile(b, uint64(n+1000))
	c := appConfig{extra: fmt.Sprintf("guard: {allow: [127.0.0.0/8], max_connections: %d}\n", 2*n+1000)}
	useTLS := os.Getenv("MOAT_BENCH_IDLE_TLS") == "1"
	if useTLS {
		cert, key := smtptest.SelfSigned(b, b.TempDir(), "mx.example.org")
		c.tls = "starttls"
		c.extra += "tls: {cert_file: " + cert + ", key_file: " + key + "}\n"
	}
	path := writeConfig(b, c)
	a, _ := runApp(b, path, zap.NewNop(), nil)
	addr := a.gw.Addr("mx").String()
	for i := 0; i < b.N; i++ {
		settle()
		rss0, heap0, stack0, g0 := vmRSS(b), heapAndStack(), stackInuse(), runtime.NumGoroutine()

		cmd := exec.Command(os.Args[0], "-test.run=^TestIdleClientHelper$")
		cmd.Env = append(os.Environ(), idleHelperAddr+"="+addr, idleHelperN+"="+strconv.Itoa(n), idleHelperTLS+"="+strconv.FormatBool(useTLS))
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		if err := waitReady(stdout); err != nil {
			stdin.Close()
			cmd.Wait()
			b.Fatal(err)
		}

		settle()
		rss1, heap1, stack1, g1 := vmRSS(b), heapAndStack(), stackInuse(), runtime.NumGoroutine()
		if path := os.Getenv("MOAT_BENCH_IDLE_PROFILE"); path != "" {
			// What the idle connections hold: go tool pprof -sample_index=inuse_space.
			if f, err := os.Create(path); err == nil {
				pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
			}
		}
		b.ReportMetric(float64(rss1-rss0)/float64(n), "rss_bytes/conn")
		b.ReportMetric(float64(heap1-heap0)/float64(n), "heap+stack_bytes/conn")
		b.ReportMetric(float64(stack1-stack0)/float64(n), "stack_bytes/conn")
		b.ReportMetric(float64(g1-g0)/float64(n), "goroutines/conn")

		stdin.Close() // the helper closes its connections and exits
		go io.Copy(io.Discard, stdout)
		if err := cmd.Wait(); err != nil {
			b.Fatalf("helper: %v", err)
		}
	}
}

// settle collects garbage until the stacks have shrunk and returns freed
// memory to the system.
func settle() {
	for i := 0; i < 3; i++ {
		runtime.GC()
	}
	debug.FreeOSMemory()
}

func stackInuse() int64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.StackInuse)
}

// waitReady reads the helper's output until its ready or failed line.
func waitReady(r io.Reader) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, idleReady):
			return nil
		case strings.HasPrefix(line, idleFailed):
			return fmt.Errorf("helper: %s", line)
		}
	}
	return fmt.Errorf("helper ended before it was ready: %v", sc.Err())
}

// TestIdleClientHelper is the client side of BenchmarkIdleConnectionsRSS,
// run in a child process; it skips unless that benchmark started it. It
// opens the connections, reads each greeting, says EHLO and reads the
// reply, prints the ready line, holds the connections until its standard
// input closes, then closes them.
func TestIdleClientHelper(t *testing.T) {
	addr := os.Getenv(idleHelperAddr)
	if addr == "" {
		t.Skip("helper process of BenchmarkIdleConnectionsRSS only")
	}
	n, _ := strconv.Atoi(os.Getenv(idleHelperN))
	useTLS, _ := strconv.ParseBool(os.Getenv(idleHelperTLS))
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil && rl.Cur < rl.Max {
		rl.Cur = rl.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	conns := make([]net.Conn, n)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	const workers = 16 // bounded: dial and greet in parallel, not all at once
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := w; j < n; j += workers {
				c, err := idleOpen(addr, useTLS)
				if err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("conn %d: %w", j, err)
					}
					mu.Unlock()
					return
				}
				conns[j] = c
			}
		}()
	}
	wg.Wait()
	if first != nil {
		fmt.Println(idleFailed, first)
	} else {
		fmt.Println(idleReady, n)
	}
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	if first != nil {
		t.Fatal(first)
	}
}

// idleOpen connects, reads the greeting, says EHLO and reads the reply;
// with useTLS it then starts TLS and says EHLO again (RFC 3207 §4.2).
func idleOpen(addr string, useTLS bool) (net.Conn, error) {
	raw, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	raw.SetDeadline(time.Now().Add(30 * time.Second))
	var c net.Conn = raw
	br := bufio.NewReaderSize(c, 512)
	step := func(cmd, code string) error {
		if cmd != "" {
			if _, err := io.WriteString(c, cmd+"\r\n"); err != nil {
				return err
			}
		}
		if err := idleReply(br, code); err != nil {
			return fmt.Errorf("%s: %w", cmp.Or(cmd, "greeting"), err)
		}
		return nil
	}
	err = step("", "220")
	if err == nil {
		err = step("EHLO idle.example", "250")
	}
	if err == nil && useTLS {
		if err = step("STARTTLS", "220"); err == nil {
			tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, ServerName: "mx.example.org"})
			c, br = tc, bufio.NewReaderSize(tc, 512)
			err = step("EHLO idle.example", "250")
		}
	}
	if err != nil {
		raw.Close()
		return nil, err
	}
	raw.SetDeadline(time.Time{})
	return c, nil
}

// idleReply reads one reply, possibly multiline (RFC 5321 §4.2.1), and
// checks its code.
func idleReply(br *bufio.Reader, code string) error {
	for i := 0; i < 100; i++ {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, code) || len(line) < 4 {
			return fmt.Errorf("unexpected reply %q", line)
		}
		if line[3] == ' ' {
			return nil
		}
	}
	return fmt.Errorf("reply of more than 100 lines")
}
