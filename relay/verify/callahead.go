package verify

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
	"time"

	"moat/internal/reply"
	"moat/relay/route"
)

// Per-connection limits. Postfix's smtpd counts every 5yz reply of a
// session (smtpd_soft_error_limit 10 adds a delay, smtpd_hard_error_limit
// 20 disconnects), so a connection is retired well before that; any
// server is spared sessions that never end.
const (
	maxProbesPerConn    = 100
	maxNegativesPerConn = 8
	// maxDialAddrs bounds the addresses of a route host name tried.
	maxDialAddrs = 4
)

// outcome of one probe.
type outcome uint8

const (
	known outcome = iota + 1
	unknown
	tempfail
)

// result is a probe's answer, as cached.
type result struct {
	outcome outcome
	// rep is the reply for unknown and tempfail.
	rep *reply.Reply
}

// errTLSHandshake marks a failed handshake: opportunistic TLS then
// retries in clear (RFC 7435 §3).
var errTLSHandshake = errors.New("TLS handshake failed")

// backend is the callahead side of one route: a bounded set of
// connections, each carrying one probe at a time.
type backend struct {
	route    string
	network  string // tcp or unix
	addr     string // host:port or socket path
	host     string // TLS server name and messages
	lmtp     bool
	tlsMode  string
	tlsCfg   *tls.Config
	hostname string
	idleTime time.Duration
	downTTL  time.Duration
	v        *Verifier

	slots chan struct{} // one token per connection in use

	mu        sync.Mutex
	idle      []*pconn
	downUntil time.Time // Clock time; dialling is skipped until then
	downErr   error
	closed    bool
}

func newBackend(v *Verifier, name string, r route.Route) (*backend, error) {
	b := &backend{
		route:    name,
		lmtp:     r.Type == route.TypeLMTP,
		tlsMode:  r.TLSMode(),
		hostname: v.opt.Hostname,
		idleTime: v.cfg.IdleTimeout,
		downTTL:  v.cfg.TempfailTTL,
		v:        v,
		slots:    make(chan struct{}, v.cfg.MaxConns),
	}
	if p, ok := strings.CutPrefix(r.Address, "unix:"); ok {
		b.network, b.addr, b.host = "unix", p, "localhost"
	} else {
		h, _, err := net.SplitHostPort(r.Address)
		if err != nil {
			return nil, fmt.Errorf("routes.%s.address: %w", name, err)
		}
		b.network, b.addr, b.host = "tcp", r.Address, h
	}
	var cfg *tls.Config
	if v.opt.TLSConfig != nil {
		cfg = v.opt.TLSConfig.Clone()
	} else {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" {
		cfg.ServerName = b.host
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if b.tlsMode == route.TLSOpportunistic || r.TLSSkipVerify {
		// RFC 7435: opportunistic TLS protects against passive
		// listeners only and does not verify (as relay/smtpout).
		cfg.InsecureSkipVerify = true
	}
	b.tlsCfg = cfg
	return b, nil
}

// probe asks the backend about rcpt within ctx (which has a deadline).
func (b *backend) probe(ctx context.Context, rcpt string) result {
	res := b.try(ctx, rcpt)
	if res.outcome == tempfail {
		b.v.stats.probeTempfails.Add(1)
	}
	return res
}

func (b *backend) try(ctx context.Context, rcpt string) result {
	select {
	case b.slots <- struct{}{}:
	case <-ctx.Done():
		return b.temp(fmt.Errorf("no free callahead connection: %w", ctx.Err()))
	}
	defer func() { <-b.slots }()
	for attempt := 0; ; attempt++ {
		c := b.take()
		reused := c != nil
		if c == nil {
			if err := b.isDown(); err != nil {
				return b.temp(err)
			}
			var err error
			c, err = b.dial(ctx, b.tlsMode)
			if err != nil {
				b.markDown(err)
				return b.temp(err)
			}
		}
		res, keep, retry := c.probe(ctx, b, rcpt)
		if keep {
			b.put(c)
		} else {
			c.close()
		}
		if retry && reused && attempt == 0 && ctx.Err() == nil {
			// A pooled connection the server had given up on: try
			// once more on a fresh one.
			continue
		}
		return res
	}
}

func (b *backend) temp(err error) result {
	return result{outcome: tempfail, rep: Tempfail.With(fmt.Errorf("callahead to route %s (%s): %w", b.route, b.addr, err))}
}

func (b *backend) isDown() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.downErr != nil && b.v.now().Before(b.downUntil) {
		return fmt.Errorf("backend unreachable (not retried until %s): %w", b.downUntil.Format(time.TimeOnly), b.downErr)
	}
	return nil
}

