package scannet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"moat/policy/scanner"
)

func TestParseAddress(t *testing.T) {
	good := map[string]Address{
		"127.0.0.1:3310":    {"tcp", "127.0.0.1:3310"},
		"[::1]:783":         {"tcp", "[::1]:783"},
		"clamd.svc:3310":    {"tcp", "clamd.svc:3310"},
		"unix:/run/c.sock":  {"unix", "/run/c.sock"},
		"unix:./rel/c.sock": {"unix", "./rel/c.sock"},
	}
	for in, want := range good {
		got, err := ParseAddress(in)
		if err != nil || got != want {
			t.Errorf("ParseAddress(%q) = %v, %v", in, got, err)
		}
		if got.String() != in {
			t.Errorf("String() = %q, want %q", got.String(), in)
		}
	}
	for _, in := range []string{"", "host", ":3310", "h:0", "h:65536", "h:x", "unix:", "unix:sock", "tcp://h:1"} {
		if a, err := ParseAddress(in); err == nil {
			t.Errorf("ParseAddress(%q) = %v", in, a)
		}
	}
}

func TestReadLine(t *testing.T) {
	br := bufio.NewReaderSize(strings.NewReader("one\r\ntwo\nthree"), 16)
	for _, want := range []string{"one", "two"} {
		if got, err := ReadLine(br, '\n', 10); err != nil || got != want {
			t.Errorf("got %q, %v", got, err)
		}
	}
	if _, err := ReadLine(br, '\n', 10); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("partial line: %v", err)
	}
	if _, err := ReadLine(br, '\n', 10); !errors.Is(err, io.EOF) {
		t.Errorf("end: %v", err)
	}
	// Longer than the reader's buffer, within the bound; then beyond it.
	br = bufio.NewReaderSize(strings.NewReader(strings.Repeat("a", 40)+"\x00"+strings.Repeat("b", 100)+"\x00"), 16)
	if got, err := ReadLine(br, 0, 50); err != nil || got != strings.Repeat("a", 40) {
		t.Errorf("long line: %q, %v", got, err)
	}
	if _, err := ReadLine(br, 0, 50); !errors.Is(err, ErrTooLarge) {
		t.Errorf("too long: %v", err)
	}
}

func TestReadAll(t *testing.T) {
	if b, err := ReadAll(strings.NewReader("12345"), 5); err != nil || string(b) != "12345" {
		t.Errorf("%q %v", b, err)
	}
	if _, err := ReadAll(strings.NewReader("123456"), 5); !errors.Is(err, ErrTooLarge) {
		t.Errorf("%v", err)
	}
}

func TestSymbols(t *testing.T) {
	got := Symbols([]string{"B", "A", "B", "", "with space", "ctl\x01", strings.Repeat("x", MaxSymbolLen+1), "é"})
	if !reflect.DeepEqual(got, []string{"A", "B"}) {
		t.Errorf("%q", got)
	}
	if Symbols(nil) != nil || Symbols([]string{" "}) != nil {
		t.Error("no names must give nil")
	}
	var many []string
	for i := range 500 {
		many = append(many, fmt.Sprintf("S%03d", 499-i))
	}
	got = Symbols(many)
	if len(got) != scanner.MaxSymbols || got[0] != "S000" || got[len(got)-1] != fmt.Sprintf("S%03d", scanner.MaxSymbols-1) {
		t.Errorf("%d names, %q … %q", len(got), got[0], got[len(got)-1])
	}
}

func TestClassify(t *testing.T) {
	bg := context.Background()
	cancelled, cancel := context.WithCancel(bg)
	cancel()
	cases := []struct {
		ctx  context.Context
		err  error
		want scanner.ErrorKind
	}{
		{bg, Protocolf("bad"), scanner.KindProtocol},
		{bg, fmt.Errorf("x: %w", ErrTooLarge), scanner.KindProtocol},
		{bg, os.ErrDeadlineExceeded, scanner.KindTimeout},
		{bg, context.DeadlineExceeded, scanner.KindTimeout},
		{bg, io.ErrUnexpectedEOF, scanner.KindIO},
		{cancelled, os.ErrDeadlineExceeded, scanner.KindIO},
		{bg, &scanner.Error{Kind: scanner.KindRefused, Err: errors.New("no")}, scanner.KindRefused},
	}
	for _, tc := range cases {
		got := Classify(tc.ctx, "s", tc.err)
		if got.Kind != tc.want || got.Scanner != "s" {
			t.Errorf("Classify(%v) = %v, want %s", tc.err, got, tc.want)
		}
	}
	if err := Classify(cancelled, "s", os.ErrDeadlineExceeded); !errors.Is(err, context.Canceled) {
		t.Errorf("cancel not kept: %v", err)
	}
}

// Cancelling the context interrupts a read in progress.
func TestWatchCancel(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	c := Watch(ctx, a)
	defer c.Close()
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	cancel()
	if err := <-done; !IsTimeout(err) {
		t.Errorf("read after cancel: %v", err)
	}
}

func TestPrintable(t *testing.T) {
	if got := Printable("a\r\nb\xffc", 4); got != "a??b" {
		t.Errorf("%q", got)
	}
}

func TestWithTimeout(t *testing.T) {
	long, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	for _, tc := range []struct {
		ctx     context.Context
		timeout time.Duration
		max     time.Duration
	}{
		{context.Background(), 0, DefaultTimeout},
		{context.Background(), time.Second, time.Second},
		{long, time.Second, time.Second},
		{long, 0, time.Hour},
	} {
		ctx, cancel := WithTimeout(tc.ctx, tc.timeout)
		dl, ok := ctx.Deadline()
		cancel()
		if left := time.Until(dl); !ok || left > tc.max || left < tc.max/2 {
			t.Errorf("timeout %v: deadline in %v, want at most %v", tc.timeout, time.Until(dl), tc.max)
		}
	}
}
