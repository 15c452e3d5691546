//go:build linux

package gateway

import (
	"net"
	"syscall"
	"testing"
)

// Accepted connections carry no TCP keepalive: the read deadlines end a
// vanished client's session, and the option costs system calls per
// connection.
func TestListenNoKeepalive(t *testing.T) {
	ln, err := listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	rc, err := sc.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var keep, nodelay int
	var gerr error
	rc.Control(func(fd uintptr) {
		keep, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
		if gerr == nil {
			nodelay, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY)
		}
	})
	if gerr != nil {
		t.Fatal(gerr)
	}
	if keep != 0 {
		t.Errorf("SO_KEEPALIVE = %d on an accepted connection, want 0", keep)
	}
	if nodelay == 0 {
		t.Errorf("TCP_NODELAY off: replies would wait for Nagle")
	}
}
