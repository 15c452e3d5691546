// Package mx resolves where mail for a domain goes: the mail exchangers
// of RFC 5321 §5.1, in the order a client must try them, with the
// addresses of each.
//
// Decisions, each from the RFC:
//   - MX records are tried by preference, lowest first; records of equal
//     preference are tried in random order (RFC 5321 §5.1).
//   - A single MX record with the root "." as exchange is a null MX: the
//     domain accepts no mail, and delivery fails at once with 556 5.1.10
//     (RFC 7505 §3 and §4.3). A "." among other records is ignored.
//   - No MX records (the name exists without them) is an implicit MX: the
//     domain itself at preference 0, by its A and AAAA records (RFC 5321
//     §5.1). The domain not existing at all (NXDOMAIN) is permanent.
//   - A DNS failure (SERVFAIL, timeout, refused) is temporary, never a
//     reason to skip to the next step (RFC 5321 §5.1 "temporary error").
//   - When we are one of the exchangers (our host name or one of our
//     addresses; a loopback or unspecified address counts as ours), only
//     exchangers strictly more preferred than we are are kept (RFC 5321
//     §5.1); with none left, mail for the domain would loop back to
//     ourselves, which is a permanent error 5.4.6 (RFC 3463 X.4.6).
//   - The work is bounded: at most Options.MaxHosts exchangers are
//     resolved and at most Options.MaxAddrs addresses kept per exchanger.
//
// CNAMEs on the way are followed by the resolver (dnsres); addresses are
// resolved eagerly, because loop detection needs them.
package mx

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"

	"moat/internal/dnsres"
	"moat/internal/reply"
)

// Defaults for Options.
const (
	DefaultMaxHosts = 10
	DefaultMaxAddrs = 4
	// maxRecords bounds the MX records looked at from one answer.
	maxRecords = 100
)

// Host is one mail exchanger with its addresses, in the order to try.
type Host struct {
	Name  string // lower case, no trailing dot
	Pref  uint16
	Addrs []netip.Addr
	// Implicit is true for the domain itself used without MX records
	// (RFC 5321 §5.1).
	Implicit bool
}

// Self says who we are, for loop detection.
type Self struct {
	// Hostnames are our names (the configured hostname), matched case
	// insensitively.
	Hostnames []string
	// Addrs are our addresses (listener and interface addresses).
	Addrs []netip.Addr
	// AllowLoopback stops loopback and unspecified addresses from
	// counting as ours. For tests, whose next hops listen on 127.0.0.1.
	AllowLoopback bool
}

func (s Self) isName(name string) bool {
	for _, h := range s.Hostnames {
		if strings.EqualFold(strings.TrimSuffix(h, "."), name) {
			return true
		}
	}
	return false
}

func (s Self) isAddr(a netip.Addr) bool {
	if !s.AllowLoopback && (a.IsLoopback() || a.IsUnspecified()) {
		return true
	}
	return slices.Contains(s.Addrs, a)
}

// Options tune Lookup. The zero value is ready to use.
type Options struct {
	// MaxHosts bounds the exchangers resolved (default 10).
	MaxHosts int
	// MaxAddrs bounds the addresses kept per exchanger (default 4).
	MaxAddrs int
	// Shuffle randomizes the order of exchangers of equal preference;
	// default math/rand/v2.Shuffle. Tests inject a fixed order.
	Shuffle func(n int, swap func(i, j int))
}

// Errors returned by Lookup. Each is a copy with the domain in its text.
var (
	ErrNullMX     = reply.New(556, 1, 10, "Domain accepts no mail (null MX, RFC 7505)")
	ErrNoDomain   = reply.New(550, 1, 2, "Recipient domain does not exist")
	ErrNoAddress  = reply.New(554, 4, 4, "No address found for the mail exchangers of the domain")
	ErrLoop       = reply.New(554, 4, 6, "Mail for the domain loops back to this server")
	ErrTempLookup = reply.New(451, 4, 3, "Temporary DNS failure looking up the domain's mail exchangers")
)

// Lookup returns the exchangers of domain in the order to try them, with
// default Options.
func Lookup(ctx context.Context, r dnsres.Resolver, domain string, self Self) ([]Host, error) {
	return Options{}.Lookup(ctx, r, domain, self)
}

