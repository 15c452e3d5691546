package dane

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"moat/internal/dnsres"
)

const (
	// DefaultTimeout bounds each query when NewResolver is given 0.
	DefaultTimeout = 2 * time.Second
	// maxServers bounds the resolvers asked for one query.
	maxServers = 16
	// maxRecords bounds the records of one RRset used (MX hosts, TLSA
	// records); a DNS message is bounded anyway, this keeps the loops
	// over outside input small.
	maxRecords = 64
	// maxChain bounds the CNAME links followed in one answer.
	maxChain = 8
	// rounds is how many times the servers are tried while none answers.
	rounds = 2
	// ednsSize is the UDP payload size advertised (RFC 6891 §6.2.5).
	ednsSize = 1232
)

// Resolver asks a DNSSEC-validating recursive resolver (dns.servers of
// moat's configuration: a local unbound) with the DO bit and trusts an
// answer only when it carries AD (RFC 7672 §2.1; as Postfix does). It
// keeps no cache: the validating resolver caches. Safe for concurrent use.
type Resolver struct {
	servers []string
	timeout time.Duration
	err     error // why there are no servers, if so
}

// NewResolver makes a Resolver asking servers ("ip" or "ip:port", port 53
// by default) in order, each query bounded by timeout (0: DefaultTimeout).
// With no servers, the nameservers of /etc/resolv.conf are asked. It
// sends nothing.
func NewResolver(servers []string, timeout time.Duration) *Resolver {
	r := &Resolver{timeout: timeout}
	if r.timeout <= 0 {
		r.timeout = DefaultTimeout
	}
	if len(servers) == 0 {
		rc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			r.err = fmt.Errorf("dane: no dns.servers and %w", err)
			return r
		}
		for _, s := range rc.Servers {
			servers = append(servers, net.JoinHostPort(s, rc.Port))
		}
	}
	for _, s := range servers {
		if len(r.servers) == maxServers {
			break
		}
		if _, _, err := net.SplitHostPort(s); err != nil {
			s = net.JoinHostPort(strings.Trim(s, "[]"), dnsres.DefaultPort)
		}
		r.servers = append(r.servers, s)
	}
	if len(r.servers) == 0 {
		r.err = errors.New("dane: no DNS server")
	}
	return r
}

// MX returns the MX host names of domain (lower case, no trailing dot,
// lowest preference first; a null MX, RFC 7505, is left out) and whether
// the MX RRset, or the proof that there is none, was validated (secure).
// RFC 7672 §2.2.1: DANE applies only when the MX lookup was secure. A
// temporary failure (SERVFAIL, which includes bogus answers, a timeout,
// REFUSED) is returned as a *dnsres.Error whose Temporary() is true.
func (r *Resolver) MX(ctx context.Context, domain string) (hosts []string, secure bool, err error) {
	name, err := fqdn(domain, "MX")
	if err != nil {
		return nil, false, err
	}
	m, err := r.query(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, false, err
	}
	var mxs []*dns.MX
	for _, rr := range m.Answer {
		if mx, ok := rr.(*dns.MX); ok && len(mxs) < maxRecords {
			mxs = append(mxs, mx)
		}
	}
	slices.SortStableFunc(mxs, func(a, b *dns.MX) int { return cmp.Compare(a.Preference, b.Preference) })
	for _, mx := range mxs {
		if h := hostName(mx.Mx); h != "" {
			hosts = append(hosts, h)
		}
	}
	return hosts, m.AuthenticatedData, nil
}

