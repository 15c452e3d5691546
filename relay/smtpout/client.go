package smtpout

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"moat/internal/reply"
	"moat/relay/route"
	"moat/relay/tlsrpt"
	"moat/relay/transport"
)

type kind int

const (
	kindSMTP kind = iota
	kindLMTP
	kindMX
)

// Client is an SMTP, LMTP or MX transport. It is safe for concurrent use;
// Close releases its idle connections.
type Client struct {
	kind kind
	lmtp bool
	o    Options
	lim  *limiter
	pool *pool
}

var _ transport.Transport = (*Client)(nil)

func newClient(k kind, o Options) *Client {
	o = o.withDefaults(k)
	return &Client{
		kind: k,
		lmtp: k == kindLMTP,
		o:    o,
		lim:  newLimiter(o.MaxConns, o.MaxConnsPerDest),
		pool: newPool(o.MaxIdle, o.IdleTimeout),
	}
}

// NewSMTP returns a transport that sends every message to o.Address
// over SMTP (a backend or smarthost route).
func NewSMTP(o Options) *Client { return newClient(kindSMTP, o) }

// NewLMTP returns a transport that sends every message to o.Address
// over LMTP (RFC 2033).
func NewLMTP(o Options) *Client { return newClient(kindLMTP, o) }

// NewMX returns a transport that sends each message to the mail
// exchangers of the recipients' domain (RFC 5321 §5.1), looked up with
// o.Resolver.
func NewMX(o Options) *Client { return newClient(kindMX, o) }

// ForRoute returns the transport for a configured route; o supplies
// what the route does not (hostname, resolver, limits).
func ForRoute(r route.Route, o Options) transport.Transport {
	o.Address = r.Address
	o.TLS = r.TLSMode()
	if r.Type == route.TypeMX {
		// "" is the automatic choice (tlspolicy.go).
		o.TLS = r.TLS
	}
	o.TLSSkipVerify = r.TLSSkipVerify
	o.Username = r.Username
	o.PasswordFile = r.PasswordFile
	switch r.Type {
	case route.TypeLMTP:
		return NewLMTP(o)
	case route.TypeMX:
		o.Address = ""
		return NewMX(o)
	default:
		return NewSMTP(o)
	}
}

// Close closes the idle connections; deliveries in flight finish.
func (c *Client) Close() error {
	c.pool.close()
	return nil
}

// Deliver sends msg to rcpts and returns one result per recipient.
func (c *Client) Deliver(ctx context.Context, msg *transport.Message, rcpts []string) []transport.Result {
	res := make(map[string]error, len(rcpts))
	var uniq []string
	for _, r := range rcpts {
		if _, ok := res[r]; !ok {
			res[r] = nil
			uniq = append(uniq, r)
		}
	}
	if c.kind == kindMX {
		// Group by domain: each domain has its own exchangers.
		var order []string
		groups := map[string][]string{}
		for _, r := range uniq {
			d, err := route.Domain(r)
			if err != nil {
				res[r] = reply.BadRcptSyntax.With(err)
				continue
			}
			if _, ok := groups[d]; !ok {
				order = append(order, d)
			}
			groups[d] = append(groups[d], r)
		}
		for _, d := range order {
			c.deliverMX(ctx, msg, d, groups[d], res)
		}
	} else {
		dests, err := c.fixedDests(ctx)
		if err != nil {
			for _, r := range uniq {
				res[r] = err
			}
		} else {
			c.deliverDests(ctx, dests, msg, uniq, res)
		}
	}
	out := make([]transport.Result, len(rcpts))
	for i, r := range rcpts {
		out[i] = transport.Result{Recipient: r, Err: res[r]}
		if d, ok := res[r].(*delivered); ok {
			out[i] = transport.Result{Recipient: r, Relay: d.relay, Reply: d.reply}
		}
	}
	return out
}

// fixedDests resolves the route address of an SMTP or LMTP client.
func (c *Client) fixedDests(ctx context.Context) ([]dest, error) {
	addr := c.o.Address
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		return []dest{{key: addr, network: "unix", addr: p, host: "localhost"}}, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, transport.Permanent(fmt.Errorf("route address %q: %w", addr, err))
	}
	if _, err := netip.ParseAddr(host); err == nil || c.o.Resolver == nil {
		return []dest{{key: addr, network: "tcp", addr: addr, host: host}}, nil
	}
	ips, err := c.o.Resolver.LookupIPAddr(ctx, host)
	if err != nil {
		// A route host that does not resolve is our configuration
		// problem or a DNS failure: keep the mail queued.
		return nil, fmt.Errorf("resolving route host %s: %w", host, err)
	}
	var out []dest
	for _, ip := range ips {
		a, ok := netip.AddrFromSlice(ip.IP)
		if !ok {
			continue
		}
		hp := net.JoinHostPort(a.Unmap().String(), port)
		out = append(out, dest{key: addr + "|" + hp, network: "tcp", addr: hp, host: host})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("route host %s has no address", host)
	}
	return out, nil
}