// markDown keeps further probes from dialling a backend that just
// failed, for TempfailTTL, so that a flood of distinct recipients does
// not become a flood of connection attempts.
func (b *backend) markDown(err error) {
	if b.downTTL <= 0 || errors.Is(err, context.Canceled) {
		return
	}
	b.mu.Lock()
	b.downUntil, b.downErr = b.v.now().Add(b.downTTL), err
	b.mu.Unlock()
	b.v.log.Warn("callahead backend unreachable", zapRoute(b.route), zapErr(err))
}

// take returns an idle connection, or nil.
func (b *backend) take() *pconn {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.idle) > 0 {
		c := b.idle[len(b.idle)-1]
		b.idle = b.idle[:len(b.idle)-1]
		if c.timer.Stop() {
			return c
		}
		// The idle timer fired and is closing it.
	}
	return nil
}

// put keeps c for the next probe and closes it after idleTime.
func (b *backend) put(c *pconn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || len(b.idle) >= cap(b.slots) {
		go c.quit()
		return
	}
	c.timer = time.AfterFunc(b.idleTime, func() {
		b.mu.Lock()
		for i, x := range b.idle {
			if x == c {
				b.idle = append(b.idle[:i], b.idle[i+1:]...)
				break
			}
		}
		b.mu.Unlock()
		c.quit()
	})
	b.idle = append(b.idle, c)
}

// close closes the idle connections; probes in flight close theirs.
func (b *backend) close() {
	b.mu.Lock()
	b.closed = true
	idle := b.idle
	b.idle = nil
	b.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range idle {
		if c.timer.Stop() {
			wg.Go(c.quit)
		}
	}
	wg.Wait()
}

// targets returns the addresses to try, resolving a route host name
// with Options.Resolver when there is one.
func (b *backend) targets(ctx context.Context) ([]string, error) {
	if b.network != "tcp" || b.v.opt.Resolver == nil {
		return []string{b.addr}, nil
	}
	host, port, _ := net.SplitHostPort(b.addr)
	if _, err := netip.ParseAddr(host); err == nil {
		return []string{b.addr}, nil
	}
	ips, err := b.v.opt.Resolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", host, err)
	}
	var out []string
	for _, ip := range ips {
		if a, ok := netip.AddrFromSlice(ip.IP); ok && len(out) < maxDialAddrs {
			out = append(out, net.JoinHostPort(a.Unmap().String(), port))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s has no address", host)
	}
	return out, nil
}

