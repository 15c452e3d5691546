package guard

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/pires/go-proxyproto"
	"go.uber.org/zap"

	"moat/internal/dnsres"
	"moat/internal/reply"
	"moat/policy/dnsbl"
)

// replyWriteTimeout bounds the write of a rejection reply.
const replyWriteTimeout = 2 * time.Second

// Options wires a Guard.
type Options struct {
	// Hostname is named in the banner and in every reply. Required.
	Hostname string
	// Resolver is used for the DNS lists; required when guard.dnsbl.zones
	// is not empty.
	Resolver dnsres.Resolver
	// Logger gets one line per rejected connection, at most
	// guard.log_limit a second for each reason. Default: no logs.
	Logger *zap.Logger
	// Now is the clock of the rate buckets and the caches. Default
	// time.Now. (Socket deadlines always use the real clock.)
	Now func() time.Time
	// OnReject, when set, is called for every rejection (metrics).
	OnReject func(Rejection)
	// OnStress, when set, is told each time a listener goes into or out
	// of stress mode (metrics); it must not block.
	OnStress func(listener string, on bool)
	// OnDNSBLError, when set, is called for each DNS list that failed
	// for a connecting client (metrics, by zone).
	OnDNSBLError func(zone string)
	// Shared, when set, shares the connection rate buckets and the
	// pregreet pass cache with other nodes (see SharedState). Default:
	// none, every limit is node-local.
	Shared SharedState
}

// Rejection describes one rejected connection.
type Rejection struct {
	Reason   string // one of the Reason… constants
	Listener string
	Client   netip.AddrPort
	Detail   string // e.g. the DNS lists that listed the client
}

// ListenerOptions configures one wrapped listener.
type ListenerOptions struct {
	Name string
	// GreetDelay is the pregreet wait: the guard writes "220-<hostname>"
	// and hangs up on a client that talks before it ends. 0: no test.
	GreetDelay time.Duration
	// ProxyProtocol: a trusted proxy must send a PROXY v1/v2 header.
	ProxyProtocol bool
	// ImplicitTLS says the bytes are TLS from the start (RFC 8314 §3.3):
	// wrap the plain listener with the guard and put tls.NewListener
	// over it. There is then no pregreet banner and no byte inspection.
	ImplicitTLS bool
	// TLS is the listener's TLS config when ImplicitTLS: with it, a
	// refused client gets its reply over TLS (the handshake bounded by a
	// short deadline); without it, only the close.
	TLS *tls.Config
	// Submission marks a submission listener (587/465): it may use the
	// slots of guard.submission_reserve.
	Submission bool
	// MaxConnections caps this listener's connections (being screened or
	// served); 0: only the guard's caps.
	MaxConnections int
}

// Guard admits or rejects connections before the SMTP server sees them.
type Guard struct {
	host   string
	res    dnsres.Resolver
	log    *zap.Logger
	now    func() time.Time
	onRej  func(Rejection)
	shared SharedState

	state      atomic.Pointer[state]
	lim        *limiter
	onStress   func(listener string, on bool)
	onDNSBLErr func(zone string)

	// public counts the connections of the listeners that are not
	// submission ones (guard.submission_reserve applies to them);
	// submissions is the number of submission listeners open.
	public      atomic.Int64
	submissions atomic.Int64
	// lmu guards lists, the open listeners (for stress mode); stressMu
	// makes each listener's stress changes one at a time.
	lmu      sync.Mutex
	lists    []*listener
	stressMu sync.Mutex
	// tlsRefusals bounds the refusals written over TLS from the accept
	// loop at once (each one a handshake of its own).
	tlsRefusals chan struct{}
	passMu      sync.Mutex
	pass        *lru.Cache[netip.Addr, time.Time]
	active      atomic.Int64
	stats       Stats
	rep         *replies
	logLim      logLimiter
}

// state is a compiled Config, swapped whole by Reload.
type state struct {
	cfg     Config
	allow   *prefixSet
	deny    *prefixSet
	proxies *prefixSet
	dnsbl   *dnsbl.Checker
}

