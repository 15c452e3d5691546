package smtptest

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// Listener is a loopback listener that counts the connections it has
// accepted, for tests of connection reuse.
type Listener struct {
	net.Listener
	accepted atomic.Int32
}

// Accept accepts and counts a connection.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// Accepted is how many connections the listener has accepted.
func (l *Listener) Accepted() int32 { return l.accepted.Load() }

// Serve runs srv (a go-smtp server the test has set up) on 127.0.0.1:0
// until the end of the test and returns its address and listener. A
// read or write timeout srv leaves at zero becomes 30 s.
func Serve(t testing.TB, srv *gosmtp.Server) (string, *Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if srv.ReadTimeout == 0 {
		srv.ReadTimeout = 30 * time.Second
	}
	if srv.WriteTimeout == 0 {
		srv.WriteTimeout = 30 * time.Second
	}
	l := &Listener{Listener: ln}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), l
}

// ServeConns runs handle in a goroutine of its own for every connection
// to a new listener on 127.0.0.1:0 and returns its address: for peers
// that misbehave, stall or say nothing at all. At the end of the test it
// closes the listener and every connection, then waits for the handlers;
// handle need not close its connection.
func ServeConns(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		conns  []net.Conn
		closed bool
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				c.Close()
				return
			}
			conns = append(conns, c)
			wg.Add(1)
			mu.Unlock()
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		closed = true
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}