// dial connects and says EHLO (or LHLO), with STARTTLS as mode says.
func (b *backend) dial(ctx context.Context, mode string) (*pconn, error) {
	addrs, err := b.targets(ctx)
	if err != nil {
		return nil, err
	}
	var raw net.Conn
	for _, a := range addrs {
		raw, err = b.v.opt.Dial(ctx, b.network, a)
		if err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	b.v.stats.dials.Add(1)
	c, err := b.setup(ctx, raw, mode)
	if err != nil {
		raw.Close()
		if mode == route.TLSOpportunistic && errors.Is(err, errTLSHandshake) && ctx.Err() == nil {
			// RFC 7435 §3: opportunistic security falls back to clear.
			return b.dial(ctx, route.TLSNone)
		}
		return nil, err
	}
	return c, nil
}

func (b *backend) setup(ctx context.Context, raw net.Conn, mode string) (*pconn, error) {
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		raw.SetDeadline(dl)
	}
	c := &pconn{raw: raw, br: bufio.NewReaderSize(raw, maxLine)}
	r, err := reply.Read(c.br)
	if err != nil {
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if r.Code != 220 {
		// RFC 5321 §3.1: 554 (or 421) instead of 220 means no service.
		return nil, fmt.Errorf("greeting: %s", r)
	}
	hello := "EHLO"
	if b.lmtp {
		hello = "LHLO" // RFC 2033 §4.1
	}
	ext, err := c.hello(hello, b.hostname, !b.lmtp && mode != route.TLSRequired)
	if err != nil {
		return nil, err
	}
	if mode != route.TLSNone {
		switch {
		case hasKey(ext, "STARTTLS"):
			r, err := c.cmd("STARTTLS")
			if err != nil {
				return nil, fmt.Errorf("STARTTLS: %w", err)
			}
			if r.Code != 220 {
				if mode == route.TLSRequired {
					return nil, fmt.Errorf("STARTTLS refused and TLS is required: %s", r)
				}
				break // opportunistic: carry on in clear
			}
			if c.br.Buffered() > 0 {
				// Bytes before the handshake would be read as if
				// they came over TLS (CVE-2011-0411).
				return nil, errors.New("server sent data after its STARTTLS reply")
			}
			tc := tls.Client(raw, b.tlsCfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				return nil, fmt.Errorf("%w: %w", errTLSHandshake, err)
			}
			c.raw, c.br = tc, bufio.NewReaderSize(tc, maxLine)
			// RFC 3207 §4.2: forget what was learnt, say EHLO again.
			if ext, err = c.hello(hello, b.hostname, false); err != nil {
				return nil, err
			}
		case mode == route.TLSRequired:
			return nil, errors.New("STARTTLS not offered and TLS is required")
		}
	}
	c.utf8 = hasKey(ext, "SMTPUTF8")
	return c, nil
}

// pconn is one open session to a backend, between transactions.
type pconn struct {
	raw       net.Conn // TLS connection after STARTTLS
	br        *bufio.Reader
	utf8      bool
	probes    int
	negatives int
	timer     *time.Timer // idle timer while pooled
}

// maxLine bounds a reply line from a backend. RFC 5321 §4.5.3.1.5 says
// 512 octets with CRLF; real servers send a little more, so allow about
// twice.
const maxLine = 1024

func (c *pconn) cmd(line string) (*reply.Response, error) {
	// RFC 5321 §4.5.3.1.4: 512-octet command lines.
	if len(line) > 510 || strings.ContainsAny(line, "\r\n") {
		return nil, errors.New("command line too long or with a line break")
	}
	if _, err := c.raw.Write([]byte(line + "\r\n")); err != nil {
		return nil, err
	}
	return reply.Read(c.br)
}

// hello says EHLO (or LHLO) and returns the keywords; with heloOK an
// EHLO refused with 500 or 502 falls back to HELO (RFC 5321 §4.1.4
// and §3.2).
func (c *pconn) hello(cmd, name string, heloOK bool) (map[string]string, error) {
	r, err := c.cmd(cmd + " " + name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	if r.Code == 250 {
		return r.Keywords(), nil
	}
	if heloOK && (r.Code == 500 || r.Code == 502) {
		r, err = c.cmd("HELO " + name)
		if err != nil {
			return nil, fmt.Errorf("HELO: %w", err)
		}
		if r.Code == 250 {
			return map[string]string{}, nil
		}
	}
	return nil, fmt.Errorf("%s: %s", cmd, r)
}

// probe runs MAIL FROM:<>, RCPT TO:<rcpt>, RSET. keep says whether the
// connection can serve another probe; retry that it failed before the
// server said anything about rcpt, in a way a stale pooled connection
// explains (closed, or 421, RFC 5321 §3.8).
func (c *pconn) probe(ctx context.Context, b *backend, rcpt string) (res result, keep, retry bool) {
	stop := context.AfterFunc(ctx, func() { c.raw.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		c.raw.SetDeadline(dl)
	}
	c.probes++
	// The address as delivery will write it: its domain in A-label form
	// (route.WireAddress, issue 27 item 4).
	rcpt, _ = route.WireAddress(rcpt)
	mail := "MAIL FROM:<>"
	if !isASCII(rcpt) {
		if !c.utf8 {
			// RFC 6531 §3.2: without SMTPUTF8 the backend cannot take
			// this address; the mail could not be delivered either.
			return result{outcome: unknown, rep: reply.New(553, 6, 7, "Recipient address needs SMTPUTF8, which the next hop does not support")}, true, false
		}
		mail += " SMTPUTF8"
	}
	r, err := c.cmd(mail)
	if err != nil {
		return b.temp(fmt.Errorf("MAIL: %w", err)), false, !isTimeout(err)
	}
	if r.Code != 250 {
		// A backend that refuses the null reverse-path (RFC 5321
		// §4.5.5 says it must take it) tells nothing about rcpt.
		return b.temp(fmt.Errorf("MAIL FROM:<> answered %s", r)), r.Code != 421 && r.Code/100 != 5, r.Code == 421
	}
	b.v.stats.probes.Add(1)
	r, err = c.cmd("RCPT TO:<" + rcpt + ">")
	if err != nil {
		return b.temp(fmt.Errorf("RCPT: %w", err)), false, false
	}
	switch r.Code / 100 {
	case 2:
		res = result{outcome: known}
	case 5:
		c.negatives++
		rep := reply.NoSuchUser.With(fmt.Errorf("route %s (%s) answered %s", b.route, b.addr, r))
		if e, ok := r.Enhanced(); ok && e[1] == 1 {
			rep.Enhanced = e // RFC 3463 §3.2: X.1.x is about the address
		}
		res = result{outcome: unknown, rep: rep}
	default:
		// 4yz, or a 3yz that makes no sense here.
		res = b.temp(fmt.Errorf("RCPT answered %s", r))
	}
	if r.Code == 421 {
		return res, false, false
	}
	r, err = c.cmd("RSET")
	keep = err == nil && r.Code == 250 && c.probes < maxProbesPerConn && c.negatives < maxNegativesPerConn
	if keep {
		c.raw.SetDeadline(time.Time{})
	}
	return res, keep, false
}

// quit ends the session politely, briefly, and closes it.
func (c *pconn) quit() {
	c.raw.SetDeadline(time.Now().Add(2 * time.Second))
	c.cmd("QUIT")
	c.raw.Close()
}

func (c *pconn) close() { c.raw.Close() }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// hasKey reports whether an EHLO reply named the extension.
func hasKey(ext map[string]string, k string) bool {
	_, ok := ext[k]
	return ok
}
