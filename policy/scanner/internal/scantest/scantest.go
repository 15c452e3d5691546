// Package scantest runs in-process servers on loopback (TCP or a unix
// socket in the test's temporary directory) for the tests of the scanner
// protocol clients: each test writes the protocol side it needs.
package scantest

import (
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
)

// Serve listens on 127.0.0.1:0 (network "tcp") or on a unix socket (network
// "unix") and runs handle for each connection, closing it afterwards. It
// returns the address in the scanners[].address form ("127.0.0.1:port" or
// "unix:/path"). Everything stops when the test ends.
func Serve(t testing.TB, network string, handle func(net.Conn)) string {
	t.Helper()
	return ServeStop(t, network, func(c net.Conn, _ <-chan struct{}) { handle(c) })
}

// Hang is a handler that reads the request and never answers: it returns
// when the test ends.
func Hang(c net.Conn, stop <-chan struct{}) {
	go io.Copy(io.Discard, c)
	<-stop
}

// ServeStop is Serve with handlers that are told, by stop being closed,
// that the test ends.
func ServeStop(t testing.TB, network string, handle func(c net.Conn, stop <-chan struct{})) string {
	t.Helper()
	var (
		ln  net.Listener
		err error
	)
	addr := ""
	switch network {
	case "unix":
		path := filepath.Join(t.TempDir(), "s.sock")
		ln, err = net.Listen("unix", path)
		addr = "unix:" + path
	default:
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			addr = ln.Addr().String()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c, stop)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		close(stop)
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return addr
}

// Unused returns a loopback TCP address nothing listens on.
func Unused(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
