//go:build linux

package smtpd

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client net.Conn, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); sc.Close() })
	return client, sc.(*net.TCPConn)
}

// waitReadable returns for bytes sent before and after the wait began,
// for the end of the stream, and with the deadline's error; it consumes
// nothing.
func TestWaitReadable(t *testing.T) {
	wait := func(sc *net.TCPConn, d time.Duration) error {
		rc, err := sc.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		sc.SetReadDeadline(time.Now().Add(d))
		return waitReadable(rc)
	}
	read := func(sc *net.TCPConn, want string) {
		t.Helper()
		b := make([]byte, 16)
		n, err := sc.Read(b)
		if err != nil || string(b[:n]) != want {
			t.Fatalf("read %q, %v; want %q", b[:n], err, want)
		}
	}

	c, sc := tcpPair(t)
	c.Write([]byte("EHLO"))
	time.Sleep(20 * time.Millisecond) // there before the wait
	if err := wait(sc, 5*time.Second); err != nil {
		t.Fatalf("bytes already there: %v", err)
	}
	read(sc, "EHLO")

	go func() {
		time.Sleep(50 * time.Millisecond)
		c.Write([]byte("QUIT"))
	}()
	if err := wait(sc, 5*time.Second); err != nil {
		t.Fatalf("bytes after the wait began: %v", err)
	}
	read(sc, "QUIT")

	if err := wait(sc, 50*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("silent client: %v, want the deadline", err)
	}

	go func() {
		time.Sleep(50 * time.Millisecond)
		c.Close()
	}()
	if err := wait(sc, 5*time.Second); err != nil {
		t.Fatalf("end of stream: %v", err)
	}
	sc.SetReadDeadline(time.Time{})
	if n, err := sc.Read(make([]byte, 4)); n != 0 || err != io.EOF {
		t.Fatalf("after the close: %d, %v; want EOF", n, err)
	}
}