// New builds a Guard from a validated config; it reads the list files
// but opens no socket.
func New(cfg Config, opt Options) (*Guard, error) {
	if opt.Hostname == "" {
		return nil, errors.New("guard: a hostname is required")
	}
	if strings.ContainsAny(opt.Hostname, " \r\n") {
		return nil, fmt.Errorf("guard: hostname %q has a space or line break", opt.Hostname)
	}
	if opt.Logger == nil {
		opt.Logger = zap.NewNop()
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	g := &Guard{host: opt.Hostname, res: opt.Resolver, log: opt.Logger, now: opt.Now, onRej: opt.OnReject, shared: opt.Shared,
		onStress: opt.OnStress, onDNSBLErr: opt.OnDNSBLError, tlsRefusals: make(chan struct{}, maxTLSRefusals)}
	g.rep = newReplies(opt.Hostname)
	st, err := g.compile(cfg)
	if err != nil {
		return nil, err
	}
	if g.lim, err = newLimiter(cfg.TrackedClients, opt.Now); err != nil {
		return nil, err
	}
	if g.pass, err = lru.New[netip.Addr, time.Time](cfg.Pregreet.CacheSize); err != nil {
		return nil, err
	}
	g.state.Store(st)
	return g, nil
}

func (g *Guard) compile(cfg Config) (*state, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	st := &state{cfg: cfg}
	var err error
	if st.allow, err = loadList("guard.allow", cfg.Allow, cfg.AllowFiles); err != nil {
		return nil, err
	}
	if st.deny, err = loadList("guard.deny", cfg.Deny, cfg.DenyFiles); err != nil {
		return nil, err
	}
	if st.proxies, err = loadList("guard.trusted_proxies", cfg.TrustedProxies, nil); err != nil {
		return nil, err
	}
	if len(cfg.DNSBL.Zones) > 0 {
		if g.res == nil {
			return nil, errors.New("guard.dnsbl.zones: a DNS resolver is needed")
		}
		if st.dnsbl, err = dnsbl.New(cfg.DNSBL.Config, g.res, dnsbl.Options{Now: g.now}); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// Reload swaps in a new config (re-reading the list files); on error the
// old one stays. Connections already admitted keep the limits they had.
func (g *Guard) Reload(cfg Config) error {
	st, err := g.compile(cfg)
	if err != nil {
		return err
	}
	g.lim.resize(cfg.TrackedClients)
	g.passMu.Lock()
	g.pass.Resize(cfg.Pregreet.CacheSize)
	g.passMu.Unlock()
	g.state.Store(st)
	return nil
}

// Stats returns the counters.
func (g *Guard) Stats() *Stats { return &g.stats }

// Active returns the connections being screened or served.
func (g *Guard) Active() int { return int(g.active.Load()) }

// Listen wraps inner: the returned listener's Accept yields only admitted
// connections (*Conn). Screening runs in one goroutine per connection, so
// a slow client never holds up Accept.
func (g *Guard) Listen(inner net.Listener, opt ListenerOptions) net.Listener {
	ctx, cancel := context.WithCancel(context.Background())
	l := &listener{
		g: g, inner: inner, opt: opt,
		ch: make(chan net.Conn), done: make(chan struct{}),
		ctx: ctx, cancel: cancel,
		pending: map[net.Conn]struct{}{},
	}
	g.lmu.Lock()
	g.lists = append(g.lists, l)
	g.lmu.Unlock()
	if opt.Submission {
		g.submissions.Add(1)
	}
	go l.acceptLoop()
	return l
}

type listener struct {
	g      *Guard
	inner  net.Listener
	opt    ListenerOptions
	ch     chan net.Conn
	done   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	err     error
	closed  bool
	pending map[net.Conn]struct{}

	// active counts this listener's connections, screened or served;
	// stressOn is its stress mode (guard.stress).
	active   atomic.Int64
	stressOn atomic.Bool
}

func (l *listener) Addr() net.Addr { return l.inner.Addr() }

func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.err != nil {
			return nil, l.err
		}
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.inner.Addr(), Err: net.ErrClosed}
	}
}

// Close stops accepting and closes the connections still being screened.
func (l *listener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.done)
	l.cancel()
	l.g.lmu.Lock()
	for i, x := range l.g.lists {
		if x == l {
			l.g.lists = append(l.g.lists[:i], l.g.lists[i+1:]...)
			break
		}
	}
	l.g.lmu.Unlock()
	if l.opt.Submission {
		l.g.submissions.Add(-1)
	}
	for c := range l.pending {
		c.Close()
	}
	l.mu.Unlock()
	return l.inner.Close()
}

