package spamd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"moat/policy/scanner"
	"moat/policy/scanner/internal/scantest"
)

// request is what the fake spamd read.
type request struct {
	command string
	headers map[string]string
	message []byte
}

// readRequest reads a SPAMC request as spamd does.
func readRequest(br *bufio.Reader) (*request, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return nil, err
	}
	cmd, proto, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
	if proto != "SPAMC/1.5" {
		return nil, fmt.Errorf("protocol %q", proto)
	}
	r := &request{command: cmd, headers: map[string]string{}}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		k, v, _ := strings.Cut(line, ":")
		r.headers[k] = strings.TrimSpace(v)
	}
	if cl, ok := r.headers["Content-length"]; ok {
		n, err := strconv.Atoi(cl)
		if err != nil {
			return nil, err
		}
		r.message = make([]byte, n)
		if _, err := io.ReadFull(br, r.message); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// fakeSpamd answers like spamd: a message containing "viagra" is spam.
func fakeSpamd(t testing.TB, seen chan<- *request) func(net.Conn) {
	return func(c net.Conn) {
		r, err := readRequest(bufio.NewReader(c))
		if err != nil {
			c.Write([]byte("SPAMD/1.5 76 Bad header line: x\r\n"))
			return
		}
		if seen != nil {
			seen <- r
		}
		spam, score, tests := "False", "1.2", "MISSING_DATE,NO_RELAYS"
		if bytes.Contains(r.message, []byte("viagra")) {
			spam, score, tests = "True", "15.3", "DRUGS_ERECTILE,MISSING_DATE,NO_RELAYS"
		}
		switch r.command {
		case "PING":
			c.Write([]byte("SPAMD/1.5 0 PONG\r\n"))
		case "CHECK":
			fmt.Fprintf(c, "SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: %s ; %s / 5.0\r\n\r\n", spam, score)
		case "SYMBOLS":
			fmt.Fprintf(c, "SPAMD/1.1 0 EX_OK\r\nContent-length: %d\r\nSpam: %s ; %s / 5.0\r\n\r\n%s", len(tests), spam, score, tests)
		default:
			c.Write([]byte("SPAMD/1.5 76 Bad header line: x\r\n"))
		}
	}
}

func newClient(t testing.TB, cfg scanner.Config) *Client {
	t.Helper()
	cfg.Name = "sa"
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func msg(body string) *scanner.Request {
	return &scanner.Request{Message: []byte("From: a@example.org\r\nSubject: t\r\n\r\n" + body + "\r\n")}
}

func TestScan(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			seen := make(chan *request, 10)
			addr := scantest.Serve(t, network, fakeSpamd(t, seen))
			c := newClient(t, scanner.Config{Address: addr, User: "moat"})
			req := msg("buy viagra")
			res, err := c.Scan(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			want := &scanner.Result{Score: 15.3, Threshold: 5, HasScore: true, Action: "spam",
				Symbols: []string{"DRUGS_ERECTILE", "MISSING_DATE", "NO_RELAYS"}}
			if !reflect.DeepEqual(res, want) {
				t.Errorf("spam: %+v", res)
			}
			r := <-seen
			if r.command != "SYMBOLS" || r.headers["User"] != "moat" || !bytes.Equal(r.message, req.Message) {
				t.Errorf("spamd got %+v", r)
			}
			res, err = c.Scan(context.Background(), msg("hello"))
			if err != nil {
				t.Fatal(err)
			}
			if res.Action != "ham" || res.Score != 1.2 || len(res.Symbols) != 2 {
				t.Errorf("ham: %+v", res)
			}
			<-seen
			if err := c.Ping(context.Background()); err != nil {
				t.Errorf("Ping: %v", err)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	addr := scantest.Serve(t, "tcp", fakeSpamd(t, nil))
	c := newClient(t, scanner.Config{Address: addr, Command: "check"})
	res, err := c.Scan(context.Background(), msg("viagra"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != "spam" || res.Score != 15.3 || res.Symbols != nil {
		t.Errorf("%+v", res)
	}
}

func kindOf(t *testing.T, err error, want scanner.ErrorKind) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s", want)
	}
	var se *scanner.Error
	if !errors.As(err, &se) {
		t.Fatalf("%v is not a *scanner.Error", err)
	}
	if se.Kind != want || se.Scanner != "sa" {
		t.Errorf("error %v: kind %s, want %s", err, se.Kind, want)
	}
}

func TestErrors(t *testing.T) {
	answer := func(s string) func(net.Conn) {
		return func(c net.Conn) {
			if _, err := readRequest(bufio.NewReader(c)); err == nil {
				c.Write([]byte(s))
			}
		}
	}
	cases := []struct {
		name   string
		handle func(net.Conn)
		kind   scanner.ErrorKind
	}{
		{"error status", answer("SPAMD/1.0 65 EX_DATAERR\r\n"), scanner.KindRefused},
		{"refused before the message", func(c net.Conn) {
			br := bufio.NewReader(c)
			br.ReadString('\n')
			c.Write([]byte("SPAMD/1.0 76 Bad header line\r\n"))
			io.Copy(io.Discard, br)
		}, scanner.KindRefused},
		{"garbage", answer("HTTP/1.1 200 OK\r\n\r\n"), scanner.KindProtocol},
		{"no Spam header", answer("SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n\r\n"), scanner.KindProtocol},
		{"bad score", answer("SPAMD/1.1 0 EX_OK\r\nSpam: True ; NaN / 5.0\r\n\r\n"), scanner.KindProtocol},
		{"closed mid-answer", answer("SPAMD/1.1 0 EX_OK\r\nSpam: Tr"), scanner.KindIO},
		{"closed mid-body", answer("SPAMD/1.1 0 EX_OK\r\nContent-length: 20\r\nSpam: True ; 6 / 5\r\n\r\nA,B"), scanner.KindIO},
		{"closed at once", answer(""), scanner.KindIO},
		{"huge header", answer("SPAMD/1.1 0 EX_OK\r\nX: " + strings.Repeat("y", 1<<20)), scanner.KindProtocol},
		{"huge body", answer("SPAMD/1.1 0 EX_OK\r\nSpam: True ; 6 / 5\r\n\r\n" + strings.Repeat("A,", 1<<19)), scanner.KindProtocol},
		{"many headers", answer("SPAMD/1.1 0 EX_OK\r\n" + strings.Repeat("X: y\r\n", 1000)), scanner.KindProtocol},
		{"hangs", nil, scanner.KindTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			var addr string
			if tc.handle == nil {
				addr = scantest.ServeStop(t, "tcp", scantest.Hang)
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
				defer cancel()
			} else {
				addr = scantest.Serve(t, "tcp", tc.handle)
			}
			_, err := newClient(t, scanner.Config{Address: addr}).Scan(ctx, msg("x"))
			kindOf(t, err, tc.kind)
		})
	}
}

func TestDown(t *testing.T) {
	c := newClient(t, scanner.Config{Address: scantest.Unused(t)})
	_, err := c.Scan(context.Background(), msg("x"))
	kindOf(t, err, scanner.KindConnect)
	kindOf(t, c.Ping(context.Background()), scanner.KindConnect)
}

func TestPing(t *testing.T) {
	c := newClient(t, scanner.Config{Address: scantest.Serve(t, "tcp", func(c net.Conn) {
		readRequest(bufio.NewReader(c))
		c.Write([]byte("SPAMD/1.5 0 EX_OK\r\n"))
	})})
	kindOf(t, c.Ping(context.Background()), scanner.KindProtocol)
	c = newClient(t, scanner.Config{Address: scantest.ServeStop(t, "unix", scantest.Hang), Timeout: 200 * time.Millisecond})
	kindOf(t, c.Ping(context.Background()), scanner.KindTimeout)
}

func TestNew(t *testing.T) {
	bad := []scanner.Config{
		{Name: "sa", Address: "nohost"},
		{Name: "sa", Address: "127.0.0.1:783", Command: "PROCESS"},
		{Name: "sa", Address: "127.0.0.1:783", User: "a\r\nX: y"},
		{Address: "127.0.0.1:783"},
	}
	for _, cfg := range bad {
		if _, err := New(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
	if _, err := New(scanner.Config{Name: "sa", Address: "unix:/run/spamd.sock", Command: "Check"}); err != nil {
		t.Error(err)
	}
}

func TestParseSpam(t *testing.T) {
	cases := []struct {
		in     string
		action string
		score  float64
		ok     bool
	}{
		{"True ; 5.1 / 5.0", "spam", 5.1, true},
		{"False ; -0.5 / 5.0", "ham", -0.5, true},
		{"Yes ; 7 / 5", "spam", 7, true},
		{"True;5.1/5.0", "spam", 5.1, true},
		{"Maybe ; 1 / 5", "", 0, false},
		{"True ; 1", "", 0, false},
		{"True", "", 0, false},
		{"True ; Inf / 5", "", 0, false},
		{"True ; 0x10 / 5", "", 0, false},
	}
	for _, tc := range cases {
		var r scanner.Result
		err := parseSpam(tc.in, &r)
		if (err == nil) != tc.ok || r.Action != tc.action || r.Score != tc.score {
			t.Errorf("parseSpam(%q) = %+v, %v", tc.in, r, err)
		}
	}
}

func FuzzReadAnswer(f *testing.F) {
	for _, s := range []string{
		"SPAMD/1.1 0 EX_OK\r\nContent-length: 9\r\nSpam: True ; 15.3 / 5.0\r\n\r\nA,B,C_D,E",
		"SPAMD/1.1 0 EX_OK\r\nSpam: False ; 0.1 / 5.0\r\n\r\n",
		"SPAMD/1.5 0 PONG\r\n",
		"SPAMD/1.0 76 Bad header line: x\r\n",
		"SPAMD/1.1 0 EX_OK\r\nSpam: Yes ; 1e3 / 5\r\n\r\nA,,B,\xff",
	} {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, symbols bool) {
		res, err := ReadAnswer(bufio.NewReader(bytes.NewReader(data)), symbols)
		if err != nil {
			if res != nil {
				t.Fatal("result with an error")
			}
			return
		}
		if !res.HasScore || (res.Action != "spam" && res.Action != "ham") || len(res.Symbols) > scanner.MaxSymbols {
			t.Fatalf("bad result %+v", res)
		}
		if !symbols && res.Symbols != nil {
			t.Fatal("symbols from CHECK")
		}
	})
}

// BenchmarkScan: one 2 KB message per SYMBOLS, against the fake spamd.
func BenchmarkScan(b *testing.B) {
	c := newClient(b, scanner.Config{Address: scantest.Serve(b, "tcp", fakeSpamd(b, nil))})
	req := msg(strings.Repeat("0123456789abcdef", 128))
	b.SetBytes(int64(len(req.Message)))
	for b.Loop() {
		if _, err := c.Scan(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}