func (c *Client) deliverMX(ctx context.Context, msg *transport.Message, domain string, rcpts []string, res map[string]error) {
	set := func(err error) {
		for _, r := range rcpts {
			res[r] = err
		}
	}
	if c.o.Resolver == nil {
		set(errors.New("MX delivery without a DNS resolver"))
		return
	}
	self := c.o.Self
	self.Hostnames = append(slices.Clone(self.Hostnames), c.o.Hostname)
	hosts, err := c.o.MX.Lookup(ctx, c.o.Resolver, domain, self)
	if err != nil {
		set(err)
		return
	}
	plans, err := c.planTLS(ctx, domain, hosts)
	if err != nil {
		set(err)
		return
	}
	var dests []dest
	var planErr error
	fetchReported := false
	for i, h := range hosts {
		p := plans[i]
		if p.fetchFail.Failure != "" && !fetchReported && c.o.TLSResults != nil {
			fetchReported = true
			c.o.TLSResults.RecordTLS(p.fetchFail)
		}
		if p.fail != nil {
			// Not used at all (a host an MTA-STS policy does not list,
			// DANE required but not possible): never in clear.
			f := p.report.Failure
			if f == "" {
				f = tlsrpt.ValidationFailure
			}
			c.emit(*p, route.TLSRequired, "", f, false)
			if planErr == nil {
				planErr = p.fail
			}
			continue
		}
		for _, a := range h.Addrs {
			hp := net.JoinHostPort(a.String(), c.o.Port)
			dests = append(dests, dest{key: "mx|" + p.keyTag() + "|" + h.Name + "|" + hp, network: "tcp", addr: hp, host: h.Name, plan: p})
		}
	}
	if len(dests) == 0 && planErr != nil {
		set(planErr)
		return
	}
	c.deliverDests(ctx, dests, msg, rcpts, res)
}

// deliverDests sends in transactions of at most MaxRcptsPerTxn
// recipients.
func (c *Client) deliverDests(ctx context.Context, dests []dest, msg *transport.Message, rcpts []string, res map[string]error) {
	for chunk := range slices.Chunk(rcpts, c.o.MaxRcptsPerTxn) {
		c.deliverChunk(ctx, dests, msg, chunk, res)
	}
}

// deliverChunk tries the destinations in order until one takes a mail
// transaction; what that host says then stands (RFC 5321 §5.1).
func (c *Client) deliverChunk(ctx context.Context, dests []dest, msg *transport.Message, rcpts []string, res map[string]error) {
	var lastErr error = errors.New("no destination to try")
	for i, d := range dests {
		if i >= c.o.MaxAttempts {
			break
		}
		// While it waits for a slot, the delivery may ride on a session
		// that has sent its commands already (chain.go).
		r := newRider(d.key, msg, rcpts)
		carried, err := c.lim.acquireOrRide(ctx, d.key, r)
		if err != nil {
			if carried != nil {
				carried.close()
				c.lim.release(d.key)
			}
			lastErr = fmt.Errorf("waiting for a connection slot to %s: %w", d, err)
			break
		}
		var s *session
		out := outStale
		if carried != nil {
			if c.o.Chained != nil {
				c.o.Chained()
			}
			s, out = carried, carried.carry(ctx, r, res)
		}
		for out == outStale {
			// A pooled connection that died while idle, or a carried
			// one that gave no reply: nothing was delivered on it; take
			// the next one, or a new one.
			if s != nil {
				s.close()
			}
			if s, err = c.session(ctx, d); err != nil {
				break
			}
			out = s.transact(ctx, msg, rcpts, res)
		}
		if err != nil {
			c.lim.release(d.key)
			lastErr = err
			if transport.IsPermanent(err) && !isReply(err) || ctx.Err() != nil {
				break // a configuration error, or out of time
			}
			continue
		}
		switch {
		case out == outKeep && s.handOn():
			return // the rider carried on this session has it, slot and all
		case out == outKeep && ctx.Err() == nil && s.used < c.o.MaxMessagesPerConn:
			c.pool.put(s)
		case out == outKeep:
			s.quit()
		default:
			s.close()
		}
		c.lim.release(d.key)
		return
	}
	if ctx.Err() != nil {
		lastErr = fmt.Errorf("%w (%w)", lastErr, ctx.Err())
	}
	for _, r := range rcpts {
		res[r] = lastErr
	}
}

func isReply(err error) bool {
	var r *reply.Reply
	return errors.As(err, &r)
}

// session returns a pooled session to d (its first command will be
// RSET, which proves it alive), or a new one.
func (c *Client) session(ctx context.Context, d dest) (*session, error) {
	if s := c.pool.get(d.key); s != nil {
		return s, nil
	}
	mode := c.o.TLS
	if d.plan != nil {
		mode = d.plan.mode
	}
	return c.dial(ctx, d, mode)
}
