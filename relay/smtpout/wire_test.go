package smtpout

import (
	"bufio"
	"bytes"
	"context"
	"net/textproto"
	"strings"
	"sync"
	"testing"

	"moat/internal/reply"
	"moat/relay/route"
)

func TestXtext(t *testing.T) {
	for in, want := range map[string]string{"abc": "abc", "a b": "a+20b", "a+b=c": "a+2Bb+3Dc", "é": "+C3+A9", "\x00": "+00"} {
		if got := xtext(in); got != want {
			t.Errorf("xtext(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzWireErr: whatever a peer replies (read by reply.Read, fuzzed in
// its own package) becomes a valid reply or a plain error.
func FuzzWireErr(f *testing.F) {
	for _, s := range []string{"220 hi\r\n", "250-a\r\n250 b\r\n", "5", "250-\n250 \n", "999 x\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		r, err := reply.Read(bufio.NewReaderSize(strings.NewReader(in), 4096))
		if err != nil {
			return
		}
		if err := wireErr(r, "h", "x"); err != nil {
			if rp, ok := err.(interface{ Validate() error }); ok {
				if verr := rp.Validate(); verr != nil {
					t.Fatalf("invalid reply from %q: %v", in, verr)
				}
			}
		}
	})
}

func FuzzXtext(f *testing.F) {
	f.Add("a b+c=d")
	f.Fuzz(func(t *testing.T, in string) {
		out := xtext(in)
		for i := 0; i < len(out); i++ {
			if out[i] < '!' || out[i] > '~' || out[i] == '=' {
				t.Fatalf("xtext(%q) = %q", in, out)
			}
		}
	})
}

// BenchmarkSMTP sends 2 KB messages through NewSMTP to a local go-smtp
// sink from 20 goroutines; reports msgs/s.
func BenchmarkSMTP(b *testing.B) {
	be := &backend{}
	addr, _ := startServer(b, be, nil)
	c := NewSMTP(Options{Address: addr, TLS: route.TLSNone, MaxConns: 20, MaxConnsPerDest: 20, MaxIdle: 20})
	defer c.Close()
	body := testBody + strings.Repeat(strings.Repeat("x", 78)+"\r\n", 2048/80)
	msg := testMsg(body)
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	var wg sync.WaitGroup
	work := make(chan struct{})
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				if r := c.Deliver(context.Background(), msg, []string{"a@example.net"})[0]; r.Err != nil {
					b.Error(r.Err)
				}
			}
		}()
	}
	for i := 0; i < b.N; i++ {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	// Keep memory flat: the sink drops what it stored.
	be.mu.Lock()
	be.msgs = nil
	be.mu.Unlock()
}

// dotStuffed is what net/textproto's DotWriter makes of chunks.
func dotStuffed(chunks ...[]byte) []byte {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	dw := textproto.NewWriter(bw).DotWriter()
	for _, c := range chunks {
		dw.Write(c)
	}
	dw.Close()
	return out.Bytes()
}

func ourData(chunks ...[]byte) []byte {
	var out bytes.Buffer
	dw := &dataWriter{w: bufio.NewWriterSize(&out, 16)}
	for _, c := range chunks {
		dw.Write(c)
	}
	dw.Close()
	return out.Bytes()
}

func TestDataWriter(t *testing.T) {
	for _, in := range []string{
		"", "a", "a\r\n", ".", ".\r\n", "a\r\n.\r\nb", "a\n.b\n", "..\r\n.", "x\r", "x\r\r\n", "\r\n.\r\n", "a\rb\n",
	} {
		want := dotStuffed([]byte(in))
		if got := ourData([]byte(in)); !bytes.Equal(got, want) {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}

// FuzzDataWriter: the same bytes as net/textproto's DotWriter, however
// the input is cut into writes.
func FuzzDataWriter(f *testing.F) {
	for _, s := range []string{"a\r\n.\r\n", ".x\n.\n", "\r\r\n..", "abc"} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint8) {
		k := int(cut) % (len(data) + 1)
		want := dotStuffed(data[:k], data[k:])
		if got := ourData(data[:k], data[k:]); !bytes.Equal(got, want) {
			t.Fatalf("%q cut at %d: got %q, want %q", data, k, got, want)
		}
	})
}
