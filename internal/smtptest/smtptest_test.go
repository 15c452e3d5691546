package smtptest

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

func TestMessageAndBody(t *testing.T) {
	for _, tc := range []struct {
		raw, id, body string
	}{
		{string(Message("a@x.test", "b@y.test", "id1@x.test", "hello\r\n")), "<id1@x.test>", "hello\r\n"},
		{"Subject: x\r\n\r\nno id\r\n", "", "no id\r\n"},
		{"Message-ID: <lf@x>\n\nbody\n", "<lf@x>", "body\n"},
	} {
		if got := MessageID([]byte(tc.raw)); got != tc.id {
			t.Errorf("MessageID(%q) = %q, want %q", tc.raw, got, tc.id)
		}
		if got := string(Body([]byte(tc.raw))); got != tc.body {
			t.Errorf("Body(%q) = %q, want %q", tc.raw, got, tc.body)
		}
	}
}

// TestSinkRecords: the recording sink counts each Message-ID it gets.
func TestSinkRecords(t *testing.T) {
	s := StartSink(t)
	for i, id := range []string{"a@t", "b@t", "a@t"} {
		msg := Message("s@t.test", "r@t.test", id, fmt.Sprintf("body %d\r\n", i))
		if err := Send(s.Addr, "s@t.test", []string{"r@t.test"}, msg); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Seen(); got["<a@t>"] != 2 || got["<b@t>"] != 1 || s.Count() != 2 {
		t.Errorf("Seen = %v, Count = %d", got, s.Count())
	}
}

// TestServeConns: every connection reaches the handler, and the end of
// the test closes the ones a handler still holds.
func TestServeConns(t *testing.T) {
	got := make(chan string, 2)
	addr := ServeConns(t, func(c net.Conn) {
		b := make([]byte, 5)
		if _, err := io.ReadFull(c, b); err == nil {
			got <- string(b)
		}
		io.Copy(io.Discard, c) // hold the connection until it is closed
	})
	for _, w := range []string{"hello", "again"} {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, w)
		select {
		case s := <-got:
			if s != w {
				t.Fatalf("handler read %q, want %q", s, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the handler got nothing")
		}
	}
}
