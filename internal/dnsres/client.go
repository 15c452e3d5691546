package dnsres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/miekg/dns"
)

// Client is the Resolver over github.com/miekg/dns. It is safe for
// concurrent use. Every error it returns is a *net.DNSError wrapping an
// *Error (see the package doc).
type Client struct {
	servers  []string
	timeout  time.Duration
	attempts int
	observe  func(qtype, outcome string, d time.Duration)
	udp      *dns.Client
	tcp      *dns.Client
	cache    *lru.Cache[cacheKey, *answer] // nil: no cache
	now      func() time.Time
	local    func(*dns.Msg) *dns.Msg // answers in process instead of servers (NewLocal)
}

var _ Resolver = (*Client)(nil)

// New makes a Client from cfg: zero fields take their defaults, then cfg
// is validated; with no servers configured the nameservers of
// /etc/resolv.conf are used. New sends nothing.
func New(cfg Config) (*Client, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.Attempts == 0 {
		cfg.Attempts = DefaultAttempts
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	servers := cfg.Servers
	if len(servers) == 0 {
		file := cfg.resolvConf
		if file == "" {
			file = "/etc/resolv.conf"
		}
		rc, err := dns.ClientConfigFromFile(file)
		if err != nil {
			return nil, fmt.Errorf("dns.servers: empty and %w", err)
		}
		for _, s := range rc.Servers {
			servers = append(servers, net.JoinHostPort(s, rc.Port))
		}
		if len(servers) == 0 {
			return nil, fmt.Errorf("dns.servers: empty and no nameserver in %s", file)
		}
		if len(servers) > maxServers {
			servers = servers[:maxServers]
		}
	}
	c := &Client{
		timeout:  cfg.Timeout,
		attempts: cfg.Attempts,
		observe:  cfg.Observe,
		udp:      &dns.Client{Net: "udp", Timeout: cfg.Timeout, UDPSize: EDNSBufferSize},
		tcp:      &dns.Client{Net: "tcp", Timeout: cfg.Timeout},
		now:      time.Now,
	}
	for i, s := range servers {
		addr, err := ParseServer(s)
		if err != nil {
			return nil, fmt.Errorf("dns.servers[%d]: %w", i, err)
		}
		c.servers = append(c.servers, addr)
	}
	if cfg.CacheSize > 0 {
		cache, err := lru.New[cacheKey, *answer](cfg.CacheSize)
		if err != nil {
			return nil, fmt.Errorf("dns.cache_size: %w", err)
		}
		c.cache = cache
	}
	return c, nil
}

// NewLocal makes a Client that sends nothing: every query is answered by
// answer, in process (e.g. from a zone file for `moat rules test`). The
// typed lookups, CNAME following and error kinds are those of New; there
// is no cache, so changes in what answer knows show at once.
func NewLocal(answer func(*dns.Msg) *dns.Msg) *Client {
	return &Client{local: answer, attempts: 1, now: time.Now}
}

// ForTest is a Client for tests that asks only addr (a dnstest server's
// Addr) once per lookup, with a 500 ms timeout and no cache, so changes to
// the server's records show at once.
func ForTest(addr string) *Client {
	c, err := New(Config{Servers: []string{addr}, Timeout: 500 * time.Millisecond, CacheSize: -1, Attempts: 1})
	if err != nil {
		panic("dnsres.ForTest: " + err.Error())
	}
	return c
}

// LookupTXT implements Resolver. The strings of each TXT record are
// concatenated without separator (RFC 7208 §3.3, RFC 6376 §3.6.2.2), as
// the octets the server sent: miekg/dns keeps them in presentation form
// (\" \\ and \DDD escapes), which is undone here, so that an SPF
// record holding a non-ASCII octet or a backslash is seen as it is.
func (c *Client) LookupTXT(ctx context.Context, name string) ([]string, error) {
	_, rrs, err := c.lookup(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, txtOctets(strings.Join(rr.(*dns.TXT).Txt, "")))
	}
	return out, nil
}

// txtOctets undoes the escapes of a TXT string in presentation form
// (RFC 1035 §5.1): \DDD is the octet DDD, \X is X.
func txtOctets(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b = append(b, c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			if n := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0'); n <= 0xff {
				b = append(b, byte(n))
				i += 3
				continue
			}
		}
		b = append(b, s[i+1])
		i++
	}
	return string(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// LookupMX implements Resolver. Hosts are fully qualified (trailing dot),
// as net.Resolver returns them; equal preferences keep the server's order.
// A null MX (RFC 7505 §3: preference 0, host ".") is returned as is.
func (c *Client) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	_, rrs, err := c.lookup(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	out := make([]*net.MX, 0, len(rrs))
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
	}
	// RFC 5321 §5.1: lower preference first.
	slices.SortStableFunc(out, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) })
	return out, nil
}