// TLSA returns the usable TLSA records of _port._tcp.host. host's address
// lookup must be secure, else DANE does not apply (RFC 7672 §2.2.2); when
// that lookup follows a secure CNAME chain, the records of the expanded
// name are used if it has a secure non-empty TLSA RRset, and otherwise
// those of host (§2.2.2, §3.1); when only the chain's middle is
// insecure, only host's records count. Secure is true only when every
// answer the result rests on was validated. err is a temporary failure
// (SERVFAIL, which includes bogus answers, a timeout, REFUSED) as a
// *dnsres.Error, never "no DANE": the caller defers (§2.1.1); a host
// name that is not a domain name is a permanent error.
func (r *Resolver) TLSA(ctx context.Context, host string, port int) (Result, error) {
	if port <= 0 || port > 65535 {
		return Result{}, fmt.Errorf("dane: port %d out of range", port)
	}
	initial, err := fqdn(host, "A")
	if err != nil {
		return Result{}, err
	}
	m, err := r.query(ctx, initial, dns.TypeA)
	if err != nil {
		return Result{}, err
	}
	expanded := expand(m, initial)
	expandedSecure := m.AuthenticatedData
	if !expandedSecure {
		// RFC 7672 §2.2.2: the addresses must be secure, else DANE does
		// not apply. A validating resolver's AD covers the whole CNAME
		// chain; when the chain left signed data on the way but the host's
		// own CNAME and the final addresses are secure, only the initial
		// name may carry TLSA records.
		if expanded == initial {
			return Result{}, nil
		}
		ok, err := r.secure(ctx, expanded, dns.TypeA)
		if err == nil && ok {
			ok, err = r.secure(ctx, initial, dns.TypeCNAME)
		}
		if err != nil || !ok {
			return Result{}, err
		}
	}
	names := []string{hostName(initial)}
	if expanded != initial && expandedSecure {
		names = append(names, hostName(expanded))
		res, err := r.tlsaAt(ctx, expanded, port)
		if err != nil {
			return Result{}, err
		}
		if res.Secure && (len(res.Records) > 0 || res.Unusable) {
			res.Names, res.Base = names, hostName(expanded)
			return res, nil
		}
	}
	res, err := r.tlsaAt(ctx, initial, port)
	if err != nil {
		return Result{}, err
	}
	if res.Secure {
		res.Names, res.Base = names, hostName(initial)
	}
	return res, nil
}

// secure asks for name and qtype and reports whether the answer was
// validated.
func (r *Resolver) secure(ctx context.Context, name string, qtype uint16) (bool, error) {
	m, err := r.query(ctx, name, qtype)
	if err != nil {
		return false, err
	}
	return m.AuthenticatedData, nil
}

// tlsaAt looks up the TLSA RRset of _port._tcp.base (RFC 6698 §3).
func (r *Resolver) tlsaAt(ctx context.Context, base string, port int) (Result, error) {
	name := "_" + strconv.Itoa(port) + "._tcp." + base
	m, err := r.query(ctx, name, dns.TypeTLSA)
	if err != nil {
		return Result{}, err
	}
	if !m.AuthenticatedData {
		return Result{}, nil
	}
	return tlsaResult(m, name), nil
}

// tlsaResult reads the TLSA RRset of a validated answer for name: the
// TLSA records owned by the end of name's CNAME chain, at most
// maxRecords of them.
func tlsaResult(m *dns.Msg, name string) Result {
	owner := expand(m, strings.ToLower(name))
	var all []Record
	for _, rr := range m.Answer {
		t, ok := rr.(*dns.TLSA)
		if !ok || len(all) == maxRecords || !strings.EqualFold(t.Hdr.Name, owner) {
			continue
		}
		rec, ok := fromRR(t)
		if !ok {
			// Data that is not hex cannot come off the wire; count the
			// record as present but unusable.
			rec = Record{Usage: 255}
		}
		all = append(all, rec)
	}
	use := usable(all)
	return Result{Records: use, Secure: true, Unusable: len(all) > 0 && len(use) == 0}
}

// fromRR converts a parsed TLSA record.
func fromRR(t *dns.TLSA) (Record, bool) {
	data, err := hex.DecodeString(t.Certificate)
	if err != nil {
		return Record{}, false
	}
	return Record{Usage: t.Usage, Selector: t.Selector, MatchingType: t.MatchingType, Data: data}, true
}

// expand follows the CNAME chain of the answer from name, bounded, and
// returns the last name reached.
func expand(m *dns.Msg, name string) string {
	for range maxChain {
		next := ""
		for _, rr := range m.Answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, name) {
				next = strings.ToLower(dns.Fqdn(c.Target))
				break
			}
		}
		if next == "" {
			break
		}
		name = next
	}
	return name
}

