package guard

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"moat/policy"
)

// Pregreet outcomes in ConnFacts.Pregreet.
const (
	PregreetPass        = "pass"        // waited the delay in silence
	PregreetCached      = "cached"      // passed earlier, within pregreet.pass_ttl
	PregreetAllowlisted = "allowlisted" // guard.allow: not tested
	PregreetDNSWL       = "dnswl"       // a negative DNS list score ended the wait
	PregreetOff         = "off"         // no greet delay on this listener
)

// ConnFacts is what the guard found about an admitted connection.
type ConnFacts struct {
	Listener string
	// Client is the client's address: the one carried by the PROXY
	// header when Proxied, else the TCP peer.
	Client netip.AddrPort
	// Peer is the TCP peer (the proxy when Proxied).
	Peer        netip.AddrPort
	Proxied     bool
	Allowlisted bool
	// DNSBL is the DNS list score and hits (zero when not checked).
	DNSBL policy.DNSBL
	// DNSBLFailed names the lists that timed out or failed: they count
	// as no answer.
	DNSBLFailed []string
	Pregreet    string
}

// FactsConn is implemented by the connections the guard admits. Keep a
// reference to it from the start of the session: after STARTTLS smtpd
// wraps it in a *tls.Conn (FactsOf unwraps that too).
type FactsConn interface {
	net.Conn
	GuardFacts() ConnFacts
}

// FactsOf returns the guard's facts for c, unwrapping *tls.Conn and any
// other wrapper that has a NetConn() or an Unwrap() method.
func FactsOf(c net.Conn) (ConnFacts, bool) {
	for i := 0; i < 8 && c != nil; i++ {
		if f, ok := c.(FactsConn); ok {
			return f.GuardFacts(), true
		}
		switch u := c.(type) {
		case interface{ NetConn() net.Conn }:
			c = u.NetConn()
		case interface{ Unwrap() net.Conn }:
			c = u.Unwrap()
		default:
			return ConnFacts{}, false
		}
	}
	return ConnFacts{}, false
}

// Conn is an admitted connection. It reports the client address from the
// PROXY header as RemoteAddr, and watches both directions for protocol
// abuse: HTTP or TLS where SMTP commands should be, too many RSET/NOOP/
// HELO/EHLO, too many 5xx replies (with a growing delay, the tarpit,
// before each 5xx after guard.tarpit.after). After STARTTLS it only
// passes bytes through.
type Conn struct {
	net.Conn
	remote  net.Addr
	facts   ConnFacts
	pre     []byte // bytes read ahead of the server (after a PROXY header)
	l       *listener
	lim     connLimits
	release func()

	mu sync.Mutex // guards tr
	tr tracker

	dead      atomic.Bool
	closing   chan struct{}
	closeOnce sync.Once
}

// connLimits is the part of the config a Conn applies, fixed at admission.
type connLimits struct {
	maxErrors   int
	tarpitAfter int
	tarpitBase  time.Duration
	tarpitMax   time.Duration
}

var _ FactsConn = (*Conn)(nil)

// GuardFacts returns the facts found at admission.
func (c *Conn) GuardFacts() ConnFacts { return c.facts }

// RemoteAddr returns the client address (after a trusted PROXY header).
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// NetConn returns the underlying connection.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Buffered returns how many bytes were read ahead of the server (after a
// PROXY header) and wait in Read: the SMTP loop does not wait on the
// socket while there are any. Only the connection's reader calls it.
func (c *Conn) Buffered() int { return len(c.pre) }

// Read reads from the client and inspects what it read; on abuse it
// answers, closes and returns io.EOF so that the SMTP loop ends quietly.
func (c *Conn) Read(p []byte) (int, error) {
	if c.dead.Load() {
		return 0, io.EOF
	}
	var n int
	var err error
	if len(c.pre) > 0 {
		n = copy(p, c.pre)
		c.pre = c.pre[n:]
		if len(c.pre) == 0 {
			c.pre = nil
		}
	} else {
		n, err = c.Conn.Read(p)
	}
	if n > 0 {
		c.mu.Lock()
		ev := c.tr.client(p[:n])
		c.mu.Unlock()
		if ev != evNone {
			c.abort(ev.reason())
			return 0, io.EOF
		}
	}
	return n, err
}

// Write writes a server reply, counting 5xx replies: past max_errors it
// sends 421 and closes instead; past tarpit.after it first waits.
func (c *Conn) Write(p []byte) (int, error) {
	if c.dead.Load() {
		return 0, net.ErrClosed
	}
	c.mu.Lock()
	fives := c.tr.server(p)
	errs := c.tr.errors
	c.mu.Unlock()
	if fives > 0 {
		if c.lim.maxErrors > 0 && errs > c.lim.maxErrors {
			c.abort(ReasonTooManyErrors)
			return 0, net.ErrClosed
		}
		if d := c.lim.tarpit(errs); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-c.closing:
				t.Stop()
				return 0, net.ErrClosed
			}
		}
	}
	return c.Conn.Write(p)
}

// tarpit returns the delay before the reply that makes errs errors.
func (l connLimits) tarpit(errs int) time.Duration {
	if l.tarpitBase <= 0 || errs <= l.tarpitAfter {
		return 0
	}
	d := time.Duration(errs-l.tarpitAfter) * l.tarpitBase
	if d > l.tarpitMax || d < 0 {
		d = l.tarpitMax
	}
	return d
}

// abort ends the connection for a protocol violation: the reply, the
// count, the log line, then the socket is closed.
func (c *Conn) abort(reason string) {
	if !c.dead.CompareAndSwap(false, true) {
		return
	}
	c.l.g.reject(c.l, c.Conn, c.facts.Client, reason, c.l.g.replyFor(reason, c.facts.Client.Addr()), "")
	c.Conn.Close()
}

// Close closes the connection and frees its place in the limits.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closing)
		c.release()
	})
	return c.Conn.Close()
}