// LookupIPAddr implements Resolver: A and AAAA are asked in parallel.
// Addresses found for either are returned without error. With none, the
// error is temporary if either lookup failed temporarily, NXDOMAIN if
// either said so, else no data.
func (c *Client) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	ips, err := c.LookupIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	out := make([]net.IPAddr, len(ips))
	for i, ip := range ips {
		out[i] = net.IPAddr{IP: ip}
	}
	return out, nil
}

// LookupIP implements Resolver; network is "ip", "ip4" or "ip6". IPv4
// addresses come first.
func (c *Client) LookupIP(ctx context.Context, network, host string) ([]net.IP, error) {
	switch network {
	case "ip4":
		return c.lookupAddrs(ctx, host, dns.TypeA)
	case "ip6":
		return c.lookupAddrs(ctx, host, dns.TypeAAAA)
	case "ip":
	default:
		return nil, (&Error{Name: host, Type: "A", Kind: Other, Err: fmt.Errorf("unknown network %q", network)}).wrap()
	}
	type result struct {
		ips []net.IP
		err error
	}
	aaaa := make(chan result, 1)
	go func() {
		ips, err := c.lookupAddrs(ctx, host, dns.TypeAAAA)
		aaaa <- result{ips, err}
	}()
	v4, err4 := c.lookupAddrs(ctx, host, dns.TypeA)
	r6 := <-aaaa
	v6, err6 := r6.ips, r6.err
	if len(v4)+len(v6) > 0 {
		return append(v4, v6...), nil
	}
	switch {
	case err4 == nil && err6 == nil: // cannot happen: no addresses means an error
		return nil, (&Error{Name: host, Type: "A", Kind: NoData}).wrap()
	case IsTemporary(err4):
		return nil, err4
	case IsTemporary(err6):
		return nil, err6
	case err4 != nil && !IsNotFound(err4):
		return nil, err4
	case err6 != nil && !IsNotFound(err6):
		return nil, err6
	case IsNXDomain(err6):
		return nil, err6
	}
	return nil, err4
}

func (c *Client) lookupAddrs(ctx context.Context, host string, qtype uint16) ([]net.IP, error) {
	_, rrs, err := c.lookup(ctx, host, qtype)
	if err != nil {
		return nil, err
	}
	out := make([]net.IP, 0, len(rrs))
	for _, rr := range rrs {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, slices.Clone(rr.A))
		case *dns.AAAA:
			out = append(out, slices.Clone(rr.AAAA))
		}
	}
	return out, nil
}

// LookupAddr implements Resolver: it asks PTR of the in-addr.arpa
// (RFC 1035 §3.5) or ip6.arpa (RFC 3596 §2.5) name of addr. Names are
// fully qualified; PTR targets that are not valid domain names are left
// out.
func (c *Client) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	ip, perr := netip.ParseAddr(addr)
	if perr != nil {
		return nil, (&Error{Name: addr, Type: "PTR", Kind: Other, Err: errors.New("not an IP address")}).wrap()
	}
	rev, perr := dns.ReverseAddr(ip.Unmap().WithZone("").String())
	if perr != nil {
		return nil, (&Error{Name: addr, Type: "PTR", Kind: Other, Err: perr}).wrap()
	}
	_, rrs, err := c.lookup(ctx, rev, dns.TypePTR)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		if p := rr.(*dns.PTR).Ptr; validName(p) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, (&Error{Name: rev, Type: "PTR", Kind: Other, Err: errors.New("no valid PTR names")}).wrap()
	}
	return out, nil
}

// LookupCNAME implements Resolver: it asks A for host and returns the
// last name of the CNAME chain in the answer, fully qualified; host
// itself when there is no CNAME. A name that exists without A records is
// not an error (unlike net.Resolver); NXDOMAIN is.
func (c *Client) LookupCNAME(ctx context.Context, host string) (string, error) {
	final, _, err := c.lookup(ctx, host, dns.TypeA)
	if err != nil && !IsNoData(err) {
		return "", err
	}
	return final, nil
}