func (l *listener) track(c net.Conn, add bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if add {
		if l.closed {
			return false
		}
		l.pending[c] = struct{}{}
	} else {
		delete(l.pending, c)
	}
	return true
}

func (l *listener) acceptLoop() {
	var delay time.Duration
	for {
		raw, err := l.inner.Accept()
		if err != nil {
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				// EMFILE and the like: back off as net/http does.
				if delay == 0 {
					delay = 5 * time.Millisecond
				} else if delay *= 2; delay > time.Second {
					delay = time.Second
				}
				select {
				case <-time.After(delay):
					continue
				case <-l.done:
					return
				}
			}
			l.mu.Lock()
			if !l.closed && !errors.Is(err, net.ErrClosed) {
				l.err = err
			}
			l.mu.Unlock()
			l.Close()
			return
		}
		delay = 0
		st := l.g.state.Load()
		if reason := l.enter(&st.cfg); reason != "" {
			l.refuseInLoop(raw, reason)
			continue
		}
		go l.admit(raw)
	}
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort()
	}
	if a == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// admit screens one connection and hands it to Accept, or rejects it.
func (l *listener) admit(raw net.Conn) {
	g := l.g
	admitted := false
	var ls *lease
	defer func() {
		l.track(raw, false)
		if !admitted {
			// Free the places first: once the client sees the close,
			// they are free (as Conn.Close does).
			ls.release()
			l.leave()
			raw.Close()
		}
	}()
	if !l.track(raw, true) {
		return
	}
	st := g.state.Load()
	peer := addrPortOf(raw.RemoteAddr())
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	facts := ConnFacts{Listener: l.opt.Name, Client: peer, Peer: peer}
	var pre []byte

	// PROXY protocol: only from trusted proxies, and then required.
	if l.opt.ProxyProtocol && st.proxies.Contains(peer.Addr()) {
		client, leftover, err := readProxyHeader(raw, st.cfg.ProxyHeaderTimeout)
		if err != nil {
			g.reject(l, raw, peer, ReasonProxyBadHeader, nil, err.Error())
			return
		}
		if client.IsValid() {
			facts.Client = client
		}
		facts.Proxied = true
		pre = leftover
	}
	ip := facts.Client.Addr()

	if st.deny.Contains(ip) {
		l.refuse(raw, pre, facts.Client, ReasonDenyList, DenyReply(g.host, ip), "")
		return
	}
	facts.Allowlisted = st.allow.Contains(ip)
	if !facts.Allowlisted {
		var reason string
		if ls, reason = g.lim.acquire(ip, &st.cfg); reason != "" {
			l.refuse(raw, pre, facts.Client, reason, g.replyFor(reason, ip), "")
			return
		}
		if reason := g.sharedRate(l.ctx, ip, &st.cfg); reason != "" {
			l.refuse(raw, pre, facts.Client, reason, g.replyFor(reason, ip), "")
			return
		}
	}

	// DNS lists run while the pregreet test waits (as postscreen does);
	// a decisive score ends the wait early.
	pg := &pregreetWait{conn: raw}
	var dch chan dnsbl.Result
	threshold := st.cfg.DNSBL.Threshold
	if !facts.Allowlisted && st.dnsbl.Enabled() {
		dch = make(chan dnsbl.Result, 1)
		go func() {
			r := st.dnsbl.Check(l.ctx, ip)
			dch <- r
			if r.Score < 0 || r.Score >= threshold {
				pg.interrupt()
			}
		}()
	}

	reason, ok := l.pregreet(raw, st, &facts, pg, pre)
	if !ok {
		if reason != "" {
			g.reject(l, raw, facts.Client, reason, g.replyFor(reason, ip), "")
		}
		return
	}

	if dch != nil {
		var r dnsbl.Result
		select {
		case r = <-dch:
		case <-l.done:
			return
		}
		facts.DNSBL = r.DNSBL
		facts.DNSBLFailed = r.FailedZones()
		if g.onDNSBLErr != nil {
			for _, z := range facts.DNSBLFailed {
				g.onDNSBLErr(z)
			}
		}
		if reason, line, zones := DNSBLDecision(st.cfg.DNSBL, g.host, ip, r); reason != "" {
			l.refuse(raw, pre, facts.Client, reason, line, zones)
			return
		}
		if pg.wasInterrupted() && facts.Pregreet == "" {
			facts.Pregreet = PregreetDNSWL
		}
	}
	if facts.Pregreet == "" {
		facts.Pregreet = PregreetPass
		g.stats.passed.Add(1)
		g.passMu.Lock()
		until := g.now().Add(st.cfg.Pregreet.PassTTL)
		g.pass.Add(ip, until)
		g.passMu.Unlock()
		if g.shared != nil {
			// Best effort: on an error the pass stays node-local.
			_ = g.shared.SetPass(l.ctx, ip, until)
		}
	}

	c := &Conn{
		Conn:    raw,
		remote:  net.TCPAddrFromAddrPort(facts.Client),
		facts:   facts,
		pre:     pre,
		l:       l,
		closing: make(chan struct{}),
		lim: connLimits{
			maxErrors:   st.cfg.MaxErrors,
			tarpitAfter: st.cfg.Tarpit.After,
			tarpitBase:  st.cfg.Tarpit.Base,
			tarpitMax:   st.cfg.Tarpit.Max,
		},
	}
	c.tr.maxLoops = st.cfg.MaxCommandLoops
	if l.opt.ImplicitTLS {
		c.tr.mode = modePass
	}
	held := ls // a copy the closure can hold by value
	c.release = func() {
		held.release()
		l.leave()
	}
	select {
	case l.ch <- c:
		admitted = true
		g.stats.admitted.Add(1)
	case <-l.done:
	}
}

