package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/miekg/dns"

	"moat/internal/dnsres"
)

// maxZoneRecords bounds a zone file loaded by `moat rules test --dns`.
const maxZoneRecords = 100000

// zoneResolver is a dnsres.Resolver that answers from the records of a
// zone file (RFC 1035 §5 master file syntax) held in memory, so that
// `moat rules test --dns` runs SPF, DKIM, DMARC and iprev offline.
//
// The zone only answers DNS messages, as an authoritative server would
// (RFC 1034 §4.3.2): the CNAMEs on the way and the records asked for; a
// name that has records of other types, or that is an empty non-terminal
// (an ancestor of a name with records, RFC 8020 §2), is "no data"; any
// other name is NXDOMAIN (RFC 2308 §2). A wildcard owner
// "*.<closest encloser>" answers for names that do not exist below it
// (RFC 4592 §3.3.1, without the finer points of §4). The typed lookups,
// CNAME following and error kinds are dnsres.Client's own (NewLocal), so
// the checks see exactly what they would see from a server.
// defaultZoneTTL is the TTL of a record that gives none.
const defaultZoneTTL = 300

type zoneResolver struct {
	*dnsres.Client
	rrs   map[string][]dns.RR // lower-case owner → records
	names map[string]bool     // every owner and every ancestor of one
}

var _ dnsres.Resolver = (*zoneResolver)(nil)

// loadZone parses a zone file. Relative names are taken relative to the
// root unless the file sets $ORIGIN; $INCLUDE is refused; a record without
// a TTL, in a file without $TTL, gets defaultZoneTTL (a test file need
// not say one, as the example in `moat rules test --help` does not).
func loadZone(r io.Reader, file string) (*zoneResolver, error) {
	z := &zoneResolver{rrs: map[string][]dns.RR{}, names: map[string]bool{".": true}}
	zp := dns.NewZoneParser(r, ".", file)
	zp.SetIncludeAllowed(false)
	zp.SetDefaultTTL(defaultZoneTTL)
	n := 0
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if n++; n > maxZoneRecords {
			return nil, fmt.Errorf("%s: more than %d records", file, maxZoneRecords)
		}
		owner := strings.ToLower(rr.Header().Name)
		z.rrs[owner] = append(z.rrs[owner], rr)
		for name := owner; !z.names[name]; {
			z.names[name] = true
			i, end := dns.NextLabel(name, 0)
			if end {
				break
			}
			name = name[i:]
		}
	}
	if err := zp.Err(); err != nil {
		return nil, err
	}
	z.Client = dnsres.NewLocal(z.answer)
	return z, nil
}

// records returns the records owned by name, synthesized from a
// wildcard when name does not exist.
func (z *zoneResolver) records(name string) ([]dns.RR, bool) {
	if z.names[name] {
		return z.rrs[name], true
	}
	// RFC 4592 §3.3.1: the closest encloser's wildcard, if any.
	for off, end := dns.NextLabel(name, 0); !end; off, end = dns.NextLabel(name, off) {
		parent := name[off:]
		if z.names[parent] {
			if w, ok := z.rrs["*."+parent]; ok {
				return w, true
			}
			return nil, false
		}
	}
	return nil, false
}

// answer answers one question: the CNAME chain (bounded) and the records
// of the asked type at its end, NXDOMAIN when the last name does not
// exist (RFC 6604 §3).
func (z *zoneResolver) answer(req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	q := req.Question[0]
	cur := strings.ToLower(q.Name)
	for links := 0; links <= dnsres.MaxCNAMEChain; links++ {
		rrs, exists := z.records(cur)
		if !exists {
			m.Rcode = dns.RcodeNameError
			return m
		}
		var cname dns.RR
		found := false
		for _, rr := range rrs {
			t := rr.Header().Rrtype
			if t == q.Qtype || (t == dns.TypeCNAME && cname == nil) {
				c := dns.Copy(rr)
				c.Header().Name = cur // a wildcard answers in the name asked
				if t == q.Qtype {
					m.Answer = append(m.Answer, c)
					found = true
				} else {
					cname = c
				}
			}
		}
		if found || cname == nil || q.Qtype == dns.TypeCNAME {
			return m
		}
		m.Answer = append(m.Answer, cname)
		cur = strings.ToLower(cname.(*dns.CNAME).Target)
	}
	return m
}
