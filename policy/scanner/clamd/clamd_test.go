package clamd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"moat/policy/scanner"
	"moat/policy/scanner/internal/scantest"
)

// eicar is the EICAR anti-virus test string (eicar.org), built from two
// halves so that this file is not itself flagged by a scanner.
var eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$` + `EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// readStream reads a zINSTREAM request as clamd does; limit > 0 stops
// after that many octets (StreamMaxLength).
func readStream(t testing.TB, br *bufio.Reader, limit int) (data []byte, over bool, err error) {
	cmd, err := br.ReadString(0)
	if err != nil {
		return nil, false, err
	}
	if cmd != "zINSTREAM\x00" {
		t.Errorf("command %q", cmd)
		return nil, false, errors.New("bad command")
	}
	for {
		var n uint32
		if err := binary.Read(br, binary.BigEndian, &n); err != nil {
			return nil, false, err
		}
		if n == 0 {
			return data, false, nil
		}
		chunk := make([]byte, n)
		if _, err := io.ReadFull(br, chunk); err != nil {
			return nil, false, err
		}
		data = append(data, chunk...)
		if limit > 0 && len(data) > limit {
			return data, true, nil
		}
	}
}

// fakeClamd answers like clamd: a signature named Eicar-Signature for the
// EICAR string, OK otherwise; streams over limit get the size error.
func fakeClamd(t testing.TB, limit int) func(net.Conn) {
	return func(c net.Conn) {
		br := bufio.NewReader(c)
		if peek, _ := br.Peek(6); string(peek) == "zPING\x00" {
			br.Discard(6)
			c.Write([]byte("PONG\x00"))
			return
		}
		data, over, err := readStream(t, br, limit)
		if err != nil {
			return
		}
		switch {
		case over:
			c.Write([]byte("INSTREAM size limit exceeded. ERROR\x00"))
			io.Copy(io.Discard, br) // let the client finish writing
		case bytes.Contains(data, []byte(eicar)):
			c.Write([]byte("stream: Eicar-Signature FOUND\x00"))
		default:
			c.Write([]byte("stream: OK\x00"))
		}
	}
}

func newClient(t testing.TB, addr string) *Client {
	t.Helper()
	c, err := New(scanner.Config{Name: "av", Type: "clamd", Address: addr, Timeout: 10 * time.Second})
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
			c := newClient(t, scantest.Serve(t, network, fakeClamd(t, 0)))
			res, err := c.Scan(context.Background(), msg("hello"))
			if err != nil {
				t.Fatal(err)
			}
			if res.Action != "clean" || res.Virus || res.VirusNames != nil {
				t.Errorf("clean message: %+v", res)
			}
			res, err = c.Scan(context.Background(), msg(eicar))
			if err != nil {
				t.Fatal(err)
			}
			if res.Action != "infected" || !res.Virus || !reflect.DeepEqual(res.VirusNames, []string{"Eicar-Signature"}) {
				t.Errorf("EICAR: %+v", res)
			}
			if err := c.Ping(context.Background()); err != nil {
				t.Errorf("Ping: %v", err)
			}
		})
	}
}

// A message larger than several chunks arrives whole.
func TestScanChunks(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 3*ChunkSize/16+7) + eicar
	got := make(chan []byte, 1)
	addr := scantest.Serve(t, "tcp", func(c net.Conn) {
		data, _, err := readStream(t, bufio.NewReader(c), 0)
		if err != nil {
			return
		}
		got <- data
		c.Write([]byte("stream: OK\x00"))
	})
	req := msg(big)
	if _, err := newClient(t, addr).Scan(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(<-got, req.Message) {
		t.Error("clamd did not receive the message as sent")
	}
}

func TestAllMatch(t *testing.T) {
	addr := scantest.Serve(t, "tcp", func(c net.Conn) {
		if _, _, err := readStream(t, bufio.NewReader(c), 0); err != nil {
			return
		}
		c.Write([]byte("stream: Win.Test.B FOUND\x00stream: Eicar-Signature FOUND\x00"))
	})
	res, err := newClient(t, addr).Scan(context.Background(), msg("x"))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Virus || !reflect.DeepEqual(res.VirusNames, []string{"Eicar-Signature", "Win.Test.B"}) {
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
	if se.Kind != want || se.Scanner != "av" {
		t.Errorf("error %v: kind %s, want %s", err, se.Kind, want)
	}
}

func TestErrors(t *testing.T) {
	drain := func(c net.Conn) *bufio.Reader {
		br := bufio.NewReader(c)
		readStream(t, br, 0)
		return br
	}
	cases := []struct {
		name    string
		handle  func(net.Conn)
		message string
		kind    scanner.ErrorKind
	}{
		{"size limit", fakeClamd(t, 1000), strings.Repeat("x", 200000), scanner.KindRefused},
		{"garbage", func(c net.Conn) { drain(c); c.Write([]byte("HELLO THERE\x00")) }, "x", scanner.KindProtocol},
		{"no separator", func(c net.Conn) { drain(c); c.Write([]byte("stream OK\x00")) }, "x", scanner.KindProtocol},
		{"closed mid-answer", func(c net.Conn) { drain(c); c.Write([]byte("stream: O")) }, "x", scanner.KindIO},
		{"closed at once", func(c net.Conn) { drain(c) }, "x", scanner.KindIO},
		{"hangs", nil, "x", scanner.KindTimeout},
		{"huge answer", func(c net.Conn) {
			drain(c)
			c.Write(bytes.Repeat([]byte("stream: "), 1<<17))
		}, "x", scanner.KindProtocol},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var addr string
			if tc.handle == nil {
				addr = scantest.ServeStop(t, "tcp", scantest.Hang)
			} else {
				addr = scantest.Serve(t, "tcp", tc.handle)
			}
			c := newClient(t, addr)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			if tc.kind != scanner.KindTimeout {
				ctx = context.Background()
			}
			_, err := c.Scan(ctx, msg(tc.message))
			kindOf(t, err, tc.kind)
		})
	}
}

