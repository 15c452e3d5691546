package guard

import (
	"crypto/tls"
	"math"
	"net"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"moat/internal/reply"
)

// Connection slots. Every connection, from accept to close, takes one
// place in three counts: the guard's (guard.max_connections), its
// listener's (ListenerOptions.MaxConnections, when set) and, for a
// listener that is not a submission one, the count of those
// (guard.max_connections less the guard.submission_reserve share, while
// a submission listener is open). So port 25 at its cap leaves the
// reserve to 587 and 465, and each listener can be kept to a share of
// its own. A refused client gets 421 4.7.0 (RFC 5321 §3.8), on an
// implicit-TLS listener over TLS.

// maxTLSRefusals bounds the refusals the accept loops write over TLS at
// once; past it a refused TLS client only sees the close.
const maxTLSRefusals = 32

// enter takes l's places for a new connection; reason is "" when there
// is room, else the rejection reason (the places are given back).
func (l *listener) enter(cfg *Config) (reason string) {
	g := l.g
	n := g.active.Add(1)
	ln := l.active.Add(1)
	var pub int64
	if !l.opt.Submission {
		pub = g.public.Add(1)
	}
	switch {
	case n > int64(cfg.MaxConnections):
		reason = ReasonMaxConnections
	case l.opt.MaxConnections > 0 && ln > int64(l.opt.MaxConnections):
		reason = ReasonListenerFull
	case !l.opt.Submission && pub > g.publicCap(cfg):
		reason = ReasonListenerFull
	}
	if reason != "" {
		l.drop()
		return reason
	}
	g.noteStress()
	return ""
}

// leave gives back the places enter took.
func (l *listener) leave() {
	l.drop()
	l.g.noteStress()
}

func (l *listener) drop() {
	l.g.active.Add(-1)
	l.active.Add(-1)
	if !l.opt.Submission {
		l.g.public.Add(-1)
	}
}

// publicCap is how many connections the listeners that are not
// submission ones may have together: max_connections less the
// submission reserve (at least one place left to them), or all of it
// while no submission listener is open.
func (g *Guard) publicCap(cfg *Config) int64 {
	max := int64(cfg.MaxConnections)
	if cfg.SubmissionReserve <= 0 || g.submissions.Load() == 0 {
		return max
	}
	reserve := int64(math.Ceil(cfg.SubmissionReserve * float64(max)))
	return max - min(reserve, max-1)
}

// stressed reports whether l is to be in stress mode, given whether it
// is now: on once a count is above threshold·cap, off once every count
// is below 90% of that level.
func (l *listener) stressed(cfg *Config, now bool) bool {
	t := cfg.Stress.Threshold
	if t <= 0 {
		return false
	}
	g := l.g
	type count struct{ n, cap int64 }
	counts := [3]count{{g.active.Load(), int64(cfg.MaxConnections)}}
	if l.opt.MaxConnections > 0 {
		counts[1] = count{l.active.Load(), int64(l.opt.MaxConnections)}
	}
	if !l.opt.Submission {
		counts[2] = count{g.public.Load(), g.publicCap(cfg)}
	}
	for _, c := range counts {
		if c.cap <= 0 {
			continue
		}
		level := t * float64(c.cap)
		if float64(c.n) > level {
			return true
		}
		if now && float64(c.n) >= 0.9*level {
			return true
		}
	}
	return false
}

// noteStress brings every listener's stress mode up to date after a
// count changed; each change is logged and told to Options.OnStress.
func (g *Guard) noteStress() {
	cfg := &g.state.Load().cfg
	g.stressMu.Lock()
	defer g.stressMu.Unlock()
	g.lmu.Lock()
	lists := g.lists
	g.lmu.Unlock()
	for _, l := range lists {
		was := l.stressOn.Load()
		on := l.stressed(cfg, was)
		if on == was {
			continue
		}
		l.stressOn.Store(on)
		g.log.Warn("stress mode", zap.String("listener", l.opt.Name), zap.Bool("on", on),
			zap.Int64("connections", g.active.Load()), zap.Int64("listener_connections", l.active.Load()),
			zap.Duration("read_timeout", cfg.Stress.Timeout))
		if g.onStress != nil {
			g.onStress(l.opt.Name, on)
		}
	}
}

// StressTimeout is guard.stress.timeout while the connection's listener
// is in stress mode, else 0. The SMTP server (gateway/smtpd) finds it in
// the wrapper chain and cuts every wait for the client to it.
func (c *Conn) StressTimeout() time.Duration {
	if !c.l.stressOn.Load() {
		return 0
	}
	return c.l.g.state.Load().cfg.Stress.Timeout
}

// refuse rejects raw before its session (counted, logged, the reply r
// written); the caller closes raw. On an implicit-TLS listener with a
// TLS config the reply goes over TLS, after a handshake that must end
// within replyWriteTimeout (pre: bytes of it already read, after a
// PROXY header).
func (l *listener) refuse(raw net.Conn, pre []byte, client netip.AddrPort, reason string, r *reply.Reply, detail string) {
	g := l.g
	if !l.opt.ImplicitTLS || l.opt.TLS == nil || r == nil {
		g.reject(l, raw, client, reason, r, detail)
		return
	}
	g.reject(l, raw, client, reason, nil, detail)
	var nc net.Conn = raw
	if len(pre) > 0 {
		nc = &preConn{Conn: raw, pre: pre}
	}
	tc := tls.Server(nc, l.opt.TLS)
	tc.SetDeadline(time.Now().Add(replyWriteTimeout))
	if tc.Handshake() == nil {
		tc.Write(g.rep.bytesOf(reasonIndex(reason), r))
		tc.CloseWrite() // close_notify; the caller closes the socket
	}
}

// refuseInLoop refuses a connection there was no room for, from the
// accept loop, and closes it. A plain reply is one write into a fresh
// socket's empty buffer and does not hold the loop; a TLS one is a
// handshake, made in a goroutine of its own (at most maxTLSRefusals at
// once: past that, the close only).
func (l *listener) refuseInLoop(raw net.Conn, reason string) {
	g := l.g
	client := addrPortOf(raw.RemoteAddr())
	r := g.replyFor(reason, netip.Addr{})
	if l.opt.ImplicitTLS && l.opt.TLS != nil {
		select {
		case g.tlsRefusals <- struct{}{}:
			go func() {
				defer func() { <-g.tlsRefusals }()
				l.refuse(raw, nil, client, reason, r, "")
				raw.Close()
			}()
			return
		default:
			r = nil
		}
	}
	l.refuse(raw, nil, client, reason, r, "")
	raw.Close()
}

// preConn reads pre before the connection's own bytes.
type preConn struct {
	net.Conn
	pre []byte
}

func (c *preConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