// pregreet runs the early-talker test (postscreen's pregreet test): write
// the first line of a multi-line greeting, "220-<host> ESMTP" (RFC 5321
// §4.2.1 allows a multi-line 220), and wait the greet delay. A client
// that sends anything before the final "220 " line (written by the SMTP
// server) is not waiting for replies (RFC 5321 §4.3.1: the client waits
// for the greeting) and is refused with 521: at once, or with
// guard.pregreet.action hold (the default) when the delay ends. ok is
// false to stop; reason is "" for a silent stop (the client left).
func (l *listener) pregreet(raw net.Conn, st *state, facts *ConnFacts, pg *pregreetWait, pre []byte) (reason string, ok bool) {
	g := l.g
	ip := facts.Client.Addr()
	switch {
	case facts.Allowlisted:
		facts.Pregreet = PregreetAllowlisted
		return "", true
	case l.opt.GreetDelay <= 0 || l.opt.ImplicitTLS:
		facts.Pregreet = PregreetOff
		return "", true
	}
	g.passMu.Lock()
	exp, hit := g.pass.Get(ip)
	g.passMu.Unlock()
	if !hit || !g.now().Before(exp) {
		exp, hit = g.sharedPass(l.ctx, ip)
	}
	if hit && g.now().Before(exp) {
		facts.Pregreet = PregreetCached
		return "", true
	}
	raw.SetWriteDeadline(time.Now().Add(replyWriteTimeout))
	_, err := raw.Write(g.rep.banner)
	raw.SetWriteDeadline(time.Time{})
	if err != nil {
		return "", false
	}
	end := time.Now().Add(l.opt.GreetDelay)
	early := pre
	var buf [64]byte
	if len(early) == 0 {
		var n int
		n, err = pg.read(buf[:], end)
		early = buf[:n]
	}
	if len(early) > 0 {
		reason := classifyEarly(early)
		if reason == ReasonPregreet && st.cfg.Pregreet.Action == PregreetHold {
			hold(raw, end)
		}
		return reason, false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		if pg.wasInterrupted() {
			facts.Pregreet = "" // decided by the DNS lists
		}
		return "", true
	}
	return "", false // the client left, or the listener closed
}

// holdDrain bounds what a held early talker may send: past it, the hold
// ends and the client gets its 521 at once.
const holdDrain = 4096

// hold keeps an early talker until end, the end of the greet delay,
// reading and discarding what it sends meanwhile (so that the close after
// the 521 is an orderly one), at most holdDrain bytes. It returns early
// when the client leaves or the listener closes the connection. HTTP and
// TLS talkers are not held: they are not mail clients, and are closed on
// at once.
func hold(raw net.Conn, end time.Time) {
	var buf [256]byte
	raw.SetReadDeadline(end)
	defer raw.SetReadDeadline(time.Time{})
	for total := 0; total < holdDrain; {
		n, err := raw.Read(buf[:])
		total += n
		if err != nil {
			return
		}
	}
}

