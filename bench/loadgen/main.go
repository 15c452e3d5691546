// Command loadgen is moat's benchmark client: it sends N messages over
// SMTP from C concurrent sessions to one loopback server and measures,
// per message, the time from the end of DATA (the final "." sent,
// RFC 5321 §4.1.1.4) to the server's reply, which for moat is the moment
// the message is durable in its spool. It prints one JSON line: sent,
// failed, elapsed, messages/second, p50/p99/max latency.
//
// It speaks plain SMTP without pipelining (one command, one reply), like
// Postfix's smtp-source, so that moat, Postfix and smtp-sink are measured
// alike. Every network step has a deadline; it only dials the address
// given, which scripts/bench.sh sets to 127.0.0.1.
//
//	loadgen -addr 127.0.0.1:2525 -n 10000 -c 20 -size 2048 -to rcpt@relay.test
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"moat/policy/dkimsign"
)

type config struct {
	addr     string
	n        int
	sessions int
	size     int
	perConn  int
	from, to string
	label    string
	timeout  time.Duration
	runID    int64  // makes Message-IDs unique across runs
	signed   []byte // a DKIM-signed message sent as it is, if set
}

// signedMessage builds one message from c.from to c.to and signs it for
// the sender's domain (moat's own signer: relaxed/relaxed, From
// oversigned). Signing once keeps the signing cost out of the load
// client, which shares the machine with the server it measures.
func signedMessage(c config, keyFile, selector string) ([]byte, error) {
	_, domain, ok := strings.Cut(c.from, "@")
	if !ok {
		return nil, fmt.Errorf("-from %q has no domain", c.from)
	}
	s, err := dkimsign.NewSigner([]dkimsign.Key{{Domain: domain, Selector: selector, KeyFile: keyFile}})
	if err != nil {
		return nil, err
	}
	var m bytes.Buffer
	fmt.Fprintf(&m, "From: <%s>\r\nTo: <%s>\r\nSubject: loadgen\r\n", c.from, c.to)
	fmt.Fprintf(&m, "Message-ID: <%d@loadgen.client.test>\r\nDate: %s\r\n\r\n", c.runID, time.Now().Format(time.RFC1123Z))
	m.Write(makeBody(c.size))
	sig, ok, err := s.Sign(domain, bytes.NewReader(m.Bytes()))
	if err != nil || !ok {
		return nil, fmt.Errorf("signing: %v", err)
	}
	return append([]byte(sig), m.Bytes()...), nil
}

// lfLines turns a CRLF message into the file smtp-source -F sends:
// smtp-source ends every line it reads with CRLF (and stuffs leading
// dots), so the file has bare LF line ends. A CR or LF anywhere else
// would not survive the trip.
func lfLines(msg []byte) ([]byte, error) {
	lf := bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))
	if bytes.IndexByte(lf, '\r') >= 0 || bytes.Count(msg, []byte("\r\n")) != bytes.Count(msg, []byte("\n")) {
		return nil, errors.New("message has a bare CR or LF")
	}
	return lf, nil
}

// Result is the JSON line loadgen prints.
type Result struct {
	Label    string  `json:"label"`
	Sent     int     `json:"sent"`
	Failed   int     `json:"failed"`
	Seconds  float64 `json:"seconds"`
	Rate     float64 `json:"rate"`
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
	FirstErr string  `json:"first_error,omitempty"`
}

func main() {
	var c config
	flag.StringVar(&c.addr, "addr", "127.0.0.1:2525", "server host:port (loopback)")
	flag.IntVar(&c.n, "n", 10000, "messages to send")
	flag.IntVar(&c.sessions, "c", 20, "concurrent sessions")
	flag.IntVar(&c.size, "size", 2048, "body size in bytes")
	flag.IntVar(&c.perConn, "per-conn", 0, "messages per connection (0: the session's whole share)")
	flag.StringVar(&c.from, "from", "sender@client.test", "envelope sender")
	flag.StringVar(&c.to, "to", "rcpt@relay.test", "envelope recipient")
	flag.StringVar(&c.label, "label", "", "label copied into the result")
	flag.DurationVar(&c.timeout, "timeout", time.Minute, "deadline of each SMTP step")
	dkimKey := flag.String("dkim-key", "", "sign the message with this key (PEM) for the -from domain; the same signed message is then sent every time")
	dkimSel := flag.String("dkim-selector", "bench", "DKIM selector")
	writeMsg := flag.String("write-message", "", "write the signed message to this file with LF line ends (for smtp-source -F) and exit")
	flag.Parse()
	c.runID = time.Now().UnixNano()
	if *dkimKey != "" {
		msg, err := signedMessage(c, *dkimKey, *dkimSel)
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(2)
		}
		c.signed = msg
	}
	if *writeMsg != "" {
		if c.signed == nil {
			fmt.Fprintln(os.Stderr, "loadgen: -write-message needs -dkim-key")
			os.Exit(2)
		}
		lf, err := lfLines(c.signed)
		if err == nil {
			err = os.WriteFile(*writeMsg, lf, 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(2)
		}
		return
	}
	if err := checkLoopback(c.addr); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	res := run(c)
	json.NewEncoder(os.Stdout).Encode(res)
	if res.Failed > 0 {
		os.Exit(1)
	}
}

