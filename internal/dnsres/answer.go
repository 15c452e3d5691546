package dnsres

import (
	"strings"
	"time"

	"github.com/miekg/dns"
)

type cacheKey struct {
	name  string // lower-case, fully qualified
	qtype uint16
}

// answer is what one server said about one (name, type): what the cache
// keeps. Its records are never modified after newAnswer.
type answer struct {
	rcode   int      // RcodeSuccess or RcodeNameError
	rrs     []dns.RR // answer section, class IN, of the asked type or CNAME
	ttl     time.Duration
	expires time.Time // set when cached
}

// newAnswer keeps from a NOERROR or NXDOMAIN response what a lookup needs
// and decides how long it may be cached:
//   - the minimum TTL of the kept records (RFC 1035 §7.4, RFC 2181 §5.2:
//     an RRset's TTLs should be equal; we take the least);
//   - for a negative answer (NXDOMAIN, or no record of the asked type) the
//     lesser of the SOA's TTL and its MINIMUM field from the authority
//     section (RFC 2308 §5), DefaultNegativeTTL without an SOA;
//   - at most MaxCacheTTL; 0 means "do not cache" (RFC 1035 §3.2.1).
func newAnswer(r *dns.Msg, qtype uint16) *answer {
	a := &answer{rcode: r.Rcode}
	ttl := uint32(MaxCacheTTL / time.Second)
	hasType := false
	for _, rr := range r.Answer {
		h := rr.Header()
		if h.Class != dns.ClassINET || (h.Rrtype != qtype && h.Rrtype != dns.TypeCNAME) {
			continue // e.g. RRSIG, DNAME (its synthesized CNAME is kept)
		}
		if h.Rrtype == qtype {
			hasType = true
		}
		a.rrs = append(a.rrs, rr)
		ttl = min(ttl, h.Ttl)
	}
	if r.Rcode == dns.RcodeNameError || !hasType {
		neg := uint32(DefaultNegativeTTL / time.Second)
		for _, rr := range r.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				neg = min(soa.Hdr.Ttl, soa.Minttl) // RFC 2308 §5
				break
			}
		}
		ttl = min(ttl, neg)
	}
	a.ttl = time.Duration(ttl) * time.Second
	return a
}

// follow walks the CNAME chain from name through rrs (RFC 1034 §3.6.2)
// and returns the last name reached, the records of qtype it owns, the
// number of CNAME links taken, and whether the walk met a name twice. It
// takes at most MaxCNAMEChain+1 links. seen carries names across calls.
func follow(name string, qtype uint16, rrs []dns.RR, seen map[string]bool) (final string, recs []dns.RR, links int, loop bool) {
	cur := name
	for {
		var cname string
		for _, rr := range rrs {
			h := rr.Header()
			if !strings.EqualFold(h.Name, cur) {
				continue
			}
			if h.Rrtype == qtype {
				recs = append(recs, rr)
			} else if cn, ok := rr.(*dns.CNAME); ok && cname == "" {
				cname = cn.Target
			}
		}
		if len(recs) > 0 || cname == "" || qtype == dns.TypeCNAME {
			return cur, recs, links, false
		}
		lc := strings.ToLower(cur)
		if seen[lc] {
			return cur, nil, links, true
		}
		seen[lc] = true
		links++
		if links > MaxCNAMEChain {
			return cur, nil, links, false
		}
		cur = dns.Fqdn(cname)
	}
}