// classifyEarly names what an early talker sent.
func classifyEarly(b []byte) string {
	var t tracker
	if ev := t.client(b); ev != evNone && ev != evLoop {
		return ev.reason()
	}
	return ReasonPregreet
}

// pregreetWait is a read that another goroutine can cut short.
type pregreetWait struct {
	mu          sync.Mutex
	conn        net.Conn
	reading     bool
	interrupted bool
}

func (p *pregreetWait) read(b []byte, deadline time.Time) (int, error) {
	p.mu.Lock()
	if p.interrupted {
		p.mu.Unlock()
		return 0, &net.OpError{Op: "read", Err: errInterrupted{}}
	}
	p.reading = true
	p.conn.SetReadDeadline(deadline)
	p.mu.Unlock()
	n, err := p.conn.Read(b)
	p.mu.Lock()
	p.reading = false
	p.conn.SetReadDeadline(time.Time{})
	p.mu.Unlock()
	return n, err
}

func (p *pregreetWait) interrupt() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.interrupted = true
	if p.reading {
		p.conn.SetReadDeadline(time.Unix(1, 0))
	}
}

func (p *pregreetWait) wasInterrupted() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.interrupted
}

type errInterrupted struct{}

func (errInterrupted) Error() string   { return "interrupted" }
func (errInterrupted) Timeout() bool   { return true }
func (errInterrupted) Temporary() bool { return true }

// readProxyHeader reads a PROXY v1 or v2 header under a deadline and
// returns the client address it carries (invalid for a LOCAL command,
// e.g. a health check) and any bytes read past it.
func readProxyHeader(c net.Conn, timeout time.Duration) (netip.AddrPort, []byte, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	br := bufio.NewReaderSize(c, 256)
	h, err := proxyproto.Read(br)
	if err != nil {
		return netip.AddrPort{}, nil, fmt.Errorf("PROXY header: %w", err)
	}
	var leftover []byte
	if n := br.Buffered(); n > 0 {
		leftover = make([]byte, n)
		br.Read(leftover)
	}
	if h.Command.IsLocal() {
		return netip.AddrPort{}, leftover, nil
	}
	src, _, ok := h.TCPAddrs()
	if !ok {
		return netip.AddrPort{}, nil, errors.New("PROXY header: not a TCP connection")
	}
	ap := src.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), leftover, nil
}

// replyFor returns the reply sent for a rejection, nil for none. Only
// the deny list's names the client; the others are built once, in
// newReplies.
func (g *Guard) replyFor(reason string, ip netip.Addr) *reply.Reply {
	if reason == ReasonDenyList {
		return DenyReply(g.host, ip)
	}
	if i := reasonIndex(reason); i >= 0 {
		return g.rep.reply[i]
	}
	return nil
}

// reject counts, logs and writes the reply (if any). The caller closes.
func (g *Guard) reject(l *listener, raw net.Conn, client netip.AddrPort, reason string, r *reply.Reply, detail string) {
	i := reasonIndex(reason)
	g.stats.rejectAt(i)
	// Nothing is built for a line that would not be written.
	if g.log.Core().Enabled(zap.InfoLevel) {
		if ok, skipped := g.logLim.allow(i, g.now(), g.state.Load().cfg.LogLimit); ok {
			fields := []zap.Field{zap.String("reason", reason), zap.String("listener", l.opt.Name),
				zap.String("client", client.String()), zap.String("detail", detail)}
			if skipped > 0 {
				fields = append(fields, zap.Int("not_logged", skipped))
			}
			g.log.Info("connection rejected", fields...)
		}
	}
	if g.onRej != nil {
		g.onRej(Rejection{Reason: reason, Listener: l.opt.Name, Client: client, Detail: detail})
	}
	if r != nil && !l.opt.ImplicitTLS { // a TLS client could not read it
		raw.SetWriteDeadline(time.Now().Add(replyWriteTimeout))
		raw.Write(g.rep.bytesOf(i, r))
	}
}