// With no deadline on the context, the configured timeout applies.
func TestConfigTimeout(t *testing.T) {
	addr := scantest.ServeStop(t, "tcp", scantest.Hang)
	c, err := New(scanner.Config{Name: "av", Address: addr, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Scan(context.Background(), msg("x"))
	kindOf(t, err, scanner.KindTimeout)
	kindOf(t, c.Ping(context.Background()), scanner.KindTimeout)
}

func TestDown(t *testing.T) {
	c := newClient(t, scantest.Unused(t))
	_, err := c.Scan(context.Background(), msg("x"))
	kindOf(t, err, scanner.KindConnect)
	kindOf(t, c.Ping(context.Background()), scanner.KindConnect)
}

func TestPingGarbage(t *testing.T) {
	c := newClient(t, scantest.Serve(t, "unix", func(c net.Conn) {
		io.ReadFull(c, make([]byte, 6))
		c.Write([]byte("PANG\x00"))
	}))
	kindOf(t, c.Ping(context.Background()), scanner.KindProtocol)
}

func TestNew(t *testing.T) {
	for _, addr := range []string{"", "localhost", "unix:", "http://127.0.0.1:3310", "127.0.0.1:0", "127.0.0.1:99999", ":3310"} {
		if _, err := New(scanner.Config{Name: "av", Address: addr}); err == nil {
			t.Errorf("address %q accepted", addr)
		}
	}
	for _, addr := range []string{"127.0.0.1:3310", "[::1]:3310", "clamd:3310", "unix:/run/clamav/clamd.ctl"} {
		if _, err := New(scanner.Config{Name: "av", Address: addr}); err != nil {
			t.Errorf("address %q: %v", addr, err)
		}
	}
	if _, err := New(scanner.Config{Address: "127.0.0.1:3310"}); err == nil {
		t.Error("no name accepted")
	}
}

func TestParseLine(t *testing.T) {
	cases := []struct {
		line string
		want Verdict
		bad  bool
	}{
		{"stream: OK", Verdict{Status: StatusOK}, false},
		{"stream: Eicar-Signature FOUND", Verdict{Status: StatusFound, Virus: "Eicar-Signature"}, false},
		{"1: stream: Win.Trojan.X-1 FOUND", Verdict{Status: StatusFound, Virus: "Win.Trojan.X-1"}, false},
		{"stream(127.0.0.1@4711): OK", Verdict{Status: StatusOK}, false},
		{"stream: bad\x01name FOUND", Verdict{Status: StatusFound, Virus: "unknown"}, false},
		{"INSTREAM size limit exceeded. ERROR", Verdict{Status: StatusError, Text: "INSTREAM size limit exceeded."}, false},
		{"stream: Can't allocate memory ERROR", Verdict{Status: StatusError, Text: "stream: Can't allocate memory"}, false},
		{"PONG", Verdict{}, true},
		{"stream: MAYBE", Verdict{}, true},
		{"", Verdict{}, true},
	}
	for _, tc := range cases {
		got, err := ParseLine(tc.line)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("ParseLine(%q) = %+v, %v", tc.line, got, err)
		}
	}
}

func FuzzReadAnswer(f *testing.F) {
	for _, s := range []string{
		"stream: OK\x00", "stream: Eicar-Signature FOUND\x00", "stream: A FOUND\x00stream: B FOUND\x00",
		"INSTREAM size limit exceeded. ERROR\x00", "PONG\x00", "stream: O", "\x00", "stream: FOUND\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := ReadAnswer(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			if res != nil {
				t.Fatal("result with an error")
			}
			return
		}
		if res.Virus != (res.Action == "infected") || res.Virus != (len(res.VirusNames) > 0) {
			t.Fatalf("inconsistent result %+v", res)
		}
		if len(res.VirusNames) > scanner.MaxSymbols {
			t.Fatal("too many names")
		}
	})
}

// BenchmarkScan: one 2 KB message per INSTREAM, against the fake clamd.
func BenchmarkScan(b *testing.B) {
	c := newClient(b, scantest.Serve(b, "tcp", fakeClamd(b, 0)))
	req := msg(strings.Repeat("0123456789abcdef", 128))
	b.SetBytes(int64(len(req.Message)))
	for b.Loop() {
		if _, err := c.Scan(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}