// Lookup returns the exchangers of domain in the order to try them. Its
// errors are *reply.Reply values: 5yz permanent (null MX, no such domain,
// no address, loop), 4yz temporary (DNS failure).
func (o Options) Lookup(ctx context.Context, r dnsres.Resolver, domain string, self Self) ([]Host, error) {
	maxHosts, maxAddrs := o.MaxHosts, o.MaxAddrs
	if maxHosts <= 0 {
		maxHosts = DefaultMaxHosts
	}
	if maxAddrs <= 0 {
		maxAddrs = DefaultMaxAddrs
	}
	shuffle := o.Shuffle
	if shuffle == nil {
		shuffle = rand.Shuffle
	}
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if domain == "" {
		return nil, ErrNoDomain.Withf("Empty recipient domain")
	}

	recs, err := r.LookupMX(ctx, domain)
	var hosts []Host
	switch {
	case err == nil && len(recs) > 0:
		hosts, err = fromRecords(recs, domain)
		if err != nil {
			return nil, err
		}
		sortAndShuffle(hosts, shuffle)
	case err == nil || dnsres.IsNoData(err) || (dnsres.IsNotFound(err) && !dnsres.IsNXDomain(err)):
		// RFC 5321 §5.1: no MX records, the domain is its own implicit
		// MX at preference 0. (A resolver that cannot tell NXDOMAIN
		// from no data ends up here too; the address lookup then fails.)
		hosts = []Host{{Name: domain, Implicit: true}}
	case dnsres.IsNXDomain(err):
		return nil, ErrNoDomain.Withf("Recipient domain %s does not exist", domain).With(err)
	default:
		// Every other failure is temporary: a DNS failure is never a
		// reason to give up or to skip ahead (RFC 5321 §5.1).
		return nil, ErrTempLookup.Withf("Temporary DNS failure looking up MX for %s", domain).With(err)
	}

	// RFC 5321 §5.1: if we are an exchanger, keep only those strictly
	// more preferred. First by name, which costs no lookups.
	cut := -1 // preference at which we appear; -1: not at all
	selfHost := ""
	for _, h := range hosts {
		if self.isName(h.Name) {
			cut, selfHost = int(h.Pref), h.Name
			break // hosts are sorted: the first is the most preferred
		}
	}
	var (
		out      []Host
		tempErr  error
		permErr  error
		resolved int
	)
	for _, h := range hosts {
		if cut >= 0 && int(h.Pref) >= cut {
			break
		}
		if resolved >= maxHosts {
			break
		}
		resolved++
		ips, err := r.LookupIPAddr(ctx, h.Name)
		if err != nil {
			if dnsres.IsNotFound(err) {
				if permErr == nil {
					permErr = err
				}
			} else if tempErr == nil {
				tempErr = err
			}
			continue
		}
		isSelf := false
		for _, ip := range ips {
			a, ok := netip.AddrFromSlice(ip.IP)
			if !ok {
				continue
			}
			a = a.Unmap()
			if self.isAddr(a) {
				isSelf = true
				break
			}
			if len(h.Addrs) < maxAddrs && !slices.Contains(h.Addrs, a) {
				h.Addrs = append(h.Addrs, a)
			}
		}
		if isSelf {
			cut, selfHost = int(h.Pref), h.Name
			break
		}
		if len(h.Addrs) == 0 {
			if permErr == nil {
				permErr = ErrNoAddress
			}
			continue
		}
		out = append(out, h)
	}
	if cut >= 0 {
		// Drop what we resolved at our own preference before we found
		// ourselves (equal preferences are shuffled).
		out = slices.DeleteFunc(out, func(h Host) bool { return int(h.Pref) >= cut })
	}
	if len(out) > 0 {
		return out, nil
	}
	switch {
	case cut >= 0:
		return nil, ErrLoop.Withf("Mail for %s loops back to myself (MX host %s is this server)", domain, selfHost)
	case tempErr != nil:
		return nil, ErrTempLookup.Withf("Temporary DNS failure looking up the mail exchangers of %s", domain).With(tempErr)
	default:
		return nil, ErrNoAddress.Withf("No address found for the mail exchangers of %s", domain).With(permErr)
	}
}

// fromRecords turns MX records into hosts, spotting a null MX.
func fromRecords(recs []*net.MX, domain string) ([]Host, error) {
	if len(recs) > maxRecords {
		recs = recs[:maxRecords]
	}
	hosts := make([]Host, 0, len(recs))
	null := false
	for _, rec := range recs {
		if rec == nil {
			continue
		}
		name := strings.ToLower(strings.TrimSuffix(rec.Host, "."))
		if name == "" {
			// RFC 7505 §3: "." as exchange. Alone it is a null MX;
			// among other records it is ignored.
			null = true
			continue
		}
		hosts = append(hosts, Host{Name: name, Pref: rec.Pref})
	}
	if len(hosts) == 0 {
		if null {
			return nil, ErrNullMX.Withf("Domain %s accepts no mail (null MX, RFC 7505)", domain)
		}
		return nil, ErrNoAddress.Withf("No usable MX record for %s", domain)
	}
	return hosts, nil
}

// sortAndShuffle orders hosts by preference, randomly among equals
// (RFC 5321 §5.1).
func sortAndShuffle(hosts []Host, shuffle func(int, func(i, j int))) {
	slices.SortStableFunc(hosts, func(a, b Host) int { return int(a.Pref) - int(b.Pref) })
	for i := 0; i < len(hosts); {
		j := i + 1
		for j < len(hosts) && hosts[j].Pref == hosts[i].Pref {
			j++
		}
		if j-i > 1 {
			group := hosts[i:j]
			shuffle(len(group), func(a, b int) { group[a], group[b] = group[b], group[a] })
		}
		i = j
	}
}
