// Package iprev checks the client address with forward-confirmed reverse
// DNS, the "iprev" method of RFC 8601 §3: the PTR names of the address are
// looked up, and each name's A or AAAA records must contain the address.
//
// Results (RFC 8601 §2.7.3):
//   - pass: at least one PTR name resolves back to the address; Names
//     holds the confirmed names.
//   - fail: no PTR record (NXDOMAIN or no data), or no PTR name leads back.
//   - temperror: a DNS lookup failed temporarily and no name confirmed.
//   - permerror: the address is invalid.
//
// At most MaxNames PTR names are followed (the PTR set is outside input).
package iprev

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"time"

	"moat/internal/deadline"
	"moat/internal/dnsres"
	"moat/policy"
)

// MaxNames bounds the PTR names checked.
const MaxNames = 10

// Check runs iprev for ip. It never panics: a panic inside becomes
// temperror.
func Check(ctx context.Context, r dnsres.Resolver, ip netip.Addr) (res policy.IPRev) {
	defer func() {
		if recover() != nil {
			res = policy.IPRev{Result: policy.ResultTempError}
		}
	}()
	if !ip.IsValid() {
		return policy.IPRev{Result: policy.ResultPermError}
	}
	ip = ip.Unmap()
	names, err := r.LookupAddr(ctx, ip.String())
	if err != nil {
		if notFound(err) {
			return policy.IPRev{Result: policy.ResultFail}
		}
		return policy.IPRev{Result: policy.ResultTempError}
	}
	if len(names) > MaxNames {
		names = names[:MaxNames]
	}
	temp := false
	var confirmed []string
	for _, n := range names {
		n = strings.TrimSuffix(n, ".")
		if n == "" {
			continue
		}
		network := "ip4"
		if ip.Is6() {
			network = "ip6"
		}
		ips, err := r.LookupIP(ctx, network, n)
		if err != nil {
			if !notFound(err) {
				temp = true
			}
			continue
		}
		for _, a := range ips {
			if got, ok := netip.AddrFromSlice(a); ok && got.Unmap() == ip {
				confirmed = append(confirmed, n)
				break
			}
		}
	}
	switch {
	case len(confirmed) > 0:
		return policy.IPRev{Result: policy.ResultPass, Names: confirmed}
	case temp:
		// RFC 8601 §3: a temporary failure may hide the confirming name.
		return policy.IPRev{Result: policy.ResultTempError}
	default:
		return policy.IPRev{Result: policy.ResultFail}
	}
}

func notFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound && !de.IsTemporary && !de.IsTimeout
}

// Pending is an iprev check running in the background, started at connect
// and read later.
type Pending struct {
	done chan struct{}
	res  policy.IPRev
}

// Start begins Check in a goroutine, bounded by timeout.
func Start(r dnsres.Resolver, ip netip.Addr, timeout time.Duration) *Pending {
	p := &Pending{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		ctx, cancel := deadline.WithTimeout(context.Background(), timeout)
		defer cancel()
		p.res = Check(ctx, r, ip)
	}()
	return p
}

// Wait returns the result, waiting for the check to end (ctx of Start
// bounds it).
func (p *Pending) Wait() policy.IPRev {
	<-p.done
	return p.res
}