// lookup resolves name and qtype, following CNAMEs (RFC 1034 §3.6.2,
// §5.3.3), and returns the final name and the records owned by it. The
// error, if any, is already wrapped.
func (c *Client) lookup(ctx context.Context, name string, qtype uint16) (string, []dns.RR, error) {
	typ := dns.TypeToString[qtype]
	fq := dns.Fqdn(name)
	// Every name from here on is in the one presentation form miekg/dns
	// unpacks (see presentationName), so answers are compared with it.
	cur, ok := presentationName(fq)
	if name == "" || !ok || !validName(cur) {
		return "", nil, (&Error{Name: name, Type: typ, Kind: Other, Err: errors.New("invalid domain name")}).wrap()
	}
	seen := make(map[string]bool, 2)
	links := 0
	for {
		ans, err := c.query(ctx, cur, qtype)
		if err != nil {
			err.Name = fq
			return "", nil, err.wrap()
		}
		final, rrs, n, loop := follow(cur, qtype, ans.rrs, seen)
		links += n
		if loop || links > MaxCNAMEChain {
			return "", nil, (&Error{Name: fq, Type: typ, Kind: Other, Err: errors.New("CNAME loop or chain too long")}).wrap()
		}
		if len(rrs) > 0 {
			return final, rrs, nil
		}
		if ans.rcode == dns.RcodeNameError {
			// RFC 6604 §3: the RCODE is about the last name of the chain.
			return final, nil, (&Error{Name: fq, Type: typ, Kind: NXDomain}).wrap()
		}
		if n == 0 {
			return final, nil, (&Error{Name: fq, Type: typ, Kind: NoData}).wrap()
		}
		// The chain leads out of this answer: ask for its target.
		cur = final
	}
}

// presentationName returns name, fully qualified, in the presentation form
// miekg/dns gives the names it unpacks from a message: the octets of each
// label (RFC 2181 §11: any octet), with the special characters . space
// " ' ( ) ; @ \ written escaped as \X and other octets outside printable
// ASCII as \DDD. The caller's name may write those characters escaped or
// bare ("o'brien" and "o\'brien" are the same label: a bare special
// character is taken as itself); the result is the same either way, so
// it can be compared with the question a server echoes and the owner
// names of its records, ASCII case-insensitively (RFC 4343 §3), as DNS
// compares names. It reports false for a name that cannot be packed: an
// empty label, a label over 63 octets, a name over 255 (RFC 1035 §2.3.4).
func presentationName(name string) (string, bool) {
	var buf [256]byte
	n, err := dns.PackDomainName(dns.Fqdn(name), buf[:], 0, nil, false)
	if err != nil {
		return "", false
	}
	out, _, err := dns.UnpackDomainName(buf[:n], 0)
	if err != nil {
		return "", false
	}
	return out, true
}

func validName(fq string) bool {
	_, ok := dns.IsDomainName(fq)
	return ok && len(fq) > 0 && fq[len(fq)-1] == '.'
}

// query answers (name, qtype) from the cache or the servers.
func (c *Client) query(ctx context.Context, name string, qtype uint16) (*answer, *Error) {
	k := cacheKey{strings.ToLower(name), qtype}
	if c.cache != nil {
		if a, ok := c.cache.Get(k); ok {
			if c.now().Before(a.expires) {
				return a, nil
			}
			c.cache.Remove(k)
		}
	}
	a, err := c.exchange(ctx, name, qtype)
	if err != nil {
		return nil, err // RFC 2308 §7: failures are not cached here.
	}
	if c.cache != nil && a.ttl > 0 {
		a.expires = c.now().Add(a.ttl)
		c.cache.Add(k, a)
	}
	return a, nil
}

// exchange asks the servers in order until one gives NOERROR or NXDOMAIN.
// When every server of a round timed out or could not be reached, the
// round is repeated, up to Config.Attempts rounds (as resolv.conf(5)
// "attempts"); a SERVFAIL or REFUSED is not asked again at once.
func (c *Client) exchange(ctx context.Context, name string, qtype uint16) (*answer, *Error) {
	typ := dns.TypeToString[qtype]
	m := new(dns.Msg)
	m.SetQuestion(name, qtype) // RD=1 (RFC 1035 §4.1.1)
	m.SetEdns0(EDNSBufferSize, false)
	if c.local != nil {
		if err := ctxDone(ctx); err != nil {
			return nil, &Error{Name: name, Type: typ, Kind: Timeout, Err: err}
		}
		m.Id = dns.Id()
		r := c.local(m)
		if r == nil {
			return nil, &Error{Name: name, Type: typ, Kind: ServFail, Err: errors.New("no answer")}
		}
		return c.classify(name, qtype, r, "the local zone")
	}
	var last *Error
	for round := 0; round < c.attempts; round++ {
		unreachable := true
		for _, srv := range c.servers {
			if err := ctxDone(ctx); err != nil {
				return nil, &Error{Name: name, Type: typ, Kind: Timeout, Err: err}
			}
			m.Id = dns.Id() // RFC 5452 §9.2: a fresh random id per query
			r, err := c.try(ctx, c.udp, m, srv)
			if err == nil && r.Truncated {
				// RFC 7766 §5 / RFC 1035 §4.2.2: ask the truncated answer again over TCP.
				r, err = c.try(ctx, c.tcp, m, srv)
			}
			if err != nil {
				last = err
				last.Name, last.Type = name, typ
				if ctxDone(ctx) != nil {
					return nil, last
				}
				continue
			}
			unreachable = false
			a, err := c.classify(name, qtype, r, srv)
			if err == nil {
				return a, nil
			}
			last = err
		}
		if !unreachable {
			break
		}
	}
	return nil, last
}