// query asks each server in turn until one gives NOERROR or NXDOMAIN.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	typ := dns.TypeToString[qtype]
	if r.err != nil {
		return nil, &dnsres.Error{Name: name, Type: typ, Kind: dnsres.Network, Err: r.err}
	}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
	m.AuthenticatedData = true // RFC 6840 §5.7
	m.SetEdns0(ednsSize, true) // DO: RFC 3225, RFC 4035 §3.2.1
	last := &dnsres.Error{Name: name, Type: typ, Kind: dnsres.Network, Err: errors.New("no server answered")}
	// Two rounds over the servers while none answers at all (a lost UDP
	// datagram); an answer that is a failure (SERVFAIL: bogus) is not
	// asked again of the same server.
	for round := 0; round < rounds; round++ {
		again := false
		for _, srv := range r.servers {
			resp, err := r.exchange(ctx, m, srv)
			if err == nil {
				return resp, nil
			}
			last = err
			last.Name, last.Type = name, typ
			if ctx.Err() != nil {
				return nil, last
			}
			again = again || err.Kind == dnsres.Timeout || err.Kind == dnsres.Network
		}
		if !again {
			break
		}
	}
	return nil, last
}

// exchange sends m to srv over UDP, and again over TCP when the answer is
// truncated, each try bounded by the timeout.
func (r *Resolver) exchange(ctx context.Context, m *dns.Msg, srv string) (*dns.Msg, *dnsres.Error) {
	resp, err := r.try(ctx, "udp", m, srv)
	if err == nil && resp.Truncated {
		resp, err = r.try(ctx, "tcp", m, srv) // RFC 7766 §5
	}
	if err != nil {
		return nil, err
	}
	switch resp.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		return resp, nil
	case dns.RcodeServerFailure:
		// RFC 7672 §2.1.1: a validating resolver answers SERVFAIL for bogus
		// data; temporary, the message is deferred.
		return nil, &dnsres.Error{Kind: dnsres.ServFail, Err: fmt.Errorf("SERVFAIL from %s", srv)}
	case dns.RcodeRefused:
		return nil, &dnsres.Error{Kind: dnsres.Refused, Err: fmt.Errorf("REFUSED from %s", srv)}
	}
	// FORMERR, NOTIMP and the rest: this server cannot help; as temporary
	// as a failure of the network, never "no DANE".
	return nil, &dnsres.Error{Kind: dnsres.Network, Err: fmt.Errorf("RCODE %s from %s", dns.RcodeToString[resp.Rcode], srv)}
}

func (r *Resolver) try(ctx context.Context, network string, m *dns.Msg, srv string) (*dns.Msg, *dnsres.Error) {
	actx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	cl := &dns.Client{Net: network, Timeout: r.timeout, UDPSize: ednsSize}
	conn, err := cl.DialContext(actx, srv)
	var resp *dns.Msg
	if err == nil {
		stop := context.AfterFunc(actx, func() { conn.SetDeadline(time.Now()) })
		resp, _, err = cl.ExchangeWithConnContext(actx, m, conn)
		stop()
		conn.Close()
	}
	if err != nil {
		var ne net.Error
		if ctx.Err() != nil || actx.Err() != nil || errors.As(err, &ne) && ne.Timeout() {
			return nil, &dnsres.Error{Kind: dnsres.Timeout, Err: fmt.Errorf("no answer from %s in %v: %w", srv, r.timeout, err)}
		}
		return nil, &dnsres.Error{Kind: dnsres.Network, Err: fmt.Errorf("%s: %w", srv, err)}
	}
	if len(resp.Question) != 1 || resp.Question[0].Qtype != m.Question[0].Qtype ||
		!strings.EqualFold(resp.Question[0].Name, m.Question[0].Name) {
		if resp.Rcode == dns.RcodeSuccess || resp.Rcode == dns.RcodeNameError || len(resp.Question) != 0 {
			return nil, &dnsres.Error{Kind: dnsres.Network, Err: fmt.Errorf("%s answered another question", srv)}
		}
	}
	return resp, nil
}

// fqdn checks and canonicalises a host or domain name.
func fqdn(name, typ string) (string, error) {
	n := strings.ToLower(dns.Fqdn(strings.TrimSpace(name)))
	if n == "." {
		return "", &dnsres.Error{Name: n, Type: typ, Kind: dnsres.Other, Err: errors.New("empty name")}
	}
	if _, ok := dns.IsDomainName(n); !ok {
		return "", &dnsres.Error{Name: n, Type: typ, Kind: dnsres.Other, Err: errors.New("invalid name")}
	}
	return n, nil
}

// hostName is name in lower case without the trailing dot.
func hostName(name string) string {
	return strings.TrimSuffix(strings.ToLower(name), ".")
}