// checkLoopback refuses any target outside 127.0.0.0/8 and ::1.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s is not a loopback address", host)
	}
	return nil
}

func run(c config) Result {
	var next atomic.Int64 // messages handed out
	var failed atomic.Int64
	var firstErr sync.Once
	var errText string
	lats := make([][]time.Duration, c.sessions)
	body := makeBody(c.size)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < c.sessions; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for int(next.Load()) < c.n {
				cl, err := dial(c)
				if err != nil {
					failed.Add(1)
					next.Add(1)
					firstErr.Do(func() { errText = err.Error() })
					continue
				}
				for k := 0; c.perConn == 0 || k < c.perConn; k++ {
					i := int(next.Add(1)) - 1
					if i >= c.n {
						break
					}
					d, err := cl.send(c, i, body)
					if err != nil {
						failed.Add(1)
						firstErr.Do(func() { errText = err.Error() })
						break
					}
					lats[w] = append(lats[w], d)
				}
				cl.quit()
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	r := Result{Label: c.label, Sent: len(all), Failed: int(failed.Load()), Seconds: elapsed.Seconds(), FirstErr: errText}
	if elapsed > 0 {
		r.Rate = float64(len(all)) / elapsed.Seconds()
	}
	if len(all) > 0 {
		r.P50ms = ms(quantile(all, 0.50))
		r.P99ms = ms(quantile(all, 0.99))
		r.MaxMs = ms(all[len(all)-1])
	}
	return r
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// quantile of a sorted slice (nearest rank).
func quantile(s []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(s))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(s) {
		i = len(s) - 1
	}
	return s[i]
}

// makeBody returns size bytes of 76-character CRLF lines; no line starts
// with a dot, so no dot-stuffing is needed.
func makeBody(size int) []byte {
	var b strings.Builder
	line := strings.Repeat("abcdefghijklmnopqrstuvwxyz0123456789", 3)[:76] + "\r\n"
	for b.Len()+len(line) <= size {
		b.WriteString(line)
	}
	if rest := size - b.Len(); rest > 2 {
		b.WriteString(line[:rest-2] + "\r\n")
	}
	return []byte(b.String())
}

type client struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
}

func dial(c config) (*client, error) {
	conn, err := net.DialTimeout("tcp", c.addr, c.timeout)
	if err != nil {
		return nil, err
	}
	cl := &client{conn: conn, r: bufio.NewReader(conn), w: bufio.NewWriter(conn)}
	conn.SetDeadline(time.Now().Add(c.timeout))
	if err := cl.expect(220); err != nil {
		conn.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if err := cl.cmd(250, "EHLO loadgen.client.test"); err != nil {
		conn.Close()
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	return cl, nil
}

// send runs one mail transaction and returns the end-of-DATA latency.
func (cl *client) send(c config, i int, body []byte) (time.Duration, error) {
	cl.conn.SetDeadline(time.Now().Add(c.timeout))
	if err := cl.cmd(250, "MAIL FROM:<"+c.from+">"); err != nil {
		return 0, fmt.Errorf("MAIL: %w", err)
	}
	if err := cl.cmd(250, "RCPT TO:<"+c.to+">"); err != nil {
		return 0, fmt.Errorf("RCPT: %w", err)
	}
	if err := cl.cmd(354, "DATA"); err != nil {
		return 0, fmt.Errorf("DATA: %w", err)
	}
	if c.signed != nil {
		cl.w.Write(c.signed)
	} else {
		fmt.Fprintf(cl.w, "From: <%s>\r\nTo: <%s>\r\nSubject: loadgen %d\r\n", c.from, c.to, i)
		fmt.Fprintf(cl.w, "Message-ID: <%d.%d@loadgen.client.test>\r\n", c.runID, i)
		fmt.Fprintf(cl.w, "Date: %s\r\n\r\n", time.Now().Format(time.RFC1123Z))
		cl.w.Write(body)
	}
	cl.w.WriteString(".\r\n")
	if err := cl.w.Flush(); err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := cl.expect(250); err != nil {
		return 0, fmt.Errorf("end of DATA: %w", err)
	}
	return time.Since(t0), nil
}

func (cl *client) quit() {
	cl.conn.SetDeadline(time.Now().Add(5 * time.Second))
	cl.cmd(221, "QUIT")
	cl.conn.Close()
}

func (cl *client) cmd(want int, line string) error {
	cl.w.WriteString(line + "\r\n")
	if err := cl.w.Flush(); err != nil {
		return err
	}
	return cl.expect(want)
}

// expect reads one (possibly multiline) reply and checks its code.
func (cl *client) expect(want int) error {
	for lines := 0; lines < 100; lines++ {
		l, err := cl.r.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("connection closed")
			}
			return err
		}
		if len(l) < 4 {
			return fmt.Errorf("short reply %q", l)
		}
		code, err := strconv.Atoi(l[:3])
		if err != nil {
			return fmt.Errorf("bad reply %q", l)
		}
		if l[3] == '-' {
			continue
		}
		if code != want {
			return fmt.Errorf("reply %q", strings.TrimSpace(l))
		}
		return nil
	}
	return errors.New("reply longer than 100 lines")
}