// classify turns a response into an answer (NOERROR, NXDOMAIN) or the
// error of its RCODE.
func (c *Client) classify(name string, qtype uint16, r *dns.Msg, from string) (*answer, *Error) {
	typ := dns.TypeToString[qtype]
	switch r.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		return newAnswer(r, qtype), nil
	case dns.RcodeServerFailure:
		return nil, &Error{Name: name, Type: typ, Kind: ServFail, Err: fmt.Errorf("SERVFAIL from %s", from)}
	case dns.RcodeRefused:
		return nil, &Error{Name: name, Type: typ, Kind: Refused, Err: fmt.Errorf("REFUSED from %s", from)}
	}
	return nil, &Error{Name: name, Type: typ, Kind: Other, Err: fmt.Errorf("RCODE %s from %s", dns.RcodeToString[r.Rcode], from)}
}

// try sends m to srv once and checks the answer matches the question.
func (c *Client) try(ctx context.Context, cl *dns.Client, m *dns.Msg, srv string) (*dns.Msg, *Error) {
	start := time.Now()
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var r *dns.Msg
	conn, err := cl.DialContext(actx, srv)
	if err == nil {
		// The read deadline comes from actx's deadline; cancelling ctx
		// without a deadline must end the read too.
		stop := context.AfterFunc(actx, func() { conn.SetDeadline(time.Now()) })
		r, _, err = cl.ExchangeWithConnContext(actx, m, conn)
		stop()
		conn.Close()
	}
	var e *Error
	outcome := OutcomeNoError
	switch {
	case err != nil:
		var ne net.Error
		if cerr := ctxDone(ctx); cerr != nil {
			e = &Error{Kind: Timeout, Err: cerr}
			outcome = OutcomeTimeout
		} else if errors.As(err, &ne) && ne.Timeout() || actx.Err() != nil {
			e = &Error{Kind: Timeout, Err: fmt.Errorf("no answer from %s in %v", srv, c.timeout)}
			outcome = OutcomeTimeout
		} else {
			e = &Error{Kind: Network, Err: fmt.Errorf("%s: %w", srv, err)}
			outcome = OutcomeError
		}
	case !sameQuestion(m, r):
		e = &Error{Kind: Network, Err: fmt.Errorf("%s answered another question", srv)}
		outcome = OutcomeError
	case r.Truncated:
		outcome = OutcomeTruncated
	default:
		outcome = rcodeOutcome(r.Rcode)
	}
	if c.observe != nil {
		c.observe(dns.TypeToString[m.Question[0].Qtype], outcome, time.Since(start))
	}
	return r, e
}

// ctxDone is ctx.Err(), also when the deadline has passed but the
// context's timer has not fired yet (a socket deadline set from it can
// expire first).
func ctxDone(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

func sameQuestion(m, r *dns.Msg) bool {
	if len(r.Question) != 1 {
		// RFC 1035 §4.1.2; some servers omit the question in errors.
		return len(r.Question) == 0 && r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError
	}
	q, a := m.Question[0], r.Question[0]
	return q.Qtype == a.Qtype && q.Qclass == a.Qclass && strings.EqualFold(q.Name, a.Name)
}

func rcodeOutcome(rcode int) string {
	switch rcode {
	case dns.RcodeSuccess:
		return OutcomeNoError
	case dns.RcodeNameError:
		return OutcomeNXDomain
	case dns.RcodeServerFailure:
		return OutcomeServFail
	case dns.RcodeRefused:
		return OutcomeRefused
	}
	return OutcomeOther
}
