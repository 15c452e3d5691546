package smtptest

import (
	"io"
	"net"
	"testing"
	"time"
)

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
