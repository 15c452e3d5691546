// Package dnsres is moat's one DNS resolver: the interface every part
// (gateway, policy, relay) looks names up through, and its implementation
// over github.com/miekg/dns (Client, made by New).
//
// The Client is a stub resolver (RFC 1035 §7) that asks the configured
// recursive servers in order:
//   - queries go over UDP with an EDNS0 OPT record advertising 1232 octets
//     (RFC 6891 §6.2.5, the DNS flag day 2020 size), and a truncated (TC=1)
//     answer is asked again over TCP (RFC 7766 §5, RFC 1035 §4.2.2);
//   - a timeout, SERVFAIL, REFUSED or network error moves on to the next
//     server; when no server answered at all the list is tried again, up
//     to Config.Attempts rounds; the context deadline bounds the whole
//     lookup, Config.Timeout each attempt; ids are random (RFC 5452 §9.2)
//     and an answer to another question is discarded;
//   - CNAME chains in answers are followed, asking again when the chain's
//     target is not answered in the same message (RFC 1034 §5.3.3), at most
//     MaxCNAMEChain links;
//   - answers are cached in a bounded LRU for the minimum TTL of the answer
//     RRs (RFC 1035 §7.4, capped at MaxCacheTTL); NXDOMAIN and no-data
//     answers are cached per RFC 2308 §5 for min(SOA TTL, SOA MINIMUM) of
//     the authority section, DefaultNegativeTTL when it has no SOA; SERVFAIL
//     and timeouts are never cached (RFC 2308 §7 allows it; we leave that to
//     the recursive server so a retry really retries).
//
// Errors are *net.DNSError values (so libraries that type-assert, such as
// blitiri.com.ar/go/spf and go-msgauth, classify them) whose UnwrapErr is a
// *Error carrying the Kind; see Error.
//
// Names are made fully qualified and compared as DNS compares them: octet
// by octet in wire form, ASCII case-insensitively (RFC 4343 §3, RFC 2181
// §11: a label may hold any octet, e.g. ' ( ) ; @ or a space from an SPF
// macro); see presentationName. An invalid name (empty, an empty label,
// a label over 63 octets or a name over 255, RFC 1035 §2.3.4) fails with
// a permanent error without a query.
//
// In tests, serve records with moat/internal/dnstest and point a Client at
// it: ForTest(srv.Addr()) (no cache, one attempt, 500 ms), or
// New(Config{Servers: []string{srv.Addr()}, Timeout: 500 * time.Millisecond})
// to test caching.
package dnsres

import (
	"context"
	"net"
)

// Resolver looks up DNS records. Every method takes a context whose
// deadline bounds the whole lookup.
//
// Errors: a name that does not exist (NXDOMAIN) and a name that exists
// without records of the asked type (no data) are distinct from a
// temporary failure (SERVFAIL, timeout, refused, network error). Use
// IsNotFound, IsNoData, IsNXDomain and IsTemporary to tell them apart;
// every error also satisfies errors.As(err, **net.DNSError) with
// IsNotFound set for NXDOMAIN and no data, and IsTemporary/IsTimeout set
// for temporary failures, so libraries written against net.Resolver
// (blitiri.com.ar/go/spf) classify them correctly.
type Resolver interface {
	// LookupTXT returns each TXT record with its strings concatenated
	// (RFC 7208 §3.3, RFC 6376 §3.6.2.2).
	LookupTXT(ctx context.Context, name string) ([]string, error)
	// LookupMX returns MX records sorted by preference.
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	// LookupIPAddr returns A and AAAA records.
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	// LookupIP returns A ("ip4"), AAAA ("ip6") or both ("ip").
	LookupIP(ctx context.Context, network, host string) ([]net.IP, error)
	// LookupAddr returns the PTR names of an address.
	LookupAddr(ctx context.Context, addr string) ([]string, error)
	// LookupCNAME returns the canonical name of host after following
	// CNAME records (bounded), or host itself.
	LookupCNAME(ctx context.Context, host string) (string, error)
}
